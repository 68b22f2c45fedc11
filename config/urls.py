from django.contrib import admin
from django.urls import path

from crm.views import healthz

admin.site.site_header = "WhatsApp CRM"
admin.site.site_title = "WhatsApp CRM"
admin.site.index_title = "Operations"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
