"""`core.validation.near_misses`: which unknown body members count as a misspelled field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.apikeys.api import MINT_FIELDS as FIELDS
from core.errors import ValidationFailed
from core.validation import check_fields, near_misses


@pytest.mark.parametrize(
    ("sent", "meant"),
    [
        ("expires_at", "expiresAt"),
        ("EXPIRESAT", "expiresAt"),
        ("expireAt", "expiresAt"),
        ("expires", "expiresAt"),
        ("allowedIPs", "allowedIps"),
        ("allowed-ips", "allowedIps"),
        ("ips", "allowedIps"),
        ("origin", "allowedOrigins"),
        ("projectId", "projectIds"),
        ("project", "projectIds"),
        ("limit", "rateLimit"),
        ("permission", "permissions"),
    ],
)
def test_a_misspelling_is_named_with_the_field_it_resembles(sent, meant):
    assert near_misses({sent: 1}, FIELDS) == {sent: meant}


@pytest.mark.parametrize(
    "sent", ["type", "scope", "description", "metadata", "environment", "id", "key", "tags"]
)
def test_an_unrelated_member_is_not_a_misspelling(sent):
    assert near_misses({sent: 1}, FIELDS) == {}


def test_a_long_name_is_not_compared():
    assert near_misses({"expiresAt" * 100: 1}, FIELDS) == {}


def test_no_fields_no_misses():
    assert near_misses({"expires_at": 1}, ()) == {}


@given(st.sampled_from(FIELDS), st.sampled_from(["_", "-", ".", " ", ""]), st.booleans())
def test_any_case_or_separator_of_a_field_is_a_misspelling_of_it(field, separator, upper):
    words = "".join(f"{separator}{c.lower()}" if c.isupper() else c for c in field)
    sent = words.upper() if upper else words

    if sent != field:
        assert near_misses({sent: 1}, FIELDS) == {sent: field}


@given(st.lists(st.sampled_from(FIELDS), unique=True))
def test_the_fields_themselves_are_never_misses(sent):
    assert near_misses(dict.fromkeys(sent, 1), FIELDS) == {}


def test_a_closed_body_refuses_every_unknown_member_and_names_the_misspelled_one():
    with pytest.raises(ValidationFailed) as refused:
        check_fields({"name": "x", "colour": "red", "expires_at": 1}, FIELDS, closed=True)

    assert refused.value.details["fields"] == {
        "colour": ["Unknown field."],
        "expires_at": ["Unknown field: did you mean expiresAt?"],
    }


def test_an_open_body_ignores_an_unrelated_member():
    check_fields({"name": "x", "colour": "red"}, FIELDS)
