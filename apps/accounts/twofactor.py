"""Two-factor authentication: TOTP (RFC 6238) and recovery codes (SPEC §4.13).

What is stored, and what never is:

* the shared secret (32 base32 characters, 160 bits, from `secrets`) only
  sealed (`core.sealed`: Fernet under a key derived from SECRET_KEY; those sealed
  under a key of SECRET_KEY_FALLBACKS still open, so rotating the key keeps every
  authenticator working);
* recovery codes only as SHA-256 digests: 16 characters of a 32-letter
  alphabet (80 random bits) each, shown once when made;
* the time step of the last accepted TOTP code.

Rules:

* a TOTP code is checked against the current 30-second step and one step on
  either side, each with a constant-time comparison; it is accepted only if
  its step is later than the last accepted one, recorded by a conditional
  UPDATE, so one code never logs in twice, even from two concurrent requests;
* a recovery code is used by a conditional UPDATE of its row: once only;
* the `mfaToken` that a password login answers when a second factor is
  needed finishes one login only (`apps.accounts.mfa_login`);
* wrong codes count like wrong passwords: per account (`mfa_account`, and
  `mfa_account_day` over a day) and per client (`login_ip`), answered 429 past the
  limit.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import secrets
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pyotp
import segno
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts import mail
from apps.accounts.emails import normalize_email
from apps.accounts.models import RecoveryCode, TotpDevice, User
from apps.audit.services import UserAction, log_user_change
from core import sealed, throttling
from core.errors import InvalidCredentials, RateLimited, ValidationFailed
from core.net import client_ip

logger = logging.getLogger("sigsentry.accounts")

ISSUER = "SigSentry"
STEP_SECONDS = 30
DIGITS = 6
#: Steps accepted on either side of the current one (clock drift, a slow typist).
DRIFT_STEPS = 1
RECOVERY_CODE_COUNT = 10
RECOVERY_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford's base32, lower case
RECOVERY_CODE_LENGTH = 16
#: The HKDF label of the TOTP secrets' key (`core.sealed`).
SECRET_PURPOSE = b"sigsentry.accounts.totp-secret"
#: Longest code or token text looked at; anything longer is simply wrong.
MAX_INPUT_LENGTH = 64
#: How long a set-up waits for its first code. The account page shows a set-up's secret
#: until then; one left for good was shown on every later visit (a first-hour audit), to
#: anyone who had the session a moment, and a code from it later turned two-factor on.
SETUP_LIFETIME = timedelta(minutes=15)
SETUP_EXPIRED = "The set-up expired after 15 minutes. Start it again: it gives a new secret."

#: Said of every refused code alike (a used code is not told from a wrong one). A code the app
#: still shows, used a moment ago (turning two-factor on, then logging in to try it), is one:
#: "not valid" alone said the app was wrong (a first-hour walkthrough).
WRONG_CODE = (
    "The code is not valid. Enter the code your app shows now (each code works once: after "
    "using one, wait for the next) or an unused recovery code."
)


@dataclass(frozen=True, slots=True)
class TotpSetup:
    """A secret waiting for its first code: shown to the user for their app."""

    secret: str
    otpauth_url: str

    @property
    def grouped_secret(self) -> str:
        """The secret in groups of four, easier to type by hand."""
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))

    def qr_svg(self) -> str:
        """The otpauth URL as a QR code, an inline `<svg>` (no image service, no script)."""
        return segno.make(self.otpauth_url, error="m").svg_inline(
            scale=1,
            border=4,
            dark="#000",
            light="#fff",
            omitsize=True,
            svgclass="qr-code",
            title="QR code for your authenticator app",
        )


# Secret encryption -----------------------------------------------------------------


def encrypt_secret(secret: str) -> str:
    return sealed.seal(SECRET_PURPOSE, secret)


def decrypt_secret(encrypted: str) -> str:
    return sealed.unseal(SECRET_PURPOSE, encrypted)


# Reads --------------------------------------------------------------------------------


def confirmed_device(user: User) -> TotpDevice | None:
    return TotpDevice.objects.filter(user=user, confirmed_at__isnull=False).first()


def is_enabled(user: User) -> bool:
    return TotpDevice.objects.filter(user=user, confirmed_at__isnull=False).exists()


def device_of(user: User) -> TotpDevice | None:
    """The user's one authenticator row: on, waiting for its first code, or expired."""
    return TotpDevice.objects.filter(user=user).first()


