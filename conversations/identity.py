"""One identity per person for WhatsApp phone numbers (pure Python, no Django).

WhatsApp identifies a customer by ``wa_id`` (the digits of the number, no ``+``), and the same person can show up
under two forms of one number in three of our markets. ``phone_identity`` turns any of those forms into a
``PhoneIdentity`` whose ``key`` is the same for both, so one person gets one contact.

Rules per country (the ``key`` never depends on ``phonenumbers``' validity metadata, only on the digits, so a
library upgrade cannot split or merge existing identities):

Brazil (+55) — the 9th mobile digit.
    ANATEL put a 9 in front of every 8-digit mobile number (2012-2016), so ``+55 DD 9XXXX-XXXX`` is the number
    today, but WhatsApp accounts registered before that often keep the old 8-digit id ``55 DD XXXX-XXXX``.
    Merged: an 8-digit subscriber starting 6-9 (the old mobile ranges) with the same digits behind a 9.
    Landlines (subscriber starting 2-5) and 9-digit numbers whose second digit is 1-5 have no other form.
    key: the form WITH the 9 — it is part of the national number now and it is the form phonenumbers calls valid.
    e164: the 9 form when valid, else as given.
    wa_id: a digits-only input (a webhook's wa_id) is kept as it came. Otherwise a guess: WhatsApp kept the 9 in
    DDDs 11-19, 21, 22, 24, 27, 28 and dropped it elsewhere. The wa_id of a webhook is the real answer; prefer it.

Mexico (+52) — the ``1`` after 52.
    Mexico abolished the mobile ``1`` in August 2019 and phonenumbers removed it from its metadata: ``+52 1 …``
    (11 national digits) is not even a *possible* number for it, so we drop the 1 before asking phonenumbers.
    key and e164: ``+52`` and the 10 national digits, without the 1 (the only form phonenumbers accepts).
    wa_id: a digits-only input is kept as it came; otherwise ``521`` + 10 digits, the form WhatsApp webhooks
    report for Mexican accounts.

Argentina (+54) — the ``9`` after 54, and the national ``15``.
    International dialling of a mobile inserts 9 after 54 (``+54 9 11 2345-6789``); national dialling writes 15
    after the area code instead (``011 15 2345-6789``). phonenumbers already rewrites ``+54 <area> 15 …`` to the
    9 form; we also accept both at once (``+54 9 <area> 15 …``). The national number is 10 digits either way.
    key: ``+54`` and the 10 national digits, WITHOUT the 9 — a dialling token, not part of the number.
    e164: the 9 form when valid (WhatsApp users are mobiles; it is also the wa_id form), else the form without.
    wa_id: a digits-only input is kept as it came; otherwise the digits of e164 (WhatsApp ids are ``549…``).

Every other country: key = e164 = the number as phonenumbers formats it in E.164, wa_id = its digits.

Numbers that phonenumbers finds possible but not valid (Meta's ``+1 555`` test numbers, new ranges its metadata
does not know yet) are kept as given with ``valid=False``. Input must be international: ``+`` and the country code,
or digits only (a wa_id), which are read as if they had a ``+``.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers

__all__ = ["PhoneIdentity", "PhoneIdentityError", "identity_keys_equal", "phone_identity"]

_BR, _MX, _AR = 55, 52, 54
# DDDs where WhatsApp ids of old mobile accounts kept the 9th digit (the first areas to get it, 2012-2013).
_BR_WA_ID_KEEPS_NINE = frozenset({"11", "12", "13", "14", "15", "16", "17", "18", "19", "21", "22", "24", "27", "28"})
_MAX_SHOWN = 32  # how much of a rejected value goes into the error message


class PhoneIdentityError(ValueError):
    """The value is not a phone number we can identify a person by. The message says why."""


@dataclass(frozen=True)
class PhoneIdentity:
    e164: str  # the number in E.164 as we store and display it, e.g. "+5511987654321"
    key: str  # canonical identity: two forms of the same person's number give the same key
    wa_id: str  # digits to send to (the form WhatsApp uses), e.g. "5511987654321"
    valid: bool  # phonenumbers.is_valid_number(e164); possible-but-not-valid numbers are kept with False


def phone_identity(value: str) -> PhoneIdentity:
    """The identity of a wa_id ("5215512345678"), an E.164 number or an international number with formatting
    ("+55 (11) 98765-4321"). Raises PhoneIdentityError if the value is empty, not a number or not a possible one."""
    text = (value or "").strip() if isinstance(value, str) else ""
    if not text:
        raise PhoneIdentityError("phone number is empty")
    if any(ch.isalpha() for ch in text):
        raise PhoneIdentityError(f"phone number contains letters: {_shown(text)}")
    as_wa_id = text.isdigit()
    if as_wa_id:
        text = "+" + text
    elif not text.startswith("+"):
        raise PhoneIdentityError(f"phone number must start with + and the country code: {_shown(text)}")

    number = _parse(text, value)
    if number.country_code == _MX:
        number = _mexico_without_mobile_one(number, value)
    elif number.country_code == _AR and not phonenumbers.is_possible_number(number):
        number = _argentina_nine_and_fifteen(number, value)
    if not phonenumbers.is_possible_number(number):
        raise PhoneIdentityError(f"not a possible phone number: {_shown(value)}")

    cc = number.country_code
    nsn = phonenumbers.national_significant_number(number)
    given = f"+{cc}{nsn}"
    input_digits = text[1:] if as_wa_id else None

    if cc == _BR:
        return _brazil(nsn, given, input_digits)
    if cc == _MX:
        return _mexico(nsn, given, input_digits)
    if cc == _AR:
        return _argentina(nsn, given, input_digits)
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return PhoneIdentity(e164=e164, key=e164, wa_id=e164[1:], valid=phonenumbers.is_valid_number(number))


def identity_keys_equal(a: str, b: str) -> bool:
    """Whether two phone numbers belong to the same person. A value that is not a phone number equals nothing."""
    try:
        return phone_identity(a).key == phone_identity(b).key
    except PhoneIdentityError:
        return False


# --- countries --------------------------------------------------------------------------------------------------


def _brazil(nsn: str, given: str, input_digits: str | None) -> PhoneIdentity:
    ddd, subscriber = nsn[:2], nsn[2:]
    if len(subscriber) == 8 and subscriber[0] in "6789":
        with_nine, without_nine = f"+55{ddd}9{subscriber}", given
    elif len(subscriber) == 9 and subscriber[0] == "9" and subscriber[1] in "6789":
        with_nine, without_nine = given, f"+55{ddd}{subscriber[1:]}"
    else:  # landline, or a 9-digit mobile that never had an 8-digit form
        return _plain(given, input_digits)
    e164 = _first_valid(with_nine, without_nine, default=given)
    forms = (with_nine[1:], without_nine[1:])
    if input_digits in forms:
        wa_id = input_digits
    else:
        wa_id = with_nine[1:] if ddd in _BR_WA_ID_KEEPS_NINE else without_nine[1:]
    return PhoneIdentity(e164=e164, key=with_nine, wa_id=wa_id, valid=_is_valid(e164))


def _mexico(nsn: str, given: str, input_digits: str | None) -> PhoneIdentity:
    # ``nsn`` no longer has the mobile 1 (see _mexico_without_mobile_one), so ``given`` is the +52 + 10 digits form.
    forms = (f"52{nsn}", f"521{nsn}")
    wa_id = input_digits if input_digits in forms else forms[1]
    return PhoneIdentity(e164=given, key=given, wa_id=wa_id, valid=_is_valid(given))


def _argentina(nsn: str, given: str, input_digits: str | None) -> PhoneIdentity:
    if len(nsn) == 11 and nsn[0] == "9":
        with_nine, without_nine = given, f"+54{nsn[1:]}"
    elif len(nsn) == 10 and nsn[0] in "123":  # geographic area codes start 1-3; 800/810/600 have no mobile form
        with_nine, without_nine = f"+549{nsn}", given
    else:
        return _plain(given, input_digits)
    e164 = _first_valid(with_nine, without_nine, default=given)
    forms = (with_nine[1:], without_nine[1:])
    wa_id = input_digits if input_digits in forms else e164[1:]
    return PhoneIdentity(e164=e164, key=without_nine, wa_id=wa_id, valid=_is_valid(e164))


def _plain(given: str, input_digits: str | None) -> PhoneIdentity:
    wa_id = input_digits if input_digits == given[1:] else given[1:]
    return PhoneIdentity(e164=given, key=given, wa_id=wa_id, valid=_is_valid(given))


# --- parsing ----------------------------------------------------------------------------------------------------


def _parse(text: str, value: str) -> phonenumbers.PhoneNumber:
    try:
        return phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise PhoneIdentityError(f"not a phone number: {_shown(value)}")


def _mexico_without_mobile_one(number: phonenumbers.PhoneNumber, value: str) -> phonenumbers.PhoneNumber:
    """+52 1 XX XXXX XXXX -> +52 XX XXXX XXXX. Mexican national numbers are 10 digits; an 11th leading 1 is the
    old mobile token, which phonenumbers no longer accepts."""
    nsn = phonenumbers.national_significant_number(number)
    if len(nsn) == 11 and nsn[0] == "1":
        return _parse(f"+52{nsn[1:]}", value)
    return number


def _argentina_nine_and_fifteen(number: phonenumbers.PhoneNumber, value: str) -> phonenumbers.PhoneNumber:
    """+54 9 <area> 15 <subscriber> writes the mobile mark twice. Without the 9, phonenumbers turns the 15 into the
    9 itself; keep that if it makes the number possible."""
    nsn = phonenumbers.national_significant_number(number)
    if nsn.startswith("9"):
        candidate = _parse(f"+54{nsn[1:]}", value)
        if phonenumbers.is_possible_number(candidate):
            return candidate
    return number


def _first_valid(*forms: str, default: str) -> str:
    return next((form for form in forms if _is_valid(form)), default)


def _is_valid(e164: str) -> bool:
    return phonenumbers.is_valid_number(phonenumbers.parse(e164, None))


def _shown(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "…")
