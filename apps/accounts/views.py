"""Sign-up, login (with its two-factor step), logout and password reset pages.

The JWT pair travels in HttpOnly cookies. The login's second step carries the
mfaToken in a hidden field of the page it renders (never in a URL).
"""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import rotate_token
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts import password_reset, reset_link, services
from apps.accounts.cookies import clear_session_cookies, set_session_cookies
from apps.accounts.forms import (
    SERVICE_FIELDS,
    LoginForm,
    NewPasswordForm,
    PasswordResetRequestForm,
    SecondFactorForm,
    SignupForm,
)
from apps.accounts.mfa_login import MfaTokenInvalid
from apps.accounts.tokens import TokenPair
from core.decorators import origin_only_referrer
from core.errors import InvalidCredentials, RateLimited, ValidationFailed
from core.times import wait_phrase


def safe_next(request: HttpRequest) -> str:
    """Where to go after logging in: a path on this site, or `/`.

    Only a single leading slash is accepted (`//host` and `/\\host` are
    protocol-relative to a browser), no control characters, and Django's own
    host/scheme check must agree — so `next` can never send anyone off-site.
    """
    target = request.POST.get("next") or request.GET.get("next") or ""
    if (
        target.startswith("/")
        and not target.startswith(("//", "/\\"))
        and not any(ord(char) < 0x20 or char == "\\" for char in target)
        and url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        )
    ):
        return target
    return "/"


def throttled_message(exc: RateLimited) -> str:
    """The form's error for a throttled attempt, its wait rounded up (`wait_phrase`)."""
    return f"Too many attempts. Please wait {wait_phrase(exc.retry_after)} and try again."


def start_page_session(request: HttpRequest, pair: TokenPair, target: str) -> HttpResponse:
    """Redirect to `target` with the new session's cookies (they win over a silent refresh)
    and a new CSRF token, as Django's `login()` rotates it: one planted before the login
    (a sibling subdomain's cookie) is worth nothing after it."""
    rotate_token(request)
    response = redirect(target)
    set_session_cookies(response, pair)
    response.sets_session = True
    return response


def end_page_session(request: HttpRequest) -> HttpResponse:
    """To the login page without the session's cookies, with a new CSRF token."""
    rotate_token(request)
    response = redirect("/login/")
    clear_session_cookies(response)
    response.ends_session = True
    return response


@require_http_methods(["GET", "HEAD", "POST"])
@origin_only_referrer  # its `next` may be the way back to an invitation link
def login_page(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request)
    if request.principal is not None:  # a tab that took a refresh race for a logout
        return redirect(next_url)
    form = LoginForm(
        request.POST if request.method == "POST" else None,
        focus_email=not messages.get_messages(request),
    )
    if request.method == "POST" and form.is_valid():
        try:
            pair = services.login(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                request=request,
            )
        except InvalidCredentials as exc:
            form.add_error(None, exc.message)
        except RateLimited as exc:
            form.add_error(None, throttled_message(exc))
        except ValidationFailed as exc:
            form.add_service_errors(exc.details["fields"], SERVICE_FIELDS)
        else:
            if isinstance(pair, services.MfaChallenge):
                return _second_factor_page(request, pair.mfa_token, next_url, SecondFactorForm())
            return start_page_session(request, pair, next_url)
    return render(request, "accounts/login.html", {"form": form, "next": next_url})


def _second_factor_page(
    request: HttpRequest, mfa_token: str, next_url: str, form: SecondFactorForm
) -> HttpResponse:
    context = {"form": form, "mfa_token": mfa_token, "next": next_url}
    return render(request, "accounts/login_2fa.html", context)


@require_POST
def login_second_factor_page(request: HttpRequest) -> HttpResponse:
    """The code step of a login with two-factor on (after the password step above)."""
    next_url = safe_next(request)
    mfa_token = request.POST.get("mfa_token", "")
    form = SecondFactorForm(request.POST)
    if form.is_valid():
        try:
            pair = services.login_with_second_factor(
                mfa_token=mfa_token, code=form.cleaned_data["code"], request=request
            )
        except MfaTokenInvalid as exc:
            messages.error(request, exc.message)
            # with the way back: a login on the way to an invitation link (a session audit)
            again = "?" + urlencode({"next": next_url}) if next_url != "/" else ""
            return redirect("/login/" + again)
        except InvalidCredentials as exc:
            form.add_error("code", exc.message)
        except RateLimited as exc:
            form.add_error(None, throttled_message(exc))
        except ValidationFailed as exc:
            form.add_service_errors(exc.details["fields"], {"code": "code"})
        else:
            return start_page_session(request, pair, next_url)
    return _second_factor_page(request, mfa_token, next_url, form)


