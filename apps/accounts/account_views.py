"""`/account/`: the email address's confirmation, the password, two-factor set-up (QR code)
and the active sessions (SPEC §5).

One page; each form posts to its own small view, which redirects back (or
renders the page again with its errors). Turning two-factor on shows the
recovery codes once, in the response to that POST (no-store), never again.
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from apps.accounts import email_confirmation, services, twofactor
from apps.accounts.forms import (
    DeleteAccountForm,
    EmailCodeForm,
    PasswordChangeForm,
    TwoFactorDisableForm,
    TwoFactorEnableForm,
)
from apps.accounts.selectors import account_deletion_plan, sessions_shown
from apps.accounts.views import end_page_session, start_page_session, throttled_message
from core.confirm import Confirmation, confirmation_page, is_confirmed
from core.decorators import dashboard_page
from core.errors import (
    InvalidCredentials,
    LastOwner,
    NotFound,
    RateLimited,
    ValidationFailed,
)

ACCOUNT_URL = "/account/"
#: Organizations each list of the account's deletion names (the rest are counted).
DELETION_ORGANIZATIONS_LISTED = 20
#: Other sessions the page lists, most recently seen first (Log out everywhere else ends all).
OTHER_SESSIONS_SHOWN = 20


def _account_page(
    request: HttpRequest,
    *,
    email_form: EmailCodeForm | None = None,
    password_form: PasswordChangeForm | None = None,
    enable_form: TwoFactorEnableForm | None = None,
    disable_form: TwoFactorDisableForm | None = None,
    recovery_codes: list[str] | None = None,
    delete_form: DeleteAccountForm | None = None,
) -> HttpResponse:
    principal = request.principal
    user = principal.user
    device = twofactor.device_of(user)
    two_factor_on = device is not None and device.confirmed_at is not None
    current_id = principal.session.id if principal.session else None
    # This browser first, then the others most recently seen, a bounded number of them.
    sessions = sessions_shown(user, current_id, others=OTHER_SESSIONS_SHOWN)
    deletion = account_deletion_plan(user)
    context = {
        "email_confirmed_at": user.email_confirmed_at,
        "email_code_out": email_confirmation.code_out(user),
        "email_form": email_form or EmailCodeForm(),
        "password_form": password_form or PasswordChangeForm(),
        "two_factor_on": two_factor_on,
        "two_factor_since": device.confirmed_at if two_factor_on else None,
        "recovery_codes_left": twofactor.recovery_codes_left(user) if two_factor_on else 0,
        "setup": None if two_factor_on else twofactor.shown_setup(user, device),
        "enable_form": enable_form or TwoFactorEnableForm(),
        "disable_form": disable_form or TwoFactorDisableForm(),
        "recovery_codes": recovery_codes,
        "sessions": sessions.rows,
        "sessions_total": sessions.total,
        "sessions_not_shown": sessions.not_shown,
        "others_shown": len(sessions.others),
        "current_session_id": current_id,
        "other_sessions": sessions.total - (sessions.current is not None),
        "deletion": deletion,
        "delete_form": delete_form or DeleteAccountForm(two_factor=two_factor_on),
        "deletion_listed": DELETION_ORGANIZATIONS_LISTED,
        # Past those listed, each list's rest is counted ("And 3 more").
        "deletion_unlisted": {
            name: max(0, len(getattr(deletion, name)) - DELETION_ORGANIZATIONS_LISTED)
            for name in ("blocking", "deleted", "left")
        },
    }
    return render(request, "accounts/account.html", context)


@dashboard_page
@require_safe
def account(request: HttpRequest) -> HttpResponse:
    return _account_page(request)


@dashboard_page
@require_POST
def confirm_email(request: HttpRequest) -> HttpResponse:
    form = EmailCodeForm(request.POST)
    if form.is_valid():
        try:
            email_confirmation.confirm(user=request.principal.user, code=form.cleaned_data["code"])
        except RateLimited as exc:
            form.add_error(None, throttled_message(exc))
        except ValidationFailed as exc:
            form.add_service_errors(exc.details["fields"], {"code": "code"})
        else:
            messages.success(request, "Email address confirmed.")
            return redirect(f"{ACCOUNT_URL}#email")
    return _account_page(request, email_form=form)


@dashboard_page
@require_POST
def send_email_code(request: HttpRequest) -> HttpResponse:
    user = request.principal.user
    try:
        email_confirmation.mail_code(user=user)
    except RateLimited as exc:
        messages.error(request, throttled_message(exc))
    else:
        if not email_confirmation.is_confirmed(user):
            messages.success(request, f"A code is on its way to {user.email}.")
    return redirect(f"{ACCOUNT_URL}#email")


@dashboard_page
@require_POST
def change_password(request: HttpRequest) -> HttpResponse:
    form = PasswordChangeForm(request.POST)
    if form.is_valid():
        try:
            pair = services.change_own_password(
                user=request.principal.user,
                current_password=form.cleaned_data["current_password"],
                new_password=form.cleaned_data["new_password"],
                request=request,
            )
        except InvalidCredentials as exc:
            form.add_error("current_password", exc.message)
        except RateLimited as exc:
            form.add_error(None, throttled_message(exc))
        except ValidationFailed as exc:
            form.add_service_errors(exc.details["fields"], {"password": "new_password"})
        else:
            messages.success(
                request, "Password changed. Every other session was logged out; this one goes on."
            )
            return start_page_session(request, pair, ACCOUNT_URL)
    return _account_page(request, password_form=form)


@dashboard_page
@require_POST
def start_two_factor(request: HttpRequest) -> HttpResponse:
    try:
        twofactor.start_setup(user=request.principal.user)
    except ValidationFailed as exc:
        messages.error(request, exc.details["fields"]["nonFieldErrors"][0])
    return redirect(f"{ACCOUNT_URL}#two-factor")


@dashboard_page
@require_POST
def enable_two_factor(request: HttpRequest) -> HttpResponse:
    form = TwoFactorEnableForm(request.POST)
    if form.is_valid():
        try:
            codes = twofactor.enable(
                user=request.principal.user, code=form.cleaned_data["code"], request=request
            )
        except RateLimited as exc:
            form.add_error(None, throttled_message(exc))
        except ValidationFailed as exc:
            device = twofactor.device_of(request.principal.user)
            if device is not None and device.confirmed_at is not None:
                # A reload of the answer that showed the codes, or another tab: the page
                # has no enable form left to show the error beside, so say it on top.
                messages.info(
                    request,
                    "Two-factor authentication is already on. Its recovery codes were "
                    "shown once, when it was turned on.",
                )
                return redirect(f"{ACCOUNT_URL}#two-factor")
            if not twofactor.is_waiting(device):
                # The set-up expired (or was never started): no enable form is left to show
                # the error beside, so say it on top (a review: the code vanished unexplained).
                messages.error(request, exc.details["fields"]["code"][0])
                return redirect(f"{ACCOUNT_URL}#two-factor")
            form.add_service_errors(exc.details["fields"], {"code": "code"})
        else:
            messages.success(request, "Two-factor authentication is on.")
            return _account_page(request, recovery_codes=codes)
    return _account_page(request, enable_form=form)


@dashboard_page
@require_POST
def disable_two_factor(request: HttpRequest) -> HttpResponse:
    form = TwoFactorDisableForm(request.POST)
    if form.is_valid():
        try:
            twofactor.disable(
                user=request.principal.user,
                password=form.cleaned_data["password"],
                request=request,
            )
        except InvalidCredentials as exc:
            form.add_error("password", exc.message)
        except RateLimited as exc:
            form.add_error(None, throttled_message(exc))
        except ValidationFailed as exc:
            form.add_service_errors(exc.details["fields"], {"password": "password"})
        else:
            messages.success(request, "Two-factor authentication is off.")
            return redirect(f"{ACCOUNT_URL}#two-factor")
    return _account_page(request, disable_form=form)


@dashboard_page
@require_POST
def end_session(request: HttpRequest, session_id) -> HttpResponse:
    """Log one session out (another browser, or this one)."""
    principal = request.principal
    try:
        services.end_own_session(user=principal.user, session_id=session_id)
    except NotFound:
        messages.info(request, "That session had already ended.")
        return redirect(f"{ACCOUNT_URL}#sessions")
    if principal.session is not None and principal.session.id == session_id:
        return end_page_session(request)
    messages.success(request, "That session was logged out.")
    return redirect(f"{ACCOUNT_URL}#sessions")


@dashboard_page
@require_POST
def end_other_sessions(request: HttpRequest) -> HttpResponse:
    principal = request.principal
    if not is_confirmed(request):
        return confirmation_page(
            request,
            Confirmation(
                question="Log out every other session?",
                consequence="Every other browser and API client logged in as you must log in "
                "again. Only this browser stays logged in.",
                action="Log out everywhere else",
                cancel_url=f"{ACCOUNT_URL}#sessions",
                back_label="Account",
                irreversible=False,
            ),
        )
    ended = services.end_other_sessions(user=principal.user, keep=principal.session)
    messages.success(
        request,
        f"Logged out {ended} other session{'s' if ended != 1 else ''}."
        if ended
        else "There were no other sessions.",
    )
    return redirect(f"{ACCOUNT_URL}#sessions")


@dashboard_page
@require_POST
def delete_account(request: HttpRequest) -> HttpResponse:
    """Delete the account for good (`services.delete_account`), then log this browser out."""
    user = request.principal.user
    form = DeleteAccountForm(request.POST, two_factor=twofactor.is_enabled(user))
    if form.is_valid():
        try:
            services.delete_account(
                actor=user,
                password=form.cleaned_data["password"],
                code=form.cleaned_data.get("code"),
                request=request,
            )
        except RateLimited as exc:
            form.add_error(None, throttled_message(exc))
        except (InvalidCredentials, LastOwner) as exc:
            form.add_error(None, exc.message)
        except ValidationFailed as exc:
            form.add_service_errors(exc.details["fields"], {"password": "password", "code": "code"})
        else:
            messages.success(
                request,
                "Your account was deleted, and every session of it logged out. An email to "
                "its address confirms it.",
            )
            return end_page_session(request)
    return _account_page(request, delete_form=form)
