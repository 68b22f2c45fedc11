"""Template helpers of the agent-facing CRM: message previews, ages, delivery ticks, query strings."""

from __future__ import annotations

from datetime import datetime, timedelta

from django import template
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from conversations.models import Message

register = template.Library()

KIND_ICONS = {
    Message.Kind.IMAGE: "🖼",
    Message.Kind.VIDEO: "🎬",
    Message.Kind.AUDIO: "🎵",
    Message.Kind.VOICE: "🎤",
    Message.Kind.DOCUMENT: "📄",
    Message.Kind.STICKER: "💟",
    Message.Kind.LOCATION: "📍",
    Message.Kind.CONTACTS: "👤",
    Message.Kind.TEMPLATE: "📋",
    Message.Kind.REACTION: "❤",
}


@register.simple_tag
def message_preview(message: Message, chars: int = 90) -> str:
    icon = KIND_ICONS.get(message.kind, "")
    if chars <= 0:  # the icon alone
        return icon
    text = message.body or (message.get_kind_display() if message.kind != Message.Kind.TEXT else "")
    if len(text) > chars:
        text = text[: chars - 1] + "…"
    return f"{icon} {text}".strip()


@register.simple_tag
def duration(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return ngettext("%(n)s second", "%(n)s seconds", seconds) % {"n": seconds}
    minutes = seconds // 60
    if minutes < 60:
        return ngettext("%(n)s minute", "%(n)s minutes", minutes) % {"n": minutes}
    hours = minutes // 60
    if hours < 48:
        return _("%(h)s h %(m)s min") % {"h": hours, "m": minutes % 60}
    return ngettext("%(n)s day", "%(n)s days", hours // 24) % {"n": hours // 24}


@register.simple_tag
def age(moment: datetime, now: datetime) -> str:
    return duration(now - moment)


TICKS = {
    Message.Status.PENDING: ("🕓", "pending"),
    Message.Status.SENDING: ("🕓", "pending"),
    Message.Status.ACCEPTED: ("✓", "sent"),
    Message.Status.SENT: ("✓", "sent"),
    Message.Status.DELIVERED: ("✓✓", "delivered"),
    Message.Status.READ: ("✓✓", "read"),
    Message.Status.PLAYED: ("✓✓", "read"),
    Message.Status.FAILED: ("⚠", "failed"),
    Message.Status.UNKNOWN: ("?", "unknown"),
}


@register.simple_tag
def ticks(message: Message) -> str:
    """The delivery mark of an outbound message; its title says the status (and the reason of a failure)."""
    if message.direction != Message.Direction.OUTBOUND:
        return ""
    mark, css = TICKS.get(message.status, ("", ""))
    title = message.get_status_display()
    if message.status in (Message.Status.FAILED, Message.Status.UNKNOWN):
        reason = message.error_reason or message.error_code
        if reason:
            title = f"{title}: {reason}"
    return format_html(
        '<span class="ticks {}" title="{}" data-status="{}"><span class="sr-only">{}</span>'
        '<span aria-hidden="true">{}</span></span>',
        css,
        title,
        message.status,
        title,
        mark,
    )


@register.simple_tag(takes_context=True)
def query_with(context, **changes) -> str:
    """The current query string with some parameters replaced."""
    params = context["request"].GET.copy()
    params.pop("fragment", None)
    for key, value in changes.items():
        params[key] = value
    return params.urlencode()
