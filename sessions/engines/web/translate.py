"""The WhatsApp Web engine's translation (docs/sessions.md): neonize events into `conversations.inbound` dataclasses."""

from __future__ import annotations

import base64
import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.utils import timezone

from sessions.engines.web.store import LID_SERVER, USER_SERVER, jid_string

if TYPE_CHECKING:
    from google.protobuf.message import Message as ProtoMessage
    from neonize.proto.Neonize_pb2 import JID

    from conversations.inbound import InboundMedia, InboundMessage, InboundSender, StatusUpdate

logger = logging.getLogger(__name__)

# Wrappers whatsmeow usually unwraps already; unwrapped here too so nothing slips through as "unsupported".
WRAPPERS = (
    "ephemeralMessage",
    "viewOnceMessage",
    "viewOnceMessageV2",
    "viewOnceMessageV2Extension",
    "documentWithCaptionMessage",
    "deviceSentMessage",
)
MEDIA_FIELDS = {
    "imageMessage": "image",
    "videoMessage": "video",
    "ptvMessage": "video",
    "audioMessage": "audio",
    "documentMessage": "document",
    "stickerMessage": "sticker",
}
# Parts of a message that carry no content of their own.
META_FIELDS = frozenset(
    {"messageContextInfo", "senderKeyDistributionMessage", "fastRatchetKeySenderKeyDistributionMessage"}
)
# Messages about other messages or about the chat: nothing to show in a conversation.
SKIPPED_FIELDS = frozenset({"protocolMessage", "keepInChatMessage", "pinInChatMessage", "encReactionMessage"})


def _timestamp(value: int) -> datetime:
    """neonize gives message times in milliseconds and receipt times in seconds; 0 means unknown (now)."""
    if value <= 0:
        return timezone.now()
    seconds = value / 1000 if value > 100_000_000_000 else value
    return datetime.fromtimestamp(seconds, tz=UTC)


def _identity(jid: JID, alt: JID) -> tuple[str | None, str | None]:
    """(phone digits, `lid:<digits>`) of a person from a JID and whatsmeow's alternate JID for it."""
    wa_id = bsuid = None
    for candidate in (jid, alt):
        if not candidate.User:
            continue
        if candidate.Server == USER_SERVER and wa_id is None:
            wa_id = candidate.User
        elif candidate.Server == LID_SERVER and bsuid is None:
            bsuid = f"lid:{candidate.User}"
    return wa_id, bsuid


def _one_to_one(source: Any) -> bool:
    chat = source.Chat
    return not source.IsGroup and chat.Server in (USER_SERVER, LID_SERVER) and bool(chat.User)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else ""


def _unwrap(message: ProtoMessage) -> ProtoMessage:
    for _ in range(5):
        for wrapper in WRAPPERS:
            if message.HasField(wrapper) and getattr(message, wrapper).HasField("message"):
                message = getattr(message, wrapper).message
                break
        else:
            return message
    return message


def _content_field(message: ProtoMessage) -> str:
    """The name of the part holding the message's content ("" when there is none)."""
    names = [field.name for field, _value in message.ListFields() if field.name not in META_FIELDS]
    return names[0] if names else ""


def _quoted(part: ProtoMessage) -> str | None:
    if part.HasField("contextInfo") and part.contextInfo.stanzaID:
        return part.contextInfo.stanzaID
    return None


def inbound_message(
    event: ProtoMessage, *, number_id: int, phone_number_id: str, display_digits: str
) -> InboundMessage | None:
    """The message a neonize `Message` event carries, or None for one the engine skips (the package notes)."""
    from conversations.inbound import InboundMessage

    info = event.Info
    source = info.MessageSource
    if source.IsFromMe or not _one_to_one(source):
        return None
    content = event.Message if event.HasField("Message") else event.Raw
    content = _unwrap(content)
    field = _content_field(content)
    if not field or field in SKIPPED_FIELDS:
        logger.debug("number %s: message %s skipped (%s)", number_id, info.ID, field or "empty")
        return None
    kind, body, media, quoted, media_raw = _content(field, content, info.ID)
    sender = _sender(source, info.Pushname)
    raw: dict[str, Any] = {
        "engine": "web",
        "id": info.ID,
        "chat": jid_string(source.Chat),
        "sender": jid_string(source.Sender),
        "sender_alt": jid_string(source.SenderAlt) if source.SenderAlt.User else "",
        "push_name": info.Pushname,
        "timestamp": info.Timestamp,
        "type": field,
    }
    if media_raw:
        raw["media"] = media_raw
    return InboundMessage(
        phone_number_id=phone_number_id,
        display_phone_number=display_digits,
        provider_message_id=info.ID,
        sender=sender,
        timestamp=_timestamp(info.Timestamp),
        kind=kind,
        body=body,
        media=media,
        quoted_provider_id=quoted,
        error_code="",
        error_reason="",
        raw=raw,
    )


