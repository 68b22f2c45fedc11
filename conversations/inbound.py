"""Parse Meta WhatsApp Cloud API webhook bodies into plain dataclasses (docs/inbound.md).

Pure Python: no database, no Django models. The webhook view calls `phone_number_ids_of` to pick the signing
secret and `parse_webhook` to reject bodies that are not WhatsApp webhooks at all (`WebhookShapeError` → 400);
the processing task uses the parsed messages and statuses.

Shapes follow Meta's "messages webhook reference"
(https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages) and the
business-scoped user id changes (https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids):
`messages[].from` may be missing when `from_user_id` (the BSUID) is present, `contacts[].user_id` and
`contacts[].profile.username` identify the sender, `statuses[].recipient_user_id` the recipient.

Only the envelope (object, entry, changes, field, value) can make a body invalid. Anything odd inside a change is
tolerated: unusable items are skipped and named in `ParsedWebhook.problems`, everything else is kept.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

WHATSAPP_OBJECT = "whatsapp_business_account"

# Webhook fields this project acknowledges without processing (anything but "messages").
ACKNOWLEDGED_FIELDS = frozenset(
    """
    account_alerts account_review_update account_settings_update account_update automatic_events
    business_capability_update business_status_update calls flows group_lifecycle_update
    group_participants_update group_settings_update group_status_update history message_echoes
    message_template_components_update message_template_quality_update message_template_status_update
    partner_solutions payment_configuration_update phone_number_name_update phone_number_quality_update
    security smb_app_state_sync smb_message_echoes template_category_update template_correct_category_detection
    tracking_events user_id_update user_preferences
    """.split()
)

MEDIA_KINDS = frozenset({"image", "video", "audio", "document", "sticker"})


class WebhookShapeError(ValueError):
    """The body is not a WhatsApp Business Account webhook; the message says what is wrong and where."""


@dataclass(frozen=True)
class InboundSender:
    wa_id: str | None  # phone number as Meta gives it (digits, no "+"); None for username-only users
    bsuid: str | None  # business-scoped user id, e.g. "US.13491208655302741918"
    name: str  # profile name, "" when unknown
    username: str | None


@dataclass(frozen=True)
class InboundMedia:
    media_id: str
    mime_type: str
    sha256: str
    filename: str
    url: str


@dataclass(frozen=True)
class InboundMessage:
    phone_number_id: str
    display_phone_number: str
    provider_message_id: str
    sender: InboundSender
    timestamp: datetime
    kind: str
    body: str
    media: InboundMedia | None
    quoted_provider_id: str | None
    error_code: str
    error_reason: str
    raw: dict


@dataclass(frozen=True)
class StatusUpdate:
    phone_number_id: str
    provider_message_id: str
    status: str
    timestamp: datetime
    recipient_wa_id: str | None
    recipient_bsuid: str | None
    error_code: str
    error_reason: str
    raw: dict


@dataclass(frozen=True)
class IgnoredChange:
    field: str
    phone_number_id: str | None
    reason: str


@dataclass(frozen=True)
class ParsedWebhook:
    messages: list[InboundMessage]
    statuses: list[StatusUpdate]
    ignored: list[IgnoredChange]
    problems: list[str]
    phone_number_ids: list[str]


# The longest values the columns they land in hold (conversations.models: Message.provider_message_id and
# quoted_provider_message_id, Contact.wa_id and bsuid); tests/conversations/test_inbound_parse.py checks them.
MAX_PROVIDER_ID = 128
MAX_WA_ID = 64
MAX_BSUID = 160
# Prices and quantities of an order line beyond this are not believable (and would overflow the total).
MAX_ORDER_NUMBER = Decimal("1e12")


# --- small, forgiving readers ---------------------------------------------------------------------------------


def _text(value: Any) -> str:
    """A string for str and numbers, "" for anything else (None, dicts, lists, booleans)."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)
    return ""


def _opt(value: Any) -> str | None:
    return _text(value) or None


