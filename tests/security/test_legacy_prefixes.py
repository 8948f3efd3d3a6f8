"""Finding 1: a short legacy key was shown whole as its "prefix".

The attack: import `tb_Ab3dE6gH,<project>,old,`; a viewer then read
`prefix: "tb_Ab3dE6gH"` from the key list (and the auth log, the audit label and
the admin showed the same value) and used it to write configuration their own
role may not. Now the import refuses a legacy key with fewer than 20 characters
after its prefix, no display prefix shows more than 8 secret characters nor more
than a quarter of a legacy key's secret part, and a data migration cuts every
stored legacy prefix to 4 secret characters.
"""

from __future__ import annotations

import importlib
import io
import logging

import pytest
from django.apps import apps
from django.core.management import CommandError, call_command

from apps.analyses.models import Analysis
from apps.analyses.services import create_analysis
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.legacy import LegacyImportError, LegacyKeySpec, import_legacy_keys
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key
from apps.audit.models import AuditEvent
from core.principal import Principal
from tests.factories import make_key, make_legacy_key
from tests.orgs.helpers import bearer_client, user_client

pytestmark = pytest.mark.django_db

REVIEWERS_KEY = "tb_Ab3dE6gH"  # 8 characters after tb_: the key the review imported
SHORTEST_KEPT = "tb_" + "Ab3dE6gH" + "x" * 12  # 20 characters after tb_
ALMOST = SHORTEST_KEPT[:-1]  # 19

shorten_migration = importlib.import_module("apps.apikeys.migrations.0002_shorten_legacy_prefixes")


def run_import(tmp_path, *rows: str) -> str:
    path = tmp_path / "keys.csv"
    path.write_text("\n".join(["key,project_id,name,permissions", *rows]) + "\n")
    out = io.StringIO()
    call_command("import_legacy_keys", str(path), stdout=out, stderr=out)
    return out.getvalue()


@pytest.mark.parametrize("key", [REVIEWERS_KEY, ALMOST, "ss_live_" + "k" * 19])
def test_the_import_refuses_a_short_legacy_key_naming_the_line_never_the_key(
    tmp_path, project, caplog, key
):
    caplog.set_level(logging.DEBUG)

    with pytest.raises(CommandError) as raised:
        run_import(tmp_path, f"{SHORTEST_KEPT},{project.id},fine,", f"{key},{project.id},old,")

    message = str(raised.value)
    assert "line 3" in message
    assert "too short" in message
    assert key not in message
    assert key not in caplog.text
    assert not ApiKey.objects.exists()  # all or nothing: the good row is not written either


def test_the_service_refuses_a_short_legacy_key_too(project):
    spec = LegacyKeySpec(key=ALMOST, project=project, name="old", permissions=[])

    with pytest.raises(LegacyImportError) as raised:
        import_legacy_keys(specs=[spec])

    assert ALMOST not in str(raised.value)
    assert not ApiKey.objects.exists()


def test_a_key_of_20_characters_is_imported_and_shown_by_a_quarter(tmp_path, project, viewer):
    assert "Imported 1" in run_import(tmp_path, f"{SHORTEST_KEPT},{project.id},old,")

    listed = user_client(viewer).get(f"/v1/projects/{project.id}/api-keys").json()["results"]

    assert [key["prefix"] for key in listed] == ["tb_Ab3dE"]  # 5 of 20 secret characters


