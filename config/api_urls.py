"""/api/v1/: the REST API (docs/api.md). Each app keeps its routes in `<app>/api/urls.py`."""

from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from crm.api.views import MeApi, api_not_found

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(permission_classes=[], authentication_classes=[]), name="api-schema"),
    path(
        "docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", permission_classes=[], authentication_classes=[]),
        name="api-docs",
    ),
    path(
        "redoc/",
        SpectacularRedocView.as_view(url_name="api-schema", permission_classes=[], authentication_classes=[]),
        name="api-redoc",
    ),
    path("me/", MeApi.as_view(), name="api-me"),
    path("", include("sessions.api.urls")),
    path("", include("conversations.api.urls")),
    path("", include("campaigns.api.urls")),
    path("", include("queues.api.urls")),
    re_path(r"^.*$", api_not_found),  # the API's error body, not the site's HTML 404
]
