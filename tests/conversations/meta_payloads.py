"""Builders of WhatsApp Cloud API webhook bodies shaped like Meta's documented samples (data only, no Django).

Shapes: https://developers.facebook.com/documentation/business-messaging/whatsapp/webhooks/reference/messages
and its per-type pages; BSUID fields (`from_user_id`, `contacts[].user_id`, `profile.username`,
`statuses[].recipient_user_id`) from
https://developers.facebook.com/documentation/business-messaging/whatsapp/business-scoped-user-ids.

Compose them: `webhook(messages_change(PHONE_NUMBER_ID, DISPLAY_PHONE_NUMBER, messages=[text_message(...)],
contacts=[contact(...)]))`. Every message builder takes the same keyword arguments: `context`, `referral`,
`timestamp`, `from_user_id` (the sender's BSUID; pass `from_=None` for a username-only user) and `errors`.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

WABA_ID = "102290129340398"
PHONE_NUMBER_ID = "106540352242922"
DISPLAY_PHONE_NUMBER = "15550783881"
CUSTOMER_WA_ID = "16505551234"
CUSTOMER_BSUID = "US.13491208655302741918"
TIMESTAMP = "1749416383"
ERROR_CODES_URL = "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"


def sign(raw_body: bytes, app_secret: str) -> str:
    """The `X-Hub-Signature-256` header value Meta sends for this body."""
    return "sha256=" + hmac.new(app_secret.encode(), raw_body, hashlib.sha256).hexdigest()


# --- envelope -------------------------------------------------------------------------------------------------


def webhook(*changes: dict, waba_id: str = WABA_ID) -> dict:
    return {"object": "whatsapp_business_account", "entry": [{"id": waba_id, "changes": list(changes)}]}


def metadata(phone_number_id: str = PHONE_NUMBER_ID, display_phone_number: str = DISPLAY_PHONE_NUMBER) -> dict:
    return {"display_phone_number": display_phone_number, "phone_number_id": phone_number_id}


def messages_change(
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
    *,
    messages: list[dict] | tuple = (),
    contacts: list[dict] | None = None,
) -> dict:
    """A `messages` change with incoming messages. Leave `contacts` None to omit it (system messages have none)."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": metadata(phone_number_id, display_phone_number),
    }
    if contacts is not None:
        value["contacts"] = list(contacts)
    value["messages"] = list(messages)
    return {"value": value, "field": "messages"}


def statuses_change(
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
    *,
    statuses: list[dict] | tuple = (),
    contacts: list[dict] | None = None,
) -> dict:
    """A `messages` change with statuses of messages the business sent (failed ones come without contacts)."""
    value: dict[str, Any] = {
        "messaging_product": "whatsapp",
        "metadata": metadata(phone_number_id, display_phone_number),
    }
    if contacts is not None:
        value["contacts"] = list(contacts)
    value["statuses"] = list(statuses)
    return {"value": value, "field": "messages"}


def contact(wa_id: str | None, name: str, *, user_id: str | None = None, username: str | None = None) -> dict:
    """An entry of `value.contacts`: the sender's profile and ids (wa_id absent for username-only users)."""
    profile = {"name": name}
    if username is not None:
        profile["username"] = username
    entry: dict[str, Any] = {"profile": profile}
    if wa_id is not None:
        entry["wa_id"] = wa_id
    if user_id is not None:
        entry["user_id"] = user_id
    return entry


def error(code: int, title: str, details: str, *, message: str | None = None) -> dict:
    return {
        "code": code,
        "title": title,
        "message": message or title,
        "error_data": {"details": details},
        "href": ERROR_CODES_URL,
    }


def reply_context(message_id: str, from_: str = DISPLAY_PHONE_NUMBER) -> dict:
    """`context` of a reply to (or a button tap on) one of the business's messages."""
    return {"from": from_, "id": message_id}


def forwarded_context(*, frequently: bool = False) -> dict:
    return {"frequently_forwarded": True} if frequently else {"forwarded": True}


def product_context(catalog_id: str, product_retailer_id: str, message_id: str) -> dict:
    """`context` of a message sent with the "Message business" button of a product message."""
    return {
        "from": DISPLAY_PHONE_NUMBER,
        "id": message_id,
        "referred_product": {"catalog_id": catalog_id, "product_retailer_id": product_retailer_id},
    }


