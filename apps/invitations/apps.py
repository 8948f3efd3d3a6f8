from django.apps import AppConfig


class InvitationsConfig(AppConfig):
    """Email invitations to an organization (SPEC §4.13).

    Above apps/accounts in the one-way house: it reads users and signs people up
    through the account services and writes memberships of apps/orgs; neither
    imports it back.
    """

    name = "apps.invitations"
    label = "invitations"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # How the worker rebuilds a failed invitation email (apps.accounts.mail.rebuilds).
        from apps.invitations import services  # noqa: F401
