from django.db import migrations, models

from core.online_schema import AddIndexOnline


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('apikeys', '0009_refill_created_by_email'),
    ]

    operations = [
        AddIndexOnline(
            model_name='apikey',
            index=models.Index(condition=models.Q(('revoked_at__isnull', True)), fields=['organization', 'expires_at'], name='apikeys_org_unrevoked'),
        ),
    ]
