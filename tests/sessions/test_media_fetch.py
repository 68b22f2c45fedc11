"""Opening files customers sent: `number_media_fetch` against a real HTTP server speaking the Graph API
(tests/fakes/graph_api.py)."""

from __future__ import annotations

import logging
import socket

import pytest

from crm.crypto import Secret
from sessions.models import Engine
from sessions.services import MediaFile, MediaUnavailable, number_media_fetch
from tests.sessions.factories import WhatsAppNumberFactory

TOKEN = "EAAG-media-fetch-test-token-0001-abcdef"
MEDIA_ID = "1037543291543636"
PHOTO = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 40 + b"\xff\xd9"

pytestmark = pytest.mark.django_db


@pytest.fixture
def number(graph_api):
    """A Cloud API number whose token, read back from the database, is the one the fake expects."""
    created = WhatsAppNumberFactory(access_token=TOKEN)
    created.refresh_from_db()
    assert isinstance(created.access_token, Secret)
    graph_api.tokens[created.phone_number_id] = TOKEN
    return created


def fetch_failing(number, media_id=MEDIA_ID) -> MediaUnavailable:
    with pytest.raises(MediaUnavailable) as excinfo:
        number_media_fetch(number=number, media_id=media_id)
    return excinfo.value


def downloads(graph_api) -> list:
    return [request for request in graph_api.requests if request.path.startswith("/media-download/")]


# Cloud API


def test_file_comes_back_with_its_bytes_and_type(graph_api, number):
    # given: a customer sent a photo
    graph_api.add_media(MEDIA_ID, PHOTO, "image/jpeg", phone_number_id=number.phone_number_id)

    # when
    media = number_media_fetch(number=number, media_id=MEDIA_ID)

    # then
    assert media == MediaFile(content=PHOTO, mime_type="image/jpeg", filename="")
    info, download = graph_api.requests
    assert (info.method, info.path.split("?")[0], info.status) == ("GET", f"/v23.0/{MEDIA_ID}", 200)
    assert (download.method, download.path.split("?")[0], download.status) == (
        "GET",
        f"/media-download/{MEDIA_ID}",
        200,
    )


def test_the_numbers_token_is_sent_on_both_requests(graph_api, number):
    graph_api.add_media(MEDIA_ID, PHOTO, "image/jpeg", phone_number_id=number.phone_number_id)

    number_media_fetch(number=number, media_id=MEDIA_ID)

    assert [request.headers.get("authorization") for request in graph_api.requests] == [f"Bearer {TOKEN}"] * 2


def test_voice_note_keeps_metas_mime_type(graph_api, number):
    graph_api.add_media("998877", b"OggS-voice", "audio/ogg; codecs=opus")

    media = number_media_fetch(number=number, media_id="998877")

    assert (media.content, media.mime_type) == (b"OggS-voice", "audio/ogg; codecs=opus")


def test_graph_api_version_comes_from_settings(graph_api, number, settings):
    settings.WHATSAPP_GRAPH_API_VERSION = "v21.0"
    graph_api.add_media(MEDIA_ID, PHOTO, "image/jpeg")

    number_media_fetch(number=number, media_id=MEDIA_ID)

    assert graph_api.requests[0].path.split("?")[0] == f"/v21.0/{MEDIA_ID}"


def test_unknown_or_expired_media_is_not_found_with_a_sentence(graph_api, number):
    # when: WhatsApp no longer keeps the file (or never had it)
    error = fetch_failing(number, media_id="404404404")

    # then
    assert error.code == "not_found"
    assert "limited time" in error.message
    assert [request.status for request in graph_api.requests] == [404]


def test_wrong_token_is_a_provider_error_about_the_token(graph_api, number):
    graph_api.add_media(MEDIA_ID, PHOTO, "image/jpeg", phone_number_id=number.phone_number_id)
    graph_api.tokens[number.phone_number_id] = "EAAG-some-other-token"

    error = fetch_failing(number)

    assert error.code == "provider_error"
    assert "access token" in error.message
    assert downloads(graph_api) == []


def test_number_without_token_is_refused_without_calling_meta(graph_api):
    number = WhatsAppNumberFactory(access_token="")
    number.refresh_from_db()

    error = fetch_failing(number)

    assert error.code == "provider_error"
    assert graph_api.requests == []


def test_one_server_error_is_retried(graph_api, number):
    graph_api.add_media(MEDIA_ID, PHOTO, "image/jpeg")
    graph_api.fail_next(status=500, code=1, message="An unknown error occurred")

    media = number_media_fetch(number=number, media_id=MEDIA_ID)

    assert media.content == PHOTO
    assert [request.status for request in graph_api.requests] == [500, 200, 200]


