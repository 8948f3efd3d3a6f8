"""The key format (SPEC §2.1): prefix, 32 base62 random characters, 6-character CRC32."""

from __future__ import annotations

import hashlib
import re
import string
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind, Shape

#: The alphabet as SPEC §2.1 states it: 0-9A-Za-z, in that order.
SPEC_ALPHABET = string.digits + string.ascii_uppercase + string.ascii_lowercase
#: The regular expression published for secret scanners (keyformat's docstring).
SCANNER_PATTERN = re.compile(r"\bss_(pub|secret|org)_[0-9A-Za-z]{38}\b")


def readme_scanner() -> dict:
    """The README's secret-scanner snippet ("API keys: format, for secret scanners"), run
    as published: an oracle written for scanners, not by the code under test."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (snippet,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", readme, re.S)
        if "def looks_like_sigsentry_key" in block
    ]
    namespace: dict = {}
    exec(snippet, namespace)
    return namespace


README = readme_scanner()


def spec_checksum(body: str) -> str:
    """SPEC §2.1 checksum written independently: CRC32 in base62, MSD first, 6 digits."""
    value = zlib.crc32(body.encode("utf-8"))
    digits = ""
    for _ in range(6):
        digits = SPEC_ALPHABET[value % 62] + digits
        value //= 62
    assert value == 0  # 62**6 > 2**32: six digits always suffice
    return digits


@pytest.mark.parametrize(
    ("kind", "prefix", "key_type", "scope"),
    [
        (KeyKind.PUBLIC, "ss_pub_", "public", "project"),
        (KeyKind.SECRET, "ss_secret_", "secret", "project"),
        (KeyKind.ORGANIZATION, "ss_org_", "secret", "organization"),
    ],
)
def test_generated_key_has_prefix_random_part_and_checksum(kind, prefix, key_type, scope):
    key = keyformat.generate(kind)
    assert (kind.prefix, kind.key_type, kind.scope) == (prefix, key_type, scope)
    assert key.startswith(prefix)
    random_part, check = key[len(prefix) : -6], key[-6:]
    assert len(random_part) == 32
    assert set(random_part) <= set(SPEC_ALPHABET)
    assert check == spec_checksum(key[:-6])
    assert SCANNER_PATTERN.search(f"leaked: {key}.") is not None
    assert keyformat.parse(key) == keyformat.ParsedKey(kind=kind, key=key)


def test_base62_is_most_significant_digit_first_and_zero_padded():
    assert keyformat.BASE62_ALPHABET == SPEC_ALPHABET
    assert keyformat.to_base62(0, 6) == "000000"
    assert keyformat.to_base62(61, 6) == "00000z"
    assert keyformat.to_base62(62, 6) == "000010"
    assert keyformat.to_base62(2**32 - 1, 6) == "4gfFC3"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("ss_secret_" + "0" * 32, "1m7BwF"),
        ("ss_pub_" + "A" * 32, "2uhlnK"),
        ("ss_org_abcdefghijklmnopqrstuvwxyz012345", "0kIsME"),
    ],
)
def test_checksum_matches_known_vectors(body, expected):
    """Fixed values, so secret scanners built from SPEC §2.1 keep agreeing with us."""
    assert keyformat.checksum(body) == expected == spec_checksum(body)
    assert keyformat.parse(body + expected) is not None


@given(st.text(max_size=60))
@hypothesis_settings(max_examples=300, deadline=None)
def test_checksum_is_the_spec_checksum_for_any_body(body):
    assert keyformat.checksum(body) == spec_checksum(body)


@pytest.mark.parametrize(
    ("crc", "digits"),
    [
        (0, "000000"),
        (1, "000001"),
        (61, "00000z"),
        (62, "000010"),
        (62**2 - 1, "0000zz"),
        (62**2, "000100"),
        (62**4 - 1, "00zzzz"),
        (62**4, "010000"),
        (2**31, "2LKcb2"),  # 2·62⁵ + 21·62⁴ + 20·62³ + 38·62² + 37·62 + 2, by hand
        (2**32 - 1, "4gfFC3"),
    ],
)
def test_checksum_digits_at_the_boundaries(crc, digits, monkeypatch):
    assert README["base62"](crc) == digits  # the scanners' own conversion agrees
    monkeypatch.setattr(keyformat.zlib, "crc32", lambda data: crc)
    assert keyformat.checksum("any") == digits


@pytest.mark.parametrize("kind", list(KeyKind), ids=lambda k: k.name.lower())
def test_the_readme_scanner_accepts_our_keys_and_refuses_a_changed_checksum(kind):
    for _ in range(20):
        key = keyformat.generate(kind)
        assert README["looks_like_sigsentry_key"](key), key[:12]
        for position in range(len(key) - 6, len(key)):
            for other in SPEC_ALPHABET.replace(key[position], ""):
                changed = key[:position] + other + key[position + 1 :]
                assert not README["looks_like_sigsentry_key"](changed)
                assert not keyformat.is_valid_key(changed)


def test_random_parts_do_not_repeat_and_use_the_whole_alphabet():
    keys = [keyformat.generate(KeyKind.SECRET) for _ in range(2000)]
    random_parts = [k[10:-6] for k in keys]
    assert len(set(random_parts)) == len(random_parts)
    # 64 000 draws from 62 symbols: every symbol appears, none dominates.
    counts = {c: 0 for c in SPEC_ALPHABET}
    for part in random_parts:
        for char in part:
            counts[char] += 1
    assert min(counts.values()) > 700 and max(counts.values()) < 1400


def test_display_prefix_is_the_type_prefix_and_eight_random_characters():
    key = keyformat.generate(KeyKind.ORGANIZATION)
    assert keyformat.display_prefix(key) == key[: len("ss_org_") + 8]
    assert keyformat.display_prefix("tb_" + "abcdefghij" * 4) == "tb_abcdefgh"
    assert keyformat.display_prefix("ss_live_" + "abcdefghij" * 4) == "ss_live_abcdefgh"


@pytest.mark.parametrize(
    ("key", "prefix"),
    [
        ("tb_abcdefghijklmnopqrst", "tb_abcde"),  # 20 secret characters: a quarter is 5
        ("tb_abcdefghijklmnopqrstuvwxyzABCDEF", "tb_abcdefgh"),  # 32: at most 8
        ("ss_live_abcdefghijklmnopqrstu", "ss_live_abcde"),  # 21: 5
        ("tb_Ab3dE6gH", "tb_Ab"),  # the reviewer's 8-character key: 2, never the whole key
    ],
)
def test_a_legacy_display_prefix_shows_at_most_a_quarter_of_the_secret_part(key, prefix):
    assert keyformat.display_prefix(key) == prefix


@given(
    kind=st.sampled_from([*keyformat.LEGACY_PREFIXES, *(k.prefix for k in KeyKind)]),
    length=st.integers(min_value=8, max_value=200),
)
def test_no_display_prefix_shows_more_than_8_nor_a_quarter_of_a_legacy_secret(kind, length):
    if kind in keyformat.LEGACY_PREFIXES:
        key = kind + "x" * length
    else:
        key = keyformat.generate(keyformat.KIND_BY_PREFIX[kind])
    secret_part = len(key) - len(kind)

    shown = len(keyformat.display_prefix(key)) - len(kind)

    assert shown <= 8
    assert shown <= secret_part // 4


def test_digest_is_the_sha256_hex_of_the_whole_key():
    key = keyformat.generate(KeyKind.PUBLIC)
    assert keyformat.digest(key) == hashlib.sha256(key.encode()).hexdigest()
    assert keyformat.digests_match(keyformat.digest(key), hashlib.sha256(key.encode()).hexdigest())
    assert not keyformat.digests_match(keyformat.digest(key), keyformat.digest(key + "x"))


@pytest.mark.parametrize(
    "candidate",
    [
        "",
        "ss_secret_",
        "ss_pub_" + "a" * 38,  # right shape, wrong checksum
        "ss_foo_" + "a" * 38,
        "SS_SECRET_" + "a" * 38,
        "ss_secret_" + "a" * 31 + "-" + "000000",
        "ss_secret_" + "é" * 32 + "000000",
        " ss_pub_" + "a" * 38,
    ],
)
def test_parse_refuses_anything_but_a_well_formed_key(candidate):
    assert keyformat.parse(candidate) is None


def test_parse_refuses_whitespace_around_a_valid_key():
    key = keyformat.generate(KeyKind.SECRET)
    for candidate in (f" {key}", f"{key}\n", f"{key} "):
        assert keyformat.parse(candidate) is None


@given(
    kind=st.sampled_from(list(KeyKind)),
    data=st.data(),
)
@hypothesis_settings(max_examples=300, deadline=None)
def test_any_single_character_substitution_breaks_the_checksum(kind, data):
    # The key is drawn by hypothesis (not by `secrets`) so that every example replays.
    body = kind.prefix + data.draw(
        st.text(
            alphabet=SPEC_ALPHABET,
            min_size=keyformat.RANDOM_LENGTH,
            max_size=keyformat.RANDOM_LENGTH,
        )
    )
    key = body + keyformat.checksum(body)
    assert keyformat.parse(key) is not None
    position = data.draw(st.integers(min_value=len(kind.prefix), max_value=len(key) - 1))
    replacement = data.draw(st.sampled_from(SPEC_ALPHABET).filter(lambda c: c != key[position]))
    assert keyformat.parse(key[:position] + replacement + key[position + 1 :]) is None


@pytest.mark.parametrize(
    ("credential", "shape"),
    [
        ("ss_pub_anything", Shape.KEY),
        ("ss_secret_anything", Shape.KEY),
        ("ss_org_anything", Shape.KEY),
        ("tb_legacykey123", Shape.LEGACY_KEY),
        ("ss_live_legacykey123", Shape.LEGACY_KEY),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln", Shape.JWT),
        ("a.b.", Shape.JWT),
        # a JWT with text after it is not a JWT: garbage, not a token to verify
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln!", Shape.NOT_A_CREDENTIAL),
        ("a.b.c/d", Shape.NOT_A_CREDENTIAL),
        ("ss_foo_abc", Shape.NOT_A_CREDENTIAL),
        ("ss_", Shape.NOT_A_CREDENTIAL),
        ("hello", Shape.NOT_A_CREDENTIAL),
        ("a.b", Shape.NOT_A_CREDENTIAL),
        ("sk_live_abc", Shape.NOT_A_CREDENTIAL),
    ],
)
def test_credentials_are_routed_by_shape(credential, shape):
    assert keyformat.shape_of(credential) is shape


@pytest.mark.parametrize(
    ("candidate", "is_legacy"),
    [
        ("tb_abcdefgh", True),
        ("ss_live_ABC-def_12345", True),
        ("tb_short", False),
        ("tb_" + "a" * 201, False),
        ("tb_abc def gh", False),
        ("tb_abcdefgh.ijk", False),
        ("ss_secret_abcdefgh", False),
    ],
)
def test_legacy_keys_are_recognised_by_prefix_and_bounded_shape(candidate, is_legacy):
    assert keyformat.is_legacy_key(candidate) is is_legacy


@pytest.mark.parametrize("kind", list(KeyKind))
def test_a_longer_text_whose_last_six_characters_check_out_is_no_key(kind):
    # A key's shape followed by more: its last six characters are the checksum of all
    # before them, so only the length says it is no key (SPEC §2.1: exactly 38 after the
    # prefix). Anything read as a key goes on to the database.
    body = kind.prefix + "A" * (keyformat.RANDOM_LENGTH + keyformat.CHECKSUM_LENGTH + 1)
    candidate = body + keyformat.checksum(body)
    assert keyformat.parse(candidate) is None
