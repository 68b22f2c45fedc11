"""The agent-facing CRM (docs/crm.md): inbox, conversation, actions, availability, dashboard.

Views read through `crm.inbox` and `crm.access`, validate input, and call one service per action. A conversation
the user may not see answers 404 (its existence is not revealed); one they may see but not act on answers 403.
Refused input re-renders the page with the reason (400) and changes nothing.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from datetime import datetime, timedelta

from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import LoginView, LogoutView
from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import content_disposition_header, url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from conversations.models import Conversation, Message
from conversations.selectors import conversation_reply_window
from conversations.services.actions import (
    ConversationActionError,
    conversation_ai_resume,
    conversation_mark_read,
    conversation_note_add,
    conversation_reopen,
    conversation_reply,
    conversation_resolve,
    conversation_snooze,
    conversation_take,
    conversation_transfer,
)
from conversations.services.ai import ai_may_answer, ai_settings_for
from conversations.services.outbound import MAX_TEMPLATE_VALUE, OutboundRefused, Template, template_to_send
from crm import inbox
from crm.access import Access, request_access
from queues.models import AgentAvailability
from queues.services import agent_availability_set

logger = logging.getLogger(__name__)

# Messages a page that reconnects asks for start this long before its cursor: a write committed just after a
# read may carry an `updated_at` slightly older than the read.
CATCH_UP_MARGIN = timedelta(seconds=5)
# Served inline only when a browser shows it as data, never as a page of ours: anything else (HTML, SVG, PDF…)
# from a customer is downloaded.
INLINE_MEDIA = ("image/jpeg", "image/png", "image/webp", "image/gif", "audio/", "video/")


class AgentLoginView(LoginView):
    template_name = "crm/login.html"
    redirect_authenticated_user = True


class AgentLogoutView(LogoutView):
    next_page = "crm:login"


def _availability(request: HttpRequest) -> str:
    status = (
        AgentAvailability.objects.filter(user=request.user).values_list("status", flat=True).first()
        or AgentAvailability.Status.OFFLINE
    )
    return status


def _base_context(request: HttpRequest, access: Access, **extra) -> dict:
    return {
        "access": access,
        "availability": _availability(request),
        "availability_choices": AgentAvailability.Status.choices,
        **extra,
    }


@login_required
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return redirect("crm:inbox")


# -- inbox --------------------------------------------------------------------------------------------------


@login_required
@require_GET
def inbox_view(request: HttpRequest) -> HttpResponse:
    access = request_access(request)
    filters = inbox.InboxFilters.from_query(request.GET, access)
    page = inbox.inbox_page(access=access, filters=filters)
    context = _base_context(request, access, page=page, filters=filters)
    if request.GET.get("fragment") == "rows":
        return JsonResponse(
            {
                "rows": render_to_string("crm/_inbox_rows.html", context, request=request),
                "counts": page.counts,
            }
        )
    return render(request, "crm/inbox.html", context)


# -- one conversation ---------------------------------------------------------------------------------------


def _visible(request: HttpRequest, pk: int) -> tuple[Access, Conversation]:
    access = request_access(request)
    conversation = inbox.conversation_for(access=access, pk=pk)
    if conversation is None:
        raise Http404(_("No such conversation."))
    return access, conversation


def _actionable(request: HttpRequest, pk: int) -> tuple[Access, Conversation]:
    access, conversation = _visible(request, pk)
    if not access.can_act(conversation):
        raise PermissionDenied(_("This conversation is assigned to someone else; ask a supervisor."))
    return access, conversation


def _session_state(number) -> str | None:
    try:
        return number.session.state
    except ObjectDoesNotExist:  # a number without a session row has no connection to show
        return None


def _ai_available(conversation: Conversation) -> bool:
    """Whether an AI assistant answers the conversation's customers now (an agent may hand it back)."""
    return ai_may_answer(ai_settings_for(conversation), conversation.number, timezone.now())


