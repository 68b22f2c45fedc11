"""Recipients into a campaign from a CSV/XLSX file or from the client's contacts (campaigns/services/imports.py)."""

from __future__ import annotations

import datetime as dt
import io
import threading
import time
import zipfile

import pytest
from django.db import connection, transaction
from openpyxl import Workbook

from campaigns.models import Campaign, Recipient, RecipientImport
from campaigns.services import ImportRefused, recipients_add_from_contacts, recipients_import
from conversations.models import Contact
from tests.campaigns.factories import CampaignFactory, RecipientFactory, TemplateCampaignFactory
from tests.conversations.factories import ContactFactory, ConversationFactory
from tests.crm.factories import UserFactory
from tests.queues.factories import QueueFactory

pytestmark = pytest.mark.django_db

KEEP = RecipientImport.Mode.KEEP_GOOD
ALL = RecipientImport.Mode.ALL_OR_NOTHING


def csv_bytes(*lines: str, encoding: str = "utf-8", newline: str = "\n") -> bytes:
    return newline.join(lines).encode(encoding) + newline.encode(encoding)


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for index, row in enumerate(rows, start=1):
        for column, value in enumerate(row, start=1):
            if value is not None:
                sheet.cell(row=index, column=column, value=value)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def recipients_of(campaign: Campaign) -> list[tuple[str, dict, int | None, str]]:
    return [
        (r.phone, r.variables, r.line, r.status) for r in Recipient.objects.filter(campaign=campaign).order_by("line")
    ]


def counts() -> tuple[int, int, int]:
    return Recipient.objects.count(), Contact.objects.count(), RecipientImport.objects.count()


@pytest.fixture
def campaign():
    return CampaignFactory()


# --- files that import --------------------------------------------------------------------------------------


def test_a_csv_file_adds_its_rows_and_creates_their_contacts(campaign):
    # Given a CSV with three people and a user importing it
    user = UserFactory()
    data = csv_bytes(
        "phone,nombre,pedido",
        "+51 911 000 001,Ana,A-1",
        "+51911000002,Beto,B-2",
        "51911000003,Caro,C-3",
    )

    # When it is imported
    record = recipients_import(campaign=campaign, filename="clientes.csv", data=data, mode=KEEP, user=user)

    # Then every row is a pending recipient with its columns, line and E.164 phone
    assert recipients_of(campaign) == [
        ("+51911000001", {"nombre": "Ana", "pedido": "A-1"}, 2, "pending"),
        ("+51911000002", {"nombre": "Beto", "pedido": "B-2"}, 3, "pending"),
        ("+51911000003", {"nombre": "Caro", "pedido": "C-3"}, 4, "pending"),
    ]
    # ... each a new contact of the campaign's client, named from the file
    contacts = Contact.objects.filter(client=campaign.client).order_by("phone")
    assert [(c.phone, c.identity_key, c.wa_id, c.name) for c in contacts] == [
        ("+51911000001", "+51911000001", "51911000001", "Ana"),
        ("+51911000002", "+51911000002", "51911000002", "Beto"),
        ("+51911000003", "+51911000003", "51911000003", "Caro"),
    ]
    assert {r.contact_id for r in campaign.recipients.all()} == {c.pk for c in contacts}
    # ... and the import is recorded
    record.refresh_from_db()
    assert (record.source, record.mode, record.applied, record.created_by) == ("clientes.csv", KEEP, True, user)
    assert (record.rows, record.added, record.merged, record.skipped, record.rejected) == (3, 3, 0, 0, 0)
    assert record.errors == []


@pytest.mark.parametrize("filename", ["lista.xlsx", "descarga"])  # by suffix, or by the zip signature
def test_an_xlsx_file_reads_integer_phones_and_dates_as_text(campaign, filename):
    # Given a workbook whose phones are number cells, with a date column and an empty row
    data = xlsx_bytes(
        [
            ["Teléfono", "Nombre", "Cita"],
            [51911000001, "Ana", dt.date(2026, 11, 3)],
            [None, None, None],
            [51911000002.0, "Beto", dt.datetime(2026, 11, 4, 9, 30)],
        ]
    )

    record = recipients_import(campaign=campaign, filename=filename, data=data, mode=ALL)

    # Then the phones are whole numbers, dates ISO text, and lines the sheet's row numbers
    assert recipients_of(campaign) == [
        ("+51911000001", {"nombre": "Ana", "cita": "2026-11-03"}, 2, "pending"),
        ("+51911000002", {"nombre": "Beto", "cita": "2026-11-04 09:30"}, 4, "pending"),
    ]
    assert (record.applied, record.rows, record.added, record.rejected) == (True, 2, 2, 0)


