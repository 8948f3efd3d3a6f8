"""Test settings with one slow endpoint (GET /slow), for the graceful-shutdown test."""

from sigsentry.test_settings import *  # noqa: F403

ROOT_URLCONF = "tests.reliability.slow_urls"
