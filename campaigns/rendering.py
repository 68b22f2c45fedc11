"""Filling a campaign's message with each recipient's values (docs/campaigns.md "Variables").

`{{nombre}}` is replaced by the recipient's `nombre` column; `{{nombre|cliente}}` uses "cliente" when the column
is empty. Names are compared as `column_key` makes them (case, accents or spacing aside: "Nombre Cliente" and
{{nombre_cliente}} match). A problem is found when the recipients are imported, never when sending.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from campaigns.models import Campaign
    from conversations.services.outbound import Template

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_NAME = re.compile(r"^[\w .-]{1,64}$")


class TemplateSyntaxProblem(ValueError):
    """The text's {{ }} are malformed."""


class MissingVariables(ValueError):
    """Values the text needs are empty or absent; `names` lists them."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        super().__init__("no value for " + ", ".join("{{" + name + "}}" for name in names))


def column_key(name: str) -> str:
    """How a column header or a {{variable}} is compared: lower case, no accents, words joined by "_"."""
    text = unicodedata.normalize("NFKD", str(name)).encode("ascii", "ignore").decode()
    return re.sub(r"[\s.-]+", "_", text.strip().lower()).strip("_")


@dataclass(frozen=True)
class Placeholder:
    key: str
    fallback: str | None


def _placeholders(text: str) -> list[tuple[re.Match, Placeholder]]:
    found = []
    for match in _PLACEHOLDER.finditer(text):
        inner = match.group(1)
        name, bar, fallback = inner.partition("|")
        if not _NAME.match(name.strip()):
            raise TemplateSyntaxProblem(
                f"“{{{{{inner}}}}}” is not a variable: write a column name between {{{{ and }}}}, e.g. {{{{nombre}}}}."
            )
        found.append((match, Placeholder(column_key(name), fallback.strip() if bar else None)))
    rest = _PLACEHOLDER.sub("", text)
    if "{{" in rest or "}}" in rest:
        raise TemplateSyntaxProblem("A {{ without its }} (or the other way round): close every variable.")
    return found


def variables_of(text: str) -> list[Placeholder]:
    """The variables `text` uses, in order. Raises TemplateSyntaxProblem."""
    return [placeholder for _match, placeholder in _placeholders(text)]


def render(text: str, values: dict[str, str]) -> str:
    """`text` with its variables filled from `values` (keys as `column_key` makes them). Raises MissingVariables."""
    missing: list[str] = []
    out: list[str] = []
    position = 0
    for match, placeholder in _placeholders(text):
        value = str(values.get(placeholder.key) or "").strip()
        if not value:
            if placeholder.fallback is None:
                if placeholder.key not in missing:
                    missing.append(placeholder.key)
                continue
            value = placeholder.fallback
        out.append(text[position : match.start()])
        out.append(value)
        position = match.end()
    if missing:
        raise MissingVariables(missing)
    out.append(text[position:])
    return "".join(out)


def campaign_texts(campaign: Campaign) -> list[str]:
    """The texts of a campaign that take variables: its message, or its template's parameters."""
    if campaign.template_id:
        return [p for p in campaign.template_parameters or [] if isinstance(p, str)]
    return [campaign.message]


def campaign_required_columns(campaign: Campaign) -> list[str]:
    """Columns every recipient must have a value for (variables without a fallback)."""
    seen: list[str] = []
    for text in campaign_texts(campaign):
        for placeholder in variables_of(text):
            if placeholder.fallback is None and placeholder.key not in seen:
                seen.append(placeholder.key)
    return seen


@dataclass(frozen=True)
class Rendered:
    """What one recipient receives: `text` (free text) or `template`."""

    text: str | None = None
    template: Template | None = None

    @property
    def preview(self) -> str:
        if self.text is not None:
            return self.text
        values = [p.get("text", "") for c in self.template.components for p in c.get("parameters", [])]
        body = self.template_body or ""
        for index, value in enumerate(values, start=1):
            body = re.sub(r"\{\{\s*" + str(index) + r"\s*\}\}", lambda _match, v=value: v, body)
        return body

    template_body: str | None = None


def campaign_render(campaign: Campaign, values: dict[str, str]) -> Rendered:
    """The message `campaign` sends to a recipient with `values`. Raises MissingVariables, TemplateSyntaxProblem."""
    from conversations.services.outbound import Template

    if not campaign.template_id:
        return Rendered(text=render(campaign.message, values).strip())
    template = campaign.template
    missing: list[str] = []
    parameters = []
    for text in campaign.template_parameters or []:
        try:
            parameters.append({"type": "text", "text": render(text, values).strip()})
        except MissingVariables as exc:
            missing += [name for name in exc.names if name not in missing]
    if missing:
        raise MissingVariables(missing)
    components = [{"type": "body", "parameters": parameters}] if parameters else []
    return Rendered(
        template=Template(name=template.name, language=template.language, components=components),
        template_body=template.body,
    )
