"""The database itself refuses impossible rows, whatever code writes them (IntegrityError)."""

from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from apps.accounts.models import User
from apps.analyses.models import Analysis, Feedback
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.invitations.models import Invitation
from apps.notifications.models import Reminder
from apps.orgs.models import Membership
from apps.projects.models import Channel, LogSource
from tests.factories import MembershipFactory, make_key

pytestmark = pytest.mark.django_db


def raw_key(organization, **fields) -> ApiKey:
    """An ApiKey row written directly, bypassing the mint service's checks."""
    key = keyformat.generate(KeyKind.SECRET)
    values = {
        "organization": organization,
        "type": "secret",
        "scope": "project",
        "name": "raw",
        "prefix": keyformat.display_prefix(key),
        "digest": keyformat.digest(key),
        "permissions": ["analysis:read"],
    } | fields
    return ApiKey.objects.create(**values)


def refused(create) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        create()


def test_valid_raw_rows_are_accepted(organization, project):
    raw_key(organization, project=project)
    raw_key(organization, scope="organization")
    raw_key(organization, project=project, type="public")
    raw_key(organization, project=project, legacy=True)
    assert ApiKey.objects.count() == 4


def test_project_key_without_a_project_is_refused(organization):
    refused(lambda: raw_key(organization, scope="project", project=None))


def test_org_key_with_a_project_is_refused(organization, project):
    refused(lambda: raw_key(organization, scope="organization", project=project))


def test_public_org_key_is_refused(organization):
    refused(lambda: raw_key(organization, scope="organization", type="public"))


def test_unknown_key_type_is_refused(organization, project):
    refused(lambda: raw_key(organization, project=project, type="admin"))


@pytest.mark.parametrize("fields", [{"type": "public"}, {"scope": "organization"}])
def test_legacy_keys_are_project_secret_keys(organization, project, fields):
    if fields.get("scope") == "organization":
        fields = fields | {"project": None}
    else:
        fields = fields | {"project": project}
    refused(lambda: raw_key(organization, legacy=True, **fields))


def test_duplicate_digest_is_refused(organization, project):
    existing, _ = make_key(KeyKind.SECRET, project=project)
    refused(lambda: raw_key(organization, project=project, digest=existing.digest))


def test_duplicate_membership_is_refused(organization, member):
    refused(lambda: Membership.objects.create(organization=organization, user=member, role="admin"))


def test_unknown_role_is_refused(organization):
    refused(lambda: MembershipFactory(organization=organization, role="superuser"))


def test_email_differing_only_in_case_is_refused(db):
    User.objects.create(email="ada@example.com")
    refused(lambda: User.objects.create(email="Ada@Example.COM"))


def test_unknown_feedback_rating_is_refused(project):
    analysis = Analysis.objects.create(
        project=project, title="t", input="i", created_by_type="user", created_by_label="u"
    )
    refused(
        lambda: Feedback.objects.create(
            analysis=analysis, rating="meh", created_by_type="user", created_by_label="u"
        )
    )


def test_unknown_configuration_kinds_are_refused(project):
    refused(lambda: LogSource.objects.create(project=project, name="n", kind="kafka"))
    refused(lambda: Channel.objects.create(project=project, name="n", kind="sms", target="+1"))


@pytest.mark.parametrize(
    ("model", "column"),
    [(ApiKey, "digest"), (Invitation, "token_digest"), (Reminder, "dedupe_key")],
    ids=["key digest", "invitation token digest", "reminder dedupe key"],
)
def test_a_value_compared_whole_has_one_index_and_it_is_unique(db, model, column):
    """One B-tree of the values, the unique one lookups (and a second writer) meet: no second
    copy of every value, such as the LIKE index PostgreSQL gets for a `unique=True`
    CharField, kept up to date on every write and read by no query."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    over_column = [info for info in constraints.values() if column in info["columns"]]
    assert [(info["columns"], info["unique"]) for info in over_column] == [([column], True)]


def test_a_second_reminder_with_the_same_dedupe_key_is_refused(organization):
    Reminder.objects.create(kind="key_expiring_7d", dedupe_key="k:1", organization=organization)
    refused(
        lambda: Reminder.objects.create(
            kind="key_expiring_1d", dedupe_key="k:1", organization=organization
        )
    )