def ad_referral(headline: str = "Chat with us", *, source_type: str = "ad", media_type: str = "image") -> dict:
    """`referral` of the first message sent from a Click to WhatsApp ad."""
    referral: dict[str, Any] = {
        "source_url": "https://fb.me/3cr4Wqqkv",
        "source_id": "120226305854810726",
        "source_type": source_type,
        "body": "Summer sale: 20% off everything",
        "headline": headline,
        "media_type": media_type,
        "ctwa_clid": "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0",
        "welcome_message": {"text": "Hi! How can we help?"},
    }
    if media_type == "video":
        referral["video_url"] = "https://scontent.xx.fbcdn.net/v/t15.5256-10/ad.mp4"
        referral["thumbnail_url"] = "https://scontent.xx.fbcdn.net/v/t15.5256-10/thumb.jpg"
    else:
        referral["image_url"] = "https://scontent.xx.fbcdn.net/v/t45.1600-4/ad.jpg"
    return referral


# --- incoming messages ----------------------------------------------------------------------------------------


def _message(
    wamid: str,
    from_: str | None,
    type_: str,
    content: Any,
    *,
    context: dict | None = None,
    referral: dict | None = None,
    timestamp: str | None = None,
    from_user_id: str | None = None,
    errors: list[dict] | None = None,
) -> dict:
    message: dict[str, Any] = {}
    if context is not None:
        message["context"] = context
    if from_ is not None:
        message["from"] = from_
    if from_user_id is not None:
        message["from_user_id"] = from_user_id
    message["id"] = wamid
    message["timestamp"] = TIMESTAMP if timestamp is None else timestamp
    if referral is not None:
        message["referral"] = referral
    if errors is not None:
        message["errors"] = errors
    message["type"] = type_
    if content is not None:
        message[type_] = content
    return message


def _media(media_id: str, mime_type: str, **extra: Any) -> dict:
    return {
        **{key: value for key, value in extra.items() if value is not None},
        "mime_type": mime_type,
        "sha256": "Kp1Yc7nKdjlb5kSGDpVWyyPwf5ZdJ0DNhyLjCfvWlCs=",
        "id": media_id,
        "url": f"https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid={media_id}&ext=1749416383",
    }


def text_message(wamid: str, from_: str | None, body: str, **common: Any) -> dict:
    return _message(wamid, from_, "text", {"body": body}, **common)


def image_message(
    wamid: str, from_: str | None, *, media_id: str = "1003383421387256", caption: str | None = None, **common: Any
) -> dict:
    return _message(wamid, from_, "image", _media(media_id, "image/jpeg", caption=caption), **common)


def video_message(
    wamid: str, from_: str | None, *, media_id: str = "1166846181421424", caption: str | None = None, **common: Any
) -> dict:
    return _message(wamid, from_, "video", _media(media_id, "video/mp4", caption=caption), **common)


def audio_message(
    wamid: str, from_: str | None, *, media_id: str = "1013859600285441", voice: bool = False, **common: Any
) -> dict:
    mime_type = "audio/ogg; codecs=opus" if voice else "audio/mpeg"
    return _message(wamid, from_, "audio", {**_media(media_id, mime_type), "voice": voice}, **common)


def document_message(
    wamid: str,
    from_: str | None,
    *,
    media_id: str = "1376223850470843",
    filename: str = "invoice.pdf",
    caption: str | None = None,
    **common: Any,
) -> dict:
    content = _media(media_id, "application/pdf", caption=caption, filename=filename)
    return _message(wamid, from_, "document", content, **common)


def sticker_message(
    wamid: str, from_: str | None, *, media_id: str = "1429215278057580", animated: bool = False, **common: Any
) -> dict:
    return _message(wamid, from_, "sticker", {**_media(media_id, "image/webp"), "animated": animated}, **common)


def location_message(
    wamid: str,
    from_: str | None,
    latitude: float,
    longitude: float,
    *,
    name: str | None = None,
    address: str | None = None,
    url: str | None = None,
    **common: Any,
) -> dict:
    content: dict[str, Any] = {"latitude": latitude, "longitude": longitude}
    for key, value in (("name", name), ("address", address), ("url", url)):
        if value is not None:
            content[key] = value
    return _message(wamid, from_, "location", content, **common)


