"""Shorten the display prefix of every stored legacy key to 4 secret characters.

Legacy keys were imported with their prefix plus the next 8 characters as the
display prefix, which for a short key was most or all of it (`tb_Ab3dE6gH`
shown whole). Only the digest of the key is stored, so how long each key was
cannot be judged after the fact: every stored legacy prefix is cut to its
legacy prefix and 4 characters, and so are the labels that copied it (audit
events, and the "created by" of analyses, follow-ups and feedback).

Reverse: nothing to restore (the cut characters are gone, on purpose).
"""

from django.db import migrations

#: The legacy prefixes as they were when this migration was written.
LEGACY_PREFIXES = ("tb_", "ss_live_")
SHOWN = 4


def _shortened(prefix: str) -> str:
    for legacy in LEGACY_PREFIXES:
        if prefix.startswith(legacy):
            return prefix[: len(legacy) + SHOWN]
    return prefix


def shorten_legacy_prefixes(apps, schema_editor):
    ApiKey = apps.get_model("apikeys", "ApiKey")
    AuditEvent = apps.get_model("audit", "AuditEvent")
    authored = [apps.get_model("analyses", name) for name in ("Analysis", "FollowUp", "Feedback")]
    for api_key in list(ApiKey.objects.filter(legacy=True).only("id", "prefix")):
        old, new = api_key.prefix, _shortened(api_key.prefix)
        if new == old:
            continue
        ApiKey.objects.filter(pk=api_key.pk).update(prefix=new)
        AuditEvent.objects.filter(actor_key_id=api_key.pk, actor_label=old).update(actor_label=new)
        AuditEvent.objects.filter(
            target_type="key", target_id=str(api_key.pk), target_label=old
        ).update(target_label=new)
        for model in authored:
            model.objects.filter(created_by_key_id=api_key.pk, created_by_label=old).update(
                created_by_label=new
            )


class Migration(migrations.Migration):
    dependencies = [
        ("apikeys", "0001_initial"),
        ("audit", "0001_initial"),
        ("analyses", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(shorten_legacy_prefixes, migrations.RunPython.noop, elidable=True),
    ]
