"""WebSocket URL routes of every app, gathered for config.asgi."""

from crm.routing import websocket_urlpatterns as crm_patterns

websocket_urlpatterns = [*crm_patterns]