def _conversation_context(
    request: HttpRequest,
    access: Access,
    conversation: Conversation,
    *,
    error: str = "",
    draft: str = "",
    with_history: bool = True,
) -> dict:
    """What the conversation page shows; without the history for the header and composer fragments."""
    history, has_older = [], False
    if with_history:
        before = inbox.int_or_none(request.GET.get("before"))
        history, has_older = inbox.conversation_messages(conversation=conversation, before=before)
    window = conversation_reply_window(conversation)
    templates = inbox.templates_for(conversation) if window["templates"] else []
    queues, members = inbox.transfer_targets(access=access, conversation=conversation)
    quick_replies = inbox.quick_replies_for(conversation)
    return _base_context(
        request,
        access,
        conversation=conversation,
        history=history,
        has_older=has_older,
        oldest_id=history[0].pk if history else None,
        can_act=access.can_act(conversation),
        window=window,
        templates=templates,
        templates_json=json.dumps(
            [
                {"id": t.pk, "name": t.name, "language": t.language, "body": t.body, "params": t.placeholders}
                for t in templates
            ]
        ),
        quick_replies=quick_replies,
        quick_replies_json=json.dumps({q.shortcut: q.text for q in quick_replies}),
        transfer_queues=queues,
        transfer_members=members,
        session_state=_session_state(conversation.number),
        ai_available=_ai_available(conversation),
        cursor=timezone.now().isoformat(),
        error=error,
        draft=draft,
        now=timezone.now(),
    )


@login_required
@require_GET
def conversation_view(request: HttpRequest, pk: int) -> HttpResponse:
    access, conversation = _visible(request, pk)
    fragment = request.GET.get("fragment")
    if fragment == "messages":
        return _messages_since(request, access, conversation)
    if conversation.assigned_to_id == request.user.pk and conversation.unread_count:
        conversation_mark_read(conversation=conversation)
        conversation.unread_count = 0
    context = _conversation_context(request, access, conversation, with_history=fragment != "header")
    if fragment == "header":
        return JsonResponse(
            {
                "header": render_to_string("crm/_conversation_header.html", context, request=request),
                "composer": render_to_string("crm/_composer.html", context, request=request),
            }
        )
    return render(request, "crm/conversation.html", context)


def _messages_since(request: HttpRequest, access: Access, conversation: Conversation) -> JsonResponse:
    try:
        since = parse_datetime(request.GET.get("since") or "")
    except ValueError:  # well formed but impossible, e.g. month 13
        since = None
    if since is None or timezone.is_naive(since):
        return JsonResponse({"error": _("`since` must be an ISO 8601 time with its offset.")}, status=400)
    cursor = timezone.now()
    try:
        since -= CATCH_UP_MARGIN
    except OverflowError:  # the year 1
        return JsonResponse({"error": _("`since` must be an ISO 8601 time with its offset.")}, status=400)
    changed = inbox.conversation_messages_since(conversation=conversation, since=since)
    if len(changed) == inbox.CATCH_UP_LIMIT:  # more to come: the next read starts where this one stopped
        cursor = changed[-1].updated_at
    if conversation.assigned_to_id == request.user.pk and conversation.unread_count:
        conversation_mark_read(conversation=conversation)
    items = [
        {"id": m.pk, "html": render_to_string("crm/_message.html", {"m": m, "conversation": conversation})}
        for m in changed
    ]
    return JsonResponse({"cursor": cursor.isoformat(), "items": items})


def _refused(request: HttpRequest, access: Access, conversation: Conversation, message: str, draft: str = ""):
    conversation.refresh_from_db()
    context = _conversation_context(request, access, conversation, error=message, draft=draft)
    return render(request, "crm/conversation.html", context, status=400)


class Refused(Exception):
    """Input an action view cannot accept: the page is shown again with this reason (400), nothing written."""


