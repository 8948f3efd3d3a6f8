from django.apps import AppConfig


class AnalysesConfig(AppConfig):
    name = "apps.analyses"
    label = "analyses"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from apps.analyses.models import Analysis, Feedback, FollowUp
        from core.creators import forget_deleted_creators

        # A deleted account leaves its records to their projects, without its address.
        for model in (Analysis, FollowUp, Feedback):
            forget_deleted_creators(model, by="created_by_user", address="created_by_label")
