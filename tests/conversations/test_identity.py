"""conversations.identity: one identity per person for WhatsApp phone numbers. Pure functions, no database."""

from __future__ import annotations

import pytest

from conversations.identity import PhoneIdentity, PhoneIdentityError, identity_keys_equal, phone_identity


def identity(e164: str, key: str, wa_id: str, valid: bool = True) -> PhoneIdentity:
    return PhoneIdentity(e164=e164, key=key, wa_id=wa_id, valid=valid)


# (given input, expected identity)
IDENTITIES = {
    # Brazil: the 9 form is the key and the stored number; a wa_id is kept as WhatsApp sent it.
    "br_sao_paulo_wa_id_with_9": ("5511987654321", identity("+5511987654321", "+5511987654321", "5511987654321")),
    "br_sao_paulo_wa_id_without_9": ("551187654321", identity("+5511987654321", "+5511987654321", "551187654321")),
    "br_formatted_with_9": ("+55 (11) 98765-4321", identity("+5511987654321", "+5511987654321", "5511987654321")),
    "br_e164_without_9_in_ddd_11_guesses_wa_id_with_9": (
        "+551187654321",
        identity("+5511987654321", "+5511987654321", "5511987654321"),
    ),
    "br_alagoas_wa_id_without_9": ("558287654321", identity("+5582987654321", "+5582987654321", "558287654321")),
    "br_e164_with_9_in_ddd_82_guesses_wa_id_without_9": (
        "+5582987654321",
        identity("+5582987654321", "+5582987654321", "558287654321"),
    ),
    "br_landline_untouched": ("+55 11 3333-4444", identity("+551133334444", "+551133334444", "551133334444")),
    "br_landline_wa_id_untouched": ("551133334444", identity("+551133334444", "+551133334444", "551133334444")),
    "br_9_digit_mobile_without_old_form": (
        "+5511912345678",
        identity("+5511912345678", "+5511912345678", "5511912345678"),
    ),
    # Mexico: the key and the stored number drop the 1; the wa_id keeps it.
    "mx_wa_id_with_1": ("5215512345678", identity("+525512345678", "+525512345678", "5215512345678")),
    "mx_wa_id_without_1": ("525512345678", identity("+525512345678", "+525512345678", "525512345678")),
    "mx_e164_with_1": ("+5215512345678", identity("+525512345678", "+525512345678", "5215512345678")),
    "mx_formatted_with_1": ("+52 1 55 1234 5678", identity("+525512345678", "+525512345678", "5215512345678")),
    "mx_formatted_without_1": ("+52 55 1234 5678", identity("+525512345678", "+525512345678", "5215512345678")),
    "mx_guadalajara_with_1": ("+52 1 33 1234 5678", identity("+523312345678", "+523312345678", "5213312345678")),
    # Argentina: the key drops the 9; the stored number and the wa_id keep it.
    "ar_buenos_aires_wa_id_with_9": ("5491123456789", identity("+5491123456789", "+541123456789", "5491123456789")),
    "ar_buenos_aires_wa_id_without_9": ("541123456789", identity("+5491123456789", "+541123456789", "541123456789")),
    "ar_buenos_aires_formatted_with_9": (
        "+54 9 11 2345-6789",
        identity("+5491123456789", "+541123456789", "5491123456789"),
    ),
    "ar_buenos_aires_formatted_without_9": (
        "+54 11 2345-6789",
        identity("+5491123456789", "+541123456789", "5491123456789"),
    ),
    "ar_buenos_aires_national_15": (
        "+54 11 15 2345-6789",
        identity("+5491123456789", "+541123456789", "5491123456789"),
    ),
    "ar_cordoba_wa_id_with_9": ("5493514123456", identity("+5493514123456", "+543514123456", "5493514123456")),
    "ar_cordoba_formatted_without_9": (
        "+54 351 412-3456",
        identity("+5493514123456", "+543514123456", "5493514123456"),
    ),
    "ar_cordoba_national_15": ("+54 351 15 412-3456", identity("+5493514123456", "+543514123456", "5493514123456")),
    "ar_cordoba_9_and_15_both": (
        "+54 9 351 15 412-3456",
        identity("+5493514123456", "+543514123456", "5493514123456"),
    ),
    # Other countries: key = e164, wa_id = its digits.
    "pe_mobile": ("+51 987 654 321", identity("+51987654321", "+51987654321", "51987654321")),
    "pe_mobile_wa_id": ("51987654321", identity("+51987654321", "+51987654321", "51987654321")),
    "co_mobile": ("+57 300 1234567", identity("+573001234567", "+573001234567", "573001234567")),
    "us_number": ("+1 (202) 555-0123", identity("+12025550123", "+12025550123", "12025550123")),
    # Meta's test numbers are possible but not valid: kept as given.
    "meta_test_number_e164": ("+15550001234", identity("+15550001234", "+15550001234", "15550001234", valid=False)),
    "meta_test_number_wa_id": ("15551234567", identity("+15551234567", "+15551234567", "15551234567", valid=False)),
}


