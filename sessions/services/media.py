"""Files customers sent, fetched from the provider when an agent opens them (docs/inbound.md, docs/outbound.md).

Inbound messages keep only the provider's media id (`Message.media_id`); the bytes stay with the provider and are
fetched on demand through the number's engine. Who may open which message is the caller's business: this module
checks nothing about the agent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sessions.engines import EngineUnavailable, get_engine
from sessions.models import Engine, WhatsAppNumber

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MediaFile:
    content: bytes
    mime_type: str
    filename: str = ""  # the provider does not say; the message row may know it (`Message.media_filename`)


class MediaUnavailable(Exception):
    """The file cannot be shown. `code` is stable, for programs; `message` is a sentence for people.

    Codes: "not_supported" (the number's engine cannot fetch media), "not_found" (unknown media id, or the provider
    no longer keeps it), "expired" (the download link ran out before the bytes came), "provider_error" (the
    provider failed or refused the number's token), "too_large" (over WHATSAPP_MEDIA_MAX_BYTES).
    """

    NOT_SUPPORTED = "not_supported"
    NOT_FOUND = "not_found"
    EXPIRED = "expired"
    PROVIDER_ERROR = "provider_error"
    TOO_LARGE = "too_large"

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


NOT_SUPPORTED_MESSAGES: dict[str, str] = {
    Engine.WEB.value: "Media of WhatsApp Web numbers cannot be downloaded yet; open it on the phone.",
    Engine.SANDBOX.value: "The sandbox network carries no media.",
}
# Engines that can fetch media (their engine class has `media_fetch(number, media_id) -> MediaFile`).
MEDIA_ENGINES = frozenset({Engine.CLOUD.value})


def number_media_fetch(*, number: WhatsAppNumber, media_id: str) -> MediaFile:
    """The bytes of the file `media_id` received on `number`, from the number's provider.

    Raises `MediaUnavailable`. Reads only: nothing is stored, so a second call fetches the file again.
    """
    media_id = (media_id or "").strip()
    if not media_id:
        raise MediaUnavailable(MediaUnavailable.NOT_FOUND, "This message has no file attached.")
    if number.engine not in MEDIA_ENGINES:
        logger.info("media %s of number %s not fetched: engine %s has no media", media_id, number.pk, number.engine)
        raise MediaUnavailable(
            MediaUnavailable.NOT_SUPPORTED,
            NOT_SUPPORTED_MESSAGES.get(number.engine, "Files received on this number cannot be downloaded."),
        )
    try:
        engine = get_engine(number.engine)
    except (EngineUnavailable, ImportError) as exc:
        logger.warning("media %s of number %s not fetched: engine %s unavailable", media_id, number.pk, number.engine)
        raise MediaUnavailable(
            MediaUnavailable.NOT_SUPPORTED, "Files received on this number cannot be downloaded."
        ) from exc
    return engine.media_fetch(number, media_id)  # type: ignore[attr-defined]  # MEDIA_ENGINES have it
