"""Recipients into a campaign, from a CSV/XLSX file or from the client's contacts (docs/campaigns.md "Import").

A file is read whole, every row checked (phone, the values the message needs) before anything is written, and
then applied in a handful of queries: one read of the contacts it names, one read of the campaign's recipients,
bulk inserts. Every import leaves a `RecipientImport` with the rows it refused and why, applied or not.
"""

from __future__ import annotations

import codecs
import csv
import datetime as dt
import io
import logging
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import PurePath
from typing import Any

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from campaigns.models import Campaign, Recipient, RecipientImport
from campaigns.rendering import (
    MissingVariables,
    Rendered,
    TemplateSyntaxProblem,
    campaign_render,
    campaign_required_columns,
    campaign_texts,
    column_key,
    variables_of,
)
from campaigns.services.progress import campaign_progress_publish
from conversations.identity import PhoneIdentity, PhoneIdentityError, phone_identity
from conversations.models import Contact, Conversation

logger = logging.getLogger(__name__)

# Header names (as `column_key` makes them) taken for the phone column; the first such column is used.
PHONE_COLUMNS = ("phone", "telefono", "celular", "movil", "whatsapp", "numero", "number", "mobile")
# Columns whose value names a contact created by the import.
NAME_COLUMNS = ("name", "nombre")
MAX_STORED_ERRORS = 1000
BATCH_SIZE = 1000

_XLSX_SUFFIXES = {".xlsx", ".xlsm"}
_TEXT_SUFFIXES = {"", ".csv", ".txt", ".tsv"}
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # Excel 97-2003 (.xls) and other old Office files
_DELIMITERS = (",", ";", "\t")

Mode = RecipientImport.Mode


class ImportRefused(Exception):
    """The file (or request) cannot be imported at all; nothing was written. `message` is for people."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _Table:
    """The non-empty rows of a file as (line, cells); `extra_cells_are_errors` for CSV, where a value beyond the
    header is almost always a value holding the delimiter without quotes."""

    rows: list[tuple[int, list[str]]]
    extra_cells_are_errors: bool
    delimiter: str = ""


@dataclass
class _Good:
    line: int | None
    identity: PhoneIdentity
    variables: dict[str, str]
    name: str


@dataclass
class _Errors:
    """Row errors in the order found, the first MAX_STORED_ERRORS kept; `count` is the true number."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0

    def add(self, line: int | None, reason: str) -> None:
        self.count += 1
        if len(self.kept) < MAX_STORED_ERRORS:
            self.kept.append({"line": line, "reason": reason})

    def stored(self) -> list[dict[str, Any]]:
        beyond = self.count - len(self.kept)
        return self.kept + ([{"line": None, "reason": f"… and {beyond} more"}] if beyond else [])


# --- public services ----------------------------------------------------------------------------------------