def _obj(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _phone_number_id(value: dict) -> str:
    return _text(_obj(value.get("metadata")).get("phone_number_id"))


def _timestamp(value: Any) -> datetime | None:
    """Meta's unix seconds (a string of digits, sometimes a number) as an aware UTC datetime."""
    try:
        seconds = float(_text(value))
        return datetime.fromtimestamp(seconds, tz=UTC) if seconds > 0 else None
    except (ValueError, OverflowError, OSError):
        return None


def _timestamp_or_now(item: dict, where: str, problems: list[str]) -> datetime:
    timestamp = _timestamp(item.get("timestamp"))
    if timestamp is None:
        shown = repr(item.get("timestamp"))
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        problems.append(f"{where}: missing or bad timestamp {shown}, used now")
        timestamp = datetime.now(tz=UTC)
    return timestamp


def _first_error_of(item: dict) -> dict:
    errors = item.get("errors")
    return errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}


def _first_error(item: dict) -> tuple[str, str]:
    """(code, reason) from the first entry of an `errors` array, ("", "") without one. The reason is
    "title: details" (Meta's short title, then its explanation)."""
    error = _first_error_of(item)
    title = _text(error.get("title")) or _text(error.get("message"))
    details = _text(_obj(error.get("error_data")).get("details")) or _text(error.get("details"))
    reason = f"{title}: {details}" if title and details and details != title else title or details
    return _text(error.get("code")), reason


# --- envelope -------------------------------------------------------------------------------------------------


