"""Writes of the conversations app (docs/inbound.md, docs/outbound.md): one function per use case."""

from conversations.services.outbound import (
    OutboundRefused,
    Template,
    message_deliver,
    message_send,
    outbound_messages_sweep,
)
from conversations.services.receive import contact_identify, inbound_message_receive
from conversations.services.routing import conversation_route_unrouted
from conversations.services.statuses import message_status_apply, unmatched_statuses_sweep
from conversations.services.webhook_events import (
    webhook_event_process,
    webhook_event_store,
    webhook_events_enqueue,
    webhook_events_process,
    webhook_events_requeue,
)

__all__ = [
    "OutboundRefused",
    "Template",
    "message_deliver",
    "message_send",
    "outbound_messages_sweep",
    "contact_identify",
    "conversation_route_unrouted",
    "inbound_message_receive",
    "message_status_apply",
    "unmatched_statuses_sweep",
    "webhook_event_process",
    "webhook_event_store",
    "webhook_events_enqueue",
    "webhook_events_process",
    "webhook_events_requeue",
]