@pytest.mark.parametrize(("given", "expected"), IDENTITIES.values(), ids=IDENTITIES.keys())
def test_phone_identity_of_each_form(given, expected):
    # Given a number in one of the forms WhatsApp or people use
    # When we compute its identity
    identity_ = phone_identity(given)

    # Then the stored number, the key, the wa_id and validity are as the country's rules say
    assert identity_ == expected


# (first form, second form): the same person
SAME_PERSON = {
    "br_with_and_without_9": ("5511987654321", "551187654321"),
    "br_formatted_and_old_wa_id": ("+55 (82) 98765-4321", "558287654321"),
    "mx_521_and_52": ("5215512345678", "525512345678"),
    "mx_formatted_and_wa_id": ("+52 55 1234 5678", "5215512345678"),
    "ar_549_and_54_buenos_aires": ("5491123456789", "541123456789"),
    "ar_549_and_54_cordoba": ("5493514123456", "+54 351 412-3456"),
    "ar_15_and_wa_id": ("+54 11 15 2345-6789", "5491123456789"),
    "pe_digits_and_plus": ("51987654321", "+51987654321"),
    "co_digits_and_formatted": ("573001234567", "+57 300 123 4567"),
    "us_digits_and_formatted": ("12025550123", "+1 202-555-0123"),
}


@pytest.mark.parametrize(("first", "second"), SAME_PERSON.values(), ids=SAME_PERSON.keys())
def test_two_forms_of_one_number_share_a_key(first, second):
    # Given two forms of the same person's number
    # When we compare their identities
    # Then they have the same key
    assert phone_identity(first).key == phone_identity(second).key
    assert identity_keys_equal(first, second)


# (first number, second number): different people
DIFFERENT_PEOPLE = {
    "br_same_subscriber_other_ddd": ("5511987654321", "5521987654321"),
    "br_old_form_other_ddd": ("551187654321", "552187654321"),
    "br_landline_and_mobile_same_digits": ("+551133334444", "+5511933334444"),
    "mx_other_area": ("5215512345678", "5213312345678"),
    "ar_buenos_aires_and_cordoba": ("5491123456789", "5493514123456"),
    "br_and_ar_same_national_digits": ("+551123456789", "+541123456789"),
    "us_and_meta_test_number": ("+12025550123", "+15550001234"),
}


@pytest.mark.parametrize(("first", "second"), DIFFERENT_PEOPLE.values(), ids=DIFFERENT_PEOPLE.keys())
def test_different_numbers_do_not_merge(first, second):
    # Given the numbers of two different people
    # When we compare their identities
    # Then the keys differ
    assert phone_identity(first).key != phone_identity(second).key
    assert not identity_keys_equal(first, second)


# (given input, words the error message must contain)
REJECTED = {
    "empty": ("", "empty"),
    "blank": ("   ", "empty"),
    "none": (None, "empty"),
    "letters": ("abc", "letters"),
    "letters_inside_a_number": ("+55 11 9876A-4321", "letters"),
    "too_short_digits": ("12", "'12'"),
    "too_short_e164": ("+5511987", "not a possible phone number"),
    "too_long_e164": ("+5511987654321987", "not a possible phone number"),
    "unknown_country_code": ("+999 1234567", "not a phone number"),
    "national_without_country_code": ("(11) 98765-4321", "must start with +"),
    "plus_alone": ("+", "not a phone number"),
}


@pytest.mark.parametrize(("given", "message"), REJECTED.values(), ids=REJECTED.keys())
def test_rejects_what_is_not_a_possible_number(given, message):
    # Given a value that is not a possible phone number
    # When we compute its identity
    with pytest.raises(PhoneIdentityError) as raised:
        phone_identity(given)

    # Then the error says what is wrong
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_error_message_shows_the_offending_value_but_keeps_it_short():
    # Given a long value that is not a number
    given = "+55 " + "1" * 200

    # When it is rejected
    with pytest.raises(PhoneIdentityError) as raised:
        phone_identity(given)

    # Then the message names the value, shortened
    assert "+55 111" in str(raised.value)
    assert len(str(raised.value)) < 80


def test_keys_equal_is_false_when_either_value_is_not_a_number():
    # Given a valid number and a value that is not one
    # When we compare them, or the invalid value with itself
    # Then nothing equals an invalid value
    assert not identity_keys_equal("5511987654321", "")
    assert not identity_keys_equal("abc", "abc")


def test_digits_only_input_is_read_as_international():
    # Given the same number as digits only and with a plus
    # When we compute both identities
    # Then they are the same identity
    assert phone_identity("51987654321") == phone_identity("+51987654321")


def test_identity_is_frozen():
    # Given an identity
    identity_ = phone_identity("+51987654321")

    # When code tries to change it
    # Then it cannot
    with pytest.raises(AttributeError):
        identity_.key = "+51000000000"  # type: ignore[misc]