@transaction.atomic
def recipients_import(
    *,
    campaign: Campaign,
    filename: str,
    data: bytes,
    mode: str,
    user: AbstractBaseUser | None = None,
) -> RecipientImport:
    """Add the rows of a CSV or XLSX file to a campaign that has not started; returns the import's record.

    The first non-empty row is the header; line numbers are the file's, as a person sees them (header on line 1,
    first data row on line 2); empty rows are ignored. The phone column is the first one named like
    PHONE_COLUMNS; every other column becomes a variable of the recipient, by `column_key` name.

    Phones are read by `phone_identity` as given ("+51 987 654 321", or digits only as a WhatsApp id:
    "51987654321"); a value without "+" that fails is tried once more with "+" in front ("51 987 654 321"), so
    the country code is always required. The reason shown for a bad phone is the first attempt's.

    A row is refused when its phone is not a phone, when the message lacks a value it needs, or when the
    message would be empty. Rows of one person (the same identity key, national variants included) are merged:
    the first good row wins. Rows of a contact already in the campaign are merged too; opted-out contacts are
    added as skipped. `mode` all_or_nothing writes nothing (not even contacts) when any row is refused, but
    still records the import (applied=False, added/merged/skipped 0); keep_good adds the good rows.

    Raises ImportRefused (nothing written) for a campaign that has started, a file that is not a CSV or XLSX
    table, too big, without a phone column, with a repeated column, or without a column the message needs."""
    if mode not in Mode.values:
        raise ImportRefused(f"Unknown import mode “{mode}”: use {' or '.join(Mode.values)}.")
    campaign = _locked_editable(campaign)
    table = _read_table(filename, data)
    if not table.rows:
        raise ImportRefused(f"The file “{filename}” has no rows: the first row must name the columns.")
    header_line, header = table.rows[0]
    if len(table.rows) == 1:
        raise ImportRefused(f"The file “{filename}” has a header (line {header_line}) but no rows below it.")
    keys, phone_index = _header(header)
    _require_columns(campaign, header, keys)
    # The phone column is a variable only when the message uses it (its value then is the E.164 number).
    used = {placeholder.key for text in campaign_texts(campaign) for placeholder in variables_of(text)}
    phone_key = keys[phone_index] if keys[phone_index] in used else ""
    width = len(header)

    errors = _Errors()
    good: list[_Good] = []
    for line, cells in table.rows[1:]:
        if table.extra_cells_are_errors and any(cell.strip() for cell in cells[width:]):
            delimiter = {"\t": "tab"}.get(table.delimiter, f"“{table.delimiter}”")
            errors.add(
                line,
                f"line {line}: {len(cells)} values but the header has {width} columns "
                f"(a value that contains {delimiter} must be in double quotes)",
            )
            continue
        raw_phone = cells[phone_index].strip() if phone_index < len(cells) else ""
        if not raw_phone:
            errors.add(line, f"line {line}: no phone number")
            continue
        try:
            identity = _phone(raw_phone)
        except PhoneIdentityError as exc:
            errors.add(line, f"line {line}: “{raw_phone}” is not a phone number: {exc}")
            continue
        variables = {
            key: (cells[index].strip() if index < len(cells) else "")
            for index, key in enumerate(keys)
            if key and index != phone_index
        }
        if phone_key:
            variables[phone_key] = identity.e164
        problem = _render_problem(campaign, variables)
        if problem:
            errors.add(line, f"line {line}: {problem}")
            continue
        name = next((variables[key] for key in NAME_COLUMNS if variables.get(key)), "")
        good.append(_Good(line, identity, variables, name))

    record = RecipientImport(
        campaign=campaign,
        source=filename[:300],
        mode=mode,
        rows=len(table.rows) - 1,
        rejected=errors.count,
        errors=errors.stored(),
        created_by=user,
    )
    if errors.count and mode == Mode.ALL_OR_NOTHING:
        record.applied = False
    else:
        record.applied = True
        record.added, record.merged, record.skipped = _apply(campaign, good)
    record.save()
    _log(campaign, record)
    return record


@transaction.atomic
def recipients_add_from_contacts(
    *,
    campaign: Campaign,
    queue=None,
    number=None,
    active_since: dt.datetime | None = None,
    search: str = "",
    user: AbstractBaseUser | None = None,
) -> RecipientImport:
    """Add the client's contacts to a campaign that has not started; returns the import's record.

    Filters combine with AND: a conversation in `queue`, on `number` and with its last message at or after
    `active_since` (one conversation meeting all three), and a name or phone containing `search`. Without
    filters: every contact of the client with a phone or WhatsApp id. Each contact's variables are its name
    (as `name` and `nombre`) and `phone`. Contacts missing a value the message needs are listed as errors (line
    None) and the others added (keep_good); opted-out contacts are added as skipped; contacts already in the
    campaign are merged. Raises ImportRefused for a campaign that has started, or a queue or number of another
    client."""
    campaign = _locked_editable(campaign)
    for label, thing in (("queue", queue), ("number", number)):
        if thing is not None and thing.client_id != campaign.client_id:
            raise ImportRefused(f"The {label} “{thing}” belongs to another client.")
    _required_columns(campaign)  # refuses a message whose {{ }} are malformed

    contacts = Contact.objects.filter(client_id=campaign.client_id).filter(~Q(phone="") | ~Q(wa_id=""))
    conversation_filter: dict[str, Any] = {}
    if queue is not None:
        conversation_filter["queue"] = queue
    if number is not None:
        conversation_filter["number"] = number
    if active_since is not None:
        conversation_filter["last_message_at__gte"] = active_since
    if conversation_filter:
        contacts = contacts.filter(Exists(Conversation.objects.filter(contact=OuterRef("pk"), **conversation_filter)))
    search = (search or "").strip()
    if search:
        matches = Q(name__icontains=search) | Q(phone__icontains=search)
        digits = re.sub(r"\D", "", search)
        if digits and digits != search:  # "987 654 321" finds +51987654321
            matches |= Q(phone__contains=digits)
        contacts = contacts.filter(matches)

    errors = _Errors()
    entries: list[tuple[int, dt.datetime | None, _Good]] = []
    rows = 0
    for pk, name, phone, wa_id, opted_out_at in contacts.order_by("pk").values_list(
        "pk", "name", "phone", "wa_id", "opted_out_at"
    ):
        rows += 1
        label = f"Contact {name} ({phone or wa_id})" if name else f"Contact {phone or wa_id}"
        try:
            identity = _phone(phone or wa_id, file=False)
        except PhoneIdentityError as exc:
            errors.add(None, f"{label}: the phone cannot be used: {exc}")
            continue
        variables = {"name": name, "nombre": name, "phone": identity.e164}
        problem = _render_problem(campaign, variables)
        if problem:
            errors.add(None, f"{label}: {problem}")
            continue
        entries.append((pk, opted_out_at, _Good(None, identity, variables, name)))

    record = RecipientImport(
        campaign=campaign,
        source=_contacts_source(queue, number, active_since, search),
        mode=Mode.KEEP_GOOD,
        applied=True,
        rows=rows,
        rejected=errors.count,
        errors=errors.stored(),
        created_by=user,
    )
    record.added, record.merged, record.skipped = _add(campaign, entries)
    record.save()
    _log(campaign, record)
    return record


