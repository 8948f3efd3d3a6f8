"""Key pages' indexes: a project's keys by (project, type, created_at), not (project,
created_at); the unrevoked legacy keys on their own.

A project holds two collections, SDK keys and API keys, told apart by `type`. Without
it in the index, a page of one walked the project's keys of the other kind too: listing
the SDK keys of a project with 30,000 secret keys read all 30,000 (9 ms, and linear in
the keys). The new index is added before the old one is dropped, so listing is never
without one.

And a partial index of the unrevoked legacy keys, which the key pages' banner counts on
every view: it read every key of the organization (7 ms at 30,000), now the few rows
it counts.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("apikeys", "0004_digest_unique_without_like_index"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="apikey",
            index=models.Index(
                fields=["project", "type", "-created_at"], name="apikeys_project_type_created"
            ),
        ),
        migrations.RemoveIndex(
            model_name="apikey",
            name="apikeys_project_created",
        ),
        migrations.AddIndex(
            model_name="apikey",
            index=models.Index(
                condition=models.Q(("legacy", True), ("revoked_at__isnull", True)),
                fields=["organization", "project"],
                name="apikeys_legacy_unrevoked",
            ),
        ),
    ]
