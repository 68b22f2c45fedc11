"""conversations.inbound: Meta webhook bodies → messages, statuses, ignored changes and problems (no database)."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

import pytest

from conversations.inbound import (
    ACKNOWLEDGED_FIELDS,
    IgnoredChange,
    InboundMedia,
    InboundSender,
    WebhookShapeError,
    parse_webhook,
    phone_number_ids_of,
)
from tests.conversations import meta_payloads as mp

PID = mp.PHONE_NUMBER_ID
CUSTOMER = mp.CUSTOMER_WA_ID
SHEENA = mp.contact(CUSTOMER, "Sheena Nelson")
SENT_AT = datetime.fromtimestamp(int(mp.TIMESTAMP), tz=UTC)


def one_message(message: dict, *, contacts: list[dict] | None = None):
    """Parse a body holding just this message and return the parsed message (and check nothing went wrong)."""
    parsed = parse_webhook(mp.webhook(mp.messages_change(messages=[message], contacts=contacts or [SHEENA])))
    assert parsed.problems == []
    assert len(parsed.messages) == 1
    return parsed.messages[0]


# --- message types ----------------------------------------------------------------------------------------------


def test_text_message_carries_everything_the_task_needs():
    # given a plain text message from a customer with a profile name
    raw = mp.text_message("wamid.TEXT1", CUSTOMER, "Does it come in another color?")

    # when parsed
    message = one_message(raw)

    # then
    assert message.phone_number_id == PID
    assert message.display_phone_number == mp.DISPLAY_PHONE_NUMBER
    assert message.provider_message_id == "wamid.TEXT1"
    assert message.sender == InboundSender(wa_id=CUSTOMER, bsuid=None, name="Sheena Nelson", username=None)
    assert message.timestamp == SENT_AT
    assert message.timestamp.tzinfo is not None
    assert message.kind == "text"
    assert message.body == "Does it come in another color?"
    assert message.media is None
    assert message.quoted_provider_id is None
    assert (message.error_code, message.error_reason) == ("", "")
    assert message.raw == raw


def test_reply_keeps_the_quoted_message_id():
    raw = mp.text_message("wamid.R", CUSTOMER, "Yes please", context=mp.reply_context("wamid.OURS"))

    assert one_message(raw).quoted_provider_id == "wamid.OURS"


def test_forwarded_and_product_contexts_parse_without_a_quote_unless_they_name_one():
    forwarded = one_message(mp.text_message("wamid.F", CUSTOMER, "fwd", context=mp.forwarded_context(frequently=True)))
    product = one_message(
        mp.text_message(
            "wamid.P", CUSTOMER, "Is this in stock?", context=mp.product_context("cat1", "sku-9", "wamid.PM")
        )
    )

    assert forwarded.quoted_provider_id is None
    assert forwarded.body == "fwd"
    assert product.quoted_provider_id == "wamid.PM"
    assert product.raw["context"]["referred_product"]["product_retailer_id"] == "sku-9"


@pytest.mark.parametrize(
    ("build", "kind", "mime_type"),
    [
        (lambda: mp.image_message("wamid.M", CUSTOMER, media_id="IMG1", caption="Front view"), "image", "image/jpeg"),
        (lambda: mp.video_message("wamid.M", CUSTOMER, media_id="IMG1", caption="Front view"), "video", "video/mp4"),
    ],
)
def test_image_and_video_keep_caption_and_media_fields(build, kind, mime_type):
    message = one_message(build())

    assert message.kind == kind
    assert message.body == "Front view"
    assert message.media is not None
    assert message.media.media_id == "IMG1"
    assert message.media.mime_type == mime_type
    assert message.media.sha256 == "Kp1Yc7nKdjlb5kSGDpVWyyPwf5ZdJ0DNhyLjCfvWlCs="
    assert message.media.url.startswith("https://lookaside.fbsbx.com/")
    assert message.media.filename == ""


def test_image_without_caption_has_empty_body():
    message = one_message(mp.image_message("wamid.M", CUSTOMER))

    assert (message.kind, message.body) == ("image", "")


def test_audio_and_voice_note_are_told_apart():
    audio = one_message(mp.audio_message("wamid.A", CUSTOMER, media_id="AUD1"))
    voice = one_message(mp.audio_message("wamid.V", CUSTOMER, media_id="VOI1", voice=True))

    assert (audio.kind, audio.media.media_id, audio.media.mime_type) == ("audio", "AUD1", "audio/mpeg")
    assert (voice.kind, voice.media.media_id, voice.media.mime_type) == ("voice", "VOI1", "audio/ogg; codecs=opus")
    assert audio.body == voice.body == ""


def test_document_keeps_filename_and_uses_it_as_body_without_caption():
    plain = one_message(mp.document_message("wamid.D1", CUSTOMER, media_id="DOC1", filename="invoice-42.pdf"))
    captioned = one_message(mp.document_message("wamid.D2", CUSTOMER, filename="a.pdf", caption="Here it is"))

    assert plain.kind == "document"
    assert plain.media == InboundMedia(
        media_id="DOC1",
        mime_type="application/pdf",
        sha256="Kp1Yc7nKdjlb5kSGDpVWyyPwf5ZdJ0DNhyLjCfvWlCs=",
        filename="invoice-42.pdf",
        url="https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=DOC1&ext=1749416383",
    )
    assert plain.body == "invoice-42.pdf"
    assert (captioned.body, captioned.media.filename) == ("Here it is", "a.pdf")


def test_sticker_is_media_with_webp():
    message = one_message(mp.sticker_message("wamid.S", CUSTOMER, media_id="STK1", animated=True))

    assert (message.kind, message.body) == ("sticker", "")
    assert (message.media.media_id, message.media.mime_type) == ("STK1", "image/webp")
    assert message.raw["sticker"]["animated"] is True


def test_location_reads_name_address_and_coordinates():
    full = one_message(
        mp.location_message(
            "wamid.L1",
            CUSTOMER,
            -12.0464,
            -77.0428,
            name="Plaza Mayor",
            address="Jr. de la Unión, Lima",
            url="https://maps.example/plaza",
        )
    )
    bare = one_message(mp.location_message("wamid.L2", CUSTOMER, 37.483307, 122.148981))

    assert full.kind == "location"
    assert full.body == "📍 Plaza Mayor, Jr. de la Unión, Lima (-12.0464, -77.0428)"
    assert bare.body == "📍 (37.483307, 122.148981)"
    assert full.media is None


def test_contacts_message_lists_each_card_with_its_phones():
    one = one_message(
        mp.contacts_message("wamid.C1", CUSTOMER, [mp.contact_card("Barbara Johnson", "+1 (940) 555-1234")])
    )
    two = one_message(
        mp.contacts_message(
            "wamid.C2",
            CUSTOMER,
            [mp.contact_card("Barbara Johnson", "+19405551234", "+19405550000"), mp.contact_card("Ana Pérez")],
        )
    )

    assert one.kind == "contacts"
    assert one.body == "Contact card: Barbara Johnson (+1 (940) 555-1234)"
    assert two.body == "Contact cards: Barbara Johnson (+19405551234, +19405550000); Ana Pérez"


def test_interactive_button_reply_is_its_title_and_quotes_the_buttons_message():
    message = one_message(
        mp.interactive_button_reply("wamid.I1", CUSTOMER, "yes-1", "Yes", context=mp.reply_context("wamid.ASK"))
    )

    assert (message.kind, message.body, message.quoted_provider_id) == ("interactive", "Yes", "wamid.ASK")
    assert message.raw["interactive"]["button_reply"]["id"] == "yes-1"


def test_interactive_list_reply_shows_title_and_description():
    with_description = one_message(
        mp.interactive_list_reply("wamid.I2", CUSTOMER, "row-2", "Priority shipping", "Arrives in 2 days")
    )
    without = one_message(mp.interactive_list_reply("wamid.I3", CUSTOMER, "row-1", "Standard shipping"))

    assert with_description.body == "Priority shipping — Arrives in 2 days"
    assert without.body == "Standard shipping"


def test_flow_reply_shows_the_answers_without_the_flow_token():
    answers = json.dumps({"flow_token": "secret-token", "size": "M", "email": "a@example.com"})

    message = one_message(mp.interactive_flow_reply("wamid.I4", CUSTOMER, answers))

    assert message.kind == "interactive"
    assert message.body == "[Form reply] size: M, email: a@example.com"


def test_unknown_interactive_subtype_is_named():
    raw = mp.interactive_button_reply("wamid.I5", CUSTOMER, "x", "X")
    raw["interactive"] = {"type": "carousel_reply", "carousel_reply": {}}

    assert one_message(raw).body == "[Interactive reply: carousel_reply]"


def test_template_quick_reply_button_is_its_text():
    message = one_message(
        mp.button_reply("wamid.B1", CUSTOMER, "Stop promotions", "STOP_PROMOS", context=mp.reply_context("wamid.TPL"))
    )

    assert (message.kind, message.body, message.quoted_provider_id) == ("button", "Stop promotions", "wamid.TPL")
    assert message.raw["button"]["payload"] == "STOP_PROMOS"


def test_reaction_quotes_the_reacted_message_and_removal_has_no_emoji():
    added = one_message(mp.reaction_message("wamid.RX1", CUSTOMER, "wamid.OURS", "👍"))
    removed = one_message(mp.reaction_message("wamid.RX2", CUSTOMER, "wamid.OURS", None))
    emptied = one_message(mp.reaction_message("wamid.RX3", CUSTOMER, "wamid.OURS", ""))

    assert (added.kind, added.body, added.quoted_provider_id) == ("reaction", "Reacted 👍", "wamid.OURS")
    assert (removed.body, removed.quoted_provider_id) == ("Removed reaction", "wamid.OURS")
    assert emptied.body == "Removed reaction"


def test_order_sums_quantities_and_total_and_keeps_the_note():
    items = [mp.product_item("sku-1", 1, 100, "PEN"), mp.product_item("sku-2", 1, 50.0, "PEN")]

    plain = one_message(mp.order_message("wamid.O1", CUSTOMER, items))
    noted = one_message(mp.order_message("wamid.O2", CUSTOMER, [mp.product_item("sku-3", 3, 9.99, "USD")], text="Gift"))

    assert (plain.kind, plain.body) == ("order", "Order: 2 items, 150.00 PEN")
    assert noted.body == "Order: 3 items, 29.97 USD\nGift"


def test_order_with_mixed_currencies_shows_no_total():
    items = [mp.product_item("a", 1, 10, "PEN"), mp.product_item("b", 1, 10, "USD")]

    assert one_message(mp.order_message("wamid.O3", CUSTOMER, items)).body == "Order: 2 items"


def test_system_number_change_is_kept_from_the_old_number_without_contacts():
    raw = mp.system_message("wamid.SYS", CUSTOMER, "16505559999", user_id="US.NEW123")
    parsed = parse_webhook(mp.webhook(mp.messages_change(messages=[raw])))

    assert parsed.problems == []
    (message,) = parsed.messages
    assert message.kind == "system"
    assert message.body == "User Sheena Nelson changed from 16505551234 to 16505559999"
    assert message.sender == InboundSender(wa_id=CUSTOMER, bsuid=None, name="", username=None)
    assert message.raw["system"]["wa_id"] == "16505559999"


def test_unsupported_message_names_the_error_and_keeps_its_code():
    message = one_message(mp.unsupported_message("wamid.U1", CUSTOMER, inner_type="poll_creation"))

    assert message.kind == "unsupported"
    assert message.body == "[Unsupported message: Message type unknown (poll_creation)]"
    assert message.error_code == "131051"
    assert message.error_reason == "Message type unknown: Message type is currently not supported."


def test_unsupported_message_without_inner_type():
    message = one_message(mp.unsupported_message("wamid.U2", CUSTOMER))

    assert message.body == "[Unsupported message: Message type unknown]"


def test_unknown_type_becomes_unsupported_naming_the_type():
    raw = mp.text_message("wamid.U3", CUSTOMER, "x")
    del raw["text"]
    raw["type"] = "hologram"
    raw["hologram"] = {"id": "H1"}

    message = one_message(raw)

    assert (message.kind, message.body) == ("unsupported", "[Unsupported message: hologram]")
    assert message.raw["hologram"] == {"id": "H1"}


def test_ad_referral_adds_a_line_to_the_body():
    text = one_message(
        mp.text_message("wamid.AD1", CUSTOMER, "Is this available?", referral=mp.ad_referral("Summer sale"))
    )
    image = one_message(
        mp.image_message("wamid.AD2", CUSTOMER, referral=mp.ad_referral("Video ad", media_type="video"))
    )
    post = one_message(
        mp.text_message("wamid.AD3", CUSTOMER, "Hi", referral=mp.ad_referral("Post", source_type="post"))
    )

    assert text.body == "Is this available?\n[From ad: Summer sale]"
    assert image.body == "[From ad: Video ad]"
    assert post.body == "Hi\n[From post: Post]"
    assert text.raw["referral"]["ctwa_clid"]


# --- senders ----------------------------------------------------------------------------------------------------


def test_sender_name_is_matched_from_contacts_by_wa_id():
    others = [mp.contact("5491100000001", "Someone Else"), mp.contact(CUSTOMER, "Sheena Nelson")]
    raws = [mp.text_message("wamid.N1", CUSTOMER, "hi"), mp.text_message("wamid.N2", "5491100000001", "hello")]

    parsed = parse_webhook(mp.webhook(mp.messages_change(messages=raws, contacts=others)))

    assert [m.sender.name for m in parsed.messages] == ["Sheena Nelson", "Someone Else"]


def test_bsuid_only_sender_is_matched_by_user_id_and_gets_username():
    # given a username-only user: no "from", no wa_id, only the BSUID
    raw = mp.text_message("wamid.BS1", None, "hi", from_user_id=mp.CUSTOMER_BSUID)
    contacts = [mp.contact(None, "Sheena", user_id=mp.CUSTOMER_BSUID, username="@sheena")]

    message = one_message(raw, contacts=contacts)

    assert "from" not in message.raw
    assert message.sender == InboundSender(wa_id=None, bsuid=mp.CUSTOMER_BSUID, name="Sheena", username="@sheena")


def test_sender_with_both_ids_takes_the_missing_one_from_contacts():
    contacts = [mp.contact(CUSTOMER, "Sheena", user_id=mp.CUSTOMER_BSUID)]

    by_phone = one_message(mp.text_message("wamid.BS2", CUSTOMER, "a"), contacts=contacts)
    by_bsuid = one_message(mp.text_message("wamid.BS3", None, "b", from_user_id=mp.CUSTOMER_BSUID), contacts=contacts)

    assert (by_phone.sender.wa_id, by_phone.sender.bsuid) == (CUSTOMER, mp.CUSTOMER_BSUID)
    assert (by_bsuid.sender.wa_id, by_bsuid.sender.bsuid) == (CUSTOMER, mp.CUSTOMER_BSUID)


def test_sender_without_a_matching_contact_has_no_name():
    message = one_message(mp.text_message("wamid.NC", "5491199999999", "hi"), contacts=[SHEENA])

    assert message.sender == InboundSender(wa_id="5491199999999", bsuid=None, name="", username=None)


# --- statuses ---------------------------------------------------------------------------------------------------


def test_statuses_are_parsed_in_order():
    change = mp.statuses_change(
        statuses=[
            mp.status("wamid.OUT1", "sent", CUSTOMER),
            mp.status("wamid.OUT1", "delivered", CUSTOMER, timestamp="1749416390"),
            mp.status("wamid.OUT1", "read", CUSTOMER),
            mp.status("wamid.OUT2", "played", CUSTOMER),
        ],
        contacts=[SHEENA],
    )

    parsed = parse_webhook(mp.webhook(change))

    assert parsed.problems == []
    assert parsed.messages == []
    assert [(s.provider_message_id, s.status) for s in parsed.statuses] == [
        ("wamid.OUT1", "sent"),
        ("wamid.OUT1", "delivered"),
        ("wamid.OUT1", "read"),
        ("wamid.OUT2", "played"),
    ]
    delivered = parsed.statuses[1]
    assert delivered.phone_number_id == PID
    assert delivered.timestamp == SENT_AT + timedelta(seconds=7)
    assert delivered.recipient_wa_id == CUSTOMER
    assert delivered.recipient_bsuid is None
    assert (delivered.error_code, delivered.error_reason) == ("", "")
    assert delivered.raw["pricing"]["pricing_model"] == "PMP"


def test_failed_status_carries_the_error():
    failed = mp.status(
        "wamid.OUT3",
        "failed",
        CUSTOMER,
        errors=[
            mp.error(
                131047,
                "Re-engagement message",
                "Message failed to send because more than 24 hours have passed since the customer last replied.",
            )
        ],
    )

    (update,) = parse_webhook(mp.webhook(mp.statuses_change(statuses=[failed]))).statuses

    assert update.status == "failed"
    assert update.error_code == "131047"
    assert update.error_reason == (
        "Re-engagement message: Message failed to send because more than 24 hours have passed since the customer "
        "last replied."
    )


def test_status_to_a_bsuid_has_no_recipient_id_but_the_user_id():
    change = mp.statuses_change(
        statuses=[mp.status("wamid.OUT4", "delivered", None, recipient_user_id=mp.CUSTOMER_BSUID)],
        contacts=[mp.contact(None, "Sheena", user_id=mp.CUSTOMER_BSUID, username="@sheena")],
    )

    (update,) = parse_webhook(mp.webhook(change)).statuses

    assert (update.recipient_wa_id, update.recipient_bsuid) == (None, mp.CUSTOMER_BSUID)


def test_status_recipient_bsuid_is_completed_from_contacts():
    change = mp.statuses_change(
        statuses=[mp.status("wamid.OUT5", "read", CUSTOMER)],
        contacts=[mp.contact(CUSTOMER, "Sheena", user_id=mp.CUSTOMER_BSUID)],
    )

    (update,) = parse_webhook(mp.webhook(change)).statuses

    assert (update.recipient_wa_id, update.recipient_bsuid) == (CUSTOMER, mp.CUSTOMER_BSUID)


def test_other_status_values_are_kept_as_given():
    change = mp.statuses_change(statuses=[mp.status("wamid.OUT6", "deleted", CUSTOMER)])

    assert parse_webhook(mp.webhook(change)).statuses[0].status == "deleted"


# --- several things in one body ---------------------------------------------------------------------------------


def test_multiple_entries_changes_and_messages_are_all_parsed_in_order():
    second_pid, second_display = "222222222222222", "15550000002"
    body = mp.webhook(
        mp.messages_change(
            messages=[mp.text_message("wamid.1", CUSTOMER, "one"), mp.text_message("wamid.2", CUSTOMER, "two")],
            contacts=[SHEENA],
        ),
        mp.statuses_change(statuses=[mp.status("wamid.OUT", "read", CUSTOMER)]),
    )
    body["entry"].append(
        mp.webhook(
            mp.messages_change(
                second_pid, second_display, messages=[mp.text_message("wamid.3", "5491100000003", "three")]
            ),
            mp.account_update_change(),
            waba_id="999",
        )["entry"][0]
    )

    parsed = parse_webhook(body)

    assert parsed.problems == []
    assert [(m.provider_message_id, m.phone_number_id) for m in parsed.messages] == [
        ("wamid.1", PID),
        ("wamid.2", PID),
        ("wamid.3", second_pid),
    ]
    assert parsed.messages[2].display_phone_number == second_display
    assert [s.provider_message_id for s in parsed.statuses] == ["wamid.OUT"]
    assert parsed.ignored == [IgnoredChange("account_update", None, "acknowledged, not processed")]
    assert parsed.phone_number_ids == [PID, second_pid]
    assert phone_number_ids_of(body) == [PID, second_pid]


def test_a_change_with_messages_and_statuses_yields_both():
    change = mp.messages_change(messages=[mp.text_message("wamid.M", CUSTOMER, "hi")], contacts=[SHEENA])
    change["value"]["statuses"] = [mp.status("wamid.OUT", "delivered", CUSTOMER)]

    parsed = parse_webhook(mp.webhook(change))

    assert len(parsed.messages) == len(parsed.statuses) == 1


def test_empty_entry_list_is_valid_and_empty():
    parsed = parse_webhook({"object": "whatsapp_business_account", "entry": []})

    assert (parsed.messages, parsed.statuses, parsed.ignored, parsed.problems, parsed.phone_number_ids) == (
        [],
        [],
        [],
        [],
        [],
    )


# --- non-message fields -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field", "phone_number_id"),
    [
        (mp.account_update_change(), "account_update", None),
        (mp.template_status_change(), "message_template_status_update", None),
        (mp.calls_change(), "calls", PID),
        (mp.user_preferences_change(), "user_preferences", PID),
        (mp.message_echoes_change(), "smb_message_echoes", PID),
    ],
)
def test_built_non_message_changes_are_acknowledged(change, field, phone_number_id):
    parsed = parse_webhook(mp.webhook(change))

    assert parsed.messages == parsed.statuses == parsed.problems == []
    assert parsed.ignored == [IgnoredChange(field, phone_number_id, "acknowledged, not processed")]


@pytest.mark.parametrize("field", sorted(ACKNOWLEDGED_FIELDS))
def test_every_known_non_message_field_is_ignored_with_its_name(field):
    parsed = parse_webhook(mp.webhook(mp.field_change(field, {"anything": ["goes", None, 1]})))

    assert parsed.ignored == [IgnoredChange(field, None, "acknowledged, not processed")]
    assert parsed.problems == []


def test_acknowledged_fields_include_the_ones_meta_documents():
    expected = {
        "account_update",
        "account_review_update",
        "message_template_status_update",
        "template_category_update",
        "phone_number_quality_update",
        "phone_number_name_update",
        "business_capability_update",
        "calls",
        "user_preferences",
        "smb_message_echoes",
        "smb_app_state_sync",
        "history",
        "user_id_update",
    }

    assert expected <= ACKNOWLEDGED_FIELDS


def test_unknown_field_is_ignored_as_unknown():
    parsed = parse_webhook(mp.webhook(mp.field_change("brand_new_field", {"metadata": {"phone_number_id": PID}})))

    assert parsed.ignored == [IgnoredChange("brand_new_field", PID, "unknown field")]
    assert parsed.phone_number_ids == [PID]


def test_messages_change_with_only_errors_is_ignored_with_the_error():
    parsed = parse_webhook(mp.webhook(mp.errors_change()))

    assert parsed.messages == parsed.statuses == parsed.problems == []
    assert parsed.ignored == [
        IgnoredChange(
            "messages", PID, "error notification 130429: Rate limit hit: Cloud API message throughput has been reached."
        )
    ]


# --- bodies that are not WhatsApp webhooks (400) ----------------------------------------------------------------


def _valid() -> dict:
    return mp.webhook(mp.messages_change(messages=[mp.text_message("wamid.X", CUSTOMER, "hi")], contacts=[SHEENA]))


def _mutated(mutate) -> dict:
    body = copy.deepcopy(_valid())
    mutate(body)
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body must be a JSON object, not list"),
        ("text", "body must be a JSON object, not str"),
        (None, "body must be a JSON object, not NoneType"),
        ({}, "object must be 'whatsapp_business_account', got None"),
        ({"object": "page", "entry": []}, "object must be 'whatsapp_business_account', got 'page'"),
        ({"object": "whatsapp_business_account"}, "entry must be a list"),
        ({"object": "whatsapp_business_account", "entry": {}}, "entry must be a list"),
        ({"object": "whatsapp_business_account", "entry": ["x"]}, "entry[0] must be an object"),
        ({"object": "whatsapp_business_account", "entry": [{"id": "1"}]}, "entry[0].changes must be a list"),
        (_mutated(lambda b: b["entry"][0].update(changes=None)), "entry[0].changes must be a list"),
        (_mutated(lambda b: b["entry"][0]["changes"].append(7)), "entry[0].changes[1] must be an object"),
        (
            _mutated(lambda b: b["entry"][0]["changes"][0].pop("field")),
            "entry[0].changes[0].field must be a non-empty string",
        ),
        (
            _mutated(lambda b: b["entry"][0]["changes"][0].update(field=5)),
            "entry[0].changes[0].field must be a non-empty string",
        ),
        (
            _mutated(lambda b: b["entry"][0]["changes"][0].update(value=[])),
            "entry[0].changes[0].value must be an object",
        ),
        (_mutated(lambda b: b["entry"][0]["changes"][0].pop("value")), "entry[0].changes[0].value must be an object"),
        (
            _mutated(lambda b: b["entry"].append({"id": "2", "changes": [{"field": "messages", "value": "v"}]})),
            "entry[1].changes[0].value must be an object",
        ),
    ],
)
def test_shape_errors_say_what_and_where(body, message):
    with pytest.raises(WebhookShapeError) as raised:
        parse_webhook(body)

    assert str(raised.value) == message
    assert isinstance(raised.value, ValueError)


# --- odd items inside a well-formed change ----------------------------------------------------------------------


def test_odd_messages_are_reported_and_the_rest_still_parsed():
    no_id = mp.text_message("wamid.gone", CUSTOMER, "lost")
    del no_id["id"]
    no_sender = mp.text_message("wamid.nosender", None, "who?")
    bad_ts = mp.text_message("wamid.badts", CUSTOMER, "late", timestamp="yesterday")
    no_ts = mp.text_message("wamid.nots", CUSTOMER, "when")
    del no_ts["timestamp"]
    messages = [
        mp.text_message("wamid.ok1", CUSTOMER, "first"),
        no_id,
        "not a message",
        None,
        bad_ts,
        no_ts,
        no_sender,
        mp.text_message("wamid.ok2", CUSTOMER, "last"),
    ]
    contacts = [SHEENA, mp.contact("5491100000001", "Other")]  # two contacts: no guessing the sender
    before = datetime.now(tz=UTC)

    parsed = parse_webhook(mp.webhook(mp.messages_change(messages=messages, contacts=contacts)))

    assert [m.provider_message_id for m in parsed.messages] == ["wamid.ok1", "wamid.badts", "wamid.nots", "wamid.ok2"]
    assert parsed.problems == [
        "entry[0].changes[0].value.messages[1]: missing id",
        "entry[0].changes[0].value.messages[2]: not an object",
        "entry[0].changes[0].value.messages[3]: not an object",
        "entry[0].changes[0].value.messages[4]: missing or bad timestamp 'yesterday', used now",
        "entry[0].changes[0].value.messages[5]: missing or bad timestamp None, used now",
        "entry[0].changes[0].value.messages[6]: missing from / from_user_id",
    ]
    late = parsed.messages[1]
    assert late.timestamp >= before
    assert late.timestamp.tzinfo is not None


def test_none_and_numbers_where_strings_are_expected_do_not_crash():
    raw = {
        "from": 16505551234,
        "id": "wamid.NUM",
        "timestamp": 1749416383,
        "type": "location",
        "location": {"latitude": None, "longitude": 12, "name": None, "address": ["x"]},
        "context": None,
        "referral": None,
        "errors": None,
    }
    contacts = [{"profile": None, "wa_id": 16505551234}, None, "junk"]

    message = one_message(raw, contacts=contacts)

    assert message.sender == InboundSender(wa_id="16505551234", bsuid=None, name="", username=None)
    assert message.timestamp == SENT_AT
    assert message.body == "📍 Location"
    assert message.quoted_provider_id is None
    assert message.error_code == ""


@pytest.mark.parametrize(
    ("type_", "content", "body"),
    [
        ("text", None, ""),
        ("text", "hello", ""),
        ("image", None, ""),
        ("contacts", {"name": "x"}, "Contact card"),
        ("reaction", None, "Removed reaction"),
        ("order", {"product_items": "nope"}, "Order: 0 items"),
        ("interactive", [], "[Interactive reply: unknown]"),
        ("button", {"text": None, "payload": None}, ""),
        ("system", {}, "System notice"),
    ],
)
def test_missing_or_malformed_type_objects_keep_the_message(type_, content, body):
    raw = {"from": CUSTOMER, "id": "wamid.ODD", "timestamp": mp.TIMESTAMP, "type": type_, type_: content}

    parsed = parse_webhook(mp.webhook(mp.messages_change(messages=[raw], contacts=[SHEENA])))

    (message,) = parsed.messages
    assert message.body == body
    assert message.kind == type_


def test_missing_type_object_is_reported_as_a_problem():
    raw = {"from": CUSTOMER, "id": "wamid.ODD", "timestamp": mp.TIMESTAMP, "type": "image"}

    parsed = parse_webhook(mp.webhook(mp.messages_change(messages=[raw], contacts=[SHEENA])))

    assert parsed.problems == ["entry[0].changes[0].value.messages[0]: missing image object"]
    assert parsed.messages[0].media == InboundMedia("", "", "", "", "")


def test_message_without_type_is_unsupported_and_reported():
    raw = {"from": CUSTOMER, "id": "wamid.NT", "timestamp": mp.TIMESTAMP}

    parsed = parse_webhook(mp.webhook(mp.messages_change(messages=[raw], contacts=[SHEENA])))

    assert parsed.problems == ["entry[0].changes[0].value.messages[0]: missing type"]
    assert (parsed.messages[0].kind, parsed.messages[0].body) == ("unsupported", "[Unsupported message: no type]")


def test_single_contact_supplies_the_sender_when_the_message_names_none():
    raw = {"id": "wamid.ONE", "timestamp": mp.TIMESTAMP, "type": "text", "text": {"body": "hi"}}

    message = one_message(raw, contacts=[mp.contact(CUSTOMER, "Sheena", user_id=mp.CUSTOMER_BSUID)])

    assert (message.sender.wa_id, message.sender.bsuid) == (CUSTOMER, mp.CUSTOMER_BSUID)


@pytest.mark.parametrize("timestamp", ["", "-5", "0", "1e400", "nan", {"t": 1}, True, 10**30])
def test_bad_timestamps_fall_back_to_now(timestamp):
    raw = mp.text_message("wamid.T", CUSTOMER, "hi", timestamp=timestamp)

    parsed = parse_webhook(mp.webhook(mp.messages_change(messages=[raw], contacts=[SHEENA])))

    assert len(parsed.problems) == 1
    assert "missing or bad timestamp" in parsed.problems[0]
    assert abs(parsed.messages[0].timestamp - datetime.now(tz=UTC)) < timedelta(minutes=1)


def test_odd_statuses_are_reported_and_the_rest_still_parsed():
    no_id = mp.status("wamid.x", "sent", CUSTOMER)
    del no_id["id"]
    no_status = mp.status("wamid.y", "sent", CUSTOMER)
    no_status["status"] = None
    change = mp.statuses_change(statuses=[no_id, no_status, 3, mp.status("wamid.OK", "read", CUSTOMER)])

    parsed = parse_webhook(mp.webhook(change))

    assert [s.provider_message_id for s in parsed.statuses] == ["wamid.OK"]
    assert parsed.problems == [
        "entry[0].changes[0].value.statuses[0]: missing id",
        "entry[0].changes[0].value.statuses[1]: missing status",
        "entry[0].changes[0].value.statuses[2]: not an object",
    ]


def test_messages_that_are_not_a_list_are_reported():
    change = mp.messages_change(contacts=[SHEENA])
    change["value"]["messages"] = {"id": "wamid.X"}
    change["value"]["contacts"] = "nope"

    parsed = parse_webhook(mp.webhook(change))

    assert parsed.messages == []
    assert parsed.problems == ["entry[0].changes[0].value.messages: must be a list"]


def test_messages_without_phone_number_id_are_skipped_and_reported():
    change = mp.messages_change(messages=[mp.text_message("wamid.X", CUSTOMER, "hi")], contacts=[SHEENA])
    change["value"]["metadata"] = None

    parsed = parse_webhook(mp.webhook(change))

    assert parsed.messages == []
    assert parsed.phone_number_ids == []
    assert parsed.problems == [
        "entry[0].changes[0].value.metadata.phone_number_id: missing, messages and statuses skipped"
    ]


def test_raw_is_the_original_dict():
    raw = mp.text_message("wamid.RAW", CUSTOMER, "hi", referral=mp.ad_referral())
    raw["unknown_new_key"] = {"nested": [1, 2]}
    body = mp.webhook(mp.messages_change(messages=[raw], contacts=[SHEENA]))

    message = parse_webhook(body).messages[0]

    assert message.raw is body["entry"][0]["changes"][0]["value"]["messages"][0]
    assert message.raw["unknown_new_key"] == {"nested": [1, 2]}


# --- phone_number_ids_of and sign -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        "x",
        {},
        {"entry": None},
        {"entry": [None, {"changes": "x"}, {"changes": [None, {"value": None}, {"value": {"metadata": 5}}]}]},
        {"entry": [{"changes": [{"value": {"metadata": {"phone_number_id": {"a": 1}}}}]}]},
    ],
)
def test_phone_number_ids_of_never_raises(body):
    assert phone_number_ids_of(body) == []


def test_phone_number_ids_of_is_ordered_and_unique_even_for_an_invalid_body():
    body = {
        "object": "page",
        "entry": [
            {"changes": [{"value": {"metadata": {"phone_number_id": "B"}}}, {"value": {"metadata": {}}}]},
            {
                "changes": [
                    {"value": {"metadata": {"phone_number_id": "A"}}},
                    {"value": {"metadata": {"phone_number_id": "B"}}},
                ]
            },
        ],
    }

    assert phone_number_ids_of(body) == ["B", "A"]


def test_sign_matches_metas_header_format():
    raw = json.dumps(_valid()).encode()

    header = mp.sign(raw, "app-secret")

    assert header == "sha256=" + hmac.new(b"app-secret", raw, hashlib.sha256).hexdigest()
    assert len(header) == len("sha256=") + 64


def test_a_sender_written_as_a_phone_number_is_its_digits_and_keeps_its_profile_name():
    body = mp.webhook(
        mp.messages_change(
            mp.PHONE_NUMBER_ID,
            messages=[mp.text_message("wamid.fmt", "+51 960-000-007", "Hola")],
            contacts=[mp.contact("51960000007", "Ana")],
        )
    )

    (message,) = parse_webhook(body).messages

    assert message.sender.wa_id == "51960000007" and message.sender.name == "Ana"
