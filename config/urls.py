from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from conversations.webhooks import whatsapp_webhook
from crm.views import healthz

admin.site.site_header = "WhatsApp CRM"
admin.site.site_title = "WhatsApp CRM"
admin.site.index_title = "Operations"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("webhooks/whatsapp/", whatsapp_webhook, name="whatsapp-webhook"),
    path("sandbox/", include("sessions.urls")),
    # Until the agent-facing CRM views exist, the site's front door is the operator console.
    path("", RedirectView.as_view(pattern_name="admin:index"), name="home"),
]
