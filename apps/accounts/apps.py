from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    default = True
    name = "apps.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # System checks, the mail signal receivers, and how a failed reset email is rebuilt.
        from apps.accounts import checks, mail, password_reset, twofactor  # noqa: F401
        from apps.accounts.models import TotpDevice
        from apps.accounts.tokens import mask_tokens
        from core.errors import never_echo
        from core.metrics import register_queue_probe
        from core.sealed import register_column

        register_queue_probe("account_emails", mail.retry_queue_state)  # read at scrape time
        never_echo(mask_tokens)  # error bodies never quote a token sent in the wrong field
        register_column(TotpDevice, "encrypted_secret", twofactor.SECRET_PURPOSE)


class SigSentryAdminConfig(admin_apps.AdminConfig):
    """`django.contrib.admin` with `apps.accounts.admin_site.SigSentryAdminSite` as `admin.site`.

    Listed in INSTALLED_APPS in place of "django.contrib.admin". `default = False`
    keeps Django from taking it for the accounts app's own config.
    """

    default = False
    default_site = "apps.accounts.admin_site.SigSentryAdminSite"
