"""URLs of the sandbox simulator (sessions/sandbox_views.py), under /sandbox/."""

from django.urls import path

from sessions import sandbox_views

urlpatterns = [
    path("numbers/<int:number_id>/device/", sandbox_views.device, name="sandbox-device"),
    path("numbers/<int:number_id>/device/scan/", sandbox_views.device_scan, name="sandbox-device-scan"),
    path("numbers/<int:number_id>/device/fault/", sandbox_views.device_fault, name="sandbox-device-fault"),
    path("numbers/<int:number_id>/phone/", sandbox_views.phone, name="sandbox-phone"),
    path("numbers/<int:number_id>/phone/messages/", sandbox_views.phone_messages, name="sandbox-phone-messages"),
    path("numbers/<int:number_id>/phone/send/", sandbox_views.phone_send, name="sandbox-phone-send"),
]
