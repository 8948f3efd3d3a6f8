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
        from core.creators import forget_deleted_creators
        from core.metrics import register_queue_probe
        from core.sealed import register_column

        register_queue_probe("webhooks", queue_state)  # /metrics: read at scrape time
        register_column(Webhook, "secret_ciphertext", SECRET_PURPOSE)  # reseal_secrets
        forget_deleted_creators(Webhook)  # as on keys: no address behind a NULL creator
