"""ASGI entry point served by daphne: Django over HTTP, Channels consumers over WebSocket.

Webhook deliveries (POST /webhooks/whatsapp/) take a lean path around Django's middleware
(conversations/webhook_asgi.py); every other HTTP request is Django's.

WebSockets are accepted only from allowed origins (ALLOWED_HOSTS) and carry the Django session user.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

from config.env import exit_on_config_error  # noqa: E402

with exit_on_config_error():
    from django.core.asgi import get_asgi_application

    django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402
from conversations.webhook_asgi import WebhookApp  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": WebhookApp(django_asgi_app),
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
