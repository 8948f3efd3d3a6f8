"""`Reminder.dedupe_key` unique by a constraint instead of `unique=True`.

On PostgreSQL, `unique=True` on a CharField also creates a `varchar_pattern_ops`
index (for LIKE) beside the unique one: a second copy of every key, kept up to date
on every reminder, which no query uses (keys are only compared whole, `=` and `IN`).
The constraint is added before the field's own is dropped, so the column is never
without one: the second worker's INSERT of a reminder still fails. As apikeys 0004
did for key digests.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_initial"),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="reminder",
            constraint=models.UniqueConstraint(
                fields=("dedupe_key",), name="notif_reminder_dedupe_unique"
            ),
        ),
        migrations.AlterField(
            model_name="reminder",
            name="dedupe_key",
            field=models.CharField(max_length=200),
        ),
    ]
