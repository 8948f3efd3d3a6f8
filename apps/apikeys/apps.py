from django.apps import AppConfig


class ApikeysConfig(AppConfig):
    name = "apps.apikeys"
    label = "apikeys"
    default_auto_field = "django.db.models.BigAutoField"
