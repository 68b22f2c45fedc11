"""The WhatsApp Web engine (neonize) without a network: its connection is driven with neonize's own event objects
(the protobuf messages neonize's Go core sends, decoded the way neonize decodes them) and a recording listener.
The device store is the project's PostgreSQL, created by neonize's Go core itself."""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection as db_connection
from django.utils import timezone
from neonize.client import ClientFactory, NewClient
from neonize.events import EVENT_TO_INT
from neonize.proto import Neonize_pb2 as pb
from neonize.proto.waCommon.WACommon_pb2 import MessageKey
from neonize.proto.waE2E import WAWebProtobufsE2E_pb2 as e2e

from conversations.models import Message as StoredMessage
from sessions.engines import get_engine
from sessions.engines.base import DisconnectKind, OutboundTemplate, OutboundText, SendError
from sessions.engines.web import (
    DEVICE_TABLE,
    STORE_APPLICATION_NAME,
    SUBSCRIBED_EVENTS,
    WebConnection,
    WebEngine,
    _send_error,
    device_store_url,
    jid_string,
    parse_jid,
)
from sessions.models import Engine
from tests.sessions.factories import WhatsAppNumberFactory

pytestmark = pytest.mark.django_db

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CUSTOMER = "51912345678"
CUSTOMER_LID = "123456789012345"
WHEN_MS = 1_700_000_000_123  # neonize gives message times in milliseconds…
WHEN = datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)
RECEIPT_WHEN = 1_700_000_100  # …and receipt times in seconds
NODE = pb.Node(Tag="failure", Nil=True)  # the raw XML node whatsmeow got, as neonize encodes it


class Recorder:
    """A ConnectionListener that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_connecting(self, number_id: int) -> None:
        self.calls.append(("connecting", number_id))

    def on_qr(self, number_id: int, code: str, expires_at: datetime) -> None:
        self.calls.append(("qr", number_id, code, expires_at))

    def on_pairing_code(self, number_id: int, code: str) -> None:
        self.calls.append(("pairing_code", number_id, code))

    def on_connected(self, number_id: int, device_jid: str) -> None:
        self.calls.append(("connected", number_id, device_jid))

    def on_disconnected(self, number_id: int, disconnect) -> None:
        self.calls.append(("disconnected", number_id, disconnect))

    def on_messages(self, number_id: int, messages: list) -> None:
        self.calls.append(("messages", number_id, messages))

    def on_receipts(self, number_id: int, updates: list) -> None:
        self.calls.append(("receipts", number_id, updates))

    def of(self, name: str) -> list[tuple]:
        return [call[1:] for call in self.calls if call[0] == name]

    def messages(self) -> list:
        return [message for _number, batch in self.of("messages") for message in batch]

    def receipts(self) -> list:
        return [update for _number, batch in self.of("receipts") for update in batch]

    def disconnects(self) -> list:
        return [disconnect for _number, disconnect in self.of("disconnected")]


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out")


# neonize's objects, as its Go core encodes them (utils.EncodeJidProto: every JID present, empty ones IsEmpty).


def jid(user: str = "", server: str = "s.whatsapp.net", device: int = 0) -> pb.JID:
    return pb.JID(User=user, RawAgent=0, Device=device, Integrator=0, Server=server, IsEmpty=not user)


def wire(event):
    """The event as neonize's Python side receives it: serialized by Go, parsed with FromString."""
    return type(event).FromString(event.SerializeToString())


def message_event(
    content: e2e.Message,
    *,
    message_id: str = "3EB0C0FFEE",
    sender: pb.JID | None = None,
    chat: pb.JID | None = None,
    sender_alt: pb.JID | None = None,
    from_me: bool = False,
    group: bool = False,
    push_name: str = "Ana Pérez",
) -> pb.Message:
    sender = sender or jid(CUSTOMER, device=3)
    source = pb.MessageSource(
        Chat=chat or jid(sender.User, sender.Server),
        Sender=sender,
        IsFromMe=from_me,
        IsGroup=group,
        SenderAlt=sender_alt or jid(),
        RecipientAlt=jid(),
        BroadcastListOwner=jid(),
    )
    info = pb.MessageInfo(
        MessageSource=source,
        ID=message_id,
        ServerID=0,
        Type="text",
        Pushname=push_name,
        Timestamp=WHEN_MS,
        Category="",
        Multicast=False,
        MediaType="",
        Edit="",
    )
    flags = dict.fromkeys(
        ("IsEphemeral", "IsViewOnce", "IsViewOnceV2", "IsViewOnceV2Extension", "IsDocumentWithCaption"), False
    )
    event = pb.Message(
        Info=info,
        Message=content,
        Raw=content,
        IsLottieSticker=False,
        IsEdit=False,
        UnavailableRequestID="",
        RetryCount=0,
    )
    for name, value in flags.items():
        setattr(event, name, value)
    return wire(event)


