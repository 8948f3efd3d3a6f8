from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "apps.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from apps.webhooks.metrics import queue_state
        from core.metrics import register_queue_probe

        register_queue_probe("webhooks", queue_state)  # /metrics: read at scrape time
