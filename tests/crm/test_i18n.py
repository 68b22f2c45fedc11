"""The agent-facing CRM speaks Spanish (the default language) and English.

The catalog (locale/es/LC_MESSAGES/django.po) must be complete and compiled: every string the code and templates
mark for translation has a Spanish translation, none is fuzzy, and the committed .mo says the same as the .po.
These checks use Python only (no GNU gettext), so they run on any machine. The rendering tests then look at
what an agent actually sees under Spanish and after switching the language to English.
"""

from __future__ import annotations

import ast
import gettext
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.utils.translation.template import templatize

from conversations.models import Conversation, Message
from queues.models import AgentAvailability
from tests.crm.conftest import outbound

BASE_DIR = Path(settings.BASE_DIR)
LOCALE_DIR = BASE_DIR / "locale" / "es" / "LC_MESSAGES"
PO_FILE = LOCALE_DIR / "django.po"
MO_FILE = LOCALE_DIR / "django.mo"

# What makemessages is run without (see the command in the .po's header comment and docs).
IGNORED_DIRS = {".venv", "tests", "bench", "staticfiles", "node_modules", "locale", "docs", "__pycache__"}

CONTEXT_SEPARATOR = "\x04"


# -- a small .po reader (polib is not a dependency) ---------------------------------------------------------


@dataclass
class Entry:
    msgid: str = ""
    msgctxt: str | None = None
    msgid_plural: str | None = None
    msgstr: str = ""
    msgstr_plural: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False
    line: int = 0

    @property
    def key(self) -> str:
        return f"{self.msgctxt}{CONTEXT_SEPARATOR}{self.msgid}" if self.msgctxt is not None else self.msgid

    @property
    def translations(self) -> list[str]:
        if self.msgid_plural is None:
            return [self.msgstr]
        return [self.msgstr_plural[i] for i in sorted(self.msgstr_plural)]


def _unquote(literal: str) -> str:
    return ast.literal_eval(literal)  # a PO string literal is a valid Python string literal


def read_po(path: Path) -> tuple[Entry, list[Entry]]:
    """The header and the entries of a .po file."""
    entries: list[Entry] = []
    entry: Entry | None = None
    keyword = None
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
        if not line:
            entry, keyword = None, None
            continue
        if line.startswith("#"):
            if entry is None or keyword is not None:
                entry, keyword = Entry(line=number), None
                entries.append(entry)
            if line.startswith("#,"):
                entry.flags |= {flag.strip() for flag in line[2:].split(",")}
            continue
        if entry is None:
            entry = Entry(line=number)
            entries.append(entry)
        entry.obsolete = entry.obsolete or obsolete
        match = re.match(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(\".*\")$", line)
        if match:
            keyword, index, literal = match.group(1), match.group(2), match.group(3)
            if keyword == "msgid" and (entry.msgid or entry.msgstr or entry.msgstr_plural):
                entry = Entry(line=number)  # a new entry with no comments before it
                entries.append(entry)
            text = _unquote(literal)
            if index is not None:
                entry.msgstr_plural[int(index)] = text
                keyword = ("msgstr_plural", int(index))
            else:
                setattr(entry, keyword, text)
        else:
            assert line.startswith('"'), f"{path}:{number}: cannot read {raw!r}"
            text = _unquote(line)
            if isinstance(keyword, tuple):
                entry.msgstr_plural[keyword[1]] += text
            else:
                setattr(entry, keyword, getattr(entry, keyword) + text)
    headers = [e for e in entries if e.msgid == "" and e.msgctxt is None]
    assert len(headers) == 1, "the .po needs exactly one header entry"
    return headers[0], [e for e in entries if e is not headers[0]]


def header_fields(header: Entry) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in header.msgstr.splitlines() if ": " in line)


@pytest.fixture(scope="module")
def po() -> tuple[Entry, list[Entry]]:
    assert PO_FILE.exists(), "run: manage.py makemessages -l es (see docs) to create the Spanish catalog"
    return read_po(PO_FILE)


