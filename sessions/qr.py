"""QR codes for pairing (docs/sessions.md): the raw string an engine reports, drawn as SVG or PNG with `qrcode`."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg


def qr_svg(code: str) -> str:
    """An SVG document of `code` (scales crisply; what the admin shows)."""
    image = qrcode.make(code, image_factory=qrcode.image.svg.SvgPathImage, border=2, box_size=10)
    return image.to_string(encoding="unicode")


def qr_png(code: str, *, box_size: int = 8) -> bytes:
    """A PNG of `code` (Pillow), for places that take only bitmaps."""
    image = qrcode.make(code, border=2, box_size=box_size)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