def receipt_event(kind: int | None, ids: list[str], *, chat: pb.JID | None = None, **source) -> pb.Receipt:
    chat = chat or jid(CUSTOMER)
    alts = {"SenderAlt": jid(), "RecipientAlt": jid(), "BroadcastListOwner": jid(), **source}
    message_source = pb.MessageSource(
        Chat=chat, Sender=jid(chat.User, chat.Server, device=1), IsFromMe=False, IsGroup=False, **alts
    )
    receipt = pb.Receipt(MessageSource=message_source, MessageIDs=ids, Timestamp=RECEIPT_WHEN)
    if kind is not None:
        receipt.Type = kind
    return wire(receipt)


@pytest.fixture
def number():
    return WhatsAppNumberFactory(engine=Engine.WEB, display_number="+51 987 111 222")


@pytest.fixture
def listener() -> Recorder:
    return Recorder()


@pytest.fixture
def open_connection(number, listener) -> Callable[..., WebConnection]:
    def make(device_jid: str = "", qr_timeout: float = 120) -> WebConnection:
        return WebEngine().open(number=number, device_jid=device_jid, listener=listener, qr_timeout=qr_timeout)

    return make


@pytest.fixture
def web(open_connection) -> WebConnection:
    return open_connection(device_jid="51987111222:7@s.whatsapp.net")


def native_event(connection: WebConnection, event) -> None:
    """Hand `event` to the connection exactly as neonize's Go core does: bytes in C memory and an event code."""
    data = event.SerializeToString()
    buffer = ctypes.create_string_buffer(data, len(data))
    connection._native_event(
        connection.client_id.encode(), ctypes.addressof(buffer), len(data), EVENT_TO_INT[type(event)]
    )


def native_string(callback: Callable[[int, int], None], text: str) -> None:
    buffer = ctypes.create_string_buffer(text.encode())
    callback(0, ctypes.addressof(buffer))


# The engine


def test_the_web_engine_is_registered_and_owns_its_connections():
    engine = get_engine("web")

    assert isinstance(engine, WebEngine)
    assert (engine.name, engine.reply_window, engine.supports_templates, engine.owns_connections) == (
        "web",
        None,
        False,
        True,
    )


def test_importing_the_engine_does_not_load_neonize():
    code = "import django, sys; django.setup(); import sessions.engines.web; print('neonize' in sys.modules)"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)

    assert result.stdout.strip() == "False", result.stderr


def test_sending_without_a_live_connection_is_retryable(number):
    with pytest.raises(SendError) as caught:
        WebEngine().send(number, OutboundText(to=CUSTOMER, body="Hola"))

    assert caught.value.code == "not_connected" and caught.value.retryable


def test_the_connection_subscribes_to_the_events_it_handles():
    names = {event.__name__ for event, code in EVENT_TO_INT.items() if code in SUBSCRIBED_EVENTS}

    assert names == {
        "PairStatus",
        "Connected",
        "KeepAliveTimeout",
        "LoggedOut",
        "StreamReplaced",
        "TemporaryBan",
        "ConnectFailure",
        "ClientOutdated",
        "StreamError",
        "Disconnected",
        "Message",
        "Receipt",
    }


# Inbound messages


