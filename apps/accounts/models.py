from __future__ import annotations

import unicodedata
import uuid

from django.conf import settings
from django.contrib.auth import hashers, password_validation
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models, transaction
from django.db.models.functions import Lower
from django.utils import timezone
from django.utils.crypto import salted_hmac

from apps.accounts.emails import normalize_email, refuse_ambiguous


def stabilized(raw_password: str | None) -> str | None:
    """A password as NFKC (NIST SP 800-63B §5.1.1.2): one typed with a composed "é" on one
    device and "e" plus a combining accent on another, or in full-width characters by a
    CJK input method, is the same password (found by a Unicode audit)."""
    if not isinstance(raw_password, str):
        return raw_password
    return unicodedata.normalize("NFKC", raw_password)


SESSION_HASH_SALT = "sigsentry.accounts.User.get_session_auth_hash"


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    @classmethod
    def normalize_email(cls, email: str | None) -> str:
        """`apps.accounts.emails.normalize_email`: the one spelling stored and matched."""
        return normalize_email(email or "")

    def get_by_natural_key(self, username: str) -> User:
        # Stored emails are normalized, so an exact match on the normalized
        # spelling is the whole lookup (never __iexact: see apps.accounts.emails).
        return self.get(email=normalize_email(username))

    def create_user(self, email: str, password: str | None = None, **extra) -> User:
        if not email:
            raise ValueError("An email address is required.")
        refuse_ambiguous(email)  # every path that makes an account (createsuperuser too)
        user = self.model(email=self.normalize_email(email), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        if password is not None:
            # `createsuperuser --noinput` (DJANGO_SUPERUSER_PASSWORD) skips Django's rules,
            # for an account that can revoke any key (found by a commands audit); the
            # command reports the refusal as its error.
            password_validation.validate_password(password, self.model(email=email, **extra))
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Logs in with their email, stored normalized (`normalize_email`) and unique."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Refused spellings (`refuse_ambiguous`) are checked where an address is given, not as
    # a field validator: an account stored before a rule existed stays editable.
    email = models.EmailField(max_length=254, unique=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    # When the owner of the address showed they read it (`apps.accounts.email_confirmation`):
    # a code mailed to it typed back, a password reset or an invitation sent to it used.
    email_confirmed_at = models.DateTimeField(null=True, blank=True)
    # The code mailed last, as a keyed digest (never the code), and until when it holds. The
    # empty default is the database's too: the release before these columns, still running
    # while they are added, inserts users without them (found by the upgrade audit).
    email_code_digest = models.CharField(max_length=64, blank=True, default="", db_default="")
    email_code_expires_at = models.DateTimeField(null=True, blank=True)
    # Counted up to end every admin session of the user (`end_admin_sessions`): they are
    # signed cookies, held nowhere but in browsers, and this is part of what they are
    # signed over (`get_session_auth_hash`). The database default lets the release before
    # the column insert users while it is added.
    session_epoch = models.PositiveIntegerField(default=0, db_default=0, editable=False)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="accounts_user_email_ci_unique"),
        ]

    def __str__(self) -> str:
        return self.email

    def password_fingerprint(self) -> str:
        """Changes whenever the password does: Django's own session auth hash (an HMAC of
        the password hash). The dashboard's and API's sessions, reset links and login
        tokens are bound to it."""
        return super().get_session_auth_hash()

    def get_session_auth_hash(self) -> str:
        """What an admin session is bound to (Django checks it on every request): the
        password hash, as Django's own, and `session_epoch`, so a logout, "log out
        everywhere" or an operator's ending of sessions ends a copied cookie too."""
        return self._session_hash(settings.SECRET_KEY)

    def get_session_auth_fallback_hash(self):
        for secret in settings.SECRET_KEY_FALLBACKS:
            yield self._session_hash(secret)

    def _session_hash(self, secret: str) -> str:
        value = f"{self.password}:{self.session_epoch}"
        return salted_hmac(SESSION_HASH_SALT, value, secret=secret, algorithm="sha256").hexdigest()

    def clean(self) -> None:
        # Model forms (the admin's) store the normalized spelling too.
        super().clean()
        self.email = normalize_email(self.email or "")

    def set_password(self, raw_password: str | None) -> None:
        """Hashed as typed in any Unicode form (`stabilized`)."""
        super().set_password(stabilized(raw_password))

    def check_password(self, raw_password: str | None) -> bool:
        """Django's check, which re-hashes a right password stored with an older hasher or
        older parameters. A session is tied to the hash (`password_fingerprint`), so that
        upgrade, not a change of password, would end every session of the user at their
        next log-in anywhere: the open sessions are moved to the new hash with it.

        Both hashings (the check, the upgrade's new hash) run outside any transaction: on
        SQLite a transaction holds the database's write lock from its start, and an Argon2
        hash takes ~180 ms, for every log-in attempt. So the upgrade writes only over the
        hash that was checked: a change or reset of the password committed meanwhile stays
        (a race audit: the log-in wrote the old password back, and had a session of it).
        When the hash is not the one checked any more, the password is checked again
        against the stored one: right if another log-in upgraded it first, wrong after a
        change or a reset.

        A password hashed before passwords were stabilized is checked as typed too, and
        stored stabilized when right."""
        checked, fingerprint = self.password, self.password_fingerprint()
        replaced = False

        def upgrade(raw: str) -> None:
            nonlocal replaced
            new = hashers.make_password(raw)  # hashed here, before the transaction
            with transaction.atomic():
                if not User.objects.filter(pk=self.pk, password=checked).update(password=new):
                    replaced = True
                    return
                self.password = new
                AuthSession.objects.filter(
                    user=self, ended_at__isnull=True, password_fingerprint=fingerprint
                ).update(password_fingerprint=self.password_fingerprint())

        typed, raw_password = raw_password, stabilized(raw_password)
        right = hashers.check_password(raw_password, self.password, upgrade)
        if not right and typed != raw_password and hashers.check_password(typed, checked):
            right = True
            upgrade(raw_password)
        if right and replaced:
            stored = User.objects.filter(pk=self.pk).values_list("password", flat=True).first()
            right = stored is not None and hashers.check_password(raw_password, stored)
            if right:
                self.password = stored
        return right