# --- writing ------------------------------------------------------------------------------------------------


def _locked_editable(campaign: Campaign) -> Campaign:
    """The campaign, locked (imports into one campaign, and its start, wait for each other)."""
    campaign = Campaign.objects.select_for_update(of=("self",)).select_related("number", "template").get(pk=campaign.pk)
    if not campaign.is_editable:
        raise ImportRefused("Recipients can be added only before the campaign starts.")
    return campaign


def _apply(campaign: Campaign, good: list[_Good]) -> tuple[int, int, int]:
    """Add the good rows of a file, creating the contacts it names; returns (added, merged, skipped)."""
    unique: dict[str, _Good] = {}
    for row in good:
        unique.setdefault(row.identity.key, row)
    merged_in_file = len(good) - len(unique)
    contacts = _contacts_by_key(campaign.client_id, list(unique))
    missing = [key for key in unique if key not in contacts]
    if missing:
        # Another import (or an inbound message) may create the same person meanwhile: skip what conflicts,
        # then read back what is there now.
        Contact.objects.bulk_create(
            [
                Contact(
                    client_id=campaign.client_id,
                    phone=unique[key].identity.e164,
                    identity_key=key,
                    wa_id=unique[key].identity.wa_id,
                    name=unique[key].name[:200],
                )
                for key in missing
            ],
            batch_size=BATCH_SIZE,
            ignore_conflicts=True,
        )
        contacts.update(_contacts_by_key(campaign.client_id, missing))
    added, merged, skipped = _add(campaign, [(*contacts[key], row) for key, row in unique.items()])
    return added, merged + merged_in_file, skipped


def _contacts_by_key(client_id: int, keys: list[str]) -> dict[str, tuple[int, dt.datetime | None]]:
    """(pk, opted_out_at) of the client's contacts with these identity keys."""
    found: dict[str, tuple[int, dt.datetime | None]] = {}
    for chunk in _chunks(keys):
        for key, pk, opted_out_at in (
            Contact.objects.filter(client_id=client_id, identity_key__in=chunk)
            .order_by()
            .values_list("identity_key", "pk", "opted_out_at")
        ):
            found[key] = (pk, opted_out_at)
    return found


def _add(campaign: Campaign, entries: list[tuple[int, dt.datetime | None, _Good]]) -> tuple[int, int, int]:
    """Recipients for (contact id, opted out at, row), one per contact; contacts already in the campaign are
    merged, opted-out ones added as skipped. Returns (added, merged, skipped)."""
    in_campaign: set[int] = set()
    for chunk in _chunks([contact_id for contact_id, _opted_out_at, _row in entries]):
        in_campaign.update(
            Recipient.objects.filter(campaign=campaign, contact_id__in=chunk)
            .order_by()
            .values_list("contact_id", flat=True)
        )
    now = timezone.now()
    recipients: list[Recipient] = []
    merged = skipped = 0
    for contact_id, opted_out_at, row in entries:
        if contact_id in in_campaign:
            merged += 1
            continue
        in_campaign.add(contact_id)
        recipient = Recipient(
            campaign=campaign, contact_id=contact_id, phone=row.identity.e164, variables=row.variables, line=row.line
        )
        if opted_out_at is not None:
            skipped += 1
            recipient.status, recipient.status_at = Recipient.Status.SKIPPED, now
            recipient.error_code = "opted_out"
            recipient.error_reason = f"Opted out on {opted_out_at.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC"
        recipients.append(recipient)
    Recipient.objects.bulk_create(recipients, batch_size=BATCH_SIZE)
    if recipients:
        campaign_progress_publish(campaign)
    return len(recipients) - skipped, merged, skipped


