from django.apps import AppConfig


class ApikeysConfig(AppConfig):
    name = "apps.apikeys"
    label = "apikeys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the OpenAPI description of the /v1 authentication class.
        from apps.apikeys import schema  # noqa: F401
        from apps.apikeys.keyformat import mask_keys
        from core.errors import never_echo

        never_echo(mask_keys)  # error bodies never quote a key sent in the wrong field
        from django.contrib.auth import get_user_model
        from django.db.models.signals import pre_delete

        pre_delete.connect(forget_creator, sender=get_user_model(), dispatch_uid="apikeys.creator")


def forget_creator(sender, instance, **kwargs) -> None:
    """A deleted account's keys keep no address: their `created_by` goes to NULL (SET_NULL),
    and `created_by_email` must not stay behind it."""
    from apps.apikeys.models import ApiKey

    ApiKey.objects.filter(created_by=instance).update(created_by_email="")
