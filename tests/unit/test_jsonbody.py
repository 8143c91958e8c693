"""The edge's rules for JSON bodies: nesting bounded by a setting, numbers finite, field named."""

from __future__ import annotations

import json

import pytest
from mlplane.jsonbody import find_fault, is_json


def nested(levels: int, leaf: str = "1") -> bytes:
    return ('{"a":' * levels + leaf + "}" * levels).encode()


def test_a_body_within_the_depth_limit_passes():
    assert find_fault(nested(32), max_depth=32) is None


def test_one_level_too_deep_is_refused_at_the_field_that_goes_too_deep():
    fault = find_fault(nested(33), max_depth=32)
    assert fault is not None and fault.type == "json_too_deep"
    assert fault.field == ".".join(["a"] * 32)
    assert "32" in fault.message


def test_depth_counts_lists_as_levels_and_names_their_indexes():
    body = json.dumps({"x": [[[1]]]}).encode()
    fault = find_fault(body, max_depth=3)
    assert fault is not None and fault.field == "x.0.0"


def test_nesting_past_the_parsers_own_limit_is_refused_without_an_error():
    fault = find_fault(nested(100_000), max_depth=32)
    assert fault is not None and fault.field == "body"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused_and_named(literal: str):
    fault = find_fault(f'{{"configuration": {{"x": [1, {literal}]}}}}'.encode())
    assert fault is not None and fault.type == "json_not_finite"
    assert fault.field == "configuration.x.1"


def test_the_words_nan_and_infinity_inside_strings_are_fine():
    assert find_fault(b'{"name": "NaN", "note": "Infinity and beyond"}') is None


def test_many_shallow_objects_are_fine():
    assert find_fault(json.dumps([{"a": i} for i in range(1000)]).encode()) is None


def test_a_body_that_is_not_json_is_left_to_the_route():
    assert find_fault(b"{nope" + b"[" * 50) is None


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        (None, True),
        ("application/json", True),
        ("application/problem+json; charset=utf-8", True),
        ("multipart/form-data; boundary=x", False),
        ("text/plain", False),
    ],
)
def test_json_media_types(content_type, expected):
    assert is_json(content_type) is expected


def test_a_nul_character_in_any_string_is_refused_and_named():
    fault = find_fault(b'{"connectors": [{"name": "a\\u0000b"}]}')
    assert fault is not None and fault.type == "string_nul"
    assert fault.field == "connectors.0.name"


def test_a_nul_character_in_a_field_name_is_refused():
    fault = find_fault(b'{"x": {"a\\u0000": 1}}')
    assert fault is not None and fault.field == "x"
