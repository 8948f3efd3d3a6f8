from django.apps import AppConfig


class AccountCommandsConfig(AppConfig):
    name = "apps.accounts.commands"
    label = "accounts_commands"