def test_a_text_message_arrives_as_neonize_delivers_it(web, listener, number):
    content = e2e.Message(
        extendedTextMessage=e2e.ExtendedTextMessage(
            text="¿Tienen talla M?", contextInfo=e2e.ContextInfo(stanzaID="3EB0QUOTED", participant="x@s.whatsapp.net")
        )
    )

    native_event(web, message_event(content, message_id="3EB0AAA1"))

    (message,) = listener.messages()
    assert message.provider_message_id == "3EB0AAA1"
    assert (message.sender.wa_id, message.sender.bsuid, message.sender.name) == (CUSTOMER, None, "Ana Pérez")
    assert (message.kind, message.body, message.media) == ("text", "¿Tienen talla M?", None)
    assert message.timestamp == WHEN
    assert message.quoted_provider_id == "3EB0QUOTED"
    assert (message.phone_number_id, message.display_phone_number) == (number.phone_number_id, "51987111222")
    assert message.raw["type"] == "extendedTextMessage" and message.raw["chat"] == f"{CUSTOMER}@s.whatsapp.net"
    assert listener.of("messages")[0][0] == number.pk


def test_a_plain_conversation_text_and_one_in_a_disappearing_chat(web, listener):
    web.handle(message_event(e2e.Message(conversation="Hola"), message_id="A1"))
    wrapped = e2e.Message(ephemeralMessage=e2e.FutureProofMessage(message=e2e.Message(conversation="Secreto")))
    event = message_event(wrapped, message_id="A2")
    event.ClearField("Message")  # only the raw, still wrapped message
    web.handle(event)

    assert [(m.provider_message_id, m.kind, m.body, m.quoted_provider_id) for m in listener.messages()] == [
        ("A1", "text", "Hola", None),
        ("A2", "text", "Secreto", None),
    ]


def test_an_image_carries_its_media_metadata_and_caption(web, listener):
    image = e2e.ImageMessage(
        mimetype="image/jpeg",
        caption="Esta es la foto",
        fileSHA256=bytes(range(32)),
        fileEncSHA256=b"\x01" * 32,
        mediaKey=b"\x02" * 32,
        directPath="/v/t62.7118-24/123_456_n.enc?ccb=11-4",
        fileLength=52_341,
        contextInfo=e2e.ContextInfo(stanzaID="3EB0PREV"),
    )

    web.handle(message_event(e2e.Message(imageMessage=image), message_id="3EB0IMG"))

    (message,) = listener.messages()
    assert (message.kind, message.body, message.quoted_provider_id) == ("image", "Esta es la foto", "3EB0PREV")
    assert message.media.media_id == "3EB0IMG"
    assert message.media.mime_type == "image/jpeg"
    assert message.media.sha256 == bytes(range(32)).hex()
    assert (message.media.filename, message.media.url) == ("", "")
    assert message.raw["media"]["direct_path"] == "/v/t62.7118-24/123_456_n.enc?ccb=11-4"
    assert message.raw["media"]["media_key"] == "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
    assert message.raw["media"]["file_length"] == 52_341


@pytest.mark.parametrize(
    ("content", "kind", "body", "filename"),
    [
        (
            e2e.Message(
                documentMessage=e2e.DocumentMessage(mimetype="application/pdf", fileName="lista.pdf", caption="Precios")
            ),
            "document",
            "Precios",
            "lista.pdf",
        ),
        (
            e2e.Message(documentMessage=e2e.DocumentMessage(mimetype="application/pdf", fileName="a.pdf")),
            "document",
            "",
            "a.pdf",
        ),
        (e2e.Message(audioMessage=e2e.AudioMessage(mimetype="audio/ogg; codecs=opus", PTT=True)), "voice", "", ""),
        (e2e.Message(audioMessage=e2e.AudioMessage(mimetype="audio/mpeg")), "audio", "", ""),
        (e2e.Message(videoMessage=e2e.VideoMessage(mimetype="video/mp4", caption="Mira")), "video", "Mira", ""),
        (e2e.Message(stickerMessage=e2e.StickerMessage(mimetype="image/webp")), "sticker", "", ""),
    ],
)
def test_other_media(web, listener, content, kind, body, filename):
    web.handle(message_event(content))

    (message,) = listener.messages()
    assert (message.kind, message.body, message.media.filename) == (kind, body, filename)
    assert message.media.mime_type == getattr(content, content.ListFields()[0][0].name).mimetype