def contact_card(formatted_name: str, *phones: str, first_name: str | None = None) -> dict:
    """One card of a contacts message."""
    return {
        "name": {"formatted_name": formatted_name, "first_name": first_name or formatted_name.split()[0]},
        "phones": [
            {"phone": phone, "wa_id": "".join(c for c in phone if c.isdigit()), "type": "CELL"} for phone in phones
        ],
    }


def contacts_message(wamid: str, from_: str | None, cards: list[dict], **common: Any) -> dict:
    return _message(wamid, from_, "contacts", list(cards), **common)


def interactive_button_reply(wamid: str, from_: str | None, button_id: str, title: str, **common: Any) -> dict:
    content = {"type": "button_reply", "button_reply": {"id": button_id, "title": title}}
    return _message(wamid, from_, "interactive", content, **common)


def interactive_list_reply(
    wamid: str, from_: str | None, row_id: str, title: str, description: str | None = None, **common: Any
) -> dict:
    row = {"id": row_id, "title": title}
    if description is not None:
        row["description"] = description
    return _message(wamid, from_, "interactive", {"type": "list_reply", "list_reply": row}, **common)


def interactive_flow_reply(wamid: str, from_: str | None, response_json: str, **common: Any) -> dict:
    content = {"type": "nfm_reply", "nfm_reply": {"name": "flow", "body": "Sent", "response_json": response_json}}
    return _message(wamid, from_, "interactive", content, **common)


def button_reply(wamid: str, from_: str | None, text: str, payload: str, **common: Any) -> dict:
    """A tap on a quick-reply button of a template message (`type: button`)."""
    return _message(wamid, from_, "button", {"payload": payload, "text": text}, **common)


def reaction_message(wamid: str, from_: str | None, message_id: str, emoji: str | None, **common: Any) -> dict:
    """A reaction; `emoji=None` is Meta's shape for a removed reaction (no emoji key)."""
    content = {"message_id": message_id}
    if emoji is not None:
        content["emoji"] = emoji
    return _message(wamid, from_, "reaction", content, **common)


def product_item(product_retailer_id: str, quantity: int, item_price: float, currency: str) -> dict:
    return {
        "product_retailer_id": product_retailer_id,
        "quantity": quantity,
        "item_price": item_price,
        "currency": currency,
    }


def order_message(
    wamid: str,
    from_: str | None,
    product_items: list[dict],
    *,
    catalog_id: str = "194836987003835",
    text: str | None = None,
    **common: Any,
) -> dict:
    content: dict[str, Any] = {"catalog_id": catalog_id}
    if text is not None:
        content["text"] = text
    content["product_items"] = list(product_items)
    return _message(wamid, from_, "order", content, **common)


def system_message(
    wamid: str,
    from_: str | None,
    new_wa_id: str,
    *,
    name: str = "Sheena Nelson",
    user_id: str | None = None,
    **common: Any,
) -> dict:
    """The notice Meta sends when a customer changes number (without a contacts array)."""
    content: dict[str, Any] = {
        "body": f"User {name} changed from {from_} to {new_wa_id}",
        "wa_id": new_wa_id,
        "type": "user_changed_number",
    }
    if user_id is not None:
        content["user_id"] = user_id
    return _message(wamid, from_, "system", content, **common)


def unsupported_message(wamid: str, from_: str | None, *, inner_type: str | None = None, **common: Any) -> dict:
    """A message type Cloud API does not support (e.g. a poll): type "unsupported" with error 131051."""
    common.setdefault("errors", [error(131051, "Message type unknown", "Message type is currently not supported.")])
    content = {"type": inner_type} if inner_type is not None else None
    return _message(wamid, from_, "unsupported", content, **common)


# --- statuses -------------------------------------------------------------------------------------------------


