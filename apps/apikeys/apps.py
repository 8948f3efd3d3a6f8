from django.apps import AppConfig


class ApikeysConfig(AppConfig):
    name = "apps.apikeys"
    label = "apikeys"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the OpenAPI description of the /v1 authentication class.
        from apps.apikeys import schema  # noqa: F401
        from apps.apikeys.keyformat import mask_keys
        from apps.apikeys.models import ApiKey
        from core.creators import forget_deleted_creators
        from core.errors import never_echo

        never_echo(mask_keys)  # error bodies never quote a key sent in the wrong field
        forget_deleted_creators(ApiKey)  # a deleted account leaves no address on its keys
