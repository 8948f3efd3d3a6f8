import pytest
from django.conf import settings
from django.core.checks.registry import registry
from django.test import override_settings

from apps.accounts.checks import (
    BLACKLIST_APP,
    UNCONFIGURED_EMAIL_BACKEND,
    check_email_links,
    check_session_tokens,
)
from apps.webhooks.checks import check_private_webhooks


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


DEPLOYED = {
    "SITE_URL": "https://sigsentry.example.com",
    "ALLOWED_HOSTS": ["sigsentry.example.com"],
    "HTTPS_ONLY": True,
    "DEFAULT_FROM_EMAIL": "SigSentry <no-reply@sigsentry.example.com>",
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
}


def email_link_errors(settings, **changed) -> set[str]:
    for name, value in (DEPLOYED | changed).items():
        setattr(settings, name, value)
    return {error.id for error in check_email_links()}


def test_a_deployment_with_its_own_address_sender_and_mail_server_is_clean(settings):
    assert email_link_errors(settings) == set()
    assert email_link_errors(settings, ALLOWED_HOSTS=[".example.com"]) == set()
    ipv6 = {"SITE_URL": "https://[2001:db8::1]", "ALLOWED_HOSTS": ["[2001:db8::1]"]}
    assert email_link_errors(settings, **ipv6) == set()  # found by a review


@pytest.mark.parametrize(
    ("changed", "error"),
    [
        ({"SITE_URL": "http://127.0.0.1:8000", "HTTPS_ONLY": False}, "sigsentry.E004"),
        ({"SITE_URL": "https://localhost"}, "sigsentry.E004"),
        ({"SITE_URL": "https://[::1]:8000"}, "sigsentry.E004"),
        ({"SITE_URL": "https://app.example.org"}, "sigsentry.E005"),
        ({"SITE_URL": "http://sigsentry.example.com"}, "sigsentry.E006"),
        ({"DEFAULT_FROM_EMAIL": "SigSentry <no-reply@localhost>"}, "sigsentry.E007"),
        ({"DEFAULT_FROM_EMAIL": "no-reply"}, "sigsentry.E007"),
        ({"EMAIL_BACKEND": UNCONFIGURED_EMAIL_BACKEND}, "sigsentry.E008"),
        (
            {"EMAIL_HOST": "smtp.example.com", "EMAIL_HOST_PASSWORD": "pw"},
            "sigsentry.W002",
        ),
        (
            {"SECRET_KEY_FALLBACKS": ["django-insecure-" + "q8#x!0pz" * 6]},
            "sigsentry.W001",
        ),
    ],
)
def test_the_deploy_check_names_a_setting_that_breaks_the_emailed_links(settings, changed, error):
    assert email_link_errors(settings, **changed) == {error}


def test_the_email_checks_run_with_check_deploy_only():
    assert check_email_links in registry.get_checks(include_deployment_checks=True)
    assert check_email_links not in registry.get_checks(include_deployment_checks=False)


@pytest.mark.parametrize(
    "changed",
    [
        {"EMAIL_HOST": "smtp.example.com", "EMAIL_HOST_PASSWORD": "pw", "EMAIL_USE_TLS": True},
        {"EMAIL_HOST": "smtp.example.com", "EMAIL_HOST_PASSWORD": "pw", "EMAIL_USE_SSL": True},
        {"EMAIL_HOST": "smtp.example.com", "EMAIL_HOST_PASSWORD": ""},  # an open relay's
        {"EMAIL_HOST": "127.0.0.1", "EMAIL_HOST_PASSWORD": "pw"},  # a relay on this machine
    ],
)
def test_smtp_with_tls_without_a_password_or_on_this_machine_is_clean(settings, changed):
    defaults = {"EMAIL_USE_TLS": False, "EMAIL_USE_SSL": False}
    assert email_link_errors(settings, **(defaults | changed)) == set()


def test_webhooks_to_private_addresses_fail_the_deploy_check(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE = False
    assert check_private_webhooks() == []
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    assert [error.id for error in check_private_webhooks()] == ["sigsentry.E009"]
    assert check_private_webhooks in registry.get_checks(include_deployment_checks=True)
    assert check_private_webhooks not in registry.get_checks(include_deployment_checks=False)