def test_a_lid_sender_is_known_by_the_phone_whatsmeow_gives_with_it(web, listener):
    lid = jid(CUSTOMER_LID, "lid", device=2)

    web.handle(message_event(e2e.Message(conversation="Hola"), sender=lid, sender_alt=jid(CUSTOMER)))

    (message,) = listener.messages()
    assert (message.sender.wa_id, message.sender.bsuid) == (CUSTOMER, f"lid:{CUSTOMER_LID}")


def test_a_lid_sender_without_a_phone_keeps_the_lid_as_identity(web, listener):
    web.handle(message_event(e2e.Message(conversation="Hola"), sender=jid(CUSTOMER_LID, "lid")))

    (message,) = listener.messages()
    assert (message.sender.wa_id, message.sender.bsuid, message.sender.name) == (
        None,
        f"lid:{CUSTOMER_LID}",
        "Ana Pérez",
    )


def test_a_reaction_points_at_the_message_it_reacts_to(web, listener):
    reaction = e2e.ReactionMessage(key=MessageKey(ID="3EB0TARGET", fromMe=True), text="👍")

    web.handle(message_event(e2e.Message(reactionMessage=reaction)))
    web.handle(message_event(e2e.Message(reactionMessage=e2e.ReactionMessage(key=MessageKey(ID="3EB0TARGET")))))

    assert [(m.kind, m.body, m.quoted_provider_id) for m in listener.messages()] == [
        ("reaction", "Reacted 👍", "3EB0TARGET"),
        ("reaction", "Removed reaction", "3EB0TARGET"),
    ]


def test_a_location(web, listener):
    location = e2e.LocationMessage(degreesLatitude=-12.0464, degreesLongitude=-77.0428, name="Tienda", address="Lima")

    web.handle(message_event(e2e.Message(locationMessage=location)))

    (message,) = listener.messages()
    assert (message.kind, message.body) == ("location", "📍 Tienda, Lima (-12.0464, -77.0428)")


def test_an_unknown_message_type_is_kept_as_unsupported(web, listener):
    poll = e2e.PollCreationMessage(name="¿Qué color?", options=[e2e.PollCreationMessage.Option(optionName="Rojo")])

    web.handle(message_event(e2e.Message(pollCreationMessage=poll)))

    (message,) = listener.messages()
    assert (message.kind, message.body, message.media) == (
        "unsupported",
        "[Unsupported message: pollCreationMessage]",
        None,
    )


def test_own_group_broadcast_status_and_protocol_messages_are_skipped(web, listener):
    text = e2e.Message(conversation="Hola")
    revoke = e2e.Message(protocolMessage=e2e.ProtocolMessage(type=e2e.ProtocolMessage.REVOKE, key=MessageKey(ID="X")))

    web.handle(message_event(text, from_me=True))
    web.handle(message_event(text, chat=jid("120363025246125486", "g.us"), group=True))
    web.handle(message_event(text, chat=jid("status", "broadcast")))
    web.handle(message_event(text, chat=jid("1700000000", "broadcast")))
    web.handle(message_event(revoke))
    web.handle(message_event(e2e.Message(senderKeyDistributionMessage=e2e.SenderKeyDistributionMessage())))

    assert listener.messages() == []


def test_messages_that_arrive_after_the_connection_closed_are_still_delivered(web, listener):
    web.stop()
    web.handle(message_event(e2e.Message(conversation="Tarde")))

    assert [m.body for m in listener.messages()] == ["Tarde"]


# Receipts


def test_receipts_become_status_updates_for_each_message(web, listener, number):
    web.handle(receipt_event(pb.Receipt.DELIVERED, ["M1", "M2"]))
    web.handle(receipt_event(pb.Receipt.READ, ["M1"]))
    web.handle(receipt_event(pb.Receipt.PLAYED, ["M3"]))

    updates = listener.receipts()
    assert [(u.provider_message_id, u.status) for u in updates] == [
        ("M1", "delivered"),
        ("M2", "delivered"),
        ("M1", "read"),
        ("M3", "read"),
    ]
    assert {(u.recipient_wa_id, u.recipient_bsuid, u.phone_number_id) for u in updates} == {
        (CUSTOMER, None, number.phone_number_id)
    }
    assert updates[0].timestamp == datetime.fromtimestamp(RECEIPT_WHEN, tz=UTC)