def _sender(source: Any, name: str) -> InboundSender:
    from conversations.inbound import InboundSender

    jid = source.Sender if source.Sender.User else source.Chat
    wa_id, bsuid = _identity(jid, source.SenderAlt)
    return InboundSender(wa_id=wa_id, bsuid=bsuid, name=name[:120], username=None)


def _content(
    field: str, message: ProtoMessage, message_id: str
) -> tuple[str, str, InboundMedia | None, str | None, dict[str, Any]]:
    """(kind, body, media, quoted provider id, media download data for `raw`)."""
    from conversations.inbound import InboundMedia, _location_body, _reaction_body

    if field == "conversation":
        return "text", message.conversation, None, None, {}
    if field == "extendedTextMessage":
        part = message.extendedTextMessage
        return "text", part.text, None, _quoted(part), {}
    if field in MEDIA_FIELDS:
        part = getattr(message, field)
        kind = MEDIA_FIELDS[field]
        if kind == "audio" and part.PTT:
            kind = "voice"
        filename = part.fileName if field == "documentMessage" else ""
        media = InboundMedia(
            media_id=message_id,
            mime_type=part.mimetype,
            sha256=part.fileSHA256.hex(),
            filename=filename,
            url="",
        )
        download = {
            "direct_path": part.directPath,
            "media_key": _b64(part.mediaKey),
            "file_enc_sha256": _b64(part.fileEncSHA256),
            "file_sha256": _b64(part.fileSHA256),
            "file_length": part.fileLength,
            "mime_type": part.mimetype,
        }
        caption = part.caption if field in ("imageMessage", "videoMessage", "ptvMessage", "documentMessage") else ""
        return kind, caption, media, _quoted(part), download
    if field in ("locationMessage", "liveLocationMessage"):
        part = getattr(message, field)
        place = {
            "latitude": part.degreesLatitude,
            "longitude": part.degreesLongitude,
            "name": getattr(part, "name", ""),
            "address": getattr(part, "address", ""),
        }
        return "location", _location_body(place), None, _quoted(part), {}
    if field == "reactionMessage":
        part = message.reactionMessage
        return "reaction", _reaction_body({"emoji": part.text}), None, part.key.ID or None, {}
    return "unsupported", f"[Unsupported message: {field}]", None, None, {}


def receipts(event: ProtoMessage, *, phone_number_id: str) -> list[StatusUpdate]:
    """The status updates a neonize `Receipt` event carries, one per message (none for the kinds skipped)."""
    from conversations.inbound import StatusUpdate

    source = event.MessageSource
    if not _one_to_one(source) or not event.HasField("Type"):
        return []
    status = {event.DELIVERED: "delivered", event.READ: "read", event.PLAYED: "read"}.get(event.Type)
    if status is None:  # our own devices' receipts, retries, server errors…
        return []
    alt = source.SenderAlt if source.SenderAlt.User else source.RecipientAlt
    wa_id, bsuid = _identity(source.Chat, alt)
    at = _timestamp(event.Timestamp)
    raw = {"engine": "web", "chat": jid_string(source.Chat), "type": type(event).ReceiptType.Name(event.Type)}
    return [
        StatusUpdate(
            phone_number_id=phone_number_id,
            provider_message_id=message_id,
            status=status,
            timestamp=at,
            recipient_wa_id=wa_id,
            recipient_bsuid=bsuid,
            error_code="",
            error_reason="",
            raw={**raw, "id": message_id},
        )
        for message_id in event.MessageIDs
    ]
