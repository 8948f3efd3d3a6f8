"""Helpers for dashboard page tests: a logged-in test client and HTML checks."""

from __future__ import annotations

import re

from django.test import Client

from apps.accounts.cookies import ACCESS_COOKIE, REFRESH_COOKIE
from apps.accounts.services import start_session
from apps.apikeys.keyformat import KeyKind
from core.confirm import CONFIRM_FIELD, CONFIRM_VALUE

#: The marker of a confirmed destructive form (core/confirm.py): posted with it, the
#: action happens; without it, the view only asks.
CONFIRMED = {CONFIRM_FIELD: CONFIRM_VALUE}

# A <script> without src that has content, a style= attribute, a <style> element or an
# inline event handler: all forbidden by the dashboard's CSP (script-src/style-src 'self').
INLINE_SCRIPT = re.compile(r"<script\b(?![^>]*\bsrc\s*=)[^>]*>\s*\S", re.IGNORECASE)
STYLE_ATTRIBUTE = re.compile(r"<[a-z][^>]*\sstyle\s*=", re.IGNORECASE)
STYLE_ELEMENT = re.compile(r"<style\b", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[a-z][^>]*\son[a-z]+\s*=", re.IGNORECASE)
JAVASCRIPT_URL = re.compile(r"""(href|src|action)\s*=\s*["']?\s*javascript:""", re.IGNORECASE)


def logged_in(user, client: Client | None = None) -> Client:
    """A test client carrying a fresh dashboard session of `user` (the JWT cookies)."""
    client = client or Client()
    pair = start_session(user)
    client.cookies[ACCESS_COOKIE] = pair.access
    client.cookies[REFRESH_COOKIE] = pair.refresh
    return client


def assert_no_inline_code(html: str) -> None:
    for name, pattern in (
        ("inline <script>", INLINE_SCRIPT),
        ("style= attribute", STYLE_ATTRIBUTE),
        ("<style> element", STYLE_ELEMENT),
        ("inline event handler", EVENT_HANDLER),
        ("javascript: URL", JAVASCRIPT_URL),
    ):
        match = pattern.search(html)
        assert match is None, (
            f"{name} in page: {html[max(0, match.start() - 80) : match.end() + 80]}"
        )


def html(response) -> str:
    return response.content.decode()


def key_page_url(kind: KeyKind, project) -> str:
    """The dashboard page of `kind`'s keys for `project` (its organization's, for org keys)."""
    if kind is KeyKind.ORGANIZATION:
        return f"/orgs/{project.organization_id}/api-keys/"
    return f"/projects/{project.id}/{'sdk-keys' if kind is KeyKind.PUBLIC else 'api-keys'}/"