def test_an_xlsx_file_whose_stored_size_is_wrong_is_read_whole(campaign):
    # Given a workbook whose sheet claims to be one cell big (as some exporters write it)
    data = xlsx_bytes([["phone", "nombre"], [51911000001, "Ana"], [None, None], [51911000002, "Beto"]])
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    sheet = parts["xl/worksheets/sheet1.xml"]
    assert b'<dimension ref="A1:B4" />' in sheet
    parts["xl/worksheets/sheet1.xml"] = sheet.replace(b'<dimension ref="A1:B4" />', b'<dimension ref="A1" />')
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for name, content in parts.items():
            target.writestr(name, content)

    recipients_import(campaign=campaign, filename="export.xlsx", data=out.getvalue(), mode=ALL)

    assert recipients_of(campaign) == [
        ("+51911000001", {"nombre": "Ana"}, 2, "pending"),
        ("+51911000002", {"nombre": "Beto"}, 4, "pending"),
    ]


def test_a_utf8_bom_file_with_semicolons_and_accented_headers(campaign):
    data = b"\xef\xbb\xbf" + csv_bytes("Teléfono;Nombre;Ciudad", "+51911000001;José;Lima, Perú", newline="\r\n")

    recipients_import(campaign=campaign, filename="export.csv", data=data, mode=KEEP)

    assert recipients_of(campaign) == [("+51911000001", {"nombre": "José", "ciudad": "Lima, Perú"}, 2, "pending")]
    assert Contact.objects.get(client=campaign.client).name == "José"


def test_a_latin1_file(campaign):
    data = csv_bytes("Celular,Nombre", "+51911000001,Muñoz", "+51911000002,Pérez", encoding="latin-1")

    recipients_import(campaign=campaign, filename="viejo.csv", data=data, mode=KEEP)

    assert [r[1]["nombre"] for r in recipients_of(campaign)] == ["Muñoz", "Pérez"]


def test_a_tab_separated_file(campaign):
    data = csv_bytes("whatsapp\tnombre", "+51911000001\tAna Lucía")

    recipients_import(campaign=campaign, filename="lista.tsv", data=data, mode=KEEP)

    assert recipients_of(campaign) == [("+51911000001", {"nombre": "Ana Lucía"}, 2, "pending")]


def test_a_fallback_accepts_an_empty_value_and_a_missing_column():
    campaign = CampaignFactory(message="Hola {{nombre|amigo}}")

    recipients_import(campaign=campaign, filename="a.csv", data=csv_bytes("phone,nombre", "+51911000001,"), mode=ALL)
    record = recipients_import(campaign=campaign, filename="b.csv", data=csv_bytes("phone", "+51911000002"), mode=ALL)

    assert recipients_of(campaign) == [
        ("+51911000001", {"nombre": ""}, 2, "pending"),
        ("+51911000002", {}, 2, "pending"),
    ]
    assert (record.applied, record.added, record.rejected) == (True, 1, 0)


def test_the_phone_column_is_a_variable_when_the_message_uses_it():
    campaign = CampaignFactory(message="Hola {{nombre}}, te escribimos al {{telefono}}")

    recipients_import(
        campaign=campaign, filename="a.csv", data=csv_bytes("Telefono,Nombre", "51 911 000 001,Ana"), mode=ALL
    )

    assert recipients_of(campaign) == [("+51911000001", {"nombre": "Ana", "telefono": "+51911000001"}, 2, "pending")]


# --- bad rows -----------------------------------------------------------------------------------------------


