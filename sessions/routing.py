from django.urls import path

from sessions.consumers import SessionsConsumer

websocket_urlpatterns = [path("ws/sessions/", SessionsConsumer.as_asgi())]
