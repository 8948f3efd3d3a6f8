from django.conf import settings
from django.test import override_settings

from apps.accounts.checks import BLACKLIST_APP, check_session_tokens


def _ids() -> set[str]:
    return {error.id for error in check_session_tokens()}


def test_the_configured_project_passes_the_session_checks():
    assert _ids() == set()


def test_a_missing_token_blacklist_fails_the_system_check():
    apps = [app for app in settings.INSTALLED_APPS if app != BLACKLIST_APP]
    with override_settings(INSTALLED_APPS=apps):
        assert "sigsentry.E001" in _ids()


def test_an_unpinned_algorithm_fails_the_system_check():
    with override_settings(SIMPLE_JWT={**settings.SIMPLE_JWT, "ALGORITHM": "none"}):
        assert "sigsentry.E002" in _ids()


def test_a_short_signing_key_fails_the_system_check():
    with override_settings(JWT_SIGNING_KEY="short"):
        assert "sigsentry.E003" in _ids()
