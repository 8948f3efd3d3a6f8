"""Sign-up, login, refresh, logout and the session rules (SPEC §2.4).

Shared by the API (`/v1/auth/*`) and the dashboard pages.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.http import HttpRequest
from django.utils import timezone

from apps.accounts import mail, mfa_login, tokens, twofactor
from apps.accounts.emails import address_refusal, normalize_email
from apps.accounts.models import AuthSession, User, stabilized
from apps.accounts.selectors import (
    AccountDeletionPlan,
    account_deletion_plan,
    open_session_of,
    session_with_user,
)
from apps.accounts.tokens import TokenPair
from apps.audit.services import Action, UserAction, forget_account, log_user_change
from apps.orgs.models import Membership, Organization
from apps.orgs.services import (
    create_organization,
    delete_organizations,
    membership_changed,
    record_membership_event,
)
from core import throttling
from core.errors import (
    AuthError,
    InvalidCredentials,
    LastOwner,
    NotFound,
    TokenInvalid,
    ValidationFailed,
)
from core.net import client_ip, user_agent
from core.permissions import Role
from core.validation import clean_name

#: A refresh token reused within this window lost a benign race (two tabs);
#: later reuse means a stolen token, and the whole session is ended.
REUSE_RACE_WINDOW = timedelta(seconds=10)
#: A session's `last_seen_at` (and IP, user agent) is written at most this often.
LAST_SEEN_INTERVAL = timedelta(seconds=60)
#: How long a session that ended or passed its cap is kept, with the IP and user agent it
#: was seen from: long enough to look into a login its user does not recognize; after
#: that they would only tell where a person was.
ENDED_SESSION_RETENTION = timedelta(days=90)
#: Open sessions a user keeps: a log-in past it ends the least recently seen (as GitHub
#: revokes an application's oldest token past its ten), rather than refusing the log-in,
#: which would let a runaway script lock its person out. Every log-in lives 30 days, and a
#: script that logs in on every run (`login_ip` allows 360 an hour a client) left
#: thousands open, each a credential that works.
MAX_OPEN_SESSIONS_PER_USER = 100


class RefreshRaced(TokenInvalid):
    """Another request rotated this refresh token a moment ago: a benign race (two tabs).

    Still a 401 for the caller, but the session lives on, so whoever holds the
    winner's new tokens must keep them (nobody clears the cookies over it). `session` is
    the one the token belongs to (`rejoin_rotation`).
    """

    def __init__(self, session: AuthSession) -> None:
        super().__init__()
        self.session = session


@dataclass(frozen=True, slots=True)
class MfaChallenge:
    """The password was right and the account has two-factor on: the code comes next.

    `mfa_token` is what `login_with_second_factor` takes back (5 minutes, once).
    """

    mfa_token: str


@dataclass(frozen=True, slots=True)
class SignupResult:
    user: User
    organization: Organization
    tokens: TokenPair


ADDRESS_TAKEN = "An account with this email already exists."


def _clean_email(email: Any) -> str:
    """The normalized address (`normalize_email`), checked for shape and length."""
    if not isinstance(email, str) or not email.strip():
        raise ValidationFailed({"email": ["An email address is required."]})
    if refusal := address_refusal(email):
        raise ValidationFailed({"email": [refusal]})
    email = normalize_email(email)
    if len(email) > User._meta.get_field("email").max_length:
        raise ValidationFailed({"email": ["Enter a valid email address."]})
    try:
        validate_email(email)
    except DjangoValidationError as exc:
        raise ValidationFailed({"email": ["Enter a valid email address."]}) from exc
    return email


def _clean_org_name(name: Any) -> str:
    return clean_name(name, "organizationName", "An organization name is required.")


def start_session(user: User, request: HttpRequest | None = None) -> TokenPair:
    """A new session: a log-in (sign-up, password, code step, invitation). It sets the
    user's `last_login`, which password-reset tokens are signed over, so a reset link
    requested before the log-in dies with it, as Django intends (refreshing does not).

    Past MAX_OPEN_SESSIONS_PER_USER open sessions, the least recently seen end
    (`session_limit`); the user's row, written first, makes their log-ins at the same
    moment wait for each other, so the bound is exact."""
    now = timezone.now()
    jti = tokens.new_jti()
    with transaction.atomic():
        User.objects.filter(pk=user.pk).update(last_login=now)
        user.last_login = now
        session = AuthSession.objects.create(
            user=user,
            created_at=now,
            expires_at=now + settings.JWT_SESSION_MAX_AGE,
            refresh_jti=jti,
            password_fingerprint=tokens.session_fingerprint(user),
            last_seen_at=now,
            ip=client_ip(request) if request is not None else None,
            user_agent=user_agent(request) if request is not None else "",
        )
        _end_sessions_past_the_limit(user, keep=session, now=now)
    return tokens.issue_pair(session, jti, now)


def _end_sessions_past_the_limit(user: User, *, keep: AuthSession, now: datetime) -> int:
    """End the user's open sessions but the MAX_OPEN_SESSIONS_PER_USER seen most recently
    (`keep`, the log-in being made, always among them); how many ended."""
    open_sessions = AuthSession.objects.filter(user=user, ended_at__isnull=True, expires_at__gt=now)
    if open_sessions.count() <= MAX_OPEN_SESSIONS_PER_USER:
        return 0
    past = open_sessions.exclude(id=keep.id).order_by(
        F("last_seen_at").desc(nulls_last=True), "-created_at", "-id"
    )[MAX_OPEN_SESSIONS_PER_USER - 1 :]
    return AuthSession.objects.filter(id__in=list(past.values_list("id", flat=True))).update(
        ended_at=now, end_reason=AuthSession.EndReason.SESSION_LIMIT
    )


def signup(
    *, email: Any, password: Any, organization_name: Any, request: HttpRequest | None = None
) -> SignupResult:
    """Create a user, their organization (they own it) and a first session."""
    errors: dict[str, list[str]] = {}
    clean: dict[str, Any] = {}
    for field, cleaner, value in (
        ("email", _clean_email, email),
        ("organizationName", _clean_org_name, organization_name),
    ):
        try:
            clean[field] = cleaner(value)
        except ValidationFailed as exc:
            errors.update(exc.details["fields"])
    if not isinstance(password, str) or not password:
        errors["password"] = ["A password is required."]
    else:  # with a refused email too: every field's errors at once (found by an audit)
        try:
            validate_password(password, User(email=clean.get("email", "")))
        except DjangoValidationError as exc:
            errors["password"] = list(exc.messages)
    if errors:
        raise ValidationFailed(errors)
    if request is not None:
        throttling.enforce("signup_ip", client_ip(request))
    user = _hashed_account(clean["email"], password)
    try:
        with transaction.atomic():
            if User.objects.filter(email=clean["email"]).exists():
                raise ValidationFailed({"email": [ADDRESS_TAKEN]})
            user.save(force_insert=True)
            organization = create_organization(
                actor=user, name=clean["organizationName"], request=request
            )
            pair = start_session(user, request)
    except IntegrityError as exc:
        _unless_the_address_is_taken(clean["email"], exc)
        raise ValidationFailed({"email": [ADDRESS_TAKEN]}) from exc
    # No confirmation code is mailed here: the dashboard asks for one (the account page), so
    # sign-up and what is built on it mail as SPEC §4.13's flows always did.
    return SignupResult(user=user, organization=organization, tokens=pair)


def _unless_the_address_is_taken(email: str, error: IntegrityError) -> None:
    """In the `except IntegrityError` of an account's creation: re-raise the error unless
    another account holds the address (a concurrent sign-up). Any other broken constraint is
    no "already exists" (found by the upgrade audit: a release that did not fill a new column
    answered every sign-up that way)."""
    if not User.objects.filter(email=email).exists():
        raise error


def _hashed_account(email: str, password: str) -> User:
    """An account to insert, its password hashed now. Hashing (Argon2, ~180 ms) runs
    outside any transaction: on SQLite a transaction holds the database's write lock from
    its start (settings), so a hash inside one holds every other write of the demo."""
    user = User(email=email)
    user.set_password(password)
    return user


def account_to_create(*, email: Any, password: Any, request: HttpRequest | None = None) -> User:
    """A user without an organization of their own (they join one by invitation), not yet
    saved: `create_account` saves it, in the caller's transaction.

    The same rules as `signup`: a valid email no other account uses, a password
    that passes the validators, sign-ups throttled per client.
    """
    clean_email = _clean_email(email)
    if not isinstance(password, str) or not password:
        raise ValidationFailed({"password": ["A password is required."]})
    try:
        validate_password(password, User(email=clean_email))
    except DjangoValidationError as exc:
        raise ValidationFailed({"password": list(exc.messages)}) from exc
    if request is not None:
        throttling.enforce("signup_ip", client_ip(request))
    if User.objects.filter(email=clean_email).exists():
        raise ValidationFailed({"email": [ADDRESS_TAKEN]})
    return _hashed_account(clean_email, password)


def create_account(user: User) -> User:
    """Insert an `account_to_create`; 400 on `email` if another took the address since."""
    try:
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError as exc:
        _unless_the_address_is_taken(user.email, exc)
        raise ValidationFailed({"email": [ADDRESS_TAKEN]}) from exc
    return user


def authenticate_login(*, email: str, password: str, request: HttpRequest | None) -> User:
    """The user these credentials belong to, behind the login throttles; else 401 or 429.

    One answer (INVALID_CREDENTIALS) for an unknown email and a wrong password;
    the login backend (`apps.accounts.passwords.AccountBackend`) runs the password
    hasher as often for unknown emails, so the two cases also take the same time.
    Throttled per account (failed attempts, counted by the normalized email, so
    look-alike spellings share one counter) and per client (every attempt; an IPv6
    client by its /64).
    Shared by `/v1/auth/login`, the login page and the Django admin's login.
    """
    account = normalize_email(email)[:254]
    ip = client_ip(request) if request is not None else None
    with throttling.counting_failures(("login_account", account), every=("login_ip", ip)):
        user = authenticate(request, email=account, password=password)
        if user is None:
            raise InvalidCredentials()
    return user


def lift_account_limits(user: User) -> None:
    """End the windows that lock `user` out after others' failed attempts: wrong passwords
    (`login_account`, which refuses the right one too), wrong second-factor codes
    (`mfa_account`, `mfa_account_day`) and reset asks (`password_reset_account`). For an
    operator (the admin's action) whose user someone keeps locked out; the per-client
    limits of whoever did it stay."""
    account = normalize_email(user.email)
    for scope, ident in (
        ("login_account", account[:254]),
        ("password_reset_account", account),
        ("mfa_account", str(user.pk)),
        ("mfa_account_day", str(user.pk)),
    ):
        throttling.reset(scope, ident)


def login(
    *, email: Any, password: Any, request: HttpRequest | None = None
) -> TokenPair | MfaChallenge:
    """A new session for the user, after `authenticate_login` accepts the credentials.

    A user with two-factor on gets an `MfaChallenge` instead of a session.
    """
    if not isinstance(email, str) or not isinstance(password, str) or not email or not password:
        fields = {}
        if not isinstance(email, str) or not email:
            fields["email"] = ["An email address is required."]
        if not isinstance(password, str) or not password:
            fields["password"] = ["A password is required."]
        raise ValidationFailed(fields)
    user = authenticate_login(email=email, password=password, request=request)
    if twofactor.is_enabled(user):
        return MfaChallenge(mfa_token=mfa_login.issue_mfa_token(user))
    return start_session(user, request)


def login_with_second_factor(
    *, mfa_token: Any, code: Any, request: HttpRequest | None = None
) -> TokenPair:
    """The login's second step: the mfaToken of the first, and a TOTP or recovery code.

    A wrong code, an expired, used or forged mfaToken → 401 INVALID_CREDENTIALS;
    wrong codes are throttled like wrong passwords (twofactor.check_second_factor).
    """
    fields = {}
    if not isinstance(mfa_token, str) or not mfa_token:
        fields["mfaToken"] = ["The mfaToken of the login answer is required."]
    if not isinstance(code, str) or not code.strip():
        fields["code"] = ["A code from the authenticator app, or a recovery code, is required."]
    if fields:
        raise ValidationFailed(fields)
    user, nonce = mfa_login.user_for_mfa_token(mfa_token)
    # The token is claimed before its code is checked, and given back when the check fails:
    # of two requests with one token at once, the second's recovery code was spent on a
    # login that could not finish (found by a race audit).
    if not mfa_login.mark_mfa_token_used(nonce):
        raise mfa_login.MfaTokenInvalid()
    try:
        twofactor.check_second_factor(user=user, code=code, request=request)
    except Exception:
        mfa_login.give_back_mfa_token(nonce)
        raise
    return start_session(user, request)


def refresh(*, refresh_token: Any) -> TokenPair:
    """Rotate: the presented refresh token dies, a new pair is issued.

    The rotation is a conditional update on the session's current refresh jti,
    so of two concurrent refreshes exactly one wins. A token that was already
    rotated (and is not a near-simultaneous race) ends the whole session.
    """
    if not isinstance(refresh_token, str) or not refresh_token or len(refresh_token) > 4096:
        raise TokenInvalid()
    claims = tokens.decode(refresh_token, "refresh")
    now = timezone.now()
    session = tokens.session_for_claims(claims, now)
    jti = str(claims["jti"])
    if session.refresh_jti != jti:
        # A race is this token's own rotation a moment ago (its successor's answer still on
        # its way, or dropped), not any rotation: a token two generations old, sent just
        # after the latest, is a reuse.
        rotated_at = tokens.rotated_out_at(jti)
        raced = rotated_at is not None and now - rotated_at < REUSE_RACE_WINDOW
        if not raced:
            end_session(session, AuthSession.EndReason.REFRESH_REUSED)
            raise TokenInvalid()
        raise RefreshRaced(session)
    new_jti = tokens.new_jti()
    with transaction.atomic():
        won = AuthSession.objects.filter(
            id=session.id, refresh_jti=jti, ended_at__isnull=True
        ).update(refresh_jti=new_jti, last_refreshed_at=now)
        if not won:
            raise RefreshRaced(session)
        tokens.blacklist_jti(jti)
        return tokens.issue_pair(session, new_jti, now)


def rejoin_rotation(raced: RefreshRaced) -> TokenPair | None:
    """The session's current pair for a dashboard request whose refresh cookie another
    request rotated a moment ago (within REUSE_RACE_WINDOW): signed anew on the winner's
    refresh jti, nothing rotated. None if the session ended meanwhile.

    For the dashboard's cookies only (`/v1/auth/refresh` answers a race 401, SPEC §2.4).
    Tabs of one browser share its cookies: the tab that lost the race showed the login
    page, and a winner whose answer the browser dropped (a navigation aborted by the next
    click) left the old token in the cookie, which ended the session as stolen 10 s later
    (both found by a multi-tab audit). Whoever sends the rotated token within the window
    gets what its winner got, as OAuth's reuse interval gives, and no more: a later reuse
    still ends the session. The price, for a thief who holds a refresh token and sends it
    within 10 s of its rotation: the live generation, until either side's next rotation
    (then the other's reuse ends the session); sent before the rotation it gave them as
    much.
    """
    now = timezone.now()
    session = session_with_user(raced.session.id)
    if session is None or not tokens.session_is_valid(session, str(session.user_id), now):
        return None  # ended, capped, its user deactivated or its password changed meanwhile
    return tokens.issue_pair(session, session.refresh_jti, now, record=False)


def end_session(session: AuthSession, reason: str) -> None:
    AuthSession.objects.filter(id=session.id, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=reason
    )


def logout(*, session: AuthSession, refresh_token: Any = None) -> None:
    """The session's access and refresh tokens are rejected from the next request on.

    A `refresh_token` of another open session of the same user ends that
    session too (whoever holds it could use it anyway); a dead, forged or
    foreign token is ignored, so logging out never fails.
    """
    end_session(session, AuthSession.EndReason.LOGOUT)
    tokens.blacklist_jti(session.refresh_jti)
    if not isinstance(refresh_token, str) or not refresh_token or len(refresh_token) > 4096:
        return
    try:
        other = tokens.session_for_claims(tokens.decode(refresh_token, "refresh"))
    except AuthError:
        return
    if other.user_id == session.user_id and other.id != session.id:
        end_session(other, AuthSession.EndReason.LOGOUT)
        tokens.blacklist_jti(other.refresh_jti)


def end_user_sessions(user: User, reason: str) -> int:
    """End every session of `user`, the admin's too (`end_admin_sessions`); how many of
    the dashboard's and API's were open."""
    end_admin_sessions(user)
    return AuthSession.objects.filter(user=user, ended_at__isnull=True).update(
        ended_at=timezone.now(), end_reason=reason
    )


def end_admin_sessions(user: User) -> None:
    """Every admin session of `user` fails its next request, wherever its cookie is: they
    are signed over `session_epoch` (`User.get_session_auth_hash`). Found by an admin
    audit: a cookie copied before a logout, or before "log out everywhere", still
    opened the admin for the rest of its 12 hours."""
    User.objects.filter(pk=user.pk).update(session_epoch=F("session_epoch") + 1)


def prune_ended_sessions(*, now: datetime | None = None) -> int:
    """Delete the sessions that ended (logout, password change, deactivation, reused
    refresh token) or passed their cap more than ENDED_SESSION_RETENTION ago; the number
    deleted. The worker's daily housekeeping runs it.

    Safe to delete: no table refers to a session (audit events and the refresh-token
    records do not), and a token of it, should one be presented, finds no session and is
    refused as one of an ended session is (TOKEN_INVALID).
    """
    cutoff = (now or timezone.now()) - ENDED_SESSION_RETENTION
    deleted, _ = AuthSession.objects.filter(
        Q(ended_at__lte=cutoff) | Q(expires_at__lte=cutoff)
    ).delete()
    return deleted


def touch_session(session: AuthSession, request: HttpRequest | None = None) -> None:
    """Record that `session` is in use: `last_seen_at`, IP and user agent, at most once a minute.

    Costs no query when the session was seen less than a minute ago (the value
    read with the session decides); otherwise one conditional UPDATE, so
    concurrent requests write once.
    """
    now = timezone.now()
    if session.last_seen_at is not None and now - session.last_seen_at < LAST_SEEN_INTERVAL:
        return
    fields = {"last_seen_at": now}
    if request is not None:
        fields["ip"] = client_ip(request)
        fields["user_agent"] = user_agent(request)
    stale = Q(last_seen_at__isnull=True) | Q(last_seen_at__lte=now - LAST_SEEN_INTERVAL)
    AuthSession.objects.filter(stale, id=session.id).update(**fields)
    session.last_seen_at = now


def end_own_session(*, user: User, session_id: Any) -> None:
    """End one open session of `user` (any of their devices); 404 NOT_FOUND for any other."""
    session = open_session_of(user, session_id)
    if session is None:
        raise NotFound()
    end_session(session, AuthSession.EndReason.LOGOUT)
    tokens.blacklist_jti(session.refresh_jti)


def end_other_sessions(*, user: User, keep: AuthSession) -> int:
    """ "Log out everywhere else": every open session of `user` but `keep`, and their admin
    sessions; returns how many of the others were open."""
    with transaction.atomic():
        end_admin_sessions(user)
        ended = (
            AuthSession.objects.filter(user=user, ended_at__isnull=True)
            .exclude(id=keep.id)
            .update(ended_at=timezone.now(), end_reason=AuthSession.EndReason.LOGOUT)
        )
        log_user_change(UserAction.SESSIONS_ENDED, user.pk)
    return ended


def hashed_new_password(*, user: User, new_password: Any) -> str:
    """`new_password` checked by the validators (400 on `password`) and hashed, before the
    transaction that stores it (`store_password`): see `_hashed_account`."""
    if not isinstance(new_password, str) or not new_password:
        raise ValidationFailed({"password": ["A new password is required."]})
    try:
        validate_password(new_password, user)
    except DjangoValidationError as exc:
        raise ValidationFailed({"password": list(exc.messages)}) from exc
    return make_password(stabilized(new_password))


def store_password(
    *,
    user: User,
    hashed: str,
    request: HttpRequest | None = None,
    action: str = UserAction.PASSWORD_CHANGED,
) -> None:
    """Set a `hashed_new_password`: every session of the user ends, and an email says so;
    logged as `action` (changed by the user, reset by a link, set by an operator)."""
    with transaction.atomic():
        user.password = hashed
        user.save(update_fields=["password"])
        end_user_sessions(user, AuthSession.EndReason.PASSWORD_CHANGED)
        log_user_change(action, user.pk)
    mail.send_password_changed(
        user=user,
        when=timezone.now(),
        ip=client_ip(request) if request is not None else None,
    )


def change_password(*, user: User, new_password: Any, request: HttpRequest | None = None) -> None:
    """Set a new password: every session of the user ends, and an email says so."""
    hashed = hashed_new_password(user=user, new_password=new_password)
    store_password(user=user, hashed=hashed, request=request)


def change_own_password(
    *,
    user: User,
    current_password: Any,
    new_password: Any,
    request: HttpRequest | None = None,
) -> TokenPair:
    """The account page's password change: the current password first (throttled as logins).

    Every session ends, this one included; the caller gets a fresh session so
    the browser that changed the password stays logged in.
    """
    twofactor.check_password(user=user, password=current_password, request=request)
    change_password(user=user, new_password=new_password, request=request)
    return start_session(user, request)


def deactivate_user(
    *, user: User, actor_user: User | None = None, request: HttpRequest | None = None
) -> None:
    """The account can no longer log in or act: every session ends, and what the apps
    above hold on its authority in each organization goes with it, as when a member is
    removed (`membership_changed`: the invitations they sent are cancelled, audited with
    `actor_user` as actor, the system when None).

    Their memberships are locked first, as removing or demoting a member locks theirs
    before their invitations, so an acceptance of one of those at the same moment either
    finishes first or finds it cancelled.
    """
    with transaction.atomic():
        memberships = list(
            Membership.objects.select_for_update(no_key=True).filter(user_id=user.pk).order_by("id")
        )
        was_active = User.objects.filter(pk=user.pk, is_active=True).update(is_active=False)
        end_user_sessions(user, AuthSession.EndReason.DEACTIVATED)
        if was_active:  # an account deactivated again changes no one's access
            _record_in_each(Action.MEMBER_DEACTIVATED, memberships, user, actor_user, request)
            log_user_change(UserAction.DEACTIVATED, user.pk)
        for membership in memberships:
            membership.user = user
            membership_changed(
                membership=membership,
                role=None,
                actor_user=actor_user,
                request=request,
                deactivated=True,
            )


#: The `sigsentry.audit` line of each operator's change no service below writes one for (a
#: password set and a two-factor reset have theirs): the copy a restore needs (`UserAction`).
OPERATOR_CHANGE_LINES = {
    Action.MEMBER_REACTIVATED: UserAction.REACTIVATED,
    Action.MEMBER_EMAIL_CHANGED: UserAction.EMAIL_CHANGED,
    Action.MEMBER_SESSIONS_ENDED: UserAction.SESSIONS_ENDED,
}


def record_operator_change(
    action: str,
    user: User,
    *,
    actor_user: User | None,
    request: HttpRequest | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """An operator's change to a member's account (reactivated, two-factor reset, sessions
    ended) in the audit log of each organization it belongs to, in the caller's
    transaction (`actor_user` None: a management command's, the system's). Found by an
    audit-log audit: an owner's security team could not see that an operator had turned
    their two-factor off or brought a deactivated account back."""
    memberships = Membership.objects.filter(user_id=user.pk).order_by("id")
    _record_in_each(action, memberships, user, actor_user, request, details)
    if action in OPERATOR_CHANGE_LINES:
        log_user_change(OPERATOR_CHANGE_LINES[action], user.pk)


def _record_in_each(
    action: str,
    memberships: Iterable[Membership],
    user: User,
    actor_user: User | None,
    request: HttpRequest | None,
    details: dict[str, Any] | None = None,
) -> None:
    """`action` on `user`'s account in the audit log of each of their `memberships`."""
    for membership in memberships:
        membership.user = user
        record_membership_event(
            action, membership, actor_user, request, {"role": membership.role, **(details or {})}
        )


class AccountStillOwns(LastOwner):
    """409 LAST_OWNER: the account is the last owner of organizations where others are
    members. `organizations` are they, for the page to name and link."""

    def __init__(self, organizations: list[Organization]) -> None:
        super().__init__(
            "Your account is the last owner of organizations with other members: make "
            "another member an owner, or remove the others, first.",
            {"organizations": [{"id": str(o.id), "name": o.name} for o in organizations]},
        )
        self.organizations = organizations


def delete_account(
    *,
    actor: User,
    password: Any,
    code: Any = None,
    request: HttpRequest | None = None,
) -> AccountDeletionPlan | None:
    """Delete `actor`'s own account, for good (GDPR Art. 17), after re-authentication: the
    current password (401 INVALID_CREDENTIALS, throttled as logins), and with two-factor on
    a TOTP or recovery code (throttled as the login's second step). A stolen session alone
    deletes nothing.

    Refused (409 LAST_OWNER, `AccountStillOwns`, nothing changed and no code spent) while
    they are the last owner who can act of an organization with other members. Operators'
    accounts are refused too (400): their history in the admin would go with them; another
    operator deletes one there.

    In one transaction, on their organizations' rows, memberships and user row locked in
    that order (a membership or session inserted meanwhile fails its foreign key as it
    commits, the check waiting for the user row; one that committed between the
    memberships' lock and the user row's starts the transaction again, so that it is
    removed as the others are):
    * each organization of which they are the only member is deleted with everything in it
      (`delete_organizations`): its keys answer 401 from the next request on, and its
      webhook deliveries and reminders go with it;
    * from every other one they are removed (`member.removed`, they the actor, reason
      `account_deleted`), with what `membership_changed` undoes (the invitations they
      sent); the keys and webhooks they made stay the organization's (`createdBy` null);
    * events keep no address of theirs (`forget_account`), nor do keys, webhooks and
      analyses (`core.creators`, as the user's row goes), nor the webhooks' key events
      (`apps.webhooks.services.forget_creator_in_events`), nor the admin's history
      (`forget_in_admin_history`), nor their emails' queued retries
      (`mail.withdraw_retries_once_deleted`); invitations sent to their address are the inviting
      organization's record and stay (pruned as every finished one);
    * the user row goes, and with it every session (their access and refresh tokens are
      TOKEN_INVALID on the next request), the two-factor device and recovery codes; the
      address is free for a new sign-up.
    Then an email to the address says so. Safe to repeat: an account already deleted
    changes nothing (None); otherwise the plan that was carried out.
    """
    if actor.is_staff or actor.is_superuser:
        raise ValidationFailed(
            {
                "nonFieldErrors": [
                    "An operator's account is deleted by another operator, in the admin."
                ]
            }
        )
    plan = account_deletion_plan(actor)
    if plan.blocking:  # before the codes: a refused deletion spends no recovery code
        raise AccountStillOwns(plan.blocking)
    two_factor = twofactor.is_enabled(actor)
    if two_factor and (not isinstance(code, str) or not code.strip()):
        twofactor.check_password(user=actor, password=password, request=request)
        raise ValidationFailed(
            {"code": ["A code from the authenticator app, or a recovery code, is required."]}
        )
    twofactor.check_password(user=actor, password=password, request=request)
    for _attempt in range(DELETION_ATTEMPTS):
        try:
            deleted = _delete_account_locked(actor, code if two_factor else None, request)
        except _JoinedMeanwhile:
            continue
        break
    else:
        raise ValidationFailed(
            {
                "nonFieldErrors": [
                    "Your account kept being added to organizations while it was being "
                    "deleted: try again."
                ]
            }
        )
    if deleted is None:
        return None  # deleted by a request a moment ago (a double submit)
    plan, address = deleted
    mail.send_account_deleted(
        to=address,
        when=timezone.now(),
        ip=client_ip(request) if request is not None else None,
        two_factor=two_factor,
        organizations=len(plan.deleted),
    )
    return plan


#: Times the deletion starts again after finding the account added to an organization
#: between its locks (`_JoinedMeanwhile`): each needs another add in those milliseconds.
DELETION_ATTEMPTS = 3


class _JoinedMeanwhile(Exception):
    """A membership of the account committed after the deletion locked its memberships and
    before it locked the user row: its transaction is rolled back and starts again."""


def _delete_account_locked(
    actor: User, code: Any, request: HttpRequest | None
) -> tuple[AccountDeletionPlan, str] | None:
    """`delete_account`'s transaction (`code`: with two-factor on, the one to check): the
    plan carried out and the address it had, or None for an account already gone."""
    with transaction.atomic():
        # Their organizations first, in one order (NO KEY), as every writer of one locks it
        # before its memberships (`apps.orgs.access.locked_role`) and the admin's delete
        # before everything (`delete_organizations`): taken last, a manager's change of the
        # same moment held one while waiting for the membership, a deadlock (a review).
        # Two owners of one organization deleting their accounts at once take turns, and
        # the second's plan sees the first gone.
        theirs = Membership.objects.filter(user_id=actor.pk).values("organization_id")
        list(
            Organization.objects.select_for_update(no_key=True)
            .filter(pk__in=theirs)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # Then their memberships and the owners of each of their organizations, in one
        # statement in id order, as a removal locks them (`_lock_for_change`). Then the
        # user's row: a membership or session not committed by then fails its foreign key
        # (checked as it commits, which waits for the delete).
        locked = list(
            Membership.objects.select_for_update(of=("self",))
            .select_related("organization")
            .filter(Q(user_id=actor.pk) | Q(role=Role.OWNER, organization_id__in=theirs))
            .order_by("id")
        )
        user = User.objects.select_for_update().filter(pk=actor.pk).first()
        if user is None:
            return None
        memberships = [m for m in locked if m.user_id == user.pk]
        # One added between the two (an owner elsewhere adds them, they accept an
        # invitation) would go with the user row, the cascade, and its organization's log
        # would never say they left. Its organization is not locked, and locking it now,
        # after the user row, could wait in a circle with the account's own action there
        # (the organization, then the user row its event refers to): start again instead,
        # which locks it in order.
        now_theirs = Membership.objects.filter(user_id=user.pk).values_list("id", flat=True)
        if not set(now_theirs) <= {m.id for m in memberships}:
            raise _JoinedMeanwhile
        plan = account_deletion_plan(user, memberships)
        if plan.blocking:
            raise AccountStillOwns(plan.blocking)
        # The code last, under the locks: a deletion refused here (another owner's deletion
        # committed meanwhile) spent a recovery code (a review); a wrong one rolls back.
        if code is not None:
            twofactor.check_second_factor(user=user, code=code, request=request)
        leaving = {o.id for o in plan.left}
        for membership in memberships:
            if membership.organization_id not in leaving:
                continue
            membership.user = user
            membership.delete()
            record_membership_event(
                Action.MEMBER_REMOVED,
                membership,
                user,
                request,
                {"role": membership.role, "reason": "account_deleted"},
            )
            membership_changed(membership=membership, role=None, actor_user=user, request=request)
        delete_organizations([d.organization.id for d in plan.deleted])
        forget_account(user.pk)
        forget_in_admin_history([user.pk])
        mail.withdraw_retries_once_deleted([user.pk])
        address = user.email
        user.delete()
        log_user_change(UserAction.ACCOUNT_DELETED, actor.pk)
    return plan, address


#: What the admin's history (Django's `LogEntry`) calls an account once it is deleted.
DELETED_ACCOUNT_LABEL = "deleted account"


def forget_in_admin_history(user_ids: Iterable[Any]) -> int:
    """Before accounts are deleted (in their transaction): the admin's history of each
    (its "Recent actions", the user's page's history) keeps what operators did and when,
    under the account's bare id, and drops its address, which Django stored as the entry's
    `object_repr` (the user's `__str__`). The `change_message` holds field names, never
    values, and the entries of the other models name an account by id only (a membership,
    a session). How many entries changed."""
    return LogEntry.objects.filter(
        content_type=ContentType.objects.get_for_model(User),
        object_id__in=[str(user_id) for user_id in user_ids],
    ).update(object_repr=DELETED_ACCOUNT_LABEL)
