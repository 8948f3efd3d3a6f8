from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "apps.notifications"
    label = "notifications"
    verbose_name = "Notifications"

    def ready(self) -> None:
        from django_tasks.signals import task_finished

        from apps.notifications.checks import email_queue_state
        from apps.notifications.results import forget_row_values
        from apps.notifications.tasks import schedule_queue_state
        from core.metrics import register_queue_probe

        register_queue_probe("emails", email_queue_state)  # /metrics: read at scrape time
        register_queue_probe("schedules", schedule_queue_state)  # a worker is running
        task_finished.connect(forget_row_values, dispatch_uid="sigsentry.forget_row_values")
