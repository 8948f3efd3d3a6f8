"""Sign-up, login and logout pages. The JWT pair travels in HttpOnly cookies."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts import services
from apps.accounts.cookies import clear_session_cookies, set_session_cookies
from apps.accounts.forms import SERVICE_FIELDS, LoginForm, SignupForm
from apps.accounts.tokens import TokenPair
from core.errors import InvalidCredentials, RateLimited, ValidationFailed


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
    minutes = max(1, round(exc.retry_after / 60))
    unit = "minute" if minutes == 1 else "minutes"
    return f"Too many attempts. Please wait about {minutes} {unit} and try again."


def _start(pair: TokenPair, target: str) -> HttpResponse:
    response = redirect(target)
    set_session_cookies(response, pair)
    response.sets_session = True
    return response


@require_http_methods(["GET", "POST"])
def login_page(request: HttpRequest) -> HttpResponse:
    if request.principal is not None:
        return redirect("/")
    next_url = safe_next(request)
    form = LoginForm(request.POST if request.method == "POST" else None)
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
            return _start(pair, next_url)
    return render(request, "accounts/login.html", {"form": form, "next": next_url})


@require_http_methods(["GET", "POST"])
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
            return _start(result.tokens, "/")
    return render(request, "accounts/signup.html", {"form": form})


@require_POST
def logout_page(request: HttpRequest) -> HttpResponse:
    """End the session server-side (its tokens die at once), then drop the cookies."""
    if request.principal is not None and request.principal.session is not None:
        services.logout(session=request.principal.session)
    response = redirect("/login/")
    clear_session_cookies(response)
    response.ends_session = True
    return response
