from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_delete

        from apps.webhooks import checks  # noqa: F401  (check --deploy)
        from apps.webhooks.crypto import SECRET_PURPOSE
        from apps.webhooks.metrics import queue_state
        from apps.webhooks.models import Webhook
        from apps.webhooks.services import forget_creator_in_events
        from core.creators import forget_deleted_creators
        from core.metrics import register_queue_probe
        from core.sealed import register_column

        register_queue_probe("webhooks", queue_state)  # /metrics: read at scrape time
        register_column(Webhook, "secret_ciphertext", SECRET_PURPOSE)  # reseal_secrets
        forget_deleted_creators(Webhook)  # as on keys: no address behind a NULL creator
        pre_delete.connect(  # nor in the key events that name the account as a key's creator
            lambda sender, instance, **kwargs: forget_creator_in_events(instance.pk),
            sender=get_user_model(),
            weak=False,
            dispatch_uid="webhooks.Event.forget-creator",
        )
