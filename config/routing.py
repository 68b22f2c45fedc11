"""WebSocket URL routes of every app, gathered for config.asgi."""

from campaigns.routing import websocket_urlpatterns as campaigns_patterns
from crm.routing import websocket_urlpatterns as crm_patterns
from sessions.routing import websocket_urlpatterns as sessions_patterns

websocket_urlpatterns = [*crm_patterns, *sessions_patterns, *campaigns_patterns]