def _chunks(items: list, size: int = 20 * BATCH_SIZE) -> Iterator[list]:
    """`items` in slices small enough for one IN (...) each; one slice for any ordinary import."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _log(campaign: Campaign, record: RecipientImport) -> None:
    logger.info(
        "campaign %s: import %s (%s, applied=%s): %s rows, %s added, %s merged, %s skipped, %s rejected",
        campaign.pk,
        record.pk,
        record.mode,
        record.applied,
        record.rows,
        record.added,
        record.merged,
        record.skipped,
        record.rejected,
    )


# --- checking -----------------------------------------------------------------------------------------------


def _phone(value: str, *, file: bool = True) -> PhoneIdentity:
    """`phone_identity(value)`; in a file, a value without "+" that fails is tried again with "+" in front.

    Without "+", the country code is a guess from the digits: a national number ("987654321", a Peruvian
    mobile) reads as another country's (+98 7654321, Iran). So in a file, a value written without "+" is
    taken only when it makes a valid number; with "+" a possible one is enough (new ranges, test numbers). When
    both attempts fail, the error is the first one's ("must start with + and the country code")."""
    try:
        identity = phone_identity(value)
    except PhoneIdentityError as exc:
        if "+" in value or not file:
            raise
        first = exc
        try:
            identity = phone_identity("+" + value)
        except PhoneIdentityError:
            raise first from None
    if file and not identity.valid and "+" not in value:
        raise PhoneIdentityError(
            f"read as {identity.e164} it is not a valid number; write it with + and the country code"
        )
    return identity


def _header(header: list[str]) -> tuple[list[str], int]:
    """The header's keys (blank for untitled columns, which are ignored) and the index of the phone column."""
    keys = [column_key(name) for name in header]
    names = [name.strip() for name in header if name.strip()]
    first: dict[str, str] = {}
    for name, key in zip(header, keys, strict=True):
        if not key:
            continue
        if key in first:
            same = f"“{first[key]}” and “{name.strip()}”" if first[key] != name.strip() else f"“{name.strip()}”"
            raise ImportRefused(f"The file has the column {same} twice (as “{key}”): rename or remove one.")
        first[key] = name.strip()
    phone_index = next((index for index, key in enumerate(keys) if key in PHONE_COLUMNS), None)
    if phone_index is None:
        raise ImportRefused(
            "The file has no phone column: name one "
            + ", ".join(f"“{name}”" for name in PHONE_COLUMNS[:3])
            + " or “whatsapp”; columns: "
            + (", ".join(names) or "none")
        )
    return keys, phone_index


def _required_columns(campaign: Campaign) -> list[str]:
    try:
        return campaign_required_columns(campaign)
    except TemplateSyntaxProblem as exc:
        raise ImportRefused(f"The campaign's message cannot be filled in: {exc}") from None


def _require_columns(campaign: Campaign, header: list[str], keys: list[str]) -> None:
    """Refuse a file without a column the message needs (or a message whose {{ }} are malformed)."""
    required = _required_columns(campaign)
    absent = [key for key in required if key not in keys]
    if absent:
        what = "template values use" if campaign.template_id else "message uses"
        uses = ", ".join("{{" + key + "}}" for key in absent)
        columns = ", ".join(f"“{key}”" for key in absent)
        plural = "columns" if len(absent) > 1 else "column"
        found = ", ".join(name.strip() for name in header if name.strip())
        raise ImportRefused(f"The {what} {uses} but the file has no {columns} {plural}; columns: {found}")


def _render_problem(campaign: Campaign, variables: dict[str, str]) -> str:
    """Why the campaign's message cannot be sent with these values ("" when it can)."""
    try:
        rendered: Rendered = campaign_render(campaign, variables)
    except MissingVariables as exc:
        return str(exc)
    if rendered.template is None:
        return "" if rendered.text else "the message would be empty"
    for component in rendered.template.components:
        for position, parameter in enumerate(component.get("parameters", []), start=1):
            if not parameter.get("text"):
                return f"value {{{{{position}}}}} of the template would be empty"
    return ""


def _contacts_source(queue, number, active_since: dt.datetime | None, search: str) -> str:
    parts = []
    if queue is not None:
        parts.append(f"queue {queue.name}")
    if number is not None:
        parts.append(f"number {number.alias}")
    if active_since is not None:
        local = timezone.localtime(active_since) if timezone.is_aware(active_since) else active_since
        shown = f"{local:%Y-%m-%d}" if local.time() == dt.time(0) else f"{local:%Y-%m-%d %H:%M}"
        parts.append(f"active since {shown}")
    if search:
        parts.append(f"search “{search}”")
    return ("Contacts: " + (", ".join(parts) or "all"))[:300]


