"""`token_digest` unique by a constraint instead of `unique=True`.

On PostgreSQL, `unique=True` on a CharField also creates a `varchar_pattern_ops`
index (for LIKE) beside the unique one: a second copy of every digest, kept up to
date on every invitation and resend, which no query uses (digests are only ever
compared whole). The constraint is added before the field's own is dropped, so the
column is never without one. As apikeys 0004 did for key digests.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("invitations", "0001_initial"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="invitation",
            constraint=models.UniqueConstraint(
                fields=("token_digest",), name="invitations_token_digest_unique"
            ),
        ),
        migrations.AlterField(
            model_name="invitation",
            name="token_digest",
            field=models.CharField(max_length=64),
        ),
    ]
