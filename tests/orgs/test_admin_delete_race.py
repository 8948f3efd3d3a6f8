"""An organization deleted in the admin while a row that refers to its key is written.

Found by an integrity audit: the delete removes the rows that refer to a key first and the
key last; the worker's usage copy (a `KeyUsage` row every 30-60 s for a live key) committed
in between, and the key's DELETE then broke the foreign key: a 503, the organization
kept. The operator's delete is held just after it removed the usage rows; the copy must
wait for it and then fail, the organization must be gone. (PostgreSQL: SQLite serialises
writers, so the race cannot happen there.)
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.contrib.admin import site
from django.db import IntegrityError, transaction
from django.test import RequestFactory

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey, KeyUsage
from apps.orgs.models import Organization
from tests.factories import UserFactory, make_key
from tests.races import Call, race
from tests.reliability.conftest import requires_postgres

pytestmark = [requires_postgres, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DELETES_THE_USAGE = 'DELETE FROM "apikeys_keyusage"'


def _on_its_page(admin, request, organization) -> None:
    """The delete page's POST: Django's delete view, one transaction, reads the
    organization (`get_object`) then deletes it with `delete_model`."""
    with transaction.atomic():
        admin.delete_model(request, admin.get_object(request, str(organization.pk)))


def _by_the_action(admin, request, organization) -> None:
    admin.delete_queryset(request, Organization.objects.filter(pk=organization.pk))


@pytest.mark.parametrize("delete_it", [_by_the_action, _on_its_page], ids=["action", "page"])
def test_a_usage_copy_during_the_delete_waits_and_the_organization_goes(project, delete_it):
    """On its own page too (an admin audit: Django's `delete_model` skipped the locks the
    bulk action takes, and the copy broke the delete there)."""
    organization = project.organization
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    hour = datetime(2026, 12, 6, 10, tzinfo=UTC)
    KeyUsage.objects.create(key=api_key, granularity="hour", start=hour, epoch="e", requests=1)
    request = RequestFactory().post("/admin/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    admin = site._registry[Organization]

    delete = Call(lambda: delete_it(admin, request, organization), held_after=DELETES_THE_USAGE)
    copy = Call(
        lambda: KeyUsage.objects.create(
            key_id=api_key.pk, granularity="day", start=hour, epoch="e", requests=2
        )
    )

    race(delete, copy, second_waits=True)

    assert delete.error is None, delete.error
    assert isinstance(copy.error, IntegrityError), copy.error
    assert not Organization.objects.filter(pk=organization.pk).exists()
    assert not ApiKey.objects.filter(pk=api_key.pk).exists()


LOCKS_THE_ORGANIZATION = 'SELECT %s AS "a" FROM "orgs_organization"'


def test_a_roll_during_the_delete_waits_for_it_without_a_deadlock(project, owner):
    """Found by a review: the delete locks the organization, then its keys; a roll locked
    its key, then the organization (to mint): each waited for the other, and PostgreSQL
    broke the deadlock by failing one. A roll now locks the organization first."""
    from apps.apikeys.services import roll_key

    organization = project.organization
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    request = RequestFactory().post("/admin/")
    request.user = UserFactory(is_staff=True, is_superuser=True)
    admin = site._registry[Organization]

    def delete():
        admin.get_object(request, str(organization.pk))  # the delete page locks it first
        admin.delete_queryset(request, Organization.objects.filter(pk=organization.pk))

    deleting = Call(lambda: transaction.atomic()(delete)(), held_after=LOCKS_THE_ORGANIZATION)
    rolling = Call(lambda: roll_key(actor=owner, api_key=api_key, grace_seconds=60))

    race(deleting, rolling, second_waits=True)

    assert deleting.error is None, deleting.error
    assert not Organization.objects.filter(pk=organization.pk).exists()
    assert isinstance(rolling.error, ApiKey.DoesNotExist), rolling.error  # not a deadlock
