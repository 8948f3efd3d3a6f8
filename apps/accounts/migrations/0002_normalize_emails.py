"""Store every email in its normalized spelling (apps.accounts.emails.normalize_email).

Logins now match the normalized spelling exactly, so a row still stored in
another spelling could no longer log in. Two rows that normalize to the same
address (possible before: `ſam@x` and `sam@x` were distinct) cannot both take
it: the row already spelled that way (in any case) keeps it, else the oldest; the
others keep their old spelling, are reported, and an operator decides (they
cannot log in until their email is changed in the admin).

Reverse: nothing to undo; a normalized address is a valid one under the old code.
"""

from collections import defaultdict

from django.db import migrations

from apps.accounts.emails import normalize_email


def normalize_stored_emails(apps, schema_editor):
    User = apps.get_model("accounts", "User")
    by_address = defaultdict(list)
    for user in User.objects.order_by("date_joined", "id").only("id", "email", "date_joined"):
        by_address[normalize_email(user.email)].append(user)
    left_alone = []
    for address, users in by_address.items():
        # The row whose lowercase is already the address holds it in the unique
        # index on LOWER(email): it must be the one to keep it.
        holder = [user for user in users if user.email.lower() == address]
        keeper = holder[0] if holder else users[0]
        left_alone.extend(user for user in users if user is not keeper)
        if keeper.email != address:
            User.objects.filter(pk=keeper.pk).update(email=address)
    if left_alone:
        print(  # the operator running `migrate` must see this
            f"\n  accounts: {len(left_alone)} user(s) share a normalized email with another "
            "account and kept their old spelling (they cannot log in until an operator "
            "changes it): " + ", ".join(str(user.pk) for user in left_alone)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(normalize_stored_emails, migrations.RunPython.noop, elidable=True),
    ]