# -- what the code and templates mark for translation -------------------------------------------------------

TRANSLATION_FUNCTIONS = {
    # name in django.utils.translation -> (positions of msgctxt, msgid, msgid_plural)
    "gettext": (None, 0, None),
    "gettext_lazy": (None, 0, None),
    "gettext_noop": (None, 0, None),
    "ngettext": (None, 0, 1),
    "ngettext_lazy": (None, 0, 1),
    "pgettext": (0, 1, None),
    "pgettext_lazy": (0, 1, None),
    "npgettext": (0, 1, 2),
    "npgettext_lazy": (0, 1, 2),
}


def _source_files(pattern: str) -> list[Path]:
    return sorted(
        path
        for path in BASE_DIR.rglob(pattern)
        if not any(part in IGNORED_DIRS or part.startswith(".") for part in path.relative_to(BASE_DIR).parts)
    )


def _marked_in_call(call: ast.Call, positions: tuple[int | None, int, int | None]) -> tuple[str, str] | None:
    """(key, where) of one gettext call whose strings are literals (what xgettext can extract)."""
    args = call.args
    values = []
    for position in positions:
        if position is None:
            values.append(None)
            continue
        if position >= len(args) or not isinstance(args[position], ast.Constant):
            return None
        values.append(args[position].value)
    context, msgid, _plural = values
    if not isinstance(msgid, str):
        return None
    return (f"{context}{CONTEXT_SEPARATOR}{msgid}" if context is not None else msgid), msgid


