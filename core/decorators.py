"""Decorators for dashboard pages: who may see a page, and how refusals look."""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlencode, urlsplit

from django.contrib import messages
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from core.errors import NotFound, PermissionDenied, ProjectNotFound


def login_required_page(view):
    """Dashboard pages need a session; otherwise /login/ with the way back remembered.
    Only a page's way back: a form's action URL answers POST only, and after the log-in
    the browser would GET it (405). A form sent after the session ended goes back to the
    page it was sent from (its `Referer`, on this site only), saying it was not sent
    (found by a multi-tab audit: a bare login page, then the home page)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.principal is None:
            if request.method in ("GET", "HEAD"):
                return redirect("/login/?" + urlencode({"next": request.get_full_path()}))
            messages.info(request, "You were logged out, so that form was not sent.")
            page = _referring_page(request)
            return redirect("/login/?" + urlencode({"next": page}) if page else "/login/")
        return view(request, *args, **kwargs)

    return wrapper


def _referring_page(request) -> str | None:
    """The path of the page a form was sent from, if it is one of this site's."""
    referer = request.META.get("HTTP_REFERER", "")
    if not url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return None
    parts = urlsplit(referer)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def dashboard_page(view):
    """A logged-in page whose access checks speak the API's errors.

    The access helpers (`project_for_user`, `membership_for`, `require_manager`)
    raise the SPEC §3 errors; on a page they become the friendly 404 page
    (outsiders cannot tell a foreign object from a missing one) and the 403
    page (a member without the rights).
    """

    @login_required_page
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if _opened_by_another_account(request):
            return render(request, "errors/409_account_changed.html", status=409)
        try:
            return view(request, *args, **kwargs)
        except (ProjectNotFound, NotFound) as exc:
            raise Http404 from exc
        except PermissionDenied as exc:
            raise DjangoPermissionDenied(exc.message) from exc

    return wrapper


#: The account a page was drawn for, which its script sends with each form (`app.js`).
OPENED_AS_FIELD = "opened_as"


def _opened_by_another_account(request) -> bool:
    """A form drawn for one account and sent after another logged in in the same browser
    (another tab or window): cookies are the browser's, so it would act as the new one,
    on the old page (found by a multi-tab audit: a key revoked as another admin). The page
    says so and does nothing. Without JavaScript the form carries no such field; the CSRF
    token, renewed at each log-in, refuses it then."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return False
    opened_as = request.POST.get(OPENED_AS_FIELD)
    return opened_as is not None and opened_as != str(request.principal.user.pk)


def origin_only_referrer(view):
    """For a page whose URL holds a secret (a token link, or a way back to one): the
    browser sends only the site's origin as `Referer` with the page's own requests (its
    CSS and scripts), which would otherwise write the URL into the access logs of every
    server and proxy on the way. Not `no-referrer`: a form posted from the page would
    then carry `Origin: null`, which Django's CSRF check refuses.

    The header is set by `core.middleware.SecurityHeadersMiddleware` on every answer to
    the view's URL: a CSRF refusal or a 503 page, which the view never returns, links
    the same CSS and scripts (found by a headers audit)."""
    view.origin_only_referrer = True
    return view
