from django.apps import AppConfig


class AnalysesConfig(AppConfig):
    name = "apps.analyses"
    label = "analyses"
    default_auto_field = "django.db.models.BigAutoField"
