"""The WhatsApp Web engine's sends (docs/sessions.md): the recipient's JID, the message, what send errors mean."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sessions.engines.base import OutboundText, SendError
from sessions.engines.web.store import LID_SERVER, USER_SERVER, jid_string

if TYPE_CHECKING:
    from google.protobuf.message import Message as ProtoMessage
    from neonize.proto.Neonize_pb2 import JID


def _recipient_jid(to: str) -> JID:
    """The chat to send to: the customer's phone digits, or `lid:<digits>` for a customer known by lid only."""
    from neonize.proto.Neonize_pb2 import JID

    server = USER_SERVER
    if to.startswith("lid:"):
        to, server = to[4:], LID_SERVER
    if not to.isdigit():
        raise SendError("bad_recipient", "The recipient is neither a phone number nor a WhatsApp lid.")
    return JID(User=to, RawAgent=0, Device=0, Integrator=0, Server=server, IsEmpty=False)


def outbound_message(content: OutboundText, to: JID, *, number_id: int, device_jid: str) -> ProtoMessage:
    """The protobuf message for `content`; a reply quotes the stored message it answers (own or the customer's)."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ContextInfo, ExtendedTextMessage, Message

    if not content.reply_to:
        return Message(conversation=content.body)
    from conversations.models import Message as StoredMessage

    quoted = (
        StoredMessage.objects.filter(number_id=number_id, provider_message_id=content.reply_to)
        .values("direction", "body")
        .first()
    )
    own = quoted is not None and quoted["direction"] == StoredMessage.Direction.OUTBOUND
    own_user = device_jid.split("@")[0].split(":")[0].split(".")[0]
    participant = f"{own_user}@{USER_SERVER}" if own and own_user else jid_string(to)
    context = ContextInfo(
        stanzaID=content.reply_to,
        participant=participant,
        quotedMessage=Message(conversation=(quoted or {}).get("body") or ""),
    )
    return Message(extendedTextMessage=ExtendedTextMessage(text=content.body, contextInfo=context))


# whatsmeow's send errors that prove the message never left (safe to retry), and those after which it may have.
NOT_SENT_ERRORS = ("not connected", "not logged in", "websocket", "failed to get device", "failed to encrypt")
MAYBE_SENT_ERRORS = ("timed out", "timeout", "deadline exceeded", "context canceled")


def _send_error(text: str) -> SendError:
    lowered = text.lower()
    reason = f"WhatsApp Web did not take the message: {text}"[:300]
    if any(part in lowered for part in MAYBE_SENT_ERRORS):
        return SendError("timeout", reason, ambiguous=True)
    if any(part in lowered for part in NOT_SENT_ERRORS):
        return SendError("not_sent", reason, retryable=True)
    if "server returned error" in lowered:
        return SendError("rejected", reason)
    return SendError("send_failed", reason, ambiguous=True)  # unknown: it may have left; never send it twice
