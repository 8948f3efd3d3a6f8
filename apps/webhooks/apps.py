from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from apps.webhooks import checks  # noqa: F401  (check --deploy)
        from apps.webhooks.crypto import SECRET_PURPOSE
        from apps.webhooks.metrics import queue_state
        from apps.webhooks.models import Webhook
        from core.metrics import register_queue_probe
        from core.sealed import register_column

        register_queue_probe("webhooks", queue_state)  # /metrics: read at scrape time
        register_column(Webhook, "secret_ciphertext", SECRET_PURPOSE)  # reseal_secrets
        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_delete

        pre_delete.connect(forget_creator, sender=get_user_model(), dispatch_uid="webhooks.creator")


def forget_creator(sender, instance, **kwargs) -> None:
    """As an API key's (`apps.apikeys.apps.forget_creator`): no address behind a NULL creator."""
    from apps.webhooks.models import Webhook

    Webhook.objects.filter(created_by=instance).update(created_by_email="")
