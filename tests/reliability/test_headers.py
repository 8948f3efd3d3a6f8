"""Security headers, cookies and deploy settings as production runs them.

Production values come from a subprocess that loads `sigsentry.settings` with
a production environment (DEBUG=false, no HTTPS_ONLY override), and are then
applied in-process with override_settings, on a fresh test client (Django's
SecurityMiddleware reads them when the middleware chain is built).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client, override_settings

from apps.accounts import services as account_services
from apps.apikeys.keyformat import KeyKind
from core.permissions import ALL_PERMISSIONS
from tests.factories import PASSWORD, make_key

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION_ENV = {
    "SECRET_KEY": "production-like-secret-key-for-the-deploy-check-0123456789abcdef",
    "DEBUG": "false",
    "ALLOWED_HOSTS": "sigsentry.example.com",
    "SITE_URL": "https://sigsentry.example.com",
    "DEFAULT_FROM_EMAIL": "SigSentry <no-reply@sigsentry.example.com>",
    "EMAIL_URL": "smtp+tls://sigsentry:password@smtp.example.com:587",
    "DJANGO_SETTINGS_MODULE": "sigsentry.settings",
}
SECURITY_SETTINGS = [
    "DEBUG",
    "HTTPS_ONLY",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS",
    "SECURE_HSTS_PRELOAD",
    "SESSION_COOKIE_SECURE",
    "SESSION_COOKIE_HTTPONLY",
    "CSRF_COOKIE_SECURE",
    "CSRF_COOKIE_HTTPONLY",
    "SECURE_CONTENT_TYPE_NOSNIFF",
    "SECURE_REFERRER_POLICY",
    "X_FRAME_OPTIONS",
]
HOST = "sigsentry.example.com"


def _production_env() -> dict[str, str]:
    # DJANGO_ALLOW_ASYNC_UNSAFE is set for the browser tests' process, never in production.
    dropped = ("HTTPS_ONLY", "DEBUG", "NUM_PROXIES", "DJANGO_ALLOW_ASYNC_UNSAFE")
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    return env | PRODUCTION_ENV


@pytest.fixture(scope="module")
def production_settings() -> dict:
    script = (
        "import json, django; django.setup(); from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {SECURITY_SETTINGS!r}}}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=_production_env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_production_settings_are_the_secure_ones(production_settings):
    assert production_settings == production_settings | {
        "DEBUG": False,
        "HTTPS_ONLY": True,
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "CSRF_COOKIE_SECURE": True,
        "CSRF_COOKIE_HTTPONLY": False,  # read by the page scripts for X-CSRFToken, on purpose
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "X_FRAME_OPTIONS": "DENY",
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    }
    assert production_settings["SECURE_HSTS_SECONDS"] >= 365 * 24 * 3600
    assert production_settings["SECURE_REFERRER_POLICY"] in ("same-origin", "no-referrer")


def test_production_settings_refuse_to_start_without_a_secret_key():
    env = _production_env()
    del env["SECRET_KEY"]
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


@pytest.mark.slow
def test_deploy_check_is_clean_with_production_settings():
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def production(production_settings):
    values = {k: v for k, v in production_settings.items() if k != "DEBUG"}
    with override_settings(**values, ALLOWED_HOSTS=[HOST]):
        yield Client(HTTP_HOST=HOST, REMOTE_ADDR="198.51.100.200")


def _assert_security_headers(response) -> None:
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")
    assert "includeSubDomains" in response["Strict-Transport-Security"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    # never a path to another site; a page whose URL may hold a token link sends no path
    # to its own site either (core.decorators.origin_only_referrer)
    assert response["Referrer-Policy"] in ("same-origin", "no-referrer", "strict-origin")
    csp = response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp


def _cookie(response, name: str):
    assert name in response.cookies, sorted(response.cookies)
    return response.cookies[name]


def test_plain_http_is_redirected_to_https(production, db):
    response = production.get("/login/")
    assert response.status_code == 301
    assert response["Location"] == f"https://{HOST}/login/"
    response = production.get("/v1/me")
    assert response.status_code == 301


@pytest.mark.parametrize("method", ["post", "patch", "delete"])
def test_the_https_redirect_of_a_write_keeps_its_method_and_body(production, db, method):
    """308: a 301 lets HTTP clients (curl -L, requests, browsers) resend a POST as a GET."""
    response = getattr(production, method)("/v1/analyses?x=1", {"title": "t"}, "application/json")
    assert response.status_code == 308
    assert response["Location"] == f"https://{HOST}/v1/analyses?x=1"
    assert production.post("/login/", {"email": "a@example.com"}).status_code == 308
    assert production.head("/login/").status_code == 301


def test_api_login_sets_secure_httponly_cookies_and_no_store(production, owner):
    response = production.post(
        "/v1/auth/login",
        {"email": owner.email, "password": PASSWORD},
        content_type="application/json",
        secure=True,
    )
    assert response.status_code == 200
    _assert_security_headers(response)
    assert response["Cache-Control"] == "no-store"
    for name in ("ss_access", "ss_refresh"):
        cookie = _cookie(response, name)
        assert cookie["secure"] and cookie["httponly"], name
        assert cookie["samesite"] == "Lax"


def test_dashboard_login_sets_secure_httponly_cookies(production, owner):
    page = production.get("/login/", secure=True)
    _assert_security_headers(page)
    csrf = _cookie(page, "csrftoken")
    assert csrf["secure"] and not csrf["httponly"]  # readable by the page script on purpose
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content).group(1)
    response = production.post(
        "/login/",
        {"email": owner.email, "password": PASSWORD, "csrfmiddlewaretoken": token.decode()},
        secure=True,
        HTTP_REFERER=f"https://{HOST}/login/",
    )
    assert response.status_code == 302, response.content[:300]
    for name in ("ss_access", "ss_refresh"):
        cookie = _cookie(response, name)
        assert cookie["secure"] and cookie["httponly"], name


def _dashboard_pages(organization, project) -> list[str]:
    return [
        "/",
        f"/orgs/{organization.id}/members/",
        f"/orgs/{organization.id}/api-keys/",
        f"/orgs/{organization.id}/audit-log/",
        f"/projects/{project.id}/",
        f"/projects/{project.id}/sdk-keys/",
        f"/projects/{project.id}/api-keys/",
    ]


_INLINE_SCRIPT = re.compile(rb"<script(?![^>]*\bsrc=)[^>]*>", re.IGNORECASE)
_INLINE_HANDLER = re.compile(rb"<[^>]+\son[a-z]+\s*=", re.IGNORECASE)
_STYLE_ATTRIBUTE = re.compile(rb"<[^>]+\sstyle\s*=", re.IGNORECASE)
_STYLE_ELEMENT = re.compile(rb"<style[\s>]", re.IGNORECASE)


def test_dashboard_pages_have_a_strict_csp_and_nothing_inline(
    production, organization, project, owner
):
    for path in ["/login/", "/signup/", *_dashboard_pages(organization, project)]:
        if path == "/":  # the pages behind the login
            production.cookies["ss_access"] = account_services.start_session(owner).access
        response = production.get(path, secure=True)
        assert response.status_code == 200, (path, response.status_code)
        _assert_security_headers(response)
        csp = response["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, (path, csp)
        assert "script-src 'self'" in csp and "object-src 'none'" in csp, (path, csp)
        body = response.content
        for pattern in (_INLINE_SCRIPT, _INLINE_HANDLER, _STYLE_ATTRIBUTE, _STYLE_ELEMENT):
            found = pattern.search(body)
            assert found is None, (path, found.group()[:120] if found else None)


def test_error_pages_carry_the_security_headers_too(production, db):
    response = production.get("/no-such-page/", secure=True)
    assert response.status_code == 404
    _assert_security_headers(response)
    assert "unsafe-inline" not in response["Content-Security-Policy"]


# Cache-Control: no-store on everything that carries a secret ---------------------------------


def _no_store(response) -> None:
    assert "no-store" in response.get("Cache-Control", ""), response.get("Cache-Control")


def test_every_response_with_a_secret_is_no_store(api_client, project, owner):
    signup = api_client.post(
        "/v1/auth/signup",
        {"email": "n@example.com", "password": "a-long-enough-pw-1", "organizationName": "N"},
        format="json",
    )
    assert signup.status_code == 201
    _no_store(signup)
    login = api_client.post(
        "/v1/auth/login", {"email": owner.email, "password": PASSWORD}, format="json"
    )
    assert login.status_code == 200
    _no_store(login)
    refresh = api_client.post(
        "/v1/auth/refresh", {"refresh": login.json()["refresh"]}, format="json"
    )
    assert refresh.status_code == 200
    _no_store(refresh)

    auth = {"HTTP_AUTHORIZATION": f"Bearer {refresh.json()['access']}"}
    url = f"/v1/projects/{project.id}/api-keys"
    minted = api_client.post(
        url, {"name": "ci", "permissions": list(ALL_PERMISSIONS)}, format="json", **auth
    )
    assert minted.status_code == 201 and minted.json()["key"]
    _no_store(minted)
    rolled = api_client.post(
        f"{url}/{minted.json()['id']}/roll", {"graceSeconds": 0}, format="json", **auth
    )
    assert rolled.status_code == 201 and rolled.json()["key"]
    _no_store(rolled)


def test_the_page_showing_a_new_key_is_no_store(client, project, owner):
    client.cookies["ss_access"] = account_services.start_session(owner).access
    page = client.get(f"/projects/{project.id}/api-keys/")
    nonce = re.search(rb'name="nonce" value="([^"]+)"', page.content).group(1).decode()
    shown = client.post(
        f"/projects/{project.id}/api-keys/",
        {"name": "from the page", "permissions": ["analysis:read"], "nonce": nonce},
    )
    assert re.search(rb"ss_secret_[0-9A-Za-z]{38}", shown.content)
    _no_store(shown)


def test_no_key_is_ever_in_a_redirect(client, project, owner):
    """Reloading or resubmitting the mint form redirects to the list: the URL carries no key."""
    client.cookies["ss_access"] = account_services.start_session(owner).access
    page = client.get(f"/projects/{project.id}/api-keys/")
    nonce = re.search(rb'name="nonce" value="([^"]+)"', page.content).group(1).decode()
    form = {"name": "once", "permissions": ["analysis:read"], "nonce": nonce}
    first = client.post(f"/projects/{project.id}/api-keys/", form)
    key = re.search(rb"ss_secret_[0-9A-Za-z]{38}", first.content).group().decode()
    again = client.post(f"/projects/{project.id}/api-keys/", form)
    assert again.status_code == 302
    assert key not in again["Location"]
    assert key.encode() not in client.get(again["Location"]).content
    _api_key, other = make_key(KeyKind.SECRET, project=project)
    assert other.encode() not in client.get(f"/projects/{project.id}/api-keys/").content


# Found by a headers audit ------------------------------------------------------------------


def test_every_answer_to_a_token_link_keeps_the_referrer_origin_only(
    production, owner, monkeypatch
):
    """A CSRF refusal and a 503 page, which the view never returns, load the same CSS and
    scripts: with Django's `same-origin` they sent the link's token as `Referer`."""
    from django.db import OperationalError

    from apps.accounts import password_reset

    url = f"/reset/{password_reset.make_reset_token(owner)}/"
    strict = Client(HTTP_HOST=HOST, enforce_csrf_checks=True)
    refused = strict.post(url, {"new_password": "a-long-new-password-1"}, secure=True)
    assert refused.status_code == 403 and b"/static/" in refused.content
    assert refused["Referrer-Policy"] == "strict-origin"

    def database_down(*args, **kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(password_reset, "checked_reset_token", database_down)
    unavailable = production.get(url, secure=True)
    assert unavailable.status_code == 503 and b"/static/" in unavailable.content
    assert unavailable["Referrer-Policy"] == "strict-origin"
    assert (
        production.get("/login/?next=/invitations/x/", secure=True)["Referrer-Policy"]
        == "strict-origin"
    )
    assert production.get("/signup/", secure=True)["Referrer-Policy"] == "same-origin"


@pytest.mark.parametrize("path", ["/admin/login/", "/v1/docs"])
def test_the_admin_and_the_docs_have_no_inline_style_either(production, db, path):
    """Django 5.2's admin has no inline style; the docs page's one is a file now."""
    response = production.get(path, secure=True)
    assert response.status_code == 200
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert _STYLE_ELEMENT.search(response.content) is None
    assert _INLINE_SCRIPT.search(response.content) is None


def test_a_token_link_refused_before_its_view_still_keeps_the_referrer_origin_only(
    production, db, settings
):
    """Found by a review: a body too large is answered before the URL is matched, and
    its 400 page loads the same CSS and scripts."""
    response = production.post(
        "/reset/abc.def/",
        b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1),
        content_type="application/x-www-form-urlencoded",
        secure=True,
    )
    assert response.status_code == 400 and b"/static/" in response.content
    assert response["Referrer-Policy"] == "strict-origin"


def test_a_body_refused_as_too_large_still_forbids_framing(production, db, settings):
    response = production.post(
        "/login/",
        b"x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1),
        content_type="application/x-www-form-urlencoded",
        secure=True,
    )
    assert response.status_code == 400
    assert response["X-Frame-Options"] == "DENY"