def phone_number_ids_of(body: Any) -> list[str]:
    """Every `metadata.phone_number_id` in the body, in order, unique. Never raises, whatever the shape."""
    ids: list[str] = []
    entries = body.get("entry") if isinstance(body, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        changes = entry.get("changes") if isinstance(entry, dict) else None
        for change in changes if isinstance(changes, list) else []:
            value = change.get("value") if isinstance(change, dict) else None
            pid = _phone_number_id(value) if isinstance(value, dict) else ""
            if pid and pid not in ids:
                ids.append(pid)
    return ids


def check_envelope(body: Any) -> None:
    if not isinstance(body, dict):
        raise WebhookShapeError(f"body must be a JSON object, not {type(body).__name__}")
    if body.get("object") != WHATSAPP_OBJECT:
        raise WebhookShapeError(f"object must be {WHATSAPP_OBJECT!r}, got {body.get('object')!r}")
    entries = body.get("entry")
    if not isinstance(entries, list):
        raise WebhookShapeError("entry must be a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise WebhookShapeError(f"entry[{i}] must be an object")
        changes = entry.get("changes")
        if not isinstance(changes, list):
            raise WebhookShapeError(f"entry[{i}].changes must be a list")
        for j, change in enumerate(changes):
            where = f"entry[{i}].changes[{j}]"
            if not isinstance(change, dict):
                raise WebhookShapeError(f"{where} must be an object")
            if not isinstance(change.get("field"), str) or not change["field"]:
                raise WebhookShapeError(f"{where}.field must be a non-empty string")
            if not isinstance(change.get("value"), dict):
                raise WebhookShapeError(f"{where}.value must be an object")


def parse_webhook(body: Any) -> ParsedWebhook:
    """Messages, statuses and acknowledged-only changes of a webhook body; raises WebhookShapeError for a body
    that is not a WhatsApp webhook at all."""
    check_envelope(body)
    result = ParsedWebhook(messages=[], statuses=[], ignored=[], problems=[], phone_number_ids=[])
    for i, entry in enumerate(body["entry"]):
        for j, change in enumerate(entry["changes"]):
            where = f"entry[{i}].changes[{j}]"
            field, value = change["field"], change["value"]
            pid = _phone_number_id(value)
            if pid and pid not in result.phone_number_ids:
                result.phone_number_ids.append(pid)
            if field == "messages":
                _parse_messages_change(value, f"{where}.value", result)
            elif field in ACKNOWLEDGED_FIELDS:
                result.ignored.append(IgnoredChange(field, pid or None, "acknowledged, not processed"))
            else:
                result.ignored.append(IgnoredChange(field, pid or None, "unknown field"))
    return result


def _parse_messages_change(value: dict, where: str, result: ParsedWebhook) -> None:
    pid = _phone_number_id(value)
    display = _text(_obj(value.get("metadata")).get("display_phone_number"))
    messages, statuses = value.get("messages"), value.get("statuses")
    if messages is None and statuses is None:
        code, reason = _first_error(value)
        why = f"error notification {code}: {reason}" if code or reason else "no messages or statuses"
        result.ignored.append(IgnoredChange("messages", pid or None, why))
        return
    if not pid:
        result.problems.append(f"{where}.metadata.phone_number_id: missing, messages and statuses skipped")
        return
    raw_contacts = value.get("contacts") if isinstance(value.get("contacts"), list) else []
    contacts = [contact for contact in raw_contacts if isinstance(contact, dict)]
    for name, items in (("messages", messages), ("statuses", statuses)):
        if items is None:
            continue
        if not isinstance(items, list):
            result.problems.append(f"{where}.{name}: must be a list")
            continue
        for k, item in enumerate(items):
            item_where = f"{where}.{name}[{k}]"
            if not isinstance(item, dict):
                result.problems.append(f"{item_where}: not an object")
                continue
            try:
                if name == "messages":
                    message = _parse_message(item, pid, display, contacts, item_where, result.problems)
                    if message is not None:
                        result.messages.append(message)
                else:
                    status = _parse_status(item, pid, contacts, item_where, result.problems)
                    if status is not None:
                        result.statuses.append(status)
            except (ArithmeticError, RecursionError, ValueError, TypeError) as exc:  # one odd item, not the event
                result.problems.append(f"{item_where}: could not be read ({type(exc).__name__}: {str(exc)[:100]})")


# --- people ---------------------------------------------------------------------------------------------------


def _find_contact(contacts: list[dict], wa_id: str | None, bsuid: str | None) -> dict | None:
    for contact in contacts:
        if (wa_id and _wa_id(contact.get("wa_id")) == wa_id) or (bsuid and _text(contact.get("user_id")) == bsuid):
            return contact
    return None


def _wa_id(value: Any) -> str | None:
    """A WhatsApp id as digits: Meta sends digits only, but a number written as a phone number ("+51 960 000
    007") is still that number. Anything else is kept as it came, for the receiver to refuse."""
    text = _opt(value)
    if text is None:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    if digits and len(digits) <= MAX_WA_ID and all(ch.isdigit() or ch in " +-()" for ch in text):
        return digits
    return text


def _sender(item: dict, contacts: list[dict]) -> InboundSender | None:
    wa_id, bsuid = _wa_id(item.get("from")), _opt(item.get("from_user_id"))
    contact = _find_contact(contacts, wa_id, bsuid)
    if contact is None and not wa_id and not bsuid and len(contacts) == 1:
        contact = contacts[0]
    if contact is not None:
        wa_id = wa_id or _wa_id(contact.get("wa_id"))
        bsuid = bsuid or _opt(contact.get("user_id"))
    if not wa_id and not bsuid:
        return None
    profile = _obj((contact or {}).get("profile"))
    return InboundSender(
        wa_id=wa_id, bsuid=bsuid, name=_text(profile.get("name")), username=_opt(profile.get("username"))
    )


# --- messages -------------------------------------------------------------------------------------------------


def _parse_message(
    item: dict, pid: str, display: str, contacts: list[dict], where: str, problems: list[str]
) -> InboundMessage | None:
    wamid = _text(item.get("id"))
    if not wamid:
        problems.append(f"{where}: missing id")
        return None
    if len(wamid) > MAX_PROVIDER_ID:
        problems.append(f"{where}: id longer than {MAX_PROVIDER_ID} characters")
        return None
    sender = _sender(item, contacts)
    if sender is None:
        problems.append(f"{where}: missing from / from_user_id")
        return None
    if sender.bsuid is not None and len(sender.bsuid) > MAX_BSUID:
        problems.append(f"{where}: from_user_id longer than {MAX_BSUID} characters")
        return None
    timestamp = _timestamp_or_now(item, where, problems)
    kind_name = _text(item.get("type"))
    if not kind_name:
        problems.append(f"{where}: missing type")
    payload = item.get(kind_name) if kind_name else None
    expected = list if kind_name == "contacts" else dict
    if (kind_name in _BODIES or kind_name in MEDIA_KINDS) and not isinstance(payload, expected):
        problems.append(f"{where}: missing {kind_name} {'list' if expected is list else 'object'}")
    kind, body, media = _content(kind_name, payload, item)
    referral = _obj(item.get("referral"))
    if referral:
        line = _referral_line(referral)
        body = f"{body}\n{line}" if body else line
    quoted = _opt(_obj(item.get("context")).get("id"))
    if kind == "reaction":
        quoted = _opt(_obj(payload).get("message_id")) or quoted
    if quoted is not None and len(quoted) > MAX_PROVIDER_ID:
        quoted = None  # no message of ours has such an id: nothing to point at
    code, reason = _first_error(item)
    return InboundMessage(
        phone_number_id=pid,
        display_phone_number=display,
        provider_message_id=wamid,
        sender=sender,
        timestamp=timestamp,
        kind=kind,
        body=body,
        media=media,
        quoted_provider_id=quoted,
        error_code=code,
        error_reason=reason,
        raw=item,
    )


def _content(kind_name: str, raw_payload: Any, item: dict) -> tuple[str, str, InboundMedia | None]:
    """(kind, readable body, media) for one message."""
    payload = _obj(raw_payload)
    if kind_name == "contacts":
        return "contacts", _contacts_body(raw_payload), None
    if kind_name in MEDIA_KINDS:
        media = InboundMedia(
            media_id=_text(payload.get("id")),
            mime_type=_text(payload.get("mime_type")),
            sha256=_text(payload.get("sha256")),
            filename=_text(payload.get("filename")),
            url=_text(payload.get("url")),
        )
        kind = "voice" if kind_name == "audio" and payload.get("voice") is True else kind_name
        body = _text(payload.get("caption"))
        if kind_name == "document" and not body:
            body = media.filename
        return kind, body, media
    render = _BODIES.get(kind_name)
    if render is not None:
        return kind_name, render(payload), None
    return "unsupported", _unsupported_body(kind_name, payload, item), None


def _location_body(loc: dict) -> str:
    place = ", ".join(part for part in (_text(loc.get("name")), _text(loc.get("address"))) if part)
    lat, lng = _text(loc.get("latitude")), _text(loc.get("longitude"))
    coords = f"({lat}, {lng})" if lat and lng else ""
    return " ".join(part for part in ("📍", place, coords) if part) if place or coords else "📍 Location"


def _contacts_body(cards: Any) -> str:
    lines = [_card_line(card) for card in cards if isinstance(card, dict)] if isinstance(cards, list) else []
    if not lines:
        return "Contact card"
    return ("Contact card: " if len(lines) == 1 else "Contact cards: ") + "; ".join(lines)


def _card_line(card: dict) -> str:
    name = _obj(card.get("name"))
    label = _text(name.get("formatted_name")) or " ".join(
        part for part in (_text(name.get("first_name")), _text(name.get("last_name"))) if part
    )
    raw_phones = card.get("phones") if isinstance(card.get("phones"), list) else []
    phones = [_text(_obj(p).get("phone")) or _text(_obj(p).get("wa_id")) for p in raw_phones]
    phones = [p for p in phones if p]
    label = label or "(no name)"
    return f"{label} ({', '.join(phones)})" if phones else label


def _interactive_body(payload: dict) -> str:
    sub = _text(payload.get("type"))
    if sub in ("button_reply", "list_reply"):
        reply = _obj(payload.get(sub))
        title, description = _text(reply.get("title")), _text(reply.get("description"))
        return f"{title} — {description}" if title and description else title or _text(reply.get("id"))
    if sub == "nfm_reply":
        reply = _obj(payload.get("nfm_reply"))
        return f"[Form reply] {_flow_answers(reply.get('response_json'))}".strip()
    if sub == "call_permission_reply":
        return f"Call permission: {_text(_obj(payload.get(sub)).get('response')) or 'answered'}"
    return f"[Interactive reply: {sub or 'unknown'}]"


def _flow_answers(response_json: Any) -> str:
    try:
        answers = json.loads(response_json) if isinstance(response_json, str) else response_json
    except (ValueError, RecursionError):
        return _text(response_json)
    if not isinstance(answers, dict):
        return _text(response_json)
    return ", ".join(f"{key}: {val}" for key, val in answers.items() if key != "flow_token")


def _reaction_body(payload: dict) -> str:
    emoji = _text(payload.get("emoji"))
    return f"Reacted {emoji}" if emoji else "Removed reaction"


def _decimal(value: Any) -> Decimal | None:
    try:
        number = Decimal(_text(value))
    except InvalidOperation:
        return None
    return number if number.is_finite() and abs(number) < MAX_ORDER_NUMBER else None


def _order_body(payload: dict) -> str:
    """Like "Order: 2 items, 150.00 PEN": quantities summed, the total only when every line has a price and all
    lines share one currency; the customer's note follows on its own line."""
    products = payload.get("product_items") if isinstance(payload.get("product_items"), list) else []
    count, total, currencies = Decimal(0), Decimal(0), set()
    priced = bool(products)
    for product in products:
        product = _obj(product)
        quantity = _decimal(product.get("quantity"))
        quantity = quantity if quantity is not None and quantity > 0 else Decimal(1)
        price = _decimal(product.get("item_price"))
        count += quantity
        if price is None:
            priced = False
        else:
            total += quantity * price
        currencies.add(_text(product.get("currency")))
    count_text = f"{count.normalize():f}"
    body = f"Order: {count_text} {'item' if count == 1 else 'items'}"
    if priced and len(currencies) == 1:
        body = f"{body}, {total.quantize(Decimal('0.01'))} {currencies.pop()}".rstrip()
    note = _text(payload.get("text"))
    return f"{body}\n{note}" if note else body


def _system_body(payload: dict) -> str:
    body = _text(payload.get("body"))
    if body:
        return body
    new_id = _text(payload.get("wa_id")) or _text(payload.get("new_wa_id")) or _text(payload.get("user_id"))
    return f"Customer changed number to {new_id}" if new_id else "System notice"


def _unsupported_body(kind_name: str, payload: dict, item: dict) -> str:
    if kind_name in ("unsupported", "unknown"):
        error = _first_error_of(item)
        title = _text(error.get("title")) or _text(error.get("message")) or "unknown"
        inner = _text(payload.get("type"))
        return f"[Unsupported message: {title} ({inner})]" if inner else f"[Unsupported message: {title}]"
    return f"[Unsupported message: {kind_name or 'no type'}]"


def _referral_line(referral: dict) -> str:
    source = "post" if _text(referral.get("source_type")) == "post" else "ad"
    label = _text(referral.get("headline")) or _text(referral.get("body")) or _text(referral.get("source_url"))
    return f"[From {source}: {label}]" if label else f"[From {source}]"


_BODIES = {
    "text": lambda p: _text(p.get("body")),
    "location": _location_body,
    "interactive": _interactive_body,
    "button": lambda p: _text(p.get("text")) or _text(p.get("payload")),
    "reaction": _reaction_body,
    "order": _order_body,
    "system": _system_body,
}


# --- statuses -------------------------------------------------------------------------------------------------


def _parse_status(item: dict, pid: str, contacts: list[dict], where: str, problems: list[str]) -> StatusUpdate | None:
    wamid, status = _text(item.get("id")), _text(item.get("status"))
    if not wamid:
        problems.append(f"{where}: missing id")
        return None
    if len(wamid) > MAX_PROVIDER_ID:
        problems.append(f"{where}: id longer than {MAX_PROVIDER_ID} characters")
        return None
    if not status:
        problems.append(f"{where}: missing status")
        return None
    timestamp = _timestamp_or_now(item, where, problems)
    wa_id, bsuid = _wa_id(item.get("recipient_id")), _opt(item.get("recipient_user_id"))
    contact = _find_contact(contacts, wa_id, bsuid)
    if contact is not None:
        wa_id = wa_id or _wa_id(contact.get("wa_id"))
        bsuid = bsuid or _opt(contact.get("user_id"))
    code, reason = _first_error(item)
    return StatusUpdate(
        phone_number_id=pid,
        provider_message_id=wamid,
        status=status,
        timestamp=timestamp,
        recipient_wa_id=wa_id,
        recipient_bsuid=bsuid,
        error_code=code,
        error_reason=reason,
        raw=item,
    )
