"""`digest` unique by a constraint instead of `unique=True`.

On PostgreSQL, `unique=True` on a CharField also creates a `varchar_pattern_ops`
index (for LIKE) beside the unique one: a second copy of every digest, kept up to
date on every mint, which no query uses (digests are only ever compared whole).
The constraint is added before the field's own is dropped, so the column is never
without one.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("apikeys", "0003_guardrails_and_usage"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="apikey",
            constraint=models.UniqueConstraint(fields=("digest",), name="apikeys_digest_unique"),
        ),
        migrations.AlterField(
            model_name="apikey",
            name="digest",
            field=models.CharField(editable=False, max_length=64),
        ),
    ]
