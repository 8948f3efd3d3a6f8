"""This release's writes against a table a later release gave a column it does not fill
(NOT NULL, no database default): the database's refusal is raised, never taken for a
concurrent write of the same row (found by a rolling-deploy audit: the reminders' checks
said "none created" and logged nothing; see also tests/notifications/test_checks.py)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError

from apps.apikeys.legacy import LegacyImportError, LegacyKeySpec, import_legacy_keys
from apps.apikeys.models import ApiKey
from apps.notifications.models import Schedule
from apps.notifications.tasks import enqueue_due
from apps.orgs.models import Membership
from apps.orgs.services import add_member
from core import counters
from core.errors import ValidationFailed
from core.models import WorkerCounter
from core.permissions import Permission
from tests.factories import UserFactory
from tests.schema import a_column_this_release_does_not_fill

pytestmark = pytest.mark.django_db


def test_a_counter_the_database_refuses_is_raised_not_lost():
    a_column_this_release_does_not_fill(WorkerCounter)
    with pytest.raises(IntegrityError, match="next_release"):
        counters.add("email_failures")


def test_a_schedule_the_database_refuses_is_raised_not_skipped():
    a_column_this_release_does_not_fill(Schedule)
    with pytest.raises(IntegrityError, match="next_release"):
        enqueue_due()


def test_a_member_the_database_refuses_is_an_error_not_already_a_member(owner, organization):
    actor = Membership.objects.get(user=owner, organization=organization)
    newcomer = UserFactory()
    a_column_this_release_does_not_fill(Membership)
    try:
        add_member(actor_membership=actor, email=newcomer.email, role="member")
    except ValidationFailed as answer:  # what the old code answered
        pytest.fail(f"answered as a duplicate: {answer}")
    except IntegrityError as error:
        assert "next_release" in str(error)
    else:
        pytest.fail("the member was added")


def test_a_legacy_import_the_database_refuses_is_an_error_not_a_concurrent_import(project):
    a_column_this_release_does_not_fill(ApiKey)
    spec = LegacyKeySpec(
        key="tb_5Rz8Kq1WmX3nLp7sVb2N",
        project=project,
        name="Old",
        permissions=[Permission.ANALYSIS_READ],
    )
    try:
        import_legacy_keys(specs=[spec])
    except LegacyImportError as answer:  # what the old code answered
        pytest.fail(f"answered as a concurrent import: {answer}")
    except IntegrityError as error:
        assert "next_release" in str(error)
    else:
        pytest.fail("the key was imported")
