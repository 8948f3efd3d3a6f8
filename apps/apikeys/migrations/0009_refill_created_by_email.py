"""`created_by_email` again, for the rows the release before 0008 wrote while both
served: its keys and webhooks were inserted with the column's database default (empty), and
an account it deleted left its address behind (it had no receiver to empty it). The
contract step of 0008's expand: a batch per transaction (core.backfill); rows already
right are not written."""

from django.conf import settings
from django.db import migrations

from core.backfill import creators_addresses


def fill(apps, schema_editor):
    creators_addresses(
        apps.get_model("apikeys", "ApiKey"), apps.get_model(settings.AUTH_USER_MODEL)
    )


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
        ("apikeys", "0008_created_by_email"),
    ]

    operations = [
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