class AuthSession(models.Model):
    """One dashboard/API login. Every JWT carries its id (`sid`).

    A token is accepted only while its session is open, so ending the session
    (logout, password change, deactivation) kills its access and refresh
    tokens on the next request, on every server process. `refresh_jti` is the
    only refresh token of the session that may still be used: rotation is a
    conditional update on it, so of two concurrent refreshes exactly one wins.
    """

    class EndReason(models.TextChoices):
        LOGOUT = "logout", "Logged out"
        PASSWORD_CHANGED = "password_changed", "Password changed"
        DEACTIVATED = "deactivated", "User deactivated"
        REFRESH_REUSED = "refresh_reused", "A rotated refresh token was reused"
        SESSION_LIMIT = "session_limit", "Ended for a newer log-in (too many open sessions)"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="auth_sessions")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(help_text="Absolute cap: JWT_SESSION_MAX_AGE after login.")
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=32, choices=EndReason.choices, blank=True)
    refresh_jti = models.CharField(max_length=64)
    # Django's session auth hash at login: a password change makes it stale.
    password_fingerprint = models.CharField(max_length=128)
    last_refreshed_at = models.DateTimeField(null=True, blank=True)
    #: When the session last made a request; written at most once a minute (touch_session).
    last_seen_at = models.DateTimeField(null=True, blank=True)
    #: Where the session was last seen from (at login, then with `last_seen_at`).
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "ended_at"], name="accounts_session_user_open")]

    def __str__(self) -> str:
        return f"session {self.id} of {self.user_id}"


class TotpDevice(models.Model):
    """A user's authenticator app: TOTP (RFC 6238; SHA-1, 6 digits, 30-second steps).

    `encrypted_secret` is the shared secret encrypted with Fernet under a key
    derived from SECRET_KEY (apps.accounts.twofactor); the plain secret is never
    stored. Two-factor is on once `confirmed_at` is set (the user proved the app
    works with a first code). `last_used_step` is the time step of the last code
    accepted: no code of that step or an earlier one is accepted again (replay).
    """

    user = models.OneToOneField(
        User, on_delete=models.CASCADE, primary_key=True, related_name="totp_device"
    )
    encrypted_secret = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    last_used_step = models.BigIntegerField(null=True, blank=True)

    def __str__(self) -> str:
        return f"authenticator of {self.user_id}"


class RecoveryCode(models.Model):
    """A single-use login code for a user with two-factor on (ten at a time).

    Only the SHA-256 digest of the normalized code is stored (the codes carry 80
    random bits, so a fast hash is enough); the code is shown once, when made.
    """

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="recovery_codes")
    digest = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "digest"], name="accounts_recovery_code_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"recovery code of {self.user_id}"