def test_server_error_twice_is_a_provider_error(graph_api, number):
    # given: Meta fails the metadata request and its one retry
    graph_api.add_media(MEDIA_ID, PHOTO, "image/jpeg")
    graph_api.fail_next(2, status=500, code=1, message="An unknown error occurred")

    # when
    error = fetch_failing(number)

    # then
    assert error.code == "provider_error"
    assert error.message
    assert [request.status for request in graph_api.requests] == [500, 500]


def test_download_failing_twice_is_a_provider_error(graph_api, number):
    # given: the metadata answers normally, then the download and its retry fail
    graph_api.add_media(MEDIA_ID, PHOTO, "image/jpeg")
    graph_api.slow_next(seconds=0)
    graph_api.reply_next(2, status=503, body="<html>Service Unavailable</html>")

    error = fetch_failing(number)

    assert error.code == "provider_error"
    assert [request.status for request in graph_api.requests] == [200, 503, 503]


def test_file_over_the_limit_is_refused_without_downloading_it(graph_api, number, settings):
    # given: Meta says the file is one byte over the limit
    settings.WHATSAPP_MEDIA_MAX_BYTES = 1000
    graph_api.add_media(MEDIA_ID, b"x" * 1001, "video/mp4")

    # when
    error = fetch_failing(number)

    # then
    assert error.code == "too_large"
    assert "too large" in error.message
    assert len(graph_api.requests) == 1
    assert downloads(graph_api) == []


def test_file_larger_than_meta_said_is_still_refused(graph_api, number, settings):
    # given: the metadata understates the size; the download itself is over the limit
    settings.WHATSAPP_MEDIA_MAX_BYTES = 1000
    graph_api.add_media(MEDIA_ID, b"x" * 5000, "video/mp4", file_size=10)

    error = fetch_failing(number)

    assert error.code == "too_large"


def test_file_exactly_at_the_limit_is_served(graph_api, number, settings):
    settings.WHATSAPP_MEDIA_MAX_BYTES = 1000
    graph_api.add_media(MEDIA_ID, b"x" * 1000, "application/pdf")

    media = number_media_fetch(number=number, media_id=MEDIA_ID)

    assert len(media.content) == 1000


def test_download_link_gone_is_expired(graph_api, number):
    # given: the link Meta gave is no longer valid when the download starts
    graph_api.add_media(MEDIA_ID, PHOTO, "image/jpeg")
    graph_api.slow_next(seconds=0)  # the metadata answers normally
    graph_api.reply_next(status=404, body="", content_type="text/plain")

    error = fetch_failing(number)

    assert error.code == "expired"
    assert error.message


def test_our_logs_show_neither_token_nor_download_link(graph_api, number, caplog):
    # given
    caplog.set_level(logging.DEBUG)
    graph_api.add_media(MEDIA_ID, PHOTO, "image/jpeg")
    signature = graph_api.media[MEDIA_ID].signature

    # when: one success and one failure
    number_media_fetch(number=number, media_id=MEDIA_ID)
    graph_api.slow_next(seconds=0)
    graph_api.reply_next(2, status=502, body="<html>Bad Gateway</html>")
    with pytest.raises(MediaUnavailable):
        number_media_fetch(number=number, media_id=MEDIA_ID)

    # then: our logs name the media id only (httpx's own INFO line shows request URLs: see config LOGGING)
    ours = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("sessions."))
    assert MEDIA_ID in ours
    assert TOKEN not in caplog.text
    assert signature not in ours
    assert "media-download" not in ours


# Engines without media


@pytest.mark.parametrize(
    ("engine", "sentence"),
    [
        (Engine.WEB, "Media of WhatsApp Web numbers cannot be downloaded yet; open it on the phone."),
        (Engine.SANDBOX, "The sandbox network carries no media."),
    ],
)
def test_numbers_of_other_engines_are_not_supported(graph_api, engine, sentence):
    number = WhatsAppNumberFactory(engine=engine, access_token="")

    error = fetch_failing(number)

    assert (error.code, error.message) == ("not_supported", sentence)
    assert graph_api.requests == []


def test_message_without_media_id_is_not_found(graph_api, number):
    error = fetch_failing(number, media_id="")

    assert error.code == "not_found"
    assert graph_api.requests == []


def test_unreachable_api_is_retried_once_then_a_provider_error(number, settings):
    # given: nothing listens on the configured address
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.WHATSAPP_GRAPH_API_URL = f"http://127.0.0.1:{port}"

    error = fetch_failing(number)

    assert error.code == "provider_error"
    assert "could not be reached" in error.message