def test_receipts_from_a_lid_chat_name_the_phone_when_whatsmeow_knows_it(web, listener):
    web.handle(receipt_event(pb.Receipt.READ, ["M1"], chat=jid(CUSTOMER_LID, "lid"), SenderAlt=jid(CUSTOMER)))
    web.handle(receipt_event(pb.Receipt.READ, ["M2"], chat=jid(CUSTOMER_LID, "lid")))

    assert [(u.recipient_wa_id, u.recipient_bsuid) for u in listener.receipts()] == [
        (CUSTOMER, f"lid:{CUSTOMER_LID}"),
        (None, f"lid:{CUSTOMER_LID}"),
    ]


def test_receipts_of_other_kinds_and_of_groups_are_ignored(web, listener):
    web.handle(receipt_event(pb.Receipt.READ_SELF, ["M1"]))
    web.handle(receipt_event(pb.Receipt.SENDER, ["M1"]))
    web.handle(receipt_event(pb.Receipt.RETRY, ["M1"]))
    web.handle(receipt_event(pb.Receipt.READ, ["M1"], chat=jid("120363025246125486", "g.us")))

    assert listener.receipts() == []


# How connections end


@pytest.mark.parametrize(
    ("event", "kind", "reason"),
    [
        (pb.LoggedOut(OnConnect=False, Reason=pb.LOGGED_OUT), DisconnectKind.LOGGED_OUT, "Logged out from the phone"),
        (pb.StreamReplaced(), DisconnectKind.CONFLICT, "Replaced by another connection"),
        (pb.KeepAliveTimeout(ErrorCount=2, LastSuccess=1_700_000_000), DisconnectKind.TRANSIENT, "keepalives"),
        (pb.Disconnected(status=True), DisconnectKind.TRANSIENT, "Connection to WhatsApp lost"),
        (pb.ConnectFailure(Reason=pb.MAIN_DEVICE_GONE, Message="", Raw=NODE), DisconnectKind.LOGGED_OUT, "Logged out"),
        (
            pb.ConnectFailure(Reason=pb.SERVICE_UNAVAILABLE, Message="", Raw=NODE),
            DisconnectKind.TRANSIENT,
            "service unavailable",
        ),
        (pb.ClientOutdated(), DisconnectKind.TRANSIENT, "outdated"),
        (pb.StreamError(Code="503", Raw=NODE), DisconnectKind.TRANSIENT, "stream error 503"),
    ],
)
def test_how_a_connection_ended(web, listener, number, event, kind, reason):
    web.handle(pb.Connected(status=True))
    assert web.connected

    native_event(web, wire(event))
    web.handle(pb.Disconnected(status=True))  # whatever follows is the same ending

    ((number_id, disconnect),) = listener.of("disconnected")
    assert number_id == number.pk
    assert disconnect.kind == kind and reason in disconnect.reason
    assert disconnect.until is None
    assert not web.connected and web.closed


def test_a_temporary_ban_ends_the_connection_until_it_expires(web, listener):
    before = timezone.now()

    web.handle(wire(pb.TemporaryBan(Code=pb.TemporaryBan.SENT_TOO_MANY_SAME_MESSAGE, Expire=3600)))

    (disconnect,) = listener.disconnects()
    assert disconnect.kind == DisconnectKind.BANNED
    assert "sent too many same message" in disconnect.reason
    assert before + timedelta(seconds=3600) <= disconnect.until <= timezone.now() + timedelta(seconds=3600)


def test_stopping_reports_closed_once_and_refuses_sends(web, listener):
    web.handle(pb.Connected(status=True))

    web.stop()
    web.stop()

    assert [d.kind for d in listener.disconnects()] == [DisconnectKind.CLOSED]
    with pytest.raises(SendError) as caught:
        web.send(OutboundText(to=CUSTOMER, body="Hola"))
    assert caught.value.code == "not_connected" and caught.value.retryable


# Pairing


def test_a_resumed_device_reports_its_jid_when_connected(web, listener, number):
    web.handle(pb.Device(JID=jid("51987111222", device=9), PushName="Tienda"))  # never replaces the known one
    web.handle(pb.Connected(status=True))

    assert listener.of("connected") == [(number.pk, "51987111222:7@s.whatsapp.net")]


