"""Input rules shared by several services."""

from __future__ import annotations

import difflib
import json
import re
import unicodedata
import uuid
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from django.conf import settings

from core.errors import ValidationFailed

#: A UUID as SPEC and every answer write it (8-4-4-4-12 hex digits, either case).
#: `uuid.UUID` alone also takes `urn:uuid:…`, braces, no dashes, and `_` between digits
#: (it parses the hex with `int`).
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
#: The same, as a JSON Schema `pattern` (anchored) for a UUID sent as text.
UUID_PATTERN = f"^{_UUID.pattern}$"

MAX_NAME_LENGTH = 100

#: How alike (difflib's ratio, spelling folded) a sent name and a field must be for the
#: name to count as a misspelling of the field: `expiresat` 0.94, `projectId` 0.95,
#: `expires` 0.88, `project` 0.82; `description`, `type` and `scope` are below 0.6.
NEAR_MISS_RATIO = 0.8

T = TypeVar("T")


#: What a name never holds: control characters (C0 with tab and line feed, since a name
#: is one line, DEL, C1), line and paragraph separators, the bidirectional embeddings,
#: overrides and isolates (U+202A-U+202E, U+2066-U+2069) that show text in another order
#: than it is stored, and the characters that show as nothing (a soft hyphen, the zero-width
#: space, the word joiner and invisible operators, the byte-order mark, the Hangul and
#: Khmer fillers, the Mongolian vowel separator: "Prod\u200bduction" read as "Production",
#: a pages audit), so a name in a list or the audit log reads as what it is. With them the
#: rest of Unicode's default-ignorable characters (DerivedCoreProperties; PRECIS, RFC 8264
#: §9.13, disallows them all): the combining grapheme joiner U+034F, the Mongolian free
#: variation selectors U+180B-U+180F, the deprecated format characters U+206A-U+206F, the
#: interlinear annotations and reserved U+FFF0-U+FFFB, the shorthand format controls
#: U+1BCA0-U+1BCA3, the musical beam and phrase controls U+1D173-U+1D17A, and plane 14's
#: tags and reserved ignorables (U+E0000-U+E00FF, U+E01F0-U+E0FFF): "Production" followed
#: by tag letters reads as "Production" while it stores and sends on hidden ASCII text
#: ("ASCII smuggling"; a Unicode audit). The joiners (U+200C, U+200D: Persian words, emoji
#: sequences) and the direction marks (U+200E, U+200F, U+061C) stay: they shape or place
#: what is shown; variation selectors stay where they vary something (`_VARIES_NOTHING`).
_UNSHOWN = re.compile(
    "[\x00-\x1f\x7f-\x9f\xad\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b\u2028"
    "\u2029\u202a-\u202e\u2060-\u2064\u2066-\u206f\u3164\ufeff\uffa0\ufff0-\ufffb"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e00ff\U000e01f0-\U000e0fff]"
)
#: An emoji flag of a region (England, Scotland, Wales: U+1F3F4, its ISO 3166-2 code in
#: tag letters, a cancel tag), the one use of tags a name may have: matched whole and short,
#: so no other text hides in tags.
_REGION_FLAG = re.compile(
    "\U0001f3f4[\U000e0061-\U000e007a]{2}[\U000e0030-\U000e0039\U000e0061-\U000e007a]{1,4}"
    "\U000e007f"
)
_VARIATION_SELECTOR = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")
#: What shows as a blank although Unicode calls it a symbol (a name of it alone looks empty).
_BLANK = frozenset("\u2800")


def _takes_a_variation(base: str) -> bool:
    """Whether a variation selector after `base` can change how it is drawn: an emoji or other
    symbol or punctuation beyond ASCII (U+2764 U+FE0F is the red heart), a keycap's digit,
    `#` or `*`, a CJK ideograph (ideographic variation sequences). After a Latin letter it
    changes nothing, and "Production\ufe0f" would read as "Production"."""
    if base in "#*0123456789":
        return True
    category = unicodedata.category(base)
    return (ord(base) > 0x7F and category[0] in "SP") or (ord(base) >= 0x2E80 and category == "Lo")


def _varies_nothing(value: str) -> bool:
    return any(
        match.start() == 0 or not _takes_a_variation(value[match.start() - 1])
        for match in _VARIATION_SELECTOR.finditer(value)
    )


def _shows(character: str) -> bool:
    """A letter, digit, punctuation or symbol that is drawn (not a lone mark or joiner)."""
    return unicodedata.category(character)[0] in "LNPS" and character not in _BLANK


NAME_MISSING = "A name is required."


def shows_something(value: str) -> bool:
    """Whether a name has a character that is drawn: one of only joiners, marks or blanks
    (a braille blank) is no name, as an empty one."""
    return any(map(_shows, value))