def test_bad_rows_are_listed_with_the_lines_a_person_sees_and_the_good_ones_kept(campaign):
    # Given a file with a two-line quoted value and an empty line before its bad rows
    data = csv_bytes(
        "phone,nombre,nota",
        '+51911000001,Ana,"dos',
        'lineas"',
        "",
        "abc,Beto,x",
        "+51911000002,Caro,y",
        "987 654 321,Dani,z",
        ",Eva,sin teléfono",
        "+51911000003,Fede,a,b",
        "+51911000004,,sin nombre",
    )

    record = recipients_import(campaign=campaign, filename="mixto.csv", data=data, mode=KEEP)

    # Then the bad rows are refused with the file's own line numbers
    record.refresh_from_db()
    assert record.errors == [
        {"line": 5, "reason": "line 5: “abc” is not a phone number: phone number contains letters: 'abc'"},
        {
            "line": 7,
            "reason": "line 7: “987 654 321” is not a phone number: read as +987654321 it is not a valid number; "
            "write it with + and the country code",
        },
        {"line": 8, "reason": "line 8: no phone number"},
        {
            "line": 9,
            "reason": "line 9: 4 values but the header has 3 columns (a value that contains “,” must be in double "
            "quotes)",
        },
        {"line": 10, "reason": "line 10: no value for {{nombre}}"},
    ]
    assert (record.applied, record.rows, record.added, record.rejected) == (True, 7, 2, 5)
    # ... and the good ones added
    assert recipients_of(campaign) == [
        ("+51911000001", {"nombre": "Ana", "nota": "dos\nlineas"}, 2, "pending"),
        ("+51911000002", {"nombre": "Caro", "nota": "y"}, 6, "pending"),
    ]
    assert Contact.objects.filter(client=campaign.client).count() == 2


def test_all_or_nothing_with_one_bad_row_writes_nothing_but_the_record(campaign):
    ContactFactory(client=campaign.client, phone="+51911000009")
    before = counts()
    data = csv_bytes("phone,nombre", "+51911000001,Ana", "+51911000002,", "+51911000009,Ivo")

    record = recipients_import(campaign=campaign, filename="todo.csv", data=data, mode=ALL)

    recipients, contacts, imports = counts()
    assert (recipients, contacts, imports) == (before[0], before[1], before[2] + 1)
    record.refresh_from_db()
    assert (record.applied, record.rows, record.added, record.merged, record.skipped, record.rejected) == (
        False,
        3,
        0,
        0,
        0,
        1,
    )
    assert record.errors == [{"line": 3, "reason": "line 3: no value for {{nombre}}"}]


def test_keep_good_adds_the_good_rows_and_lists_the_bad(campaign):
    data = csv_bytes("phone,nombre", "+51911000001,Ana", "+51911000002,", "+51911000003,Caro")

    record = recipients_import(campaign=campaign, filename="parcial.csv", data=data, mode=KEEP)

    assert [r[0] for r in recipients_of(campaign)] == ["+51911000001", "+51911000003"]
    assert (record.applied, record.added, record.rejected) == (True, 2, 1)
    assert RecipientImport.objects.get().errors == [{"line": 3, "reason": "line 3: no value for {{nombre}}"}]


def test_stored_errors_stop_at_a_thousand_but_the_count_is_true(campaign):
    data = csv_bytes("phone,nombre", *(f"x{n},N" for n in range(1205)), "+51911000001,Ana")

    record = recipients_import(campaign=campaign, filename="malo.csv", data=data, mode=KEEP)

    record.refresh_from_db()
    assert record.rejected == 1205
    assert len(record.errors) == 1001
    assert record.errors[999]["line"] == 1001
    assert record.errors[-1] == {"line": None, "reason": "… and 205 more"}
    assert record.added == 1


# --- refused files ------------------------------------------------------------------------------------------


