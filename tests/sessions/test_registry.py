"""Reading the connection registry: every problem is found before anything is written, and says where."""

from __future__ import annotations

import json

import pytest

from sessions.registry import RegistryError, load_registry, parse_registry
from tests.sessions.conftest import connection_entry


def problems_of(data) -> list[dict]:
    with pytest.raises(RegistryError) as caught:
        parse_registry(data if isinstance(data, str) else json.dumps(data))
    return [problem.as_dict() for problem in caught.value.problems]


def test_an_array_and_an_object_with_connections_read_the_same():
    entries = [connection_entry(1), connection_entry(2, client="ventas")]

    as_array = parse_registry(json.dumps(entries))
    as_object = parse_registry(json.dumps({"connections": entries, "version": 3}))

    assert as_array == as_object
    first, second = as_array
    assert (first.index, first.entry_id, first.phone_number_id) == (0, "conn-1", "106540352200001")
    assert first.e164 == "+51900001001"
    assert first.alias == "Linea 1" and first.is_active is True and first.client_slug is None
    assert second.client_slug == "ventas"


def test_optional_keys_default_sensibly_and_absent_tokens_stay_unknown():
    (entry,) = parse_registry(json.dumps([{"phoneNumberId": 106540352242922, "displayNumber": "+51 987 654 321"}]))

    assert entry.phone_number_id == "106540352242922"  # exported as a JSON number: still Meta's id
    assert entry.alias == "+51 987 654 321"
    assert entry.is_active is True
    assert entry.access_token is None and entry.verify_token is None and entry.waba_id is None


def test_meta_test_numbers_are_possible_though_not_valid():
    (entry,) = parse_registry(json.dumps([connection_entry(1, displayNumber="+1 555 010 9999")]))

    assert entry.e164 == "+15550109999"


def test_invalid_json_names_line_and_column():
    assert problems_of('[{"phoneNumberId": "1",\n  "displayNumber": }]') == [
        {"index": None, "id": "", "message": "invalid JSON at line 2, column 20: Expecting value"}
    ]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"numbers": []}, "a JSON object must have a `connections` array"),
        ("42", "expected a JSON array of connections"),
        ({"connections": "x"}, "expected a JSON array of connections"),
    ],
)
def test_a_file_of_the_wrong_shape_is_rejected(data, message):
    assert problems_of(data) == [{"index": None, "id": "", "message": message}]


def test_every_entry_problem_is_reported_with_index_and_id():
    data = [
        connection_entry(1),
        {**connection_entry(2), "phoneNumberId": ""},
        {key: value for key, value in connection_entry(3).items() if key != "displayNumber"},
        connection_entry(4, displayNumber="+51 12"),
        connection_entry(5, isActive="yes"),
        connection_entry(6, alias=["not", "text"]),
        "not an object",
    ]

    assert problems_of(data) == [
        {"index": 1, "id": "conn-2", "message": "`phoneNumberId` is required"},
        {"index": 2, "id": "conn-3", "message": "`displayNumber` is required"},
        {
            "index": 3,
            "id": "conn-4",
            "message": "`displayNumber` '+51 12' is not a possible phone number in international form (+CC …)",
        },
        {"index": 4, "id": "conn-5", "message": '`isActive` must be true or false, got "yes"'},
        {"index": 5, "id": "conn-6", "message": "`alias` must be a string, got list"},
        {"index": 6, "id": "", "message": "expected an object, got str"},
    ]


def test_a_national_number_without_country_code_is_not_accepted():
    (problem,) = problems_of([connection_entry(1, displayNumber="987 654 321")])

    assert problem["index"] == 0 and "not a possible phone number" in problem["message"]


def test_two_entries_with_the_same_phone_number_id_are_both_named():
    data = [connection_entry(1), connection_entry(2), connection_entry(3, phoneNumberId="106540352200001")]

    assert problems_of(data) == [
        {"index": 2, "id": "conn-3", "message": "phoneNumberId 106540352200001 repeats entry 0 (id conn-1)"}
    ]


def test_two_entries_with_the_same_number_written_differently_are_rejected():
    data = [connection_entry(1, displayNumber="+51 987 654 321"), connection_entry(2, displayNumber="+51987654321")]

    assert problems_of(data) == [
        {"index": 1, "id": "conn-2", "message": "displayNumber +51987654321 is also entry 0 (id conn-1)"}
    ]


def test_missing_file_directory_and_non_utf8_are_clear_errors(tmp_path):
    with pytest.raises(RegistryError, match=r"file: registry file .*nope\.json does not exist"):
        load_registry(tmp_path / "nope.json")
    with pytest.raises(RegistryError, match="is a directory, not a file"):
        load_registry(tmp_path)
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('[{"alias": "Línea"}]'.encode("latin-1"))
    with pytest.raises(RegistryError, match="the file is not UTF-8 text"):
        load_registry(latin1)


def test_a_utf8_byte_order_mark_is_accepted():
    (entry,) = parse_registry(b"\xef\xbb\xbf" + json.dumps([connection_entry(1, alias="Línea Ñ")]).encode())

    assert entry.alias == "Línea Ñ"