# --- reading files ------------------------------------------------------------------------------------------


def _read_table(filename: str, data: bytes) -> _Table:
    """The file's non-empty rows, each with its line number. Raises ImportRefused for what is not a table."""
    shown = filename or "the file"
    if not data:
        raise ImportRefused(f"The file “{shown}” is empty.")
    limit = settings.CAMPAIGN_IMPORT_MAX_BYTES
    if len(data) > limit:
        raise ImportRefused(
            f"The file “{shown}” is {_megabytes(len(data))}; files up to {_megabytes(limit)} can be imported."
        )
    suffix = PurePath(filename or "").suffix.lower()
    if suffix in _XLSX_SUFFIXES or data.startswith(_ZIP_MAGIC):
        return _read_xlsx(shown, data)
    if suffix == ".xls" or data.startswith(_OLE_MAGIC):
        raise ImportRefused(
            f"“{shown}” is an Excel 97-2003 file (.xls), which cannot be read: save it as Excel workbook (.xlsx) "
            "or CSV and import that."
        )
    if suffix not in _TEXT_SUFFIXES:
        raise ImportRefused(f"“{shown}” is not a CSV or Excel (.xlsx) file.")
    return _read_csv(shown, data)


def _read_csv(shown: str, data: bytes) -> _Table:
    text = _decode(data)
    if "\x00" in text or text.startswith("%PDF"):
        raise ImportRefused(f"“{shown}” is not a CSV file (it holds binary data).")
    delimiter = _delimiter(text)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[tuple[int, list[str]]] = []
    previous = 0
    try:
        for cells in reader:
            line, previous = previous + 1, reader.line_num
            if any(cell.strip() for cell in cells):
                rows.append((line, cells))
    except csv.Error as exc:
        raise ImportRefused(f"“{shown}” cannot be read as CSV at line {previous + 1}: {exc}.") from None
    return _Table(rows=rows, extra_cells_are_errors=True, delimiter=delimiter)


def _decode(data: bytes) -> str:
    """UTF-8 (with or without BOM) or UTF-16 with BOM; otherwise Windows-1252 (Excel's "CSV" on Windows), and
    Latin-1 for the few bytes Windows-1252 leaves undefined."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    for encoding in ("utf-8", "cp1252"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _delimiter(text: str) -> str:
    """The delimiter among , ; and tab that the header line (the first non-blank one) uses most, outside quotes;
    a comma for a header of one column."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    counts = dict.fromkeys(_DELIMITERS, 0)
    quoted = False
    for char in header:
        if char == '"':
            quoted = not quoted
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(_DELIMITERS, key=lambda d: counts[d])  # ties: the first in _DELIMITERS
    return best if counts[best] else ","


def _read_xlsx(shown: str, data: bytes) -> _Table:
    from openpyxl import load_workbook
    from openpyxl.utils.exceptions import InvalidFileException

    rows: list[tuple[int, list[str]]] = []
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        try:
            if not workbook.worksheets:
                raise ImportRefused(f"“{shown}” has no worksheet.")
            sheet = workbook.worksheets[0]
            # Some writers store a wrong size (e.g. "A1"); read-only sheets would stop there. Read every cell.
            sheet.reset_dimensions()
            # min_row=1: a read-only sheet fills the gaps between stored rows, so the index is the row number.
            for line, values in enumerate(sheet.iter_rows(min_row=1, values_only=True), start=1):
                cells = _cells(values)
                if any(cell.strip() for cell in cells):
                    rows.append((line, cells))
        finally:
            workbook.close()
    except ImportRefused:
        raise
    except (zipfile.BadZipFile, InvalidFileException, KeyError, ValueError, TypeError, OSError, EOFError) as exc:
        raise ImportRefused(
            f"“{shown}” cannot be read as an Excel workbook (.xlsx): {exc or type(exc).__name__}. Save it again "
            "as .xlsx or CSV."
        ) from None
    return _Table(rows=rows, extra_cells_are_errors=False)


def _cells(values: Iterable[Any]) -> list[str]:
    return [_cell_text(value) for value in values]


def _cell_text(value: Any) -> str:
    """A cell as the person typed it: 51987654321 not 51987654321.0, dates as ISO text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, Decimal):
        return str(int(value)) if value == value.to_integral_value() else str(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="seconds" if value.second else "minutes")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return str(value)


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB".replace(".0 MB", " MB")
