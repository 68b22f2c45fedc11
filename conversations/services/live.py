"""Live events about conversations and messages (docs/realtime.md), published after commit.

A conversation's events go to its queue's group (or, while unrouted, to its client's staff) and to its agent.
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser

from conversations.models import Conversation, Message
from crm.events import LiveEvent, client_group, publish_on_commit, queue_group, user_group

PREVIEW_CHARS = 120


def publish_conversation_event(conversation: Conversation, event: LiveEvent) -> None:
    if conversation.queue_id:
        publish_on_commit(queue_group(conversation.queue_id), event)
    else:
        publish_on_commit(client_group(conversation.client_id), event)  # unrouted: staff must see it
    if conversation.assigned_to_id:
        publish_on_commit(user_group(conversation.assigned_to_id), event)


def publish_conversation_updated(
    conversation: Conversation,
    *,
    by: AbstractBaseUser | None,
    action: str,
    left_queue_id: int | None = None,
    left_agent_id: int | None = None,
    **extra,
) -> None:
    """`conversation.updated` to whoever watches the conversation now, and to the queue and agent it just left."""
    event = {
        "type": "conversation.updated",
        "data": {
            "conversation": conversation.pk,
            "action": action,
            "status": conversation.status,
            "queue": conversation.queue_id,
            "agent": conversation.assigned_to_id,
            "by": by.pk if by is not None else None,
            **extra,
        },
    }
    publish_conversation_event(conversation, event)
    if left_queue_id and left_queue_id != conversation.queue_id:
        publish_on_commit(queue_group(left_queue_id), event)
    if left_agent_id and left_agent_id != conversation.assigned_to_id:
        publish_on_commit(user_group(left_agent_id), event)


def publish_message_created(message: Message, conversation: Conversation, action: str = "existing") -> None:
    publish_conversation_event(
        conversation,
        {
            "type": "message.created",
            "data": {
                "conversation": conversation.pk,
                "conversation_status": conversation.status,
                "conversation_action": action,
                "message": message.pk,
                "direction": message.direction,
                "kind": message.kind,
                "status": message.status,
                "preview": message.body[:PREVIEW_CHARS],
                "queue": conversation.queue_id,
                "agent": conversation.assigned_to_id,
            },
        },
    )


def publish_message_status(
    message_id: int, conversation: Conversation, status: str, error_code: str = "", error_reason: str = ""
) -> None:
    publish_conversation_event(
        conversation,
        {
            "type": "message.status",
            "data": {
                "conversation": conversation.pk,
                "message": message_id,
                "status": status,
                "error_code": error_code,
                "error_reason": error_reason,
            },
        },
    )
