from django.db import migrations, models

from core.online_schema import AddIndexOnline


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('audit', '0002_event_through_admin'),
    ]

    operations = [
        AddIndexOnline(
            model_name='auditevent',
            index=models.Index(fields=['-created_at', '-id'], name='audit_created'),
        ),
    ]
