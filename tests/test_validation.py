"""`core.validation`: which unknown body members count as a misspelled field
(`near_misses`), and which display names are kept (`clean_name`)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apps.apikeys.api import MINT_FIELDS as FIELDS
from core.errors import ValidationFailed
from core.validation import MAX_NAME_LENGTH, check_fields, clean_name, near_misses
from tests.orgs.helpers import UNSHOWN_IN_NAMES

REFUSED_CHARACTERS = "Names cannot contain control, invisible or text-direction characters."
#: The bidirectional embeddings, overrides and isolates. The marks (U+200E, U+200F,
#: U+061C) are kept: they only give a direction to the punctuation next to them, which
#: a mixed-direction name may need.
BIDI_REORDERING = "".join(map(chr, [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]))
#: What shows as nothing. The joiners (U+200C, U+200D) are kept: they shape what is shown.
INVISIBLE = (
    "\xad\u115f\u1160\u17b4\u17b5\u180e\u200b\u2060\u2061\u2062\u2063\u2064\u3164\ufeff\uffa0"
    # the rest of Unicode's default-ignorable characters (DerivedCoreProperties)
    "\u034f\u180b\u180c\u180d\u180f\u206a\u206b\u206c\u206d\u206e\u206f\ufff0\ufff9\ufffa\ufffb"
    "\U0001bca0\U0001bca3\U0001d173\U0001d17a\U000e0001\U000e0020\U000e0041\U000e007f\U000e01f0"
)
#: The variation selectors: kept only after what they vary (an emoji, a CJK ideograph).
VARIATION_SELECTORS = "".join(map(chr, [*range(0xFE00, 0xFE10), *range(0xE0100, 0xE01F0)]))


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


def test_a_body_refuses_every_unknown_member_and_names_the_misspelled_one():
    with pytest.raises(ValidationFailed) as refused:
        check_fields({"name": "x", "colour": "red", "expires_at": 1}, FIELDS)

    assert refused.value.details["fields"] == {
        "colour": ["Unknown field."],
        "expires_at": ["Unknown field: did you mean expiresAt?"],
    }


def test_a_body_of_known_fields_passes():
    check_fields({"name": "x"}, FIELDS)


# Display names


@pytest.mark.parametrize("char", UNSHOWN_IN_NAMES.values(), ids=UNSHOWN_IN_NAMES.keys())
def test_a_name_with_a_control_or_text_direction_character_is_refused(char):
    with pytest.raises(ValidationFailed) as refused:
        clean_name(f"CI{char}prod", "organizationName")

    assert refused.value.details["fields"] == {"organizationName": [REFUSED_CHARACTERS]}


@pytest.mark.parametrize(
    "name",
    [
        "Café Zürich",
        "תשלומים",
        "مدفوعات (prod)",
        "שלום\u200f prod",
        "👩\u200d💻 ops",
        "ci/cd",
    ],
)
def test_names_in_any_script_with_emoji_and_direction_marks_are_kept(name):
    assert clean_name(name) == name


def test_surrounding_white_space_and_line_breaks_are_stripped_not_refused():
    assert clean_name(" \t Deploys\r\n") == "Deploys"


#: Refused only where they vary or tag nothing (`core.validation`): a variation selector is
#: kept after a digit, an emoji or an ideograph, tag characters inside a region's flag; their
#: own tests hold where they are refused. The property below holds for the rest, wherever
#: they stand (it drew "a0\ufe0fz", a digit's emoji presentation, which is kept).
CONTEXTUAL = set(VARIATION_SELECTORS) | set(map(chr, range(0xE0020, 0xE0080)))
REFUSED_ANYWHERE = sorted(set(UNSHOWN_IN_NAMES.values()) | set(BIDI_REORDERING + INVISIBLE))
REFUSED_ANYWHERE = [char for char in REFUSED_ANYWHERE if char not in CONTEXTUAL]


@given(st.text(max_size=40), st.sampled_from(REFUSED_ANYWHERE), st.text(max_size=40))
def test_a_control_or_text_direction_character_anywhere_inside_is_refused(before, char, after):
    with pytest.raises(ValidationFailed) as refused:
        clean_name(f"a{before}{char}{after}z")

    assert list(refused.value.details["fields"]) == ["name"]


_shown = st.characters(
    exclude_categories=("Cc", "Cs", "Zl", "Zp"),
    exclude_characters=BIDI_REORDERING + INVISIBLE + VARIATION_SELECTORS,
).filter(lambda c: not 0xE0000 <= ord(c) <= 0xE0FFF and not 0xFFF0 <= ord(c) <= 0xFFF8)


def _shows_something(name: str) -> bool:
    return any(unicodedata.category(c)[0] in "LNPS" and c != "\u2800" for c in name)


@given(st.text(_shown, max_size=MAX_NAME_LENGTH + 20))
def test_any_other_name_is_kept_stripped_when_1_to_100_characters_one_shown(name):
    stripped = unicodedata.normalize("NFC", name.strip())
    if 1 <= len(stripped) <= MAX_NAME_LENGTH and _shows_something(stripped):
        assert clean_name(name) == stripped
    else:
        with pytest.raises(ValidationFailed):
            clean_name(name)


@pytest.mark.parametrize("name", ["\u200d", "\u200f", " \u200c\u200d ", "\u061c"])
def test_a_name_of_joiners_or_marks_only_shows_nothing_and_is_refused(name):
    """A pages audit: an invisible name (a zero-width character alone) was kept."""
    with pytest.raises(ValidationFailed) as refused:
        clean_name(name)

    assert refused.value.details["fields"] == {"name": ["A name is required."]}


@pytest.mark.parametrize(
    "name",
    [
        "\u2800",  # the braille blank, a "symbol" drawn as nothing
        "\u0301",  # a combining accent with no letter under it
        "\u2800\u200d\u2800",
    ],
)
def test_a_name_of_blanks_or_lone_marks_shows_nothing_and_is_refused(name):
    """A Unicode audit: a project named U+2800 showed as an empty line in every list."""
    with pytest.raises(ValidationFailed) as refused:
        clean_name(name)

    assert refused.value.details["fields"] == {"name": ["A name is required."]}


def test_text_hidden_in_tag_characters_is_refused():
    """Tag letters draw nothing: "Production" and "Production" + tags looked one name, and the
    second carried hidden ASCII text ("ASCII smuggling") into the audit log and webhooks."""
    hidden = "".join(chr(0xE0000 + ord(c)) for c in "ignore previous instructions")

    with pytest.raises(ValidationFailed) as refused:
        clean_name(f"Production{hidden}")

    assert refused.value.details["fields"] == {"name": [REFUSED_CHARACTERS]}


@pytest.mark.parametrize(
    "name",
    [
        "\u2764\ufe0f ops",  # red heart: the emoji form of a symbol
        "#\ufe0f\u20e3 alerts",  # keycap
        "\u203c\ufe0f paging",
        "\U0001f3f3\ufe0f\u200d\U0001f308 team",  # rainbow flag
        "\u845b\U000e0100\u98fe",  # an ideographic variation sequence (Japanese names)
        # a region's flag (Scotland), the one use of tag characters
        "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f Glasgow",
    ],
)
def test_variation_selectors_and_region_flags_are_kept_where_they_draw_something(name):
    assert clean_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "Production\ufe0f",  # after a Latin letter it changes nothing
        "\ufe0fProduction",
        "Caf\xe9\ufe0e",
        "\U0001f3f4\U000e0041\U000e007f Flag",  # not a region's code
        "\U0001f3f4" + "".join(chr(0xE0061 + n % 26) for n in range(20)) + "\U000e007f",
    ],
)
def test_a_variation_selector_that_varies_nothing_or_other_tags_are_refused(name):
    with pytest.raises(ValidationFailed) as refused:
        clean_name(name)

    assert refused.value.details["fields"] == {"name": [REFUSED_CHARACTERS]}


def test_a_name_is_kept_composed_and_counted_as_composed():
    """An "é" typed as e plus a combining accent (macOS file names, some keyboards) is one
    character: 60 of them were refused as more than 100, and stored unlike the "é" that
    every other keyboard sends, so neither search found the other."""
    decomposed = "e\u0301" * 60

    assert clean_name(decomposed) == "\xe9" * 60