def test_a_new_device_reports_the_jid_it_was_paired_as(open_connection, listener, number):
    connection = open_connection(device_jid="")
    status = pb.PairStatus(
        ID=jid("51987111222", device=12), BusinessName="", Platform="android", Status=pb.PairStatus.SUCCESS
    )

    connection.handle(wire(status))
    connection.handle(pb.Connected(status=True))

    assert listener.of("connected") == [(number.pk, "51987111222:12@s.whatsapp.net")]
    assert connection.connected


def test_qr_codes_reach_the_listener_with_their_expiry(open_connection, listener, number):
    connection = open_connection(qr_timeout=90)
    start = timezone.now()

    native_string(connection._native_qr, "2@first,code,AAA")
    connection.on_qr_code(b"2@second,code,BBB")

    (first, second) = listener.of("qr")
    assert first[:2] == (number.pk, "2@first,code,AAA") and second[:2] == (number.pk, "2@second,code,BBB")
    assert start + timedelta(seconds=59) <= first[2] <= timezone.now() + timedelta(seconds=60)
    assert start + timedelta(seconds=19) <= second[2] <= timezone.now() + timedelta(seconds=20)
    connection.stop()


def test_a_qr_code_nobody_scans_ends_in_a_qr_timeout(open_connection, listener):
    connection = open_connection(qr_timeout=0.2)

    connection.on_qr_code("2@only,code")
    wait_for(listener.disconnects)

    (disconnect,) = listener.disconnects()
    assert disconnect.kind == DisconnectKind.QR_TIMEOUT
    assert "QR code not scanned within 0 s" in disconnect.reason
    connection.on_qr_code("2@late,code")
    assert len(listener.of("qr")) == 1


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("timeout", DisconnectKind.QR_TIMEOUT),
        ("err-client-outdated", DisconnectKind.TRANSIENT),
        ("err-unexpected-state", DisconnectKind.TRANSIENT),
        ("error", DisconnectKind.TRANSIENT),
        ("err-scanned-without-multidevice", None),  # whatsmeow keeps waiting for a proper scan
        ("success", None),
    ],
)
def test_how_the_qr_wait_ended(open_connection, listener, status, kind):
    connection = open_connection()
    connection.on_qr_code("2@only,code")

    native_string(connection._native_login_status, status)

    assert [d.kind for d in listener.disconnects()] == ([kind] if kind else [])
    connection.stop()


def test_a_scanned_qr_code_does_not_time_out(open_connection, listener, number):
    connection = open_connection(qr_timeout=0.2)
    connection.on_qr_code("2@only,code")

    connection.on_login_status("success")
    connection.handle(pb.Device(JID=jid("51987111222", device=4)))
    connection.handle(pb.Connected(status=True))
    time.sleep(0.4)

    assert listener.disconnects() == []
    assert listener.of("connected") == [(number.pk, "51987111222:4@s.whatsapp.net")]
    connection.stop()


def test_a_pairing_code_is_only_given_while_waiting_for_a_scan(web):
    with pytest.raises(SendError) as caught:
        web.request_pairing_code("+51 987 111 222")

    assert caught.value.code == "not_pairing"


# Sending


def test_sends_need_text_and_a_valid_recipient(web):
    web.client = web.new_client()
    web.connected = True

    with pytest.raises(SendError) as template:
        web.send(OutboundTemplate(to=CUSTOMER, name="promo", language="es"))
    with pytest.raises(SendError) as recipient:
        web.send(OutboundText(to="US.13491208655302741918", body="Hola"))

    assert template.value.code == "unsupported" and not template.value.retryable
    assert recipient.value.code == "bad_recipient"


