from django.apps import AppConfig


class SecretScanningConfig(AppConfig):
    name = "apps.secretscanning"
    label = "secretscanning"
    verbose_name = "Secret scanning"
