"""/api/v1/ routes of the sessions app."""

from django.urls import path

from sessions.api.views import (
    NumberConnectApi,
    NumberDetailApi,
    NumberDisconnectApi,
    NumberListApi,
    NumberQrApi,
    NumberResetApi,
    NumberStateApi,
)

urlpatterns = [
    path("numbers/", NumberListApi.as_view(), name="api-number-list"),
    path("numbers/<int:id>/", NumberDetailApi.as_view(), name="api-number-detail"),
    path("numbers/<int:id>/state/", NumberStateApi.as_view(), name="api-number-state"),
    path("numbers/<int:id>/qr/", NumberQrApi.as_view(), name="api-number-qr"),
    path("numbers/<int:id>/connect/", NumberConnectApi.as_view(), name="api-number-connect"),
    path("numbers/<int:id>/disconnect/", NumberDisconnectApi.as_view(), name="api-number-disconnect"),
    path("numbers/<int:id>/reset/", NumberResetApi.as_view(), name="api-number-reset"),
]