def clean_name(
    value: Any,
    field: str = "name",
    missing: str = NAME_MISSING,
    max_length: int = MAX_NAME_LENGTH,
) -> str:
    """A display name (organization, project, key, log source, channel; an analysis's title
    with `max_length` 200): 1 to `max_length` characters once stripped and in Unicode's
    composed form (NFC, so "é" typed as e and a combining accent is one character, and is
    stored and found as the "é" every other keyboard sends), one of them shown, with no
    control, line-break, invisible or text-direction character (`has_unshown_characters`)."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed({field: [missing]})
    value = unicodedata.normalize("NFC", value.strip())
    if not shows_something(value):
        raise ValidationFailed({field: [missing]})
    if len(value) > max_length:
        raise ValidationFailed({field: [f"At most {max_length} characters."]})
    if has_unshown_characters(value):
        raise ValidationFailed({field: [UNSHOWN_MESSAGE]})
    return value


UNSHOWN_MESSAGE = "Names cannot contain control, invisible or text-direction characters."


def as_sent(value: Any, limit: int) -> str:
    """A list entry as the client wrote it, for a message naming what was refused: text as
    it is, anything else as its JSON (`null`, `true`, `{"a":1}`, never Python's `None`),
    cut to `limit` characters."""
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    return value[:limit]


def has_unshown_characters(value: str) -> bool:
    """Whether a one-line text (a name, a title) holds a character it must not (`_UNSHOWN`,
    outside a region's flag; a variation selector after what it cannot vary)."""
    return _UNSHOWN.search(_REGION_FLAG.sub("", value)) is not None or _varies_nothing(value)


def has_hidden_characters(value: str) -> bool:
    """Whether a URL or an address holds a space, control or invisible character: any
    Unicode control, format, surrogate, private-use or separator character (a
    right-to-left override or a zero-width space shows it as another than it is)."""
    return any(unicodedata.category(c)[0] in "CZ" for c in value)


class FieldErrors:
    """Runs several validators and reports every failing field in one VALIDATION_ERROR,
    so a form can show each message next to its field."""

    def __init__(self) -> None:
        self.fields: dict[str, list[str]] = {}

    def check(self, validate: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """`validate(...)`'s result, or None after recording its field messages."""
        try:
            return validate(*args, **kwargs)
        except ValidationFailed as exc:
            for field, messages in exc.details["fields"].items():
                self.fields.setdefault(field, []).extend(messages)
            return None

    def failed(self, field: str) -> bool:
        return field in self.fields

    def raise_any(self) -> None:
        if self.fields:
            raise ValidationFailed(self.fields)


def _folded(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def near_misses(body: Mapping[str, Any], fields: Collection[str]) -> dict[str, str]:
    """The members of `body` that are not among `fields` but look like a misspelling of
    one, each with the field it resembles: another case or separator (`expires_at`,
    `allowedIPs`), a letter off (`projectId`, `expireAt`) or a part of the name
    (`expires`, `origin`, `ips`, `limit`: 3 characters or more), so that the refusal says
    which field was meant. A name twice as long as the longest field is nothing like one
    (and is not compared: the cost stays linear in the body)."""
    known = {_folded(field): field for field in fields}
    longest = max(map(len, known), default=0)
    misses = {}
    for name in body:
        if name in fields or len(name) > 2 * longest:
            continue
        folded = _folded(str(name))
        close = difflib.get_close_matches(folded, known, n=1, cutoff=NEAR_MISS_RATIO)
        part = [k for k in known if len(folded) >= 3 and folded in k]
        if close or part:
            misses[str(name)[:64]] = known[(close or part)[0]]
    return misses


def check_fields(body: Mapping[str, Any], fields: Collection[str]) -> None:
    """VALIDATION_ERROR for the members of `body` that are not among `fields`: every `/v1`
    body that writes is closed, so a member the endpoint does not take is refused, never
    dropped (a security policy or a guardrail sent to the wrong endpoint, or misspelled,
    must not be silently ignored while the request succeeds). Each that looks like a
    misspelling of a field names it ("did you mean"), any other is "Unknown field.". A body
    of more members than a form may have (DATA_UPLOAD_MAX_NUMBER_FIELDS) is refused before
    any is compared."""
    if len(body) > settings.DATA_UPLOAD_MAX_NUMBER_FIELDS:
        raise ValidationFailed(
            {"body": [f"At most {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} fields."]}
        )
    errors = {
        name: [f"Unknown field: did you mean {field}?"]
        for name, field in near_misses(body, fields).items()
    }
    for name in body:
        if name not in fields:
            errors.setdefault(str(name)[:64], ["Unknown field."])
    if errors:
        raise ValidationFailed(errors)


def parse_uuid(value: Any) -> uuid.UUID:
    """An id from a URL or header, written as the answers write ids; ValueError otherwise.

    One resource has one URL: a proxy's or WAF's path rule cannot be dodged by spelling an
    id as `urn:uuid:…`, in braces or without its dashes."""
    text = str(value)
    if _UUID.fullmatch(text) is None:
        raise ValueError("not a UUID in its 8-4-4-4-12 form")
    return uuid.UUID(text)