def test_a_reply_quotes_the_stored_message(web, number):
    from tests.conversations.factories import ConversationFactory

    conversation = ConversationFactory(client=number.client, number=number)
    StoredMessage.objects.create(
        conversation=conversation,
        number=number,
        direction=StoredMessage.Direction.INBOUND,
        kind=StoredMessage.Kind.TEXT,
        body="¿Tienen talla M?",
        provider_message_id="3EB0QUOTED",
        status=StoredMessage.Status.RECEIVED,
    )
    to = parse_jid(f"{CUSTOMER}@s.whatsapp.net")

    plain = web._outbound_message(OutboundText(to=CUSTOMER, body="Sí"), to)
    reply = web._outbound_message(OutboundText(to=CUSTOMER, body="Sí", reply_to="3EB0QUOTED"), to)

    assert plain == e2e.Message(conversation="Sí")
    assert reply.extendedTextMessage.text == "Sí"
    context = reply.extendedTextMessage.contextInfo
    assert (context.stanzaID, context.participant) == ("3EB0QUOTED", f"{CUSTOMER}@s.whatsapp.net")
    assert context.quotedMessage.conversation == "¿Tienen talla M?"


@pytest.mark.parametrize(
    ("text", "code", "retryable", "ambiguous"),
    [
        ("websocket not connected", "not_sent", True, False),
        ("failed to get device list: info query timed out", "timeout", False, True),
        ("server returned error 479", "rejected", False, False),
        ("something nobody expected", "send_failed", False, True),
    ],
)
def test_send_errors_say_whether_the_message_may_have_left(text, code, retryable, ambiguous):
    error = _send_error(text)

    assert (error.code, error.retryable, error.ambiguous) == (code, retryable, ambiguous)


# The device store: the project's PostgreSQL


def test_the_device_store_url_is_the_projects_database(settings):
    default = settings.DATABASES["default"]
    url = device_store_url()

    assert url.startswith(f"postgres://{default['USER']}@{default['HOST']}:{default['PORT']}/{default['NAME']}?")
    assert "sslmode=prefer" in url and f"application_name={STORE_APPLICATION_NAME}" in url
    socket_database = {
        "NAME": "crm",
        "USER": "app",
        "PASSWORD": "p@ss:/word",
        "HOST": "/var/run/postgresql",
        "PORT": "",
        "OPTIONS": {"sslmode": "require"},
    }
    assert device_store_url(socket_database) == (
        "postgres://app:p%40ss%3A%2Fword@/crm?sslmode=require&host=%2Fvar%2Frun%2Fpostgresql"
        f"&application_name={STORE_APPLICATION_NAME}"
    )


def test_jids_round_trip_in_whatsmeows_text_form():
    for text in ("51987111222:7@s.whatsapp.net", "51987111222@s.whatsapp.net", "123456789012345:3@lid"):
        assert jid_string(parse_jid(text)) == text


def test_the_client_is_built_offline_for_the_projects_database(web):
    client = web.new_client()

    assert isinstance(client, NewClient)
    assert client.name == device_store_url(application_name=web.store_session_name)
    assert client.name.startswith(device_store_url().split("application_name=")[0])
    assert client.uuid == web.client_id.encode()
    assert jid_string(client.jid) == "51987111222:7@s.whatsapp.net"
    assert not client.connected and web._phase == "idle"


def test_a_paired_device_missing_from_the_store_is_logged_out_without_connecting(web, listener, number):
    web.start()

    assert listener.calls[0] == ("connecting", number.pk)
    (disconnect,) = listener.disconnects()
    assert disconnect.kind == DisconnectKind.LOGGED_OUT
    assert web.client is None and web._phase == "idle"


def test_forgetting_a_device_when_nothing_is_stored_does_not_fail(number):
    with db_connection.cursor() as cursor:  # a database where whatsmeow never created its tables
        cursor.execute("CREATE SCHEMA web_engine_empty_store")
        cursor.execute("SET LOCAL search_path TO web_engine_empty_store")
        WebEngine().forget_device(number=number, device_jid="51987111222:7@s.whatsapp.net")
        cursor.execute("RESET search_path")

    WebEngine().forget_device(number=number, device_jid="")


@pytest.fixture
def store_sessions():
    """neonize's Go core keeps its own PostgreSQL pool open: end those sessions so the test database can be
    dropped."""
    yield
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE %s",
            [f"{STORE_APPLICATION_NAME}%"],
        )


def store_sessions_of(connection: WebConnection) -> int:
    with db_connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [connection.store_session_name]
        )
        return cursor.fetchone()[0]


