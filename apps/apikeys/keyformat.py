"""The API-key format: one module owns generating, parsing, checksums and digests.

Format (SPEC §2.1)::

    <prefix><random><checksum>
    prefix   ss_pub_ | ss_secret_ | ss_org_
    random   32 base62 characters from `secrets` (~190 bits)
    checksum 6 base62 characters: zlib.crc32 of the UTF-8 text before it,
             alphabet 0-9A-Za-z, most significant digit first, left-padded with 0

Regular expression for secret scanners: ``\\bss_(pub|secret|org)_[0-9A-Za-z]{38}\\b``.

Invariants:
* the plaintext key is never stored: the database keeps `digest()` (SHA-256 hex)
  and `display_prefix()` (type prefix + first 8 random characters; for a
  legacy key at most a quarter of its secret part);
* a candidate whose checksum does not match is rejected here, without any
  database work, and the comparison is constant-time;
* legacy keys (`tb_`, `ss_live_`) have no checksum; they are recognised by
  prefix and looked up by digest like the others.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import zlib
from dataclasses import dataclass
from enum import Enum

BASE62_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
RANDOM_LENGTH = 32
CHECKSUM_LENGTH = 6
DISPLAY_RANDOM_LENGTH = 8
LEGACY_PREFIXES: tuple[str, ...] = ("tb_", "ss_live_")
_BASE62_CHARACTER = "[0-9A-Za-z]"
_LEGACY_PREFIX = "|".join(LEGACY_PREFIXES)
_LEGACY_CHARACTER = r"[0-9A-Za-z_\-]"
# Legacy keys were free-form; bound them so garbage cannot pass as one.
LEGACY_KEY_PATTERN = re.compile(rf"(?:{_LEGACY_PREFIX}){_LEGACY_CHARACTER}{{8,200}}")
#: The import refuses a legacy key with a shorter secret part (after its prefix):
#: too weak to keep, and a display prefix of it would give away too much of it.
#: Keys imported before this rule still authenticate (LEGACY_KEY_PATTERN).
LEGACY_MIN_SECRET_LENGTH = 20
#: A run the import would take as a legacy key: one that must not land in a key's name.
#: Shorter runs (`ss_live_dashboard`) are names, not keys this import can hold.
IMPORTABLE_LEGACY_KEY = re.compile(
    rf"(?:{_LEGACY_PREFIX}){_LEGACY_CHARACTER}{{{LEGACY_MIN_SECRET_LENGTH},}}"
)


class KeyKind(Enum):
    """What a prefix mints: (prefix, type, scope)."""

    PUBLIC = ("ss_pub_", "public", "project")
    SECRET = ("ss_secret_", "secret", "project")
    ORGANIZATION = ("ss_org_", "secret", "organization")

    def __init__(self, prefix: str, key_type: str, scope: str) -> None:
        self.prefix = prefix
        self.key_type = key_type
        self.scope = scope


KIND_BY_PREFIX: dict[str, KeyKind] = {kind.prefix: kind for kind in KeyKind}
_PREFIX = "|".join(KIND_BY_PREFIX)
KEY_PATTERN = re.compile(
    rf"({_PREFIX})({_BASE62_CHARACTER}{{{RANDOM_LENGTH}}})({_BASE62_CHARACTER}{{{CHECKSUM_LENGTH}}})"
)
#: A key of any format, whole or cut short, anywhere in a text (`mask_keys`). The run after
#: a prefix takes "_" and "-" too, so a key glued behind another prefix ("ss_pub_ss_secret_…")
#: is inside the run masked, not left after it (found by a fuzzing audit).
KEY_IN_TEXT = re.compile(rf"({_PREFIX}|{_LEGACY_PREFIX}){_LEGACY_CHARACTER}+")
#: Where a key-shaped run starts, every start, overlapping ones included (`holds_a_key`).
_KEY_STARTS = re.compile(rf"(?=({KEY_PATTERN.pattern}))")


def mask_keys(text: str) -> str:
    """`text` with every key in it replaced by its type prefix and "…" (`ss_secret_…`).

    Registered with `core.errors.never_echo`, so no error body quotes a key that a client
    sent in the wrong field. A key is found anywhere, also glued to other text (the tail
    of "https://ss_secret_…") and also cut short: validators quote at most 40 to 100
    characters, and 40 are enough to rebuild an `ss_org_` key (its checksum is a CRC).
    """
    if "_" not in text:  # every key has one: most texts are done without the regex
        return text
    return KEY_IN_TEXT.sub(_prefix_and_ellipsis, text)


def _prefix_and_ellipsis(match: re.Match[str]) -> str:
    return match[1] + "…"


class Shape(Enum):
    """How a bearer credential is routed, decided from its text alone."""

    KEY = "key"
    LEGACY_KEY = "legacy_key"
    JWT = "jwt"
    NOT_A_CREDENTIAL = "garbage"


def to_base62(number: int, width: int) -> str:
    digits = []
    while number:
        number, remainder = divmod(number, 62)
        digits.append(BASE62_ALPHABET[remainder])
    return "".join(reversed(digits)).rjust(width, "0")


#: Every two-digit base62 text, by value: the checksum is three of them.
_BASE62_PAIRS = tuple(a + b for a in BASE62_ALPHABET for b in BASE62_ALPHABET)


def checksum(body: str) -> str:
    """The 6-character base62 CRC32 of `body` (the key text before the checksum).

    Equal to ``to_base62(crc, 6)``, in two divisions (it runs on every request).
    """
    high, low = divmod(zlib.crc32(body.encode("utf-8")), 62 * 62)
    high, middle = divmod(high, 62 * 62)
    return _BASE62_PAIRS[high] + _BASE62_PAIRS[middle] + _BASE62_PAIRS[low]


def generate(kind: KeyKind) -> str:
    """A new key of `kind`. The only place a key's randomness is drawn."""
    body = kind.prefix + "".join(secrets.choice(BASE62_ALPHABET) for _ in range(RANDOM_LENGTH))
    return body + checksum(body)


