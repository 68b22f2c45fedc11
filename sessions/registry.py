"""The JSON connection registry (docs/registry.md): read and validate the whole file before anything is written.

The file is a JSON array of connections, or an object with a `connections` array. Each entry names a Cloud API
number: `phoneNumberId` and `displayNumber` are required; `alias`, `accessToken`, `verifyToken`, `wabaId`,
`isActive` and `client` (a client's slug) are optional; other keys (`id`, `createdAt`, `updatedAt`…) are kept
only for error messages. Every problem is reported with the entry's index and id, and any problem rejects the
whole file.
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers

REQUIRED = ("phoneNumberId", "displayNumber")
META_ID = re.compile(r"[0-9]{1,64}")
# What a registry may carry before Meta's id is known: wsp-… and similar, printable, without spaces.
PLACEHOLDER_ID = re.compile(r"[A-Za-z][A-Za-z0-9._:-]{0,63}")
MAX_FILE_BYTES = 20_000_000
STRING_FIELDS = ("id", "alias", "phoneNumberId", "displayNumber", "accessToken", "verifyToken", "wabaId", "client")
MAX_LENGTHS = {"alias": 120, "phoneNumberId": 64, "displayNumber": 32, "wabaId": 64, "client": 60}


@dataclass(frozen=True)
class RegistryProblem:
    index: int | None  # position in the connections array (0-based); None for the file itself
    entry_id: str  # the entry's own "id", or its phoneNumberId, when it has one
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"index": self.index, "id": self.entry_id, "message": self.message}

    def __str__(self) -> str:
        where = (
            "file"
            if self.index is None
            else f"entry {self.index}" + (f" (id {self.entry_id})" if self.entry_id else "")
        )
        return f"{where}: {self.message}"


class RegistryError(Exception):
    """The registry cannot be used; `problems` says where and why. Nothing was written."""

    def __init__(self, problems: list[RegistryProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems[:5]) + (" …" if len(problems) > 5 else ""))


@dataclass(frozen=True)
class RegistryEntry:
    index: int
    entry_id: str
    phone_number_id: str
    display_number: str
    e164: str
    alias: str
    access_token: str | None  # None: the key is absent, so the stored token is left as it is
    verify_token: str | None
    waba_id: str | None
    is_active: bool
    client_slug: str | None

    @property
    def has_meta_id(self) -> bool:
        return is_meta_id(self.phone_number_id)


def is_meta_id(value: str) -> bool:
    """Meta's phone-number ids are ASCII digits; anything else (`wsp-…`) is a placeholder."""
    return META_ID.fullmatch(value) is not None


def e164_or_none(value: str) -> str | None:
    """E.164 form of a number that is at least *possible* (Meta's +1 555 test numbers are not "valid")."""
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def load_registry(path: str | Path) -> list[RegistryEntry]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RegistryError([RegistryProblem(None, "", f"registry file {path} does not exist")]) from None
    except IsADirectoryError:
        raise RegistryError([RegistryProblem(None, "", f"registry path {path} is a directory, not a file")]) from None
    except OSError as exc:
        raise RegistryError([RegistryProblem(None, "", f"cannot read registry file {path}: {exc.strerror}")]) from None
    return parse_registry(raw)