def conversation_action(view):
    """A POST on a conversation the user may act on (else 404/403). The view returns None to go back to the
    conversation, or a response of its own; a refusal (`Refused`, `ConversationActionError`, `OutboundRefused`)
    shows the page again with the reason and the draft, status 400."""

    @login_required
    @require_POST
    @functools.wraps(view)
    def wrapper(request: HttpRequest, pk: int) -> HttpResponse:
        access, conversation = _actionable(request, pk)
        try:
            response = view(request, access, conversation, supervising=access.supervises(conversation))
        except (Refused, ConversationActionError, OutboundRefused) as exc:
            message = exc.args[0] if isinstance(exc, Refused) else exc.message
            return _refused(request, access, conversation, message, request.POST.get("text", ""))
        return response or redirect("crm:conversation", pk=conversation.pk)

    return wrapper


def _template_from_form(request: HttpRequest, conversation: Conversation) -> Template:
    """The approved template the agent chose, with the values they typed for its placeholders."""
    template_id = inbox.int_or_none(request.POST["template"])
    chosen = next((t for t in inbox.templates_for(conversation) if t.pk == template_id), None)
    if chosen is None:
        raise Refused(_("That template cannot be used on this number."))
    values = [request.POST.get(f"param_{n}", "").strip() for n in chosen.placeholders]
    if any(not v for v in values):
        raise Refused(_("Fill in every value of the template."))
    if any("\x00" in v or len(v) > MAX_TEMPLATE_VALUE for v in values):
        raise Refused(
            _("A template value has at most %(n)s characters and no NUL character.") % {"n": MAX_TEMPLATE_VALUE}
        )
    return template_to_send(template=chosen, values=values)


@conversation_action
def conversation_reply_view(request, access, conversation, *, supervising):
    reply_to = None
    quoted_id = inbox.int_or_none(request.POST.get("reply_to"))
    if quoted_id:
        reply_to = Message.objects.filter(pk=quoted_id, conversation=conversation).first()
        if reply_to is None:
            raise Refused(_("The quoted message is not in this conversation."))
    template = _template_from_form(request, conversation) if inbox.int_or_none(request.POST.get("template")) else None
    conversation_reply(
        conversation=conversation,
        by=request.user,
        text=None if template else request.POST.get("text", ""),
        template=template,
        reply_to=reply_to,
        supervising=supervising,
    )


@conversation_action
def conversation_note_view(request, access, conversation, *, supervising):
    conversation_note_add(
        conversation=conversation, by=request.user, text=request.POST.get("note", ""), supervising=supervising
    )


@conversation_action
def conversation_take_view(request, access, conversation, *, supervising):
    conversation_take(conversation=conversation, user=request.user, supervising=supervising)


@conversation_action
def conversation_transfer_view(request, access, conversation, *, supervising):
    target = request.POST.get("target", "")  # "queue:<id>" or "agent:<queue id>:<user id>"
    queues, members = inbox.transfer_targets(access=access, conversation=conversation)
    to_queue = to_user = None
    kind, _sep, rest = target.partition(":")
    if kind == "queue":
        to_queue = next((q for q in queues if str(q.pk) == rest), None)
    elif kind == "agent":
        queue_id, _sep, user_id = rest.partition(":")
        member = next((m for m in members if str(m.queue_id) == queue_id and str(m.user_id) == user_id), None)
        if member is not None:
            to_user = member.user
            to_queue = member.queue if member.queue_id != conversation.queue_id else None
    if to_queue is None and to_user is None:
        raise Refused(_("Choose an agent or a queue to transfer to."))
    conversation_transfer(
        conversation=conversation, by=request.user, to_user=to_user, to_queue=to_queue, supervising=supervising
    )
    conversation.refresh_from_db()
    if not access.can_see(conversation):
        flash.success(request, _("Conversation transferred."))
        return redirect("crm:inbox")
    return None


@conversation_action
def conversation_ai_resume_view(request, access, conversation, *, supervising):
    conversation_ai_resume(conversation=conversation, by=request.user, supervising=supervising)


@conversation_action
def conversation_resolve_view(request, access, conversation, *, supervising):
    conversation_resolve(conversation=conversation, by=request.user, supervising=supervising)