def digest(key: str) -> str:
    """SHA-256 hex digest of the full key: what the database stores and indexes."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def digests_match(stored: str, computed: str) -> bool:
    return hmac.compare_digest(stored.encode("ascii"), computed.encode("ascii"))


def legacy_prefix_of(candidate: str) -> str | None:
    for prefix in LEGACY_PREFIXES:
        if candidate.startswith(prefix):
            return prefix
    return None


def display_prefix(key: str) -> str:
    """What may be shown of a key: its type prefix and the first few secret characters.

    A new key shows 8 of its 38 secret characters. A legacy key shows at most 8
    and at most a quarter of its secret part (the part after `tb_` /
    `ss_live_`), so a short legacy key is never shown whole or nearly whole.
    """
    legacy = legacy_prefix_of(key)
    if legacy is None:
        prefix = KEY_PATTERN.match(key).group(1)  # type: ignore[union-attr]
        return key[: len(prefix) + DISPLAY_RANDOM_LENGTH]
    shown = min(DISPLAY_RANDOM_LENGTH, (len(key) - len(legacy)) // 4)
    return key[: len(legacy) + shown]


def legacy_key_too_short(key: str) -> bool:
    """Whether a legacy key's secret part is shorter than LEGACY_MIN_SECRET_LENGTH."""
    prefix = legacy_prefix_of(key) or ""
    return len(key) - len(prefix) < LEGACY_MIN_SECRET_LENGTH


@dataclass(frozen=True, slots=True)
class ParsedKey:
    kind: KeyKind
    key: str


def is_valid_key(candidate: str) -> bool:
    """A well-formed key with a valid checksum. Never touches the database.

    The authentication path asks only this (it runs on every request).
    """
    if KEY_PATTERN.fullmatch(candidate) is None:
        return False
    body_end = len(candidate) - CHECKSUM_LENGTH
    return hmac.compare_digest(checksum(candidate[:body_end]), candidate[body_end:])


def holds_a_key(text: str) -> bool:
    """Whether a key with a valid checksum is anywhere in `text`, glued to other text or
    not, behind another key's prefix too ("ss_pub_" + 36 characters + a key: a scan by
    whole matches took the key's "ss" into the first, found by a fuzzing audit). Legacy keys
    have no checksum to tell them from ordinary words, so they are not looked for."""
    return "_" in text and any(is_valid_key(match[1]) for match in _KEY_STARTS.finditer(text))


def parse(candidate: str) -> ParsedKey | None:
    """A well-formed key with a valid checksum, and its kind; None otherwise."""
    if not is_valid_key(candidate):
        return None
    return ParsedKey(kind=KIND_BY_PREFIX[KEY_PATTERN.match(candidate).group(1)], key=candidate)  # type: ignore[union-attr]


def is_legacy_key(candidate: str) -> bool:
    return LEGACY_KEY_PATTERN.fullmatch(candidate) is not None


_KEY_PREFIXES = tuple(KIND_BY_PREFIX)
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")


def shape_of(credential: str) -> Shape:
    """Route a bearer credential by its shape: key prefixes first, then JWT, else garbage."""
    if credential.startswith(_KEY_PREFIXES):
        return Shape.KEY
    if legacy_prefix_of(credential):
        return Shape.LEGACY_KEY
    if _JWT_SHAPE.fullmatch(credential):
        return Shape.JWT
    return Shape.NOT_A_CREDENTIAL