def status(
    wamid: str,
    status: str,
    recipient_id: str | None,
    *,
    errors: list[dict] | None = None,
    timestamp: str | None = None,
    recipient_user_id: str | None = None,
    category: str = "utility",
) -> dict:
    """One `statuses[]` entry. Failed statuses carry `errors` and no pricing; the others carry pricing (and
    `conversation` when sent)."""
    entry: dict[str, Any] = {"id": wamid, "status": status, "timestamp": TIMESTAMP if timestamp is None else timestamp}
    if recipient_id is not None:
        entry["recipient_id"] = recipient_id
    if recipient_user_id is not None:
        entry["recipient_user_id"] = recipient_user_id
    if errors is not None:
        entry["errors"] = errors
        return entry
    if status == "sent":
        entry["conversation"] = {
            "id": "4ad3a2a1c6c1d1c25a2e3b1f7d1e9f3a",
            "expiration_timestamp": "1749502783",
            "origin": {"type": category},
        }
    entry["pricing"] = {"billable": True, "pricing_model": "PMP", "category": category, "type": "regular"}
    return entry


# --- other webhook fields (acknowledged, not processed) --------------------------------------------------------


def field_change(field: str, value: dict | None = None) -> dict:
    return {"value": value if value is not None else {}, "field": field}


def account_update_change(event: str = "VERIFIED_ACCOUNT") -> dict:
    return field_change("account_update", {"phone_number": DISPLAY_PHONE_NUMBER, "event": event})


def template_status_change(event: str = "APPROVED", name: str = "order_update") -> dict:
    return field_change(
        "message_template_status_update",
        {
            "event": event,
            "message_template_id": 1689556908129832,
            "message_template_name": name,
            "message_template_language": "en_US",
            "reason": "NONE",
        },
    )


def calls_change(
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
    *,
    from_: str = CUSTOMER_WA_ID,
    call_id: str = "wacid.HBgLMTY1MDM4Nzk0MzkVAgASGCA3QjJDRTI2RUM3MUQ0OUQ3",
) -> dict:
    return field_change(
        "calls",
        {
            "messaging_product": "whatsapp",
            "metadata": metadata(phone_number_id, display_phone_number),
            "contacts": [contact(from_, "Sheena Nelson")],
            "calls": [
                {
                    "id": call_id,
                    "to": display_phone_number,
                    "from": from_,
                    "event": "connect",
                    "timestamp": TIMESTAMP,
                    "direction": "USER_INITIATED",
                    "session": {"sdp_type": "offer", "sdp": "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n"},
                }
            ],
        },
    )


def user_preferences_change(
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
    *,
    wa_id: str = CUSTOMER_WA_ID,
    value: str = "stop",
) -> dict:
    detail = "User requested to stop marketing messages" if value == "stop" else "User requested to resume"
    return field_change(
        "user_preferences",
        {
            "messaging_product": "whatsapp",
            "metadata": metadata(phone_number_id, display_phone_number),
            "contacts": [contact(wa_id, "Sheena Nelson")],
            "user_preferences": [
                {
                    "wa_id": wa_id,
                    "detail": detail,
                    "category": "marketing_messages",
                    "value": value,
                    "timestamp": int(TIMESTAMP),
                }
            ],
        },
    )


def message_echoes_change(
    phone_number_id: str = PHONE_NUMBER_ID,
    display_phone_number: str = DISPLAY_PHONE_NUMBER,
    *,
    to: str = CUSTOMER_WA_ID,
    body: str = "Sent from the WhatsApp Business app",
    wamid: str = "wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBI1RjQyNUE3NEYxMzAzMzQ5MkEA",
) -> dict:
    return field_change(
        "smb_message_echoes",
        {
            "messaging_product": "whatsapp",
            "metadata": metadata(phone_number_id, display_phone_number),
            "message_echoes": [
                {
                    "from": display_phone_number,
                    "to": to,
                    "id": wamid,
                    "timestamp": TIMESTAMP,
                    "type": "text",
                    "text": {"body": body},
                }
            ],
        },
    )


def errors_change(code: int = 130429, title: str = "Rate limit hit") -> dict:
    """A `messages` change that reports a system-level problem instead of messages or statuses."""
    return {
        "value": {
            "messaging_product": "whatsapp",
            "metadata": metadata(),
            "errors": [error(code, title, "Cloud API message throughput has been reached.")],
        },
        "field": "messages",
    }