def is_waiting(device: TotpDevice | None, now: datetime | None = None) -> bool:
    """Whether `device` is a set-up waiting for its first code, started within SETUP_LIFETIME."""
    if device is None or device.confirmed_at is not None:
        return False
    return device.created_at > (now or timezone.now()) - SETUP_LIFETIME


def shown_setup(user: User, device: TotpDevice | None) -> TotpSetup | None:
    """The set-up `device` waits to confirm, for the user's app; None when there is none.

    Only a waiting set-up's secret is decrypted (`device_of` reads the row once for a page).
    """
    if not is_waiting(device):
        return None
    try:
        return _setup_for(user, decrypt_secret(device.encrypted_secret))
    except sealed.Unreadable:
        return None  # encrypted under a key that is gone: start again


def pending_setup(user: User) -> TotpSetup | None:
    """The set-up in progress (a secret without a first code yet), if any."""
    return shown_setup(user, device_of(user))


def recovery_codes_left(user: User) -> int:
    return RecoveryCode.objects.filter(user=user, used_at__isnull=True).count()


def _setup_for(user: User, secret: str) -> TotpSetup:
    url = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=user.email, issuer_name=ISSUER
    )
    return TotpSetup(secret=secret, otpauth_url=url)


# Codes --------------------------------------------------------------------------------


def _clean_code(code: Any) -> str | None:
    if not isinstance(code, str):
        return None
    # NFKC: full-width digits and letters, as a CJK input method types them, are the codes.
    cleaned = "".join(unicodedata.normalize("NFKC", code).split()).replace("-", "").lower()
    if not cleaned or len(cleaned) > MAX_INPUT_LENGTH:
        return None
    return cleaned


def _is_totp_shape(code: str) -> bool:
    return len(code) == DIGITS and code.isascii() and code.isdigit()


def _matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The step among current ± DRIFT_STEPS whose code is `code`; each compared in constant time."""
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS)
    current = int(now.timestamp()) // STEP_SECONDS
    matched = None
    for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):
            matched = step
    return matched


def _accept_totp(device: TotpDevice, code: str, now: datetime) -> bool:
    """True once per step: the step is recorded only if it is later than the last one used."""
    return _check_totp(device, code, now) is TotpCheck.ACCEPTED


class TotpCheck(enum.Enum):
    ACCEPTED = "accepted"
    #: The app's code for a step already used: right, but once only.
    USED = "used"
    WRONG = "wrong"


def _check_totp(device: TotpDevice, code: str, now: datetime) -> TotpCheck:
    """A TOTP code against the device: accepted once per step (the step is recorded only
    if it is later than the last one used), used when right for a step used already."""
    try:
        secret = decrypt_secret(device.encrypted_secret)
    except sealed.Unreadable:
        # No code can be checked (a SECRET_KEY rotation under way, README): the answer is
        # the wrong code's, but an operator must hear of it (an operator walkthrough did
        # not: only the access line's 401).
        logger.error(
            "two-factor secret unreadable (SECRET_KEY changed?)",
            extra={"user_id": str(device.user_id)},
        )
        return TotpCheck.WRONG
    step = _matching_step(secret, code, now)
    if step is None:
        return TotpCheck.WRONG
    recorded = (
        TotpDevice.objects.filter(pk=device.pk)
        .filter(Q(last_used_step__isnull=True) | Q(last_used_step__lt=step))
        .update(last_used_step=step)
    )
    return TotpCheck.ACCEPTED if recorded == 1 else TotpCheck.USED


def _recovery_digest(code: str) -> str:
    # Crockford's base32 reads I and L as 1, O as 0: a mistyped code still matches.
    normalized = code.lower().translate(str.maketrans("ilo", "110"))
    return hashlib.sha256(normalized.encode()).hexdigest()


def _use_recovery_code(user: User, code: str, now: datetime) -> bool:
    if len(code) != RECOVERY_CODE_LENGTH:
        return False
    used = RecoveryCode.objects.filter(
        user=user, digest=_recovery_digest(code), used_at__isnull=True
    ).update(used_at=now)
    if used:
        log_user_change(UserAction.RECOVERY_CODE_USED, user.pk)
    return used == 1


def _new_recovery_codes(user: User, now: datetime) -> list[str]:
    """Replace the user's recovery codes with ten new ones; returns them (the only time)."""
    codes = [
        "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(RECOVERY_CODE_LENGTH))
        for _ in range(RECOVERY_CODE_COUNT)
    ]
    RecoveryCode.objects.filter(user=user).delete()
    RecoveryCode.objects.bulk_create(
        RecoveryCode(user=user, digest=_recovery_digest(code), created_at=now) for code in codes
    )
    return ["-".join(code[i : i + 4] for i in range(0, len(code), 4)) for code in codes]