def insert_device(device_jid: str) -> None:
    """A paired device's row as whatsmeow stores it (keys of the right sizes; nobody will ever log in with them)."""
    with db_connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DEVICE_TABLE} (jid, registration_id, noise_key, identity_key, signed_pre_key, "  # noqa: S608
            "signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details, adv_account_sig, adv_account_sig_key, "
            "adv_device_sig, push_name) VALUES (%s, 1, %s, %s, %s, 1, %s, %s, %s, %s, %s, %s, 'Tienda')",
            [device_jid, b"n" * 32, b"i" * 32, b"s" * 32, b"g" * 64, b"a", b"d", b"c" * 64, b"k" * 32, b"v" * 64],
        )


@pytest.mark.django_db(transaction=True)
def test_neonize_keeps_its_devices_in_the_projects_postgresql(number, store_sessions):
    url = device_store_url()
    assert ClientFactory.get_all_devices_from_db(url) == []  # whatsmeow creates its tables on first use
    tables = set(db_connection.introspection.table_names())
    assert {DEVICE_TABLE, "whatsmeow_sessions", "whatsmeow_pre_keys", "whatsmeow_contacts"} <= tables
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", [STORE_APPLICATION_NAME])
        assert cursor.fetchone()[0] >= 1  # neonize's Go core really connected, with the name the URL gives

    device_jid = "51987111222:7@s.whatsapp.net"
    insert_device(device_jid)
    with db_connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO whatsmeow_contacts (our_jid, their_jid, push_name) VALUES (%s, %s, 'Ana')",
            [device_jid, f"{CUSTOMER}@s.whatsapp.net"],
        )
    (device,) = ClientFactory.get_all_devices_from_db(url)  # what neonize's Go core reads is what Django wrote
    assert (jid_string(device.JID), device.PushName) == (device_jid, "Tienda")

    WebEngine().forget_device(number=number, device_jid=device_jid)

    assert ClientFactory.get_all_devices_from_db(url) == []
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM whatsmeow_contacts WHERE our_jid = %s", [device_jid])
        assert cursor.fetchone()[0] == 0
    WebEngine().forget_device(number=number, device_jid=device_jid)  # again: nothing left, no error


# The native client, offline: neonize's Go core really runs, but its only way out is a proxy that refuses.


@pytest.fixture
def unreachable_proxy(settings) -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    settings.WHATSAPP_WEB_PROXY = f"socks5://127.0.0.1:{port}"
    return settings.WHATSAPP_WEB_PROXY


def test_a_connection_that_cannot_reach_whatsapp_ends_as_transient(
    open_connection, listener, number, unreachable_proxy, store_sessions
):
    connection = open_connection(device_jid="")

    connection.start()
    wait_for(listener.disconnects, timeout=60)

    assert listener.calls[0] == ("connecting", number.pk)
    (disconnect,) = listener.disconnects()
    assert disconnect.kind == DisconnectKind.TRANSIENT
    assert disconnect.reason.startswith("Could not connect to WhatsApp:")
    assert listener.of("qr") == [] and not connection.connected
    wait_for(lambda: connection._phase == "returned" and connection._dispatch_done)
    assert DEVICE_TABLE in db_connection.introspection.table_names()  # the Go core opened the project's database
    assert store_sessions_of(connection) == 0  # and the sessions neonize left open were ended


@pytest.mark.django_db(transaction=True)
def test_a_paired_device_is_resumed_from_the_store_by_its_jid(
    open_connection, listener, number, unreachable_proxy, store_sessions
):
    """neonize's Go core loads the device by the JID this engine encodes (a JID it cannot find would crash the
    process, which is why `start` checks the store first); then the refusing proxy ends the attempt."""
    device_jid = "51987111222:7@s.whatsapp.net"
    ClientFactory.get_all_devices_from_db(device_store_url())  # the store's tables
    insert_device(device_jid)
    connection = open_connection(device_jid=device_jid)

    connection.start()
    wait_for(listener.disconnects, timeout=60)

    (disconnect,) = listener.disconnects()
    assert disconnect.kind == DisconnectKind.TRANSIENT and "Could not connect to WhatsApp" in disconnect.reason
    wait_for(lambda: connection._phase == "returned")
    WebEngine().forget_device(number=number, device_jid=device_jid)
