"""The sandbox simulator's pages (docs/sessions.md "The sandbox engine"):

- the device page (staff): the number owner's phone. It "scans" the QR code the admin shows and injects network
  faults (disconnect, logout, conflict, ban);
- the customer phone page (anyone): chat with a sandbox number as a customer and see replies with their ticks.

Views validate and call the sandbox engine's functions; nothing here exists for Cloud API or WhatsApp Web numbers.
"""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils.safestring import mark_safe
from django.views.decorators.http import require_GET, require_POST

from crm.selectors import client_scope
from sessions.engines.sandbox import (
    INJECTABLE,
    MAX_BODY,
    sandbox_customer_inbox,
    sandbox_customer_read,
    sandbox_customer_send,
    sandbox_inject,
    sandbox_scan,
)
from sessions.models import NumberSession, SessionState, WhatsAppNumber
from sessions.qr import qr_svg
from sessions.registry import e164_or_none


def _sandbox_number(number_id: int, request: HttpRequest | None = None) -> WhatsAppNumber:
    numbers = WhatsAppNumber.objects.filter(engine="sandbox", is_active=True).select_related("client")
    if request is not None:  # the device pages: staff who may change the clients' numbers, and only those
        if not request.user.has_perm("wa_sessions.change_whatsappnumber"):
            raise PermissionDenied
        numbers = client_scope(numbers, request.user)
    number = numbers.filter(pk=number_id).first()
    if number is None:
        raise Http404("No active sandbox number with this id.")
    return number


@staff_member_required
@require_GET
def device(request: HttpRequest, number_id: int) -> HttpResponse:
    number = _sandbox_number(number_id, request)
    session = NumberSession.objects.get(number=number)
    return render(request, "sandbox/device.html", _device_context(number, session))


@staff_member_required
@require_POST
def device_scan(request: HttpRequest, number_id: int) -> HttpResponse:
    number = _sandbox_number(number_id, request)
    session = NumberSession.objects.get(number=number)
    if session.state != SessionState.WAITING_QR or not session.qr_code:
        error = "No QR code to scan: the number is not waiting for one."
        return render(request, "sandbox/device.html", _device_context(number, session, error=error), status=409)
    typed = request.POST.get("pairing_code", "").strip()
    if typed and typed.replace("-", "").replace(" ", "") != session.pairing_code.replace("-", ""):
        error = "That is not the pairing code the admin shows."
        return render(request, "sandbox/device.html", _device_context(number, session, error=error), status=400)
    sandbox_scan(number=number, code=typed or session.qr_code)
    return redirect("sandbox-device", number_id=number.pk)


@staff_member_required
@require_POST
def device_fault(request: HttpRequest, number_id: int) -> HttpResponse:
    number = _sandbox_number(number_id, request)
    fault = request.POST.get("fault", "")
    error = ""
    try:
        seconds = int(request.POST.get("seconds") or 3600)
    except ValueError:
        seconds = 0
    if fault not in INJECTABLE:
        error = f"Unknown fault {fault!r}; choose one of {', '.join(INJECTABLE)}."
    elif not 1 <= seconds <= 7 * 86400:
        error = "The ban lasts from 1 second to 7 days."
    if error:
        session = NumberSession.objects.get(number=number)
        return render(request, "sandbox/device.html", _device_context(number, session, error=error), status=400)
    sandbox_inject(number=number, fault=fault, seconds=seconds)
    return redirect("sandbox-device", number_id=number.pk)


def _device_context(number, session, *, error: str = "") -> dict:
    waiting = session.state == SessionState.WAITING_QR and bool(session.qr_code)
    return {
        "number": number,
        "session": session,
        "waiting": waiting,
        "qr": mark_safe(qr_svg(session.qr_code)) if waiting else "",  # noqa: S308 (drawn by qrcode, no user text)
        "faults": INJECTABLE,
        "error": error,
    }


@require_GET
def phone(request: HttpRequest, number_id: int) -> HttpResponse:
    number = _sandbox_number(number_id)
    return render(request, "sandbox/phone.html", {"number": number, "max_body": MAX_BODY})


def _customer(request: HttpRequest) -> tuple[str | None, JsonResponse | None]:
    raw = (request.POST.get("phone") if request.method == "POST" else request.GET.get("phone")) or ""
    e164 = e164_or_none(raw.strip())
    if e164 is None:
        message = "Give your phone in international form, e.g. +51 912 345 678."
        return None, JsonResponse({"error": {"code": "invalid_phone", "message": message}}, status=400)
    return e164, None


@require_GET
def phone_messages(request: HttpRequest, number_id: int) -> JsonResponse:
    """The customer's chat; with `read=1` (the page is open and visible) the business's messages are marked read."""
    number = _sandbox_number(number_id)
    customer, error = _customer(request)
    if error:
        return error
    if request.GET.get("read") == "1":
        sandbox_customer_read(number=number, phone=customer)
    return JsonResponse({"phone": customer, "messages": sandbox_customer_inbox(number=number, phone=customer)})


@require_POST
def phone_send(request: HttpRequest, number_id: int) -> JsonResponse:
    number = _sandbox_number(number_id)
    customer, error = _customer(request)
    if error:
        return error
    body = request.POST.get("body", "")
    name = request.POST.get("name", "")[:120]
    try:
        provider_id = sandbox_customer_send(number=number, phone=customer, body=body, name=name)
    except ValueError as exc:
        return JsonResponse({"error": {"code": "invalid_message", "message": str(exc)}}, status=400)
    return JsonResponse({"id": provider_id}, status=201)