def marked_in_python() -> dict[str, str]:
    """msgid (with its context) -> file, for every literal passed to django.utils.translation in our code."""
    found: dict[str, str] = {}
    for path in _source_files("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        aliases: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "django.utils.translation":
                for name in node.names:
                    if name.name in TRANSLATION_FUNCTIONS:
                        aliases[name.asname or name.name] = name.name
        if not aliases:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in aliases:
                marked = _marked_in_call(node, TRANSLATION_FUNCTIONS[aliases[node.func.id]])
                if marked:
                    found.setdefault(marked[0], str(path.relative_to(BASE_DIR)))
    return found


# templatize() turns a template into the pseudo-Python makemessages hands to xgettext: gettext(u'...') calls,
# and _('...') for the _("...") of filter arguments.
TEMPLATIZED_CALL = re.compile(
    r"""\b(_|n?p?gettext)\((?:\s*u?(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\s*,?)+\s*(?:count)?\s*\)"""
)


def marked_in_templates() -> dict[str, str]:
    found: dict[str, str] = {}
    template_files = [p for p in _source_files("*.html") if "templates" in p.relative_to(BASE_DIR).parts]
    assert template_files, "no templates found"
    for path in template_files:
        source = templatize(path.read_text(encoding="utf-8"), origin=str(path))
        for match in TEMPLATIZED_CALL.finditer(source):
            call = ast.parse(match.group(0), mode="eval").body
            function = "gettext" if match.group(1) == "_" else match.group(1)
            marked = _marked_in_call(call, TRANSLATION_FUNCTIONS[function])
            if marked:
                found.setdefault(marked[0], str(path.relative_to(BASE_DIR)))
    return found


# -- the catalog --------------------------------------------------------------------------------------------


def test_the_catalog_is_spanish_with_two_plural_forms(po):
    header, _entries = po
    fields = header_fields(header)
    assert "fuzzy" not in header.flags
    assert fields["Language"] == "es"
    assert fields["Content-Type"] == "text/plain; charset=UTF-8"
    assert fields["Plural-Forms"] == "nplurals=2; plural=(n != 1);"


def test_every_entry_is_translated_and_checked(po):
    _header, entries = po
    assert len(entries) > 100, "the catalog looks truncated"
    untranslated = [e.msgid for e in entries if not e.obsolete and not all(e.translations)]
    fuzzy = [e.msgid for e in entries if "fuzzy" in e.flags]
    obsolete = [e.msgid for e in entries if e.obsolete]
    assert not untranslated, f"untranslated: {untranslated}"
    assert not fuzzy, f"fuzzy (check the translation, then remove the flag): {fuzzy}"
    assert not obsolete, f"obsolete entries (run makemessages with --no-obsolete): {obsolete}"
    plural = [e for e in entries if e.msgid_plural is not None]
    assert plural and all(sorted(e.msgstr_plural) == [0, 1] for e in plural)


PLACEHOLDER = re.compile(r"%(?:\([^)]+\))?[-#0 +]*\d*(?:\.\d+)?[sdifr%]|\{\{?\s*\w+\s*\}?\}")


def test_translations_keep_their_placeholders(po):
    _header, entries = po
    wrong = []
    for entry in entries:
        for i, translation in enumerate(entry.translations):
            source = entry.msgid if i == 0 or entry.msgid_plural is None else entry.msgid_plural
            if sorted(PLACEHOLDER.findall(source)) != sorted(PLACEHOLDER.findall(translation)):
                wrong.append((entry.msgid, translation))
    assert not wrong, f"placeholders differ: {wrong}"


def test_the_compiled_catalog_matches_the_po(po):
    """The committed .mo is the .po compiled: same entries, same translations (run compilemessages -l es)."""
    _header, entries = po
    assert MO_FILE.exists(), "run: manage.py compilemessages -l es"
    with MO_FILE.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    expected: dict[object, str] = {}
    for entry in entries:
        if entry.msgid_plural is None:
            expected[entry.key] = entry.msgstr
        else:
            for index, text in entry.msgstr_plural.items():
                expected[(entry.key, index)] = text
    catalog = {key: value for key, value in compiled._catalog.items() if key != ""}
    assert catalog == expected
    assert compiled.ngettext("%(n)s day", "%(n)s days", 1) == "%(n)s día"
    assert compiled.ngettext("%(n)s day", "%(n)s days", 3) == "%(n)s días"


def test_every_string_marked_for_translation_is_in_the_catalog(po):
    """The .po is current: what code and templates mark is in it, and nothing it holds is gone from them."""
    _header, entries = po
    in_catalog = {entry.key for entry in entries}
    marked = {**marked_in_python(), **marked_in_templates()}
    assert "Inbox" in marked and "Waiting in queue" in marked, "the extraction found nothing: is it broken?"
    missing = {key: where for key, where in marked.items() if key not in in_catalog}
    assert not missing, f"not in the catalog, run makemessages -l es and translate: {missing}"
    stale = sorted(in_catalog - set(marked))
    assert not stale, f"no longer in the code, run makemessages -l es --no-obsolete: {stale}"


# -- what an agent sees -------------------------------------------------------------------------------------


class _VisibleText(HTMLParser):
    """The text a person (or a screen reader) gets from a page: text nodes and the attributes that are read."""

    READ_ATTRIBUTES = {"title", "placeholder", "aria-label", "label", "alt"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in self.READ_ATTRIBUTES and value:
                self.parts.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip and data.strip():
            self.parts.append(data.strip())


def visible_text(response) -> str:
    parser = _VisibleText()
    parser.feed(response.content.decode())
    return "\n".join(parser.parts)


def assert_english_absent(text: str, words: list[str]) -> None:
    found = [word for word in words if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text)]
    assert not found, f"English left on a Spanish page: {found}\n---\n{text}"


def assert_present(text: str, phrases: list[str]) -> None:
    missing = [phrase for phrase in phrases if phrase not in text]
    assert not missing, f"missing: {missing}\n---\n{text}"


SPANISH = {"HTTP_ACCEPT_LANGUAGE": "es"}

ENGLISH_UI = [
    "Inbox",
    "Mine",
    "Queue",
    "Queues",
    "All queues",
    "All numbers",
    "Search",
    "Filter",
    "Status",
    "Reply",
    "Send",
    "Resolve",
    "Reopen",
    "Take",
    "Transfer",
    "Transfer to",
    "Snooze",
    "Internal note",
    "Add note",
    "Dashboard",
    "Online",
    "Away",
    "Offline",
    "Log out",
    "Log in",
    "Language",
    "Open (assigned)",
    "Waiting in queue",
    "Resolved",
    "Delivered",
    "no queue",
    "Type a message",
    "Skip to content",
]


def test_the_login_page_is_in_spanish_by_default(client, settings):
    settings.LANGUAGE_CODE = "es"  # production's default; the test settings use English

    response = client.get("/login/")

    assert response.status_code == 200
    assert response["Content-Language"] == "es"
    assert '<html lang="es">' in response.content.decode()
    text = visible_text(response)
    assert_present(text, ["Iniciar sesión", "Nombre de usuario", "Contraseña", "Idioma", "Saltar al contenido"])
    assert_english_absent(text, ["Log in", "Username", "Password", "Language", "Skip to content"])


def test_the_login_page_follows_the_browser_language(client):
    text = visible_text(client.get("/login/", **SPANISH))
    assert_present(text, ["Iniciar sesión"])

    text = visible_text(client.get("/login/", HTTP_ACCEPT_LANGUAGE="en"))
    assert_present(text, ["Log in", "Username", "Password"])
    assert "Iniciar sesión" not in text


def test_a_failed_login_says_so_in_spanish(client, world):
    response = client.post("/login/", {"username": "ana", "password": "wrong"}, **SPANISH)

    assert response.status_code == 200
    assert_present(visible_text(response), ["El nombre de usuario y la contraseña no coinciden"])


def test_the_inbox_is_in_spanish(client, world):
    AgentAvailability.objects.filter(user=world.ana).update(status=AgentAvailability.Status.ONLINE)
    client.force_login(world.ana)

    response = client.get("/inbox/?tab=mine", **SPANISH)

    assert response.status_code == 200
    text = visible_text(response)
    assert_present(
        text,
        [
            "Bandeja de entrada",
            "Mías",
            "Cola",
            "Buscar por nombre, teléfono o texto",
            "Todas las colas",
            "Todos los números",
            "Filtrar",
            "Cualquier estado",
            "En línea",
            "Ausente",
            "Desconectado",
            "Disponibilidad",
            "Cerrar sesión (ana)",
            "Lucía Pérez",
            "Abierta (asignada)",
            "2 mensajes sin leer",
            "Mensajes sin leer",
        ],
    )
    assert_english_absent(text, ENGLISH_UI + ["unread"])
    assert "Panel" not in text, "agents do not see the dashboard link"


def test_the_queue_tab_counts_the_wait_in_spanish(client, world):
    client.force_login(world.ana)

    text = visible_text(client.get("/inbox/?tab=queue", **SPANISH))

    assert_present(text, ["Rosa Quispe", "En espera en la cola", "Esperando a un agente", "Posición en la cola"])
    assert re.search(r"\d+ minutos", text), text
    assert_english_absent(text, ENGLISH_UI + ["minutes", "Waiting for an agent"])


def test_an_empty_search_says_so_in_spanish(client, world):
    client.force_login(world.ana)

    text = visible_text(client.get("/inbox/?tab=mine&q=nadie-escribe-esto", **SPANISH))

    assert_present(text, ["Ninguna conversación coincide con su búsqueda."])


def test_an_assigned_conversation_is_in_spanish(client, world):
    outbound(world.ana_open, "Con gusto le ayudo", status=Message.Status.DELIVERED, sent_by=world.ana)
    client.force_login(world.ana)

    response = client.get(f"/conversations/{world.ana_open.pk}/", **SPANISH)

    assert response.status_code == 200
    text = visible_text(response)
    assert_present(
        text,
        [
            "← Bandeja de entrada",
            "Abierta (asignada)",
            "asignada a ana",
            "Responder",
            "Enviar",
            "La ventana de 24 horas se cierra el",
            "Resolver",
            "Transferir a",
            "Transferir",
            "Colas",
            "Agentes",
            "Posponer",
            "1 hora",
            "Mañana a las 9:00",
            "Hasta…",
            "Nota interna",
            "Nota (solo la ven los agentes)",
            "Agregar nota",
            "Entregado",  # the delivery ticks of the outbound message
            "Con gusto le ayudo",
        ],
    )
    assert_english_absent(text, ENGLISH_UI + ["Tomorrow", "hour", "assigned to"])


def test_a_waiting_conversation_offers_take_in_spanish(client, world):
    client.force_login(world.ana)

    text = visible_text(client.get(f"/conversations/{world.waiting.pk}/", **SPANISH))

    assert_present(text, ["En espera en la cola", "Tomar", "Resolver"])
    assert_english_absent(text, ENGLISH_UI)


def test_a_resolved_conversation_offers_reopen_in_spanish(client, world):
    client.force_login(world.ana)

    text = visible_text(client.get(f"/conversations/{world.resolved.pk}/", **SPANISH))

    assert_present(text, ["Resuelta", "Reabrir"])
    assert_english_absent(text, ENGLISH_UI)


def test_someone_elses_conversation_says_why_in_spanish(client, world):
    client.force_login(world.ana)

    text = visible_text(client.get(f"/conversations/{world.beto_open.pk}/", **SPANISH))

    assert_present(text, ["Esta conversación está asignada a otra persona: puede leerla, pero no responderla."])


def test_refusals_and_notices_are_written_in_spanish(client, world):
    client.force_login(world.ana)

    response = client.post(f"/conversations/{world.ana_open.pk}/note/", {"note": "   "}, **SPANISH)

    assert response.status_code == 400
    assert_present(visible_text(response), ["La nota está vacía."])

    response = client.post(f"/conversations/{world.waiting.pk}/take/", **SPANISH)

    assert response.status_code == 302
    world.waiting.refresh_from_db()
    assert world.waiting.status == Conversation.Status.OPEN
    notice = world.waiting.messages.filter(kind=Message.Kind.SYSTEM).latest("id")
    assert notice.body == "ana tomó la conversación."


def test_the_dashboard_is_in_spanish(client, world):
    client.force_login(world.supervisor)

    response = client.get("/dashboard/", **SPANISH)

    assert response.status_code == 200
    text = visible_text(response)
    assert_present(
        text,
        ["Panel", "Números", "Número", "Motor", "Conexión", "Colas", "En espera", "Espera más larga", "Agentes"],
    )
    assert_english_absent(text, ENGLISH_UI + ["Numbers", "Agents", "Availability", "Longest wait", "Waiting"])


def test_set_language_switches_the_crm_to_english_and_back(client, world):
    client.force_login(world.ana)
    assert_present(visible_text(client.get("/inbox/", **SPANISH)), ["Bandeja de entrada"])

    response = client.post("/i18n/setlang/", {"language": "en", "next": "/inbox/"}, **SPANISH)

    assert response.status_code == 302 and response["Location"] == "/inbox/"
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "en"
    # The chosen language wins over the browser's.
    response = client.get("/inbox/?tab=mine", **SPANISH)
    assert response["Content-Language"] == "en"
    text = visible_text(response)
    assert_present(text, ["Inbox", "Mine", "Queue", "Filter", "Online", "Open (assigned)", "2 unread messages"])
    assert "Bandeja de entrada" not in text and "Mías" not in text

    client.post("/i18n/setlang/", {"language": "es", "next": "/inbox/"})

    assert_present(visible_text(client.get("/inbox/", HTTP_ACCEPT_LANGUAGE="en")), ["Bandeja de entrada", "Mías"])
