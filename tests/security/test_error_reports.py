"""Django's error reports (the DEBUG page, mails to ADMINS) hide URLs with their passwords.

Found by a configuration audit: Django hides settings named for secrets (KEY, PASS,
TOKEN, ...), so `REDIS_URL`, the cache's `LOCATION` and a `SITE_URL` with user info were
shown in clear on the DEBUG page.
"""

from __future__ import annotations

import sys

from django.test import RequestFactory, override_settings
from django.views.debug import ExceptionReporter

PASSWORD = "S3cret" + "RedisPassw0rd"  # never whole in the source a report quotes


def report_text() -> tuple[str, str]:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        reporter = ExceptionReporter(RequestFactory().get("/"), *sys.exc_info())
        return reporter.get_traceback_text(), reporter.get_traceback_html()


@override_settings(
    REDIS_URL=f"redis://:{PASSWORD}@cache.internal:6379/0",
    SITE_URL=f"https://ops:{PASSWORD}@sigsentry.example.com",
    SOME_CACHES={"default": {"LOCATION": f"redis://:{PASSWORD}@cache.internal:6379/0"}},
)
def test_urls_and_locations_are_hidden_in_error_reports():
    text, html = report_text()

    assert "REDIS_URL" in text and "boom" in text  # the report is there, its values hidden
    assert PASSWORD not in text
    assert PASSWORD not in html
