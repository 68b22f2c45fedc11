"""URLs of the agent-facing CRM (docs/crm.md)."""

from django.urls import path

from crm.views import agent

app_name = "crm"

urlpatterns = [
    path("", agent.home, name="home"),
    path("login/", agent.AgentLoginView.as_view(), name="login"),
    path("logout/", agent.AgentLogoutView.as_view(), name="logout"),
    path("inbox/", agent.inbox_view, name="inbox"),
    path("dashboard/", agent.dashboard_view, name="dashboard"),
    path("availability/", agent.availability_view, name="availability"),
    path("conversations/<int:pk>/", agent.conversation_view, name="conversation"),
    path("conversations/<int:pk>/reply/", agent.conversation_reply_view, name="conversation-reply"),
    path("conversations/<int:pk>/note/", agent.conversation_note_view, name="conversation-note"),
    path("conversations/<int:pk>/take/", agent.conversation_take_view, name="conversation-take"),
    path("conversations/<int:pk>/transfer/", agent.conversation_transfer_view, name="conversation-transfer"),
    path("conversations/<int:pk>/resolve/", agent.conversation_resolve_view, name="conversation-resolve"),
    path("conversations/<int:pk>/ai/", agent.conversation_ai_resume_view, name="conversation-ai-resume"),
    path("conversations/<int:pk>/reopen/", agent.conversation_reopen_view, name="conversation-reopen"),
    path("conversations/<int:pk>/snooze/", agent.conversation_snooze_view, name="conversation-snooze"),
    path("conversations/<int:pk>/media/<int:message_id>/", agent.conversation_media_view, name="conversation-media"),
]
