"""The one spelling of an email address: what is stored, looked up and throttled (SPEC §7).

Every place that takes an email from outside (sign-up, login, the admin login,
member add, password reset, invitations) passes it through `normalize_email`
and then stores it or matches it exactly (`email=...`, never `email__iexact`):
a database's case-insensitive match is not Python's (PostgreSQL's UPPER() turns
the long s U+017F into S and the dotless i U+0131 into I), so a lookup and a
throttle that disagree on which spellings are one account let an attacker
rotate spellings past the limit.
"""

from __future__ import annotations

import unicodedata
from email.errors import HeaderParseError

from django.core.exceptions import ValidationError
from django.core.mail.message import sanitize_address


def normalize_email(value: str) -> str:
    """`value` in its one canonical spelling: NFKC, trimmed, case-folded.

    Look-alike spellings of an address are one account: NFKC folds compatibility
    forms (fullwidth letters U+FF41..., ligatures), `str.casefold` folds case
    (the long s U+017F to s, the Kelvin sign U+212A to k, sharp s to ss), and
    the Turkic dotless i U+0131, the one letter `casefold` keeps apart although
    it uppercases to I, becomes i. NFKC runs again at the end because folding
    can undo it. Idempotent: ``normalize_email(normalize_email(x)) ==
    normalize_email(x)``.

    It does not validate; callers that store an address also check its shape
    and length (at most 254 characters, counted after normalizing).
    """
    text = unicodedata.normalize("NFKC", value).strip()
    return unicodedata.normalize("NFKC", text.casefold().replace("\u0131", "i"))


#: Why an address that folding would change is refused (`changes_when_folded`).
FOLDS_TO_ANOTHER_ADDRESS = (
    "This address changes when letters are compared without case (sharp s, final sigma, "
    "dotless i): mail for the account could go to another mailbox. Use its plain spelling."
)


def changes_when_folded(value: str) -> bool:
    """True when the stored spelling (`normalize_email`) is not the address merely in lower
    case: sharp s → `ss`, final sigma → sigma, dotless i → `i` (U+00DF, U+03C2, U+0131) name
    other mailboxes and domains, and every mail (reset links, security notices) goes to the
    stored spelling. Such an address is refused wherever an account or invitation is given
    one; look-alikes that fold to the same letters (full-width, long s, Kelvin sign) are not
    affected."""
    text = unicodedata.normalize("NFKC", value).strip()
    return normalize_email(text) != unicodedata.normalize("NFKC", text.lower())


#: Why an address that mail would reach under other text is refused (`sent_as_another`).
SENT_AS_ANOTHER_ADDRESS = (
    "Mail to this address would go out spelled differently (quotes, encoded words, invisible "
    "or non-ASCII characters, an internationalized domain): use its plain ASCII spelling, "
    "with an internationalized domain in its xn-- form."
)


def sent_as_another(value: str) -> bool:
    """True when mail to the stored spelling (`normalize_email`) would leave under other
    text, so that several stored spellings share one mailbox, or could not leave at all:
    asked of Django's mail backend itself (`sanitize_address`, what it puts in the message
    and the envelope). It unquotes a quoted local part (`"demo"@` is `demo@`), decodes an
    encoded word (`=?utf-8?q?demo?=@`), encodes the domain as IDNA, which drops invisible
    characters (soft hyphen, zero-width space, variation selectors) and writes `bücher` as
    `xn--bcher-kva`, and cannot address a non-ASCII local part (it sends an encoded word).
    A full-width letter that NFKC turns into ASCII is still one address with its plain
    spelling."""
    email = normalize_email(value)
    try:
        return sanitize_address(email, "utf-8") != email
    # an address the backend cannot send to at all; its parser (the standard library's)
    # raises IndexError on some, such as an empty encoded word
    except (ValueError, UnicodeError, IndexError, HeaderParseError):
        return True


def address_refusal(value: str) -> str | None:
    """Why `value` may not be given to an account or an invitation, or None: it folds to
    another address (`changes_when_folded`) or mail would reach it under other text
    (`sent_as_another`)."""
    if changes_when_folded(value):
        return FOLDS_TO_ANOTHER_ADDRESS
    if sent_as_another(value):
        return SENT_AS_ANOTHER_ADDRESS
    return None


def refuse_ambiguous(email: str) -> str:
    """`address_refusal` as a validator (ValidationError): where an address is given to an
    account outside the API's services, the admin's forms and `create_user` (so
    `createsuperuser`); not on the model field, so an address stored before a rule stays
    editable."""
    reason = address_refusal(email)
    if reason is not None:
        raise ValidationError(reason)
    return email
