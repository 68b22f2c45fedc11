from django.apps import AppConfig


class SessionsConfig(AppConfig):
    """WhatsApp numbers, their engines and connection sessions (docs/sessions.md).

    Labelled `wa_sessions` because `sessions` is taken by django.contrib.sessions.
    """

    name = "sessions"
    label = "wa_sessions"
    verbose_name = "WhatsApp numbers & sessions"
