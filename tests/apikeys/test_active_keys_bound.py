"""An organization holds at most MAX_ACTIVE_KEYS_PER_ORGANIZATION active keys, all kinds
together (a bounds audit: `mint_org` allows 86,400 mints a day, and every active key is in
the scheduled checks, the usage counters and the lists). One more is a
`400 VALIDATION_ERROR` on `name`; revoked and expired keys (kept for good) do not count, nor
does the key a roll replaces; mints at the same moment wait for each other, so the bound
is exact."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.apikeys import keyformat
from apps.apikeys import services as key_services
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from core.errors import ValidationFailed
from tests.factories import bulk_secret_keys, make_key
from tests.orgs.helpers import collection_url, error_fields, key_url, user_client
from tests.races import race_for_the_last_place

MAX_KEYS = key_services.MAX_ACTIVE_KEYS_PER_ORGANIZATION


@pytest.mark.django_db
def test_an_organization_at_its_active_keys_bound_mints_no_more(owner, project):
    # The keys below the bound once for every kind (a test per kind wrote them 3 times,
    # ~2.5 s of CPU each): each kind takes the last place, is refused one more, and the
    # last place is given back for the next kind.
    bulk_secret_keys(project, MAX_KEYS - 1)
    client = user_client(owner)
    for kind in KeyKind:
        path = collection_url(kind, project)
        permissions = {} if kind is KeyKind.PUBLIC else {"permissions": ["config:read"]}
        body = {"name": "Last"} | permissions

        last = client.post(path, body, format="json")
        refused = client.post(path, body | {"name": "One more"}, format="json")

        assert last.status_code == 201, (kind, last.json())
        assert refused.status_code == 400, kind
        assert error_fields(refused)["name"] == [
            f"At most {MAX_KEYS:,} active keys per organization: revoke the keys nothing uses "
            "first."
        ], kind
        assert not ApiKey.objects.filter(name="One more").exists(), kind
        ApiKey.objects.filter(name="Last").delete()


@pytest.mark.django_db
def test_revoked_and_expired_keys_do_not_count(owner, project):
    now = timezone.now()
    bulk_secret_keys(project, MAX_KEYS - 2)
    bulk_secret_keys(project, 1, revoked_at=now, digest=keyformat.digest("revoked"))
    bulk_secret_keys(
        project, 1, expires_at=now - timedelta(seconds=1), digest=keyformat.digest("expired")
    )

    make_key(KeyKind.SECRET, project=project)
    make_key(KeyKind.SECRET, project=project)

    with pytest.raises(ValidationFailed) as refused:
        make_key(KeyKind.SECRET, project=project)
    assert "active keys per organization" in refused.value.details["fields"]["name"][0]


@pytest.mark.django_db
def test_a_key_at_the_bound_can_still_be_rolled(owner, project):
    api_key, _plaintext = make_key(KeyKind.SECRET, project=project)
    bulk_secret_keys(project, MAX_KEYS - 1)

    response = user_client(owner).post(
        key_url(KeyKind.SECRET, project, api_key, "roll"), {"graceSeconds": 0}, format="json"
    )

    assert response.status_code == 201, response.json()


@pytest.mark.django_db(transaction=True)
def test_two_keys_minted_with_room_for_one_make_one(owner, project):
    bulk_secret_keys(project, MAX_KEYS - 1)
    client = user_client(owner)
    path = collection_url(KeyKind.SECRET, project)

    def mint():
        return client.post(path, {"name": "Racing", "permissions": ["config:read"]}, format="json")

    first, second = race_for_the_last_place(mint, mint, held_after='INSERT INTO "apikeys_apikey"')

    assert (first.status_code, second.status_code) == (201, 400)
    assert ApiKey.objects.filter(name="Racing").count() == 1