def check_second_factor(*, user: User, code: Any, request: HttpRequest | None = None) -> None:
    """Accept a TOTP code or an unused recovery code of `user`, or raise.

    Wrong → 401 INVALID_CREDENTIALS, counted per account and per client; past
    the limit every attempt (a right code too) → 429 RATE_LIMITED.
    """
    ip = client_ip(request) if request is not None else None
    account = str(user.pk)
    # Per account in 5 minutes, and in a day: the 5-minute limit alone let someone who has
    # the password try 2,880 codes a day (three accepted each time: ~0.9 % a day).
    with (
        throttling.counting_failures(("mfa_account_day", account)),
        throttling.counting_failures(("mfa_account", account), every=("login_ip", ip)),
    ):
        device = confirmed_device(user)
        cleaned = _clean_code(code)
        now = timezone.now()
        accepted = recovery = False
        if device is not None and cleaned is not None:
            if _is_totp_shape(cleaned):
                accepted = _accept_totp(device, cleaned, now)
            else:
                accepted = recovery = _use_recovery_code(user, cleaned, now)
        if not accepted:
            raise InvalidCredentials(WRONG_CODE)
    if recovery:
        mail.send_recovery_code_used(user=user, left=recovery_codes_left(user), when=now, ip=ip)


# Services -----------------------------------------------------------------------------


def start_setup(*, user: User) -> TotpSetup:
    """A new secret for the user's app, waiting for a first code (`enable`).

    Starting again replaces a set-up in progress; with two-factor already on
    it is refused (turn it off first), so a stolen session cannot swap the
    authenticator.
    """
    secret = pyotp.random_base32(length=32)
    fields = {
        "encrypted_secret": encrypt_secret(secret),
        "created_at": timezone.now(),
        "confirmed_at": None,
        "last_used_step": None,
    }
    with transaction.atomic():
        # The user's row first: two set-ups at once (a double click) take turns, where both
        # found no device and the second insert failed (a race audit: a 503). Then the
        # device under its lock: an enable committed a moment ago is seen (and not undone
        # by a set-up that would silently turn two-factor off), one in flight waits.
        User.objects.select_for_update(no_key=True).only("pk").get(pk=user.pk)
        device = TotpDevice.objects.select_for_update().filter(user=user).first()
        if device is not None and device.confirmed_at is not None:
            raise ValidationFailed(
                {"nonFieldErrors": ["Two-factor authentication is already on. Turn it off first."]}
            )
        if device is None:
            TotpDevice.objects.create(user=user, **fields)
        else:
            TotpDevice.objects.filter(pk=device.pk).update(**fields)
    return _setup_for(user, secret)