def test_a_missing_required_column_refuses_the_file_and_writes_nothing():
    campaign = CampaignFactory(message="Hola {{nombre}}, tu pedido {{pedido}} llegó")
    before = counts()

    with pytest.raises(ImportRefused) as refused:
        recipients_import(
            campaign=campaign, filename="a.csv", data=csv_bytes("phone,nombre", "+51911000001,Ana"), mode=KEEP
        )

    assert refused.value.message == (
        "The message uses {{pedido}} but the file has no “pedido” column; columns: phone, nombre"
    )
    assert counts() == before


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("nombre,ciudad", "The file has no phone column: name one “phone”, “telefono”, “celular” or “whatsapp”; "
         "columns: nombre, ciudad"),
        ("phone,Nombre,nombre", "The file has the column “Nombre” and “nombre” twice (as “nombre”): rename or "
         "remove one."),
    ],
)  # fmt: skip
def test_a_header_without_phone_or_with_a_repeated_column_is_refused(campaign, header, message):
    with pytest.raises(ImportRefused) as refused:
        recipients_import(campaign=campaign, filename="a.csv", data=csv_bytes(header, "1,2,3"), mode=KEEP)

    assert refused.value.message == message
    assert not RecipientImport.objects.exists()


@pytest.mark.parametrize(
    ("filename", "data", "says"),
    [
        ("lista.xls", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 200, "Excel 97-2003"),
        ("lista.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "is not a CSV or Excel (.xlsx) file"),
        ("lista.csv", b"%PDF-1.4\n1 0 obj\x00\x00", "is not a CSV file"),
        ("lista.xlsx", b"phone,nombre\n+51911000001,Ana\n", "cannot be read as an Excel workbook"),
        ("lista.csv", b"", "is empty"),
        ("lista.csv", b"\n\n  \n", "has no rows"),
        ("lista.csv", b"phone,nombre\n", "has a header (line 1) but no rows below it"),
    ],
)
def test_what_is_not_a_table_is_refused(campaign, filename, data, says):
    with pytest.raises(ImportRefused) as refused:
        recipients_import(campaign=campaign, filename=filename, data=data, mode=KEEP)

    assert says in refused.value.message
    assert counts() == (0, 0, 0)


def test_a_file_larger_than_the_limit_is_refused(campaign, settings):
    settings.CAMPAIGN_IMPORT_MAX_BYTES = 1024 * 1024
    data = csv_bytes("phone,nombre", *["+51911000001,Ana"] * 70_000)

    with pytest.raises(ImportRefused) as refused:
        recipients_import(campaign=campaign, filename="grande.csv", data=data, mode=KEEP)

    assert refused.value.message == "The file “grande.csv” is 1.1 MB; files up to 1 MB can be imported."
    assert counts() == (0, 0, 0)


@pytest.mark.parametrize("status", [Campaign.Status.RUNNING, Campaign.Status.PAUSED, Campaign.Status.COMPLETED])
def test_a_campaign_that_started_takes_no_recipients(status):
    campaign = CampaignFactory(status=status)
    data = csv_bytes("phone,nombre", "+51911000001,Ana")

    with pytest.raises(ImportRefused) as refused:
        recipients_import(campaign=campaign, filename="a.csv", data=data, mode=KEEP)
    with pytest.raises(ImportRefused) as refused_contacts:
        recipients_add_from_contacts(campaign=campaign)

    assert refused.value.message == "Recipients can be added only before the campaign starts."
    assert refused_contacts.value.message == refused.value.message
    assert counts() == (0, 0, 0)


def test_a_scheduled_campaign_still_takes_recipients():
    campaign = CampaignFactory(status=Campaign.Status.SCHEDULED)

    recipients_import(campaign=campaign, filename="a.csv", data=csv_bytes("phone,nombre", "+51911000001,A"), mode=ALL)

    assert campaign.recipients.count() == 1


# --- one person, one recipient ------------------------------------------------------------------------------


def test_duplicate_phones_in_the_file_are_merged_including_national_variants(campaign):
    data = csv_bytes(
        "phone,nombre",
        "+5215512345678,Lupita",
        "+51911000001,Ana",
        "+525512345678,Guadalupe",
        "5215512345678,Lupe",
        "+51 911 000 001,Ana otra vez",
    )

    record = recipients_import(campaign=campaign, filename="dup.csv", data=data, mode=ALL)

    # Then the first row of each person wins, the others are counted as merged (not errors)
    assert recipients_of(campaign) == [
        ("+525512345678", {"nombre": "Lupita"}, 2, "pending"),
        ("+51911000001", {"nombre": "Ana"}, 3, "pending"),
    ]
    assert (record.applied, record.rows, record.added, record.merged, record.rejected) == (True, 5, 2, 3, 0)
    mexican = Contact.objects.get(client=campaign.client, identity_key="+525512345678")
    assert (mexican.phone, mexican.wa_id, mexican.name) == ("+525512345678", "5215512345678", "Lupita")
    assert Contact.objects.filter(client=campaign.client).count() == 2


def test_an_existing_contact_is_reused_and_keeps_its_name(campaign):
    # Given the client already knows the Mexican customer by their 521 form, and another client knows the phone too
    known = ContactFactory(client=campaign.client, phone="+525512345678", name="Guadalupe Ruiz", wa_id="5215512345678")
    elsewhere = ContactFactory(phone="+51911000001", name="Otro cliente")

    data = csv_bytes("phone,nombre", "+5215512345678,Lupita", "+51911000001,Ana")
    recipients_import(campaign=campaign, filename="a.csv", data=data, mode=KEEP)

    # Then the known contact is the recipient, its name untouched; the message still uses the file's value
    recipient = campaign.recipients.get(line=2)
    assert recipient.contact_id == known.pk
    assert recipient.variables == {"nombre": "Lupita"}
    known.refresh_from_db()
    assert (known.name, known.wa_id) == ("Guadalupe Ruiz", "5215512345678")
    # ... and nothing crosses clients: the other client's contact is not used
    assert campaign.recipients.get(line=3).contact.client_id == campaign.client_id
    elsewhere.refresh_from_db()
    assert elsewhere.name == "Otro cliente"
    assert Contact.objects.filter(client=campaign.client).count() == 2


def test_a_contact_already_in_the_campaign_is_merged(campaign):
    earlier = RecipientFactory(campaign=campaign, variables={"nombre": "Ana"})

    data = csv_bytes("phone,nombre", f"{earlier.contact.phone},Ana Nueva", "+51911000002,Beto")
    record = recipients_import(campaign=campaign, filename="otra.csv", data=data, mode=KEEP)

    assert (record.added, record.merged) == (1, 1)
    earlier.refresh_from_db()
    assert earlier.variables == {"nombre": "Ana"}
    assert campaign.recipients.count() == 2


def test_an_opted_out_contact_is_added_as_skipped_with_the_reason(campaign):
    ContactFactory(
        client=campaign.client, phone="+51911000001", opted_out_at=dt.datetime(2026, 3, 1, 14, 30, tzinfo=dt.UTC)
    )

    data = csv_bytes("phone,nombre", "+51911000001,Ana", "+51911000002,Beto")
    record = recipients_import(campaign=campaign, filename="a.csv", data=data, mode=KEEP)

    assert (record.added, record.skipped, record.rejected) == (1, 1, 0)
    skipped = campaign.recipients.get(phone="+51911000001")
    assert (skipped.status, skipped.error_code, skipped.error_reason) == (
        "skipped",
        "opted_out",
        "Opted out on 2026-03-01 14:30 UTC",
    )
    assert skipped.status_at is not None
    assert campaign.recipients.get(phone="+51911000002").status == "pending"


@pytest.mark.django_db(transaction=True)
def test_a_contact_created_meanwhile_by_another_transaction_is_used():
    # Given another transaction (an inbound message, another import) has just created the same person, uncommitted
    campaign = CampaignFactory()
    created = threading.Event()
    other: list[Contact] = []

    def create_and_commit_later() -> None:
        try:
            with transaction.atomic():
                other.append(
                    Contact.objects.create(
                        client=campaign.client, phone="+51911000001", identity_key="+51911000001", name="Del webhook"
                    )
                )
                created.set()
                time.sleep(1)
        finally:
            connection.close()

    thread = threading.Thread(target=create_and_commit_later)
    thread.start()
    assert created.wait(10)

    # When the import creates contacts at the same time (it waits for that transaction, then skips the conflict)
    data = csv_bytes("phone,nombre", "+51911000001,Ana", "+51911000002,Beto")
    record = recipients_import(campaign=campaign, filename="a.csv", data=data, mode=ALL)
    thread.join()

    # Then the person has one contact, the other transaction's, and it is the recipient
    assert record.added == 2
    assert Contact.objects.filter(client=campaign.client, identity_key="+51911000001").count() == 1
    recipient = campaign.recipients.get(phone="+51911000001")
    assert recipient.contact_id == other[0].pk
    assert recipient.contact.name == "Del webhook"


# --- template campaigns -------------------------------------------------------------------------------------


def test_a_template_campaign_requires_the_columns_of_its_parameters():
    campaign = TemplateCampaignFactory()
    campaign.full_clean()  # a valid Cloud API campaign

    with pytest.raises(ImportRefused) as refused:
        recipients_import(campaign=campaign, filename="a.csv", data=csv_bytes("phone", "+51911000001"), mode=KEEP)
    assert refused.value.message == (
        "The template values use {{nombre}} but the file has no “nombre” column; columns: phone"
    )

    data = csv_bytes("phone,nombre", "+51911000001,Ana", "+51911000002,")
    record = recipients_import(campaign=campaign, filename="b.csv", data=data, mode=KEEP)

    assert recipients_of(campaign) == [("+51911000001", {"nombre": "Ana"}, 2, "pending")]
    assert record.errors == [{"line": 3, "reason": "line 3: no value for {{nombre}}"}]


# --- from contacts ------------------------------------------------------------------------------------------


def test_contacts_of_a_queue_are_added(campaign):
    # Given contacts who wrote to the Ventas queue, one to another queue, one never
    ventas = QueueFactory(client=campaign.client, name="Ventas")
    soporte = QueueFactory(client=campaign.client, name="Soporte")
    ana = ContactFactory(client=campaign.client, name="Ana", phone="+51911000001")
    nameless = ContactFactory(client=campaign.client, name="", phone="+51911000002")
    gone = ContactFactory(
        client=campaign.client, name="Ivo", phone="+51911000003", opted_out_at=dt.datetime(2026, 1, 2, tzinfo=dt.UTC)
    )
    already = RecipientFactory(campaign=campaign, contact__name="Olga", contact__phone="+51911000004")
    other = ContactFactory(client=campaign.client, name="Beto", phone="+51911000005")
    ContactFactory(client=campaign.client, name="Caro", phone="+51911000006")
    for contact in (ana, nameless, gone, already.contact):
        ConversationFactory(client=campaign.client, number=campaign.number, contact=contact, queue=ventas)
    ConversationFactory(client=campaign.client, number=campaign.number, contact=other, queue=soporte)
    user = UserFactory()

    # When the Ventas contacts are added
    record = recipients_add_from_contacts(campaign=campaign, queue=ventas, user=user)

    # Then Ana is pending, Ivo skipped, Olga merged and the nameless contact listed
    by_contact = {r.contact_id: r for r in campaign.recipients.all()}
    assert set(by_contact) == {ana.pk, gone.pk, already.contact_id}
    assert (by_contact[ana.pk].status, by_contact[ana.pk].phone, by_contact[ana.pk].line) == (
        "pending",
        "+51911000001",
        None,
    )
    assert by_contact[ana.pk].variables == {"name": "Ana", "nombre": "Ana", "phone": "+51911000001"}
    assert by_contact[gone.pk].status == "skipped"
    assert by_contact[gone.pk].error_reason == "Opted out on 2026-01-02 00:00 UTC"
    record.refresh_from_db()
    assert (record.source, record.mode, record.applied, record.created_by) == (
        "Contacts: queue Ventas",
        KEEP,
        True,
        user,
    )
    assert (record.rows, record.added, record.merged, record.skipped, record.rejected) == (4, 1, 1, 1, 1)
    assert record.errors == [{"line": None, "reason": "Contact +51911000002: no value for {{nombre}}"}]


def test_contacts_active_since_a_date_are_added(campaign):
    recent = ContactFactory(client=campaign.client, name="Reciente")
    old = ContactFactory(client=campaign.client, name="Antiguo")
    ContactFactory(client=campaign.client, name="Nunca")
    since = dt.datetime(2026, 11, 1, tzinfo=dt.UTC).astimezone(dt.timezone(dt.timedelta(hours=-5)))
    ConversationFactory(client=campaign.client, contact=recent, last_message_at=since + dt.timedelta(hours=3))
    ConversationFactory(client=campaign.client, contact=old, last_message_at=since - dt.timedelta(days=3))

    record = recipients_add_from_contacts(campaign=campaign, active_since=since)

    assert list(campaign.recipients.values_list("contact_id", flat=True)) == [recent.pk]
    assert (record.rows, record.added) == (1, 1)
    assert record.source.startswith("Contacts: active since 2026-10-31")


def test_contact_filters_combine_and_search_matches_name_or_phone(campaign):
    ventas = QueueFactory(client=campaign.client, name="Ventas")
    maria = ContactFactory(client=campaign.client, name="María", phone="+51911000001")
    mario = ContactFactory(client=campaign.client, name="Mario", phone="+51911000002")
    ContactFactory(client=campaign.client, name="Marta", phone="+51911000003")  # no conversation in Ventas
    for contact in (maria, mario):
        ConversationFactory(client=campaign.client, number=campaign.number, contact=contact, queue=ventas)

    recipients_add_from_contacts(campaign=campaign, queue=ventas, search="mar")
    assert set(campaign.recipients.values_list("contact_id", flat=True)) == {maria.pk, mario.pk}

    other = CampaignFactory(client=campaign.client, number=campaign.number)
    record = recipients_add_from_contacts(campaign=other, search="911 000 002")
    assert list(other.recipients.values_list("contact_id", flat=True)) == [mario.pk]
    assert record.source == "Contacts: search “911 000 002”"


def test_without_filters_every_contact_of_the_client_is_added(campaign, ventas):
    mine = [ContactFactory(client=campaign.client) for _ in range(3)]
    ContactFactory(client=ventas)

    record = recipients_add_from_contacts(campaign=campaign)

    assert set(campaign.recipients.values_list("contact_id", flat=True)) == {c.pk for c in mine}
    assert (record.source, record.added) == ("Contacts: all", 3)


def test_a_queue_of_another_client_is_refused(campaign, ventas):
    with pytest.raises(ImportRefused) as refused:
        recipients_add_from_contacts(campaign=campaign, queue=QueueFactory(client=ventas, name="Ajena"))

    assert refused.value.message == "The queue “Ajena” belongs to another client."
    assert not RecipientImport.objects.exists()


# --- size ---------------------------------------------------------------------------------------------------


def test_ten_thousand_rows_import_in_a_few_queries(campaign, django_assert_max_num_queries):
    known = [ContactFactory(client=campaign.client, phone=f"+51922{n:06d}") for n in range(50)]
    lines = [f"+51922{n:06d},Cliente {n},P-{n}" for n in range(10_000)]
    data = csv_bytes("phone,nombre,pedido", *lines)

    started = time.monotonic()
    with django_assert_max_num_queries(40):
        record = recipients_import(campaign=campaign, filename="grande.csv", data=data, mode=ALL)
    elapsed = time.monotonic() - started

    assert (record.applied, record.rows, record.added, record.rejected) == (True, 10_000, 10_000, 0)
    assert campaign.recipients.count() == 10_000
    assert Contact.objects.filter(client=campaign.client).count() == 10_000
    assert Contact.objects.get(pk=known[0].pk).name == known[0].name
    assert elapsed < 15, f"10,000 rows took {elapsed:.1f}s"


def test_a_phone_without_plus_needs_its_country_code(campaign):
    # Given phones written without "+": with the country code, nationally, and with a test number of Meta
    data = csv_bytes(
        "phone,nombre",
        "51 911 000 001,Ana",
        "987654321,Beto",
        "(01) 234-5678,Caro",
        "+1 555 000 1234,Prueba",
    )

    record = recipients_import(campaign=campaign, filename="a.csv", data=data, mode=KEEP)

    # Then only the international ones are taken; a national number is not guessed into another country
    assert [r[0] for r in recipients_of(campaign)] == ["+51911000001", "+15550001234"]
    assert record.errors == [
        {
            "line": 3,
            "reason": "line 3: “987654321” is not a phone number: read as +987654321 it is not a valid number; "
            "write it with + and the country code",
        },
        {
            "line": 4,
            "reason": "line 4: “(01) 234-5678” is not a phone number: phone number must start with + and the "
            "country code: '(01) 234-5678'",
        },
    ]
