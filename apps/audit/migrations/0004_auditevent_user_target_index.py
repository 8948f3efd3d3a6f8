from django.db import migrations, models

from core.online_schema import AddIndexOnline


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('audit', '0003_auditevent_created_index'),
    ]

    operations = [
        AddIndexOnline(
            model_name='auditevent',
            index=models.Index(
                condition=models.Q(('target_type', 'user')),
                fields=['target_id'],
                name='audit_user_target',
            ),
        ),
    ]