def enable(*, user: User, code: Any, request: HttpRequest | None = None) -> list[str]:
    """Turn two-factor on with a first code from the app; returns the 10 recovery codes (once)."""
    device = device_of(user)  # one read tells every refusal below apart
    if device is None:
        raise ValidationFailed({"code": ["Start the set-up first: POST /v1/auth/2fa/setup."]})
    if device.confirmed_at is not None:
        raise ValidationFailed({"code": ["Two-factor authentication is already on."]})
    if not is_waiting(device):
        raise ValidationFailed({"code": [SETUP_EXPIRED]})
    ip = client_ip(request) if request is not None else None
    retry_after = throttling.is_limited("login_ip", ip)  # checked, not counted: not a login
    if retry_after is not None:
        raise RateLimited(retry_after)
    now = timezone.now()
    check = TotpCheck.WRONG
    with throttling.counting_failures(("mfa_account", str(user.pk))):
        cleaned = _clean_code(code)
        if cleaned is not None and _is_totp_shape(cleaned):
            check = _check_totp(device, cleaned, now)
        if check is TotpCheck.WRONG:
            raise ValidationFailed(
                {"code": ["That code is not right. Enter the 6 digits your app shows now."]}
            )
    if check is TotpCheck.USED:
        # The right code, sent twice (a retry, a double submit): the first turned two-factor
        # on or is doing so. Not a guess, so not counted (a retry audit: four of five
        # parallel enables with one code were told it was wrong, and counted).
        if is_enabled(user):
            raise ValidationFailed({"code": ["Two-factor authentication is already on."]})
        raise ValidationFailed(
            {"code": ["That code was just used. Enter the next code your app shows."]}
        )
    with transaction.atomic():
        # Once, and the set-up the code was checked against: of two enables in flight (two
        # tabs, two codes a step apart) the second would replace the recovery codes the
        # first has just shown, and a set-up started again meanwhile has a new secret.
        confirmed = TotpDevice.objects.filter(
            pk=device.pk, confirmed_at__isnull=True, encrypted_secret=device.encrypted_secret
        ).update(confirmed_at=now)
        if not confirmed:
            if is_enabled(user):
                raise ValidationFailed({"code": ["Two-factor authentication is already on."]})
            raise ValidationFailed(
                {"code": ["Set-up was started again: scan the new QR code and enter its code."]}
            )
        codes = _new_recovery_codes(user, now)
        log_user_change(UserAction.TWO_FACTOR_ENABLED, user.pk)
    mail.send_two_factor_changed(user=user, enabled=True, when=now, ip=ip)
    return codes


def disable(*, user: User, password: Any, request: HttpRequest | None = None) -> None:
    """Turn two-factor off; needs the password (wrong → 401, throttled like a login)."""
    check_password(user=user, password=password, request=request)
    with transaction.atomic():
        deleted, _ = TotpDevice.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        if deleted:
            log_user_change(UserAction.TWO_FACTOR_DISABLED, user.pk)
    if deleted:
        ip = client_ip(request) if request is not None else None
        mail.send_two_factor_changed(user=user, enabled=False, when=timezone.now(), ip=ip)


def reset_for_operator(*, user: User, record: Callable[[], None] = lambda: None) -> None:
    """An operator turns two-factor off for a user who lost their device (the admin). The
    user is told by email, as when they turn it off themselves: an operator's mistake, or
    a staff account used against them, is not silent. `record` writes the audit events,
    in the transaction, when it was on."""
    with transaction.atomic():
        deleted, _ = TotpDevice.objects.filter(user=user).delete()
        RecoveryCode.objects.filter(user=user).delete()
        if deleted:
            record()
            log_user_change(UserAction.TWO_FACTOR_RESET, user.pk)
    if deleted:
        mail.send_two_factor_changed(user=user, enabled=False, when=timezone.now(), ip=None)


def check_password(*, user: User, password: Any, request: HttpRequest | None = None) -> None:
    """The user's current password, or 401 INVALID_CREDENTIALS; throttled as logins are."""
    if not isinstance(password, str) or not password:
        raise ValidationFailed({"password": ["Your current password is required."]})
    account = normalize_email(user.email)
    ip = client_ip(request) if request is not None else None
    with throttling.counting_failures(("login_account", account), every=("login_ip", ip)):
        if not user.check_password(password):
            raise InvalidCredentials("The password is incorrect.")