def test_no_listed_prefix_shows_more_than_8_nor_a_quarter_of_a_legacy_secret(project, viewer):
    plaintexts = {}
    for kind in KeyKind:
        api_key, plaintext = make_key(kind, project=project)
        plaintexts[str(api_key.id)] = plaintext
    legacy = [f"tb_{'Z' * n}" for n in (20, 23, 31, 32, 33, 200)] + ["ss_live_" + "Y" * 24]
    import_legacy_keys(
        specs=[LegacyKeySpec(key=k, project=project, name="old", permissions=[]) for k in legacy]
    )
    for plaintext in legacy:
        plaintexts[str(ApiKey.objects.get(digest=keyformat.digest(plaintext)).id)] = plaintext

    client = user_client(viewer)
    listed = []
    for url in (
        f"/v1/projects/{project.id}/sdk-keys",
        f"/v1/projects/{project.id}/api-keys",
        f"/v1/organizations/{project.organization_id}/api-keys",
    ):
        listed += client.get(url).json()["results"]

    assert len(listed) == len(plaintexts)
    for key in listed:
        plaintext = plaintexts[key["id"]]
        legacy_prefix = keyformat.legacy_prefix_of(plaintext)
        type_prefix = legacy_prefix or plaintext[: plaintext.rindex("_") + 1]
        shown = len(key["prefix"]) - len(type_prefix)
        assert plaintext.startswith(key["prefix"])
        assert shown <= 8
        if key["legacy"]:
            assert shown <= (len(plaintext) - len(type_prefix)) // 4


# Prefixes stored before the fix ---------------------------------------------------------------


@pytest.fixture
def imported_before_the_fix(project, owner):
    """The reviewer's key as the old import stored it: the whole key as its prefix."""
    api_key, _ = make_legacy_key(project, plaintext="tb_" + "A" * 32)
    ApiKey.objects.filter(pk=api_key.pk).update(prefix=REVIEWERS_KEY)
    api_key.refresh_from_db()
    create_analysis(principal=Principal(key=api_key), project=project, title="t", input="i")
    revoke_key(actor=owner, api_key=api_key)
    return api_key


def test_the_migration_cuts_stored_legacy_prefixes_to_4_secret_characters(
    project, imported_before_the_fix
):
    new_key, _ = make_key(KeyKind.SECRET, project=project)
    long_legacy, _ = make_legacy_key(project, plaintext="ss_live_" + "B" * 32)

    shorten_migration.shorten_legacy_prefixes(apps, None)

    prefixes = dict(ApiKey.objects.values_list("id", "prefix"))
    assert prefixes[imported_before_the_fix.id] == "tb_Ab3d"
    assert prefixes[long_legacy.id] == "ss_live_BBBB"
    assert prefixes[new_key.id] == new_key.prefix  # new keys keep their 8 characters


def test_the_migration_cuts_the_labels_that_copied_the_prefix(project, imported_before_the_fix):
    shorten_migration.shorten_legacy_prefixes(apps, None)

    target = str(imported_before_the_fix.id)
    labels = set(AuditEvent.objects.filter(target_id=target).values_list("target_label", flat=True))
    authored = set(Analysis.objects.values_list("created_by_label", flat=True))
    assert labels == {"tb_Ab3d"}
    assert authored == {"tb_Ab3d"}
    everything = str(list(AuditEvent.objects.values())) + str(list(Analysis.objects.values()))
    assert REVIEWERS_KEY not in everything


def test_after_the_migration_a_viewer_reads_only_4_characters(
    project, viewer, imported_before_the_fix
):
    shorten_migration.shorten_legacy_prefixes(apps, None)

    listed = user_client(viewer).get(f"/v1/projects/{project.id}/api-keys").json()["results"]

    assert [key["prefix"] for key in listed] == ["tb_Ab3d"]
    assert bearer_client("tb_Ab3d").get("/v1/me").status_code == 401


@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_after_the_migration_the_auth_log_names_the_key_by_4_characters(
    imported_before_the_fix, caplog
):
    shorten_migration.shorten_legacy_prefixes(apps, None)
    caplog.set_level(logging.INFO, logger="sigsentry.access")

    bearer_client("tb_" + "A" * 32).get("/v1/me")  # revoked: refused, and logged by prefix

    prefixes = {getattr(record, "key_prefix", None) for record in caplog.records}
    assert prefixes == {"tb_Ab3d"}