@require_http_methods(["GET", "HEAD", "POST"])
def signup_page(request: HttpRequest) -> HttpResponse:
    if request.principal is not None:
        return redirect("/")
    form = SignupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            result = services.signup(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password"],
                organization_name=form.cleaned_data["organization_name"],
                request=request,
            )
        except RateLimited as exc:
            form.add_error(None, throttled_message(exc))
        except ValidationFailed as exc:
            form.add_service_errors(exc.details["fields"], SERVICE_FIELDS)
        else:
            return start_page_session(request, result.tokens, "/")
    return render(request, "accounts/signup.html", {"form": form})


@require_POST
def logout_page(request: HttpRequest) -> HttpResponse:
    """End the session server-side (its tokens die at once), then drop the cookies."""
    if request.principal is not None and request.principal.session is not None:
        services.logout(session=request.principal.session)
    # The login page it lands on says why: without it a logout looked like a session lost.
    messages.success(request, "You have been logged out.")
    return end_page_session(request)


@require_http_methods(["GET", "HEAD", "POST"])
def password_reset_page(request: HttpRequest) -> HttpResponse:
    """ "Forgot password?": the same answer whether or not an account uses the email."""
    form = PasswordResetRequestForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            password_reset.request_password_reset(email=form.cleaned_data["email"], request=request)
        except RateLimited as exc:
            form.add_error(None, throttled_message(exc))
        except ValidationFailed as exc:
            form.add_service_errors(exc.details["fields"], {"email": "email"})
        else:
            messages.success(
                request,
                "If an account uses this email, a link to reset its password is on its way. "
                "It works once, for one hour.",
            )
            return redirect("/login/")
    return render(request, "accounts/password_reset.html", {"form": form})


def _invalid_link(request: HttpRequest) -> HttpResponse:
    """The link is bad, used or expired: the page says so, and no reset cookie stays."""
    response = render(request, "accounts/password_reset_invalid.html", status=400)
    reset_link.cookie.forget(response)
    return response


@require_http_methods(["GET", "HEAD", "POST"])
@origin_only_referrer
def password_reset_confirm_page(request: HttpRequest, token: str) -> HttpResponse:
    """The emailed link. A good token is kept in the reset cookie and the browser sent on
    to `/reset/set-password/`, so the token leaves the address bar (apps.accounts.reset_link);
    a bad one gets the invalid page, and nothing is kept. A POST here is a page served by the
    release before (its form posted to its own URL), answered as the page after would."""
    refused = _refusal(request, token)
    if refused is not None:
        return refused
    if request.method == "POST":
        return _choose_password(request, token)
    response = redirect(reset_link.SET_PASSWORD_PATH)
    reset_link.keep_token(response, request, token)
    return response


@require_http_methods(["GET", "HEAD", "POST"])
def password_reset_set_page(request: HttpRequest) -> HttpResponse:
    """Choose a new password, with the token the reset cookie holds; without a cookie, or
    with one altered or holding a token no longer good, the invalid page (the cookie goes).
    Every session ends; log in again after."""
    token = reset_link.cookie.kept(request)
    if token is None:
        return _invalid_link(request)
    return _refusal(request, token) or _choose_password(request, token)


def _refusal(request: HttpRequest, token: str) -> HttpResponse | None:
    """None for a good token; else the page that says why (429 throttled, 400 bad: the
    check counts against the client as a credential's does)."""
    try:
        password_reset.checked_reset_token(token, request)
    except RateLimited as exc:
        context = {"throttled": throttled_message(exc)}
        return render(request, "accounts/password_reset_invalid.html", context, status=429)
    except ValidationFailed:
        return _invalid_link(request)
    return None


def _choose_password(request: HttpRequest, token: str) -> HttpResponse:
    form = NewPasswordForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            password_reset.confirm_password_reset(
                token=token, password=form.cleaned_data["password"], request=request
            )
        except RateLimited as exc:
            form.add_error(None, throttled_message(exc))
        except ValidationFailed as exc:
            if "token" in exc.details["fields"]:
                return _invalid_link(request)
            form.add_service_errors(exc.details["fields"], {"password": "password"})
        else:
            messages.success(request, "Your password was changed. Log in with the new one.")
            response = end_page_session(request)
            reset_link.cookie.forget(response)
            return response
    return render(request, "accounts/password_reset_confirm.html", {"form": form})
