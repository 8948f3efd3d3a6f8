from __future__ import annotations

import pytest

from tests.outbound import SmtpSink


@pytest.fixture
def smtp(settings):
    """A real SMTP server on 127.0.0.1, and Django's mail pointed at it."""
    sink = SmtpSink()
    for name, value in sink.settings().items():
        setattr(settings, name, value)
    settings.SITE_URL = "https://sigsentry.test"
    yield sink
    sink.stop()
