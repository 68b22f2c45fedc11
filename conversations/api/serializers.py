"""Output shapes the conversations endpoints share (docs/api.md): a conversation's row and detail, a message, and
the small objects nested in them. Each view's own `OutputSerializer` builds on these.

Statuses and kinds are plain strings here (their values are listed in the help text): enum components named
after a field (`status`, `kind`) would collide with the other apps' choice sets of the same name in the schema.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from conversations.models import Conversation, Message


def _values(choices) -> str:
    return ", ".join(value for value, _label in choices)


class ConversationQueueSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()


class ConversationNumberSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    alias = serializers.CharField()


class ConversationContactSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    phone = serializers.CharField(help_text="E.164, e.g. +51987654321; blank for a contact known only by its id.")


class ConversationAgentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()
    name = serializers.SerializerMethodField(help_text="Full name, or the username when it has none.")

    def get_name(self, user) -> str:
        return user.get_full_name() or user.get_username()


class ConversationWindowSerializer(serializers.Serializer):
    open = serializers.BooleanField(help_text="Whether free text can be sent now.")
    closes_at = serializers.DateTimeField(
        allow_null=True,
        help_text="When the 24-hour customer-service window closes (Cloud API numbers); null when the number has "
        "no window or the customer never wrote.",
    )
    templates = serializers.BooleanField(help_text="Whether the number can send approved templates.")


class ConversationRowSerializer(serializers.Serializer):
    """A conversation as the lists show it."""

    id = serializers.IntegerField()
    status = serializers.CharField(help_text=f"One of: {_values(Conversation.Status.choices)} (ai: the AI assistant).")
    queue = ConversationQueueSerializer(allow_null=True)
    number = ConversationNumberSerializer()
    contact = ConversationContactSerializer()
    assigned_to = ConversationAgentSerializer(allow_null=True)
    last_message_at = serializers.DateTimeField(allow_null=True)
    last_inbound_at = serializers.DateTimeField(allow_null=True, help_text="The customer's last message.")
    unread_count = serializers.IntegerField()
    ai_stop_reason = serializers.CharField(
        help_text=f"Why the AI assistant stopped: {_values(Conversation.AIStopReason.choices)}; blank if it did not."
    )
    created_at = serializers.DateTimeField()


class ConversationDetailSerializer(ConversationRowSerializer):
    """A conversation with its times and whether free text can be sent now (`window`, set by the view)."""

    waiting_since = serializers.DateTimeField(allow_null=True)
    assigned_at = serializers.DateTimeField(allow_null=True)
    resolved_at = serializers.DateTimeField(allow_null=True)
    snoozed_until = serializers.DateTimeField(allow_null=True)
    window = ConversationWindowSerializer()


class MessageSenderSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    username = serializers.CharField()


class MessageMediaSerializer(serializers.Serializer):
    mime_type = serializers.CharField()
    filename = serializers.CharField()


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    direction = serializers.CharField(help_text="in (customer), out (to the customer) or int (notes and notices).")
    origin = serializers.CharField(
        help_text=f"Who wrote an outbound or internal message: {_values(Message.Origin.choices)}."
    )
    kind = serializers.CharField(help_text=f"One of: {_values(Message.Kind.choices)}.")
    body = serializers.CharField()
    status = serializers.CharField(help_text=f"One of: {_values(Message.Status.choices)}.")
    error_code = serializers.CharField()
    error_reason = serializers.CharField()
    provider_message_id = serializers.CharField(allow_null=True)
    reply_to = serializers.IntegerField(source="quoted_id", allow_null=True, help_text="The quoted message's id.")
    sent_by = MessageSenderSerializer(allow_null=True)
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField(help_text="Last change (a new status): the cursor for `since`.")
    status_at = serializers.DateTimeField(allow_null=True)
    media = serializers.SerializerMethodField()

    @extend_schema_field(MessageMediaSerializer(allow_null=True))
    def get_media(self, message: Message) -> dict | None:
        if not message.media_id:
            return None
        return {"mime_type": message.media_mime_type, "filename": message.media_filename}
