"""/api/v1/ routes of the conversations app: conversations and contacts (docs/api.md)."""

from django.urls import path

from conversations.api.contacts import ContactGetApi, ContactListApi
from conversations.api.conversations import (
    ConversationAssignApi,
    ConversationGetApi,
    ConversationListApi,
    ConversationMessagesApi,
    ConversationResolveApi,
)

urlpatterns: list = [
    path("conversations/", ConversationListApi.as_view(), name="api-conversation-list"),
    path("conversations/<int:pk>/", ConversationGetApi.as_view(), name="api-conversation-get"),
    path("conversations/<int:pk>/messages/", ConversationMessagesApi.as_view(), name="api-conversation-messages"),
    path("conversations/<int:pk>/assign/", ConversationAssignApi.as_view(), name="api-conversation-assign"),
    path("conversations/<int:pk>/resolve/", ConversationResolveApi.as_view(), name="api-conversation-resolve"),
    path("contacts/", ContactListApi.as_view(), name="api-contact-list"),
    path("contacts/<int:pk>/", ContactGetApi.as_view(), name="api-contact-get"),
]