def parse_registry(raw: bytes | str) -> list[RegistryEntry]:
    if isinstance(raw, bytes) and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]  # files saved by Windows editors
    if len(raw) > MAX_FILE_BYTES:
        raise RegistryError([RegistryProblem(None, "", f"the file is larger than {MAX_FILE_BYTES // 1_000_000} MB")])
    try:
        data = json.loads(raw)
    except UnicodeDecodeError:
        raise RegistryError([RegistryProblem(None, "", "the file is not UTF-8 text")]) from None
    except json.JSONDecodeError as exc:
        raise RegistryError(
            [RegistryProblem(None, "", f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")]
        ) from None
    except (ValueError, RecursionError) as exc:  # numbers past Python's digit limit, absurd nesting
        reason = "nested too deeply" if isinstance(exc, RecursionError) else "a number is too long"
        raise RegistryError([RegistryProblem(None, "", f"invalid JSON: {reason}")]) from None
    if isinstance(data, dict):
        if "connections" not in data:
            raise RegistryError([RegistryProblem(None, "", "a JSON object must have a `connections` array")])
        data = data["connections"]
    if not isinstance(data, list):
        raise RegistryError([RegistryProblem(None, "", "expected a JSON array of connections")])

    problems: list[RegistryProblem] = []
    entries: list[RegistryEntry] = []
    for index, item in enumerate(data):
        entry = _parse_entry(index, item, problems)
        if entry is not None:
            entries.append(entry)

    _check_duplicates(entries, problems)
    if problems:
        raise RegistryError(sorted(problems, key=lambda p: (p.index is not None, p.index or 0)))
    return entries


def _is_storable(value: str) -> bool:
    """Text PostgreSQL can store: no NUL character, no lone UTF-16 surrogate."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _entry_id(item: dict) -> str:
    """The entry's own id (or its phoneNumberId) for messages, made safe to print and store."""
    value = item.get("id")
    if value is None or value == "":
        value = item.get("phoneNumberId")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ""
    text = value if isinstance(value, str) else (str(value) if abs(value) < 10**40 else "")
    return text[:80] if _is_storable(text) else ""


def _parse_entry(index: int, item: Any, problems: list[RegistryProblem]) -> RegistryEntry | None:
    if not isinstance(item, dict):
        problems.append(RegistryProblem(index, "", f"expected an object, got {type(item).__name__}"))
        return None
    pnid = item.get("phoneNumberId")
    # Meta's ids are sometimes exported as JSON numbers; they are strings of digits.
    if isinstance(pnid, int) and not isinstance(pnid, bool) and 0 <= pnid < 10**40:
        item = {**item, "phoneNumberId": str(pnid)}
    entry_id = _entry_id(item)
    errors: list[str] = []
    for key in REQUIRED:
        value = item.get(key)
        if value is None or (isinstance(value, str) and not value.strip()):
            errors.append(f"`{key}` is required")
    for key in STRING_FIELDS:
        value = item.get(key)
        if value is not None and not isinstance(value, str):
            if key == "id" and isinstance(value, int | float) and not isinstance(value, bool):
                continue  # the registry's own id is only used in messages
            errors.append(f"`{key}` must be a string, got {type(value).__name__}")
        elif isinstance(value, str) and not _is_storable(value):
            errors.append(f"`{key}` contains a NUL or an invalid Unicode character")
        elif isinstance(value, str) and key in MAX_LENGTHS and len(value.strip()) > MAX_LENGTHS[key]:
            errors.append(f"`{key}` is longer than {MAX_LENGTHS[key]} characters")
    pnid = item.get("phoneNumberId")
    if isinstance(pnid, str) and pnid.strip() and _is_storable(pnid) and not is_meta_id(pnid.strip()):
        if not PLACEHOLDER_ID.fullmatch(pnid.strip()):
            errors.append(f"`phoneNumberId` {pnid.strip()[:40]!r} is neither Meta's numeric id nor a wsp-… placeholder")
    if "isActive" in item and not isinstance(item["isActive"], bool):
        errors.append(f"`isActive` must be true or false, got {json.dumps(item['isActive'])}")
    display = item.get("displayNumber")
    e164 = e164_or_none(display) if isinstance(display, str) and display else None
    if isinstance(display, str) and display and e164 is None:
        errors.append(f"`displayNumber` {display!r} is not a possible phone number in international form (+CC …)")
    if errors:
        problems.extend(RegistryProblem(index, entry_id, message) for message in errors)
        return None

    def text(key: str) -> str | None:
        value = item.get(key)
        return value.strip() if isinstance(value, str) else None

    return RegistryEntry(
        index=index,
        entry_id=entry_id,
        phone_number_id=text("phoneNumberId") or "",
        display_number=text("displayNumber") or "",
        e164=e164 or "",
        alias=text("alias") or text("displayNumber") or "",
        access_token=text("accessToken"),
        verify_token=text("verifyToken"),
        waba_id=text("wabaId"),
        is_active=item.get("isActive", True),
        client_slug=text("client") or None,
    )


def _check_duplicates(entries: list[RegistryEntry], problems: list[RegistryProblem]) -> None:
    """Two entries may not share a Meta id, nor be the same number however it is written."""
    checks = [
        (lambda e: e.phone_number_id, lambda e: f"phoneNumberId {e.phone_number_id} repeats"),
        (lambda e: e.e164, lambda e: f"displayNumber {e.e164} is also"),
    ]
    for key, describe in checks:
        first_by_key: dict[str, RegistryEntry] = {}
        for entry in entries:
            first = first_by_key.setdefault(key(entry), entry)
            if first is not entry:
                message = f"{describe(entry)} entry {first.index} (id {first.entry_id})"
                problems.append(RegistryProblem(entry.index, entry.entry_id, message))
