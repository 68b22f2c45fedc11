from django.contrib import admin
from django.urls import include, path

from conversations.webhooks import whatsapp_webhook
from crm.views import healthz

admin.site.site_header = "WhatsApp CRM"
admin.site.site_title = "WhatsApp CRM"
admin.site.index_title = "Operations"

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("webhooks/whatsapp/", whatsapp_webhook, name="whatsapp-webhook"),
    path("api/v1/", include("config.api_urls")),
    path("sandbox/", include("sessions.urls")),
    path("i18n/", include("django.conf.urls.i18n")),
    # The agent-facing CRM is the site's front door; staff reach the operator console at /admin/.
    path("", include("crm.urls")),
]