@conversation_action
def conversation_reopen_view(request, access, conversation, *, supervising):
    conversation_reopen(conversation=conversation, by=request.user, supervising=supervising)


SNOOZE_CHOICES = {"1h": timedelta(hours=1), "3h": timedelta(hours=3), "tomorrow": None, "next_week": None}


def _snooze_until(choice: str, custom: str) -> datetime | None:
    now = timezone.localtime()
    if choice in ("1h", "3h"):
        return now + SNOOZE_CHOICES[choice]
    if choice == "tomorrow":
        return (now + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    if choice == "next_week":
        return (now + timedelta(days=7 - now.weekday())).replace(hour=9, minute=0, second=0, microsecond=0)
    if choice == "custom":
        value = parse_datetime(custom)
        if value is None:
            raise ValueError
        return timezone.make_aware(value) if timezone.is_naive(value) else value
    raise ValueError


@conversation_action
def conversation_snooze_view(request, access, conversation, *, supervising):
    choice = request.POST.get("until", "")
    try:
        until = None if choice == "wake" else _snooze_until(choice, request.POST.get("custom", ""))
    except ValueError:
        raise Refused(_("Choose when the conversation should come back.")) from None
    conversation_snooze(conversation=conversation, by=request.user, until=until, supervising=supervising)


@login_required
@require_GET
def conversation_media_view(request: HttpRequest, pk: int, message_id: int) -> HttpResponse:
    """A media file of a message, fetched from the provider for a user who may see the conversation."""
    from sessions.services.media import MediaUnavailable, number_media_fetch

    _access, conversation = _visible(request, pk)
    message = Message.objects.filter(pk=message_id, conversation=conversation).exclude(media_id="").first()
    if message is None:
        raise Http404(_("No such media."))
    try:
        media = number_media_fetch(number=conversation.number, media_id=message.media_id)
    except MediaUnavailable as exc:
        status = 404 if exc.code in ("not_found", "expired") else 502 if exc.code == "provider_error" else 409
        return render(
            request,
            "crm/media_unavailable.html",
            _base_context(request, request_access(request), conversation=conversation, reason=exc.message),
            status=status,
        )
    mime_type = (message.media_mime_type or media.mime_type or "application/octet-stream").lower()
    response = HttpResponse(media.content, content_type=mime_type)
    # The file name and type come from the customer's payload: no control characters in a header, and only
    # plain images, audio and video shown inline (an HTML or SVG "document" would run in our origin).
    filename = re.sub(r"[\x00-\x1f\x7f]", "", message.media_filename or media.filename) or f"media-{message.pk}"
    inline = mime_type.startswith(INLINE_MEDIA)
    response["Content-Disposition"] = content_disposition_header(not inline, filename)
    response["Content-Security-Policy"] = "sandbox; default-src 'none'; img-src 'self'; media-src 'self'"
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, max-age=300"
    return response


# -- availability and dashboard -----------------------------------------------------------------------------


@login_required
@require_POST
def availability_view(request: HttpRequest) -> HttpResponse:
    status = request.POST.get("status", "")
    if status not in AgentAvailability.Status.values:
        return JsonResponse({"error": _("Unknown availability.")}, status=400)
    agent_availability_set(user=request.user, status=status)
    if request.headers.get("accept", "").startswith("application/json"):
        return JsonResponse({"status": status})
    next_url = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}, require_https=False):
        next_url = reverse("crm:inbox")
    return redirect(next_url)


@login_required
@require_GET
def dashboard_view(request: HttpRequest) -> HttpResponse:
    access = request_access(request)
    if not access.sees_dashboard:
        raise PermissionDenied(_("The dashboard is for staff and supervisors."))
    context = _base_context(request, access, **inbox.dashboard(access=access))
    if request.GET.get("fragment") == "panel":
        return JsonResponse({"panel": render_to_string("crm/_dashboard_panel.html", context, request=request)})
    return render(request, "crm/dashboard.html", context)
