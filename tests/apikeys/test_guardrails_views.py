"""Key pages and guardrails: create forms, "Edit limits", roll expiry, the lifetime policy."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.utils import timezone

from apps.apikeys.keyformat import KeyKind
from apps.apikeys.models import ApiKey
from apps.apikeys.services import revoke_key
from apps.audit.models import AuditEvent
from tests.apikeys.test_views import api_url, mint, minted_key_of, nonce_of, org_url, sdk_url
from tests.factories import make_key
from tests.orgs.helpers import bearer_client
from tests.pages import assert_no_inline_code, html, logged_in

pytestmark = pytest.mark.django_db


def limits_url(collection_url: str, api_key) -> str:
    return f"{collection_url}{api_key.id}/limits/"


def field_errors(page: str) -> list[str]:
    return re.findall(r'<p class="field-error"[^>]*>([^<]*)</p>', page)


# The create forms


def test_an_org_key_is_created_with_a_rate_limit_ips_and_projects(owner, project, other_project):
    client = logged_in(owner)

    response = mint(
        client,
        org_url(project.organization),
        rate_limit_requests="5",
        rate_limit_seconds="60",
        allowed_ips="203.0.113.0/24\n2001:db8::/32",
        project_ids=[str(other_project.id)],
    )

    assert response.status_code == 200
    minted_key_of(response)
    api_key = ApiKey.objects.get()
    assert (api_key.rate_limit_requests, api_key.rate_limit_seconds) == (5, 60)
    assert api_key.allowed_ips == ["203.0.113.0/24", "2001:db8::/32"]
    assert api_key.project_ids == [str(other_project.id)]


def test_a_secret_key_form_takes_ips_but_no_projects(owner, project):
    page = html(logged_in(owner).get(api_url(project)))

    assert 'name="allowed_ips"' in page and 'name="rate_limit_requests"' in page
    assert 'name="project_ids"' not in page
    assert_no_inline_code(page)


def test_the_sdk_key_form_takes_a_rate_limit_only(owner, project):
    client = logged_in(owner)
    page = html(client.get(sdk_url(project)))
    assert 'name="rate_limit_requests"' in page
    assert 'name="allowed_ips"' not in page and 'name="project_ids"' not in page

    response = mint(
        client,
        sdk_url(project),
        rate_limit_requests="100",
        rate_limit_seconds="1",
        allowed_ips="203.0.113.0/24",  # not a field of this form: ignored
    )

    minted_key_of(response)
    api_key = ApiKey.objects.get()
    assert (api_key.rate_limit_requests, api_key.allowed_ips) == (100, [])


def test_the_org_form_offers_only_the_organizations_projects(
    owner, project, other_project, outsider
):
    foreign = outsider.memberships.get().organization.projects.get()
    page = html(logged_in(owner).get(org_url(project.organization)))

    assert f'value="{project.id}"' in page and f'value="{other_project.id}"' in page
    assert str(foreign.id) not in page

    response = mint(logged_in(owner), org_url(project.organization), project_ids=[str(foreign.id)])

    assert response.status_code == 200
    assert not ApiKey.objects.exists()
    assert any("valid choice" in error for error in field_errors(html(response)))


@pytest.mark.parametrize(
    "data, message",
    [
        ({"allowed_ips": "10.0.0.0/8\nfloor 3"}, "Not a CIDR or IP address: floor"),
        ({"rate_limit_requests": "5"}, "Give both numbers, or leave both empty for no limit."),
        ({"rate_limit_requests": "5", "rate_limit_seconds": "86401"}, "86400"),
        ({"rate_limit_requests": "0", "rate_limit_seconds": "60"}, "number of requests must be at"),
        (
            {"rate_limit_requests": "5", "rate_limit_seconds": "0"},
            "window must be at least 1 second",
        ),
    ],
)
def test_guardrail_errors_show_next_to_their_fields(owner, project, data, message):
    response = mint(logged_in(owner), api_url(project), **data)

    assert response.status_code == 200
    assert any(message in error for error in field_errors(html(response)))
    assert not ApiKey.objects.exists()


def test_the_create_form_respects_the_lifetime_policy(owner, project, organization):
    organization.key_max_lifetime_days = 30
    organization.save()
    client = logged_in(owner)
    page = html(client.get(api_url(project)))
    assert "within 30 days: your organization's policy" in page

    refused = mint(client, api_url(project))
    accepted = mint(
        client,
        api_url(project),
        expires_at=(timezone.now() + timedelta(days=20)).strftime("%Y-%m-%dT%H:%M"),
    )

    assert any("within 30 days" in error for error in field_errors(html(refused)))
    minted_key_of(accepted)
    assert ApiKey.objects.count() == 1


def test_the_expiry_pickers_offer_from_the_next_minute_to_the_policys_latest_in_utc(
    owner, project, organization, time_machine
):
    """The calendar greys out what the server refuses: the past, and past the policy."""
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    organization.key_max_lifetime_days = 30
    organization.save()
    time_machine.move_to(datetime(2027, 3, 4, 13, 5, 30, tzinfo=UTC), tick=False)

    page = html(logged_in(owner).get(api_url(project)))

    create = re.search(r'<input type="datetime-local" name="expires_at"[^>]*>', page).group(0)
    assert 'min="2027-03-04T13:06"' in create and 'max="2027-04-03T13:05"' in create
    roll = re.search(rf'<input[^>]*id="roll-expiry-{api_key.id}"[^>]*>', page).group(0)
    assert 'min="2027-03-04T13:06"' in roll and 'max="2027-04-03T13:05"' in roll


def test_without_a_policy_the_expiry_picker_has_no_latest(owner, project):
    page = html(logged_in(owner).get(api_url(project)))

    create = re.search(r'<input type="datetime-local" name="expires_at"[^>]*>', page).group(0)
    assert "min=" in create and "max=" not in create


# Row badges and "Edit limits"


def test_rows_show_their_guardrails(owner, project, other_project):
    make_key(
        KeyKind.ORGANIZATION,
        project=project,
        name="Guarded",
        rate_limit={"requests": 100, "perSeconds": 3600},
        allowed_ips=["203.0.113.0/24", "2001:db8::/32"],
        project_ids=[str(project.id), str(other_project.id)],
    )

    page = html(logged_in(owner).get(org_url(project.organization)))

    assert "Limit: 100 / hour" in page
    assert "IPs: 203.0.113.0/24 +1" in page
    assert f'title="Only in {project.name}, {other_project.name}"' in page
    assert "Edit limits" in page
    assert re.search(r'<dialog class="form-dialog" id="limits-[^"]+" aria-labelledby', page)
    assert_no_inline_code(page)


def test_the_org_page_lists_the_projects_once_whatever_the_number_of_keys(
    owner, project, other_project
):
    """Each row's "Edit limits" copies the page's one list of projects, the create form's,
    when it opens (static/js/app.js): one list per row made a page of 50 keys in an
    organization of 200 projects 3.3 MB, and a second copy for the dialogs 200 KB more at
    1,200 projects."""
    confined, _ = make_key(KeyKind.ORGANIZATION, project=project, project_ids=[str(project.id)])
    for _ in range(3):
        make_key(KeyKind.ORGANIZATION, project=project)

    page = html(logged_in(owner).get(org_url(project.organization)))

    source = re.search(
        r'<ul class="check-list project-list" id="project-choices">(.*?)</ul>', page, re.S
    )
    listed = re.findall(r'<input type="checkbox" name="project_ids" value="([^"]+)"', source[1])
    assert sorted(listed) == sorted([str(project.id), str(other_project.id)])
    assert source.start() < page.index('<section class="card" id="keys"')  # in the create form
    # The create form's list only: none in the four rows, no other copy.
    assert page.count('name="project_ids"') == 2
    assert "<template" not in page
    lists = dict(
        re.findall(
            r'data-project-choices="limits-([^"]+)-project_ids" data-checked="([^"]*)"></ul>', page
        )
    )
    assert len(lists) == 4 and lists[str(confined.id)] == str(project.id)
    assert set(lists.values()) == {str(project.id), ""}


def test_an_edit_limits_error_draws_its_own_project_list(owner, project, other_project):
    api_key, _ = make_key(KeyKind.ORGANIZATION, project=project)

    response = logged_in(owner).post(
        limits_url(org_url(project.organization), api_key),
        {"allowed_ips": "10.0.0.0/40", "project_ids": [str(other_project.id)]},
    )

    dialog = re.search(
        rf'<dialog class="form-dialog" id="limits-{api_key.id}"[^>]*>(.*?)</dialog>',
        html(response),
        re.S,
    )[1]
    boxes = re.findall(r'<input type="checkbox" name="project_ids" value="([^"]+)"([^>]*)>', dialog)
    assert {value: "checked" in rest for value, rest in boxes} == {
        str(project.id): False,
        str(other_project.id): True,
    }
    assert "data-project-choices" not in dialog


def test_edit_limits_saves_and_is_audited(admin, project, other_project):
    api_key, _ = make_key(KeyKind.ORGANIZATION, project=project, project_ids=[str(project.id)])
    url = limits_url(org_url(project.organization), api_key)

    response = logged_in(admin).post(
        url,
        {
            "rate_limit_requests": "5",
            "rate_limit_seconds": "60",
            "allowed_ips": "127.0.0.1",
            "project_ids": [str(project.id), str(other_project.id)],
        },
    )

    assert response.status_code == 302
    api_key.refresh_from_db()
    assert (api_key.rate_limit_requests, api_key.rate_limit_seconds) == (5, 60)
    assert api_key.allowed_ips == ["127.0.0.1/32"]
    assert api_key.project_ids == [str(project.id), str(other_project.id)]
    event = AuditEvent.objects.get(action="key.updated")
    assert event.details["fields"] == ["rateLimit", "allowedIps", "projectIds"]


def test_edit_limits_with_empty_fields_lifts_every_guardrail(owner, project):
    api_key, plaintext = make_key(
        KeyKind.SECRET,
        project=project,
        rate_limit={"requests": 1, "perSeconds": 60},
        allowed_ips=["203.0.113.0/24"],
    )
    assert bearer_client(plaintext).get("/v1/me").status_code == 403

    logged_in(owner).post(limits_url(api_url(project), api_key), {})

    api_key.refresh_from_db()
    assert api_key.rate_limit is None and api_key.allowed_ips == []
    assert bearer_client(plaintext).get("/v1/me").status_code == 200


def test_an_edit_limits_error_reopens_the_dialog_with_the_message(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project, allowed_ips=["10.0.0.0/8"])

    response = logged_in(owner).post(
        limits_url(api_url(project), api_key), {"allowed_ips": "10.0.0.0/8\n10.0.0.0/40"}
    )

    assert response.status_code == 200
    page = html(response)
    dialog = re.search(
        rf'<dialog class="form-dialog" id="limits-{api_key.id}"[^>]*>(.*?)</dialog>', page, re.S
    )
    assert "open data-dialog-autoopen" in dialog.group(0)[:200]
    assert "Not a CIDR or IP address: 10.0.0.0/40" in dialog.group(1)
    assert "10.0.0.0/40</textarea>" in dialog.group(1)  # the input is kept
    assert page.count("data-dialog-autoopen") == 1
    api_key.refresh_from_db()
    assert api_key.allowed_ips == ["10.0.0.0/8"]


def test_edit_limits_of_a_revoked_key_says_so_on_its_row(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    client = logged_in(owner)
    page_before = html(client.get(api_url(project)))
    revoke_key(actor=owner, api_key=api_key)

    response = client.post(limits_url(api_url(project), api_key), {"allowed_ips": "::1"})

    assert "limits-" in page_before
    assert "Only an active key can be changed." in html(response)
    api_key.refresh_from_db()
    assert api_key.allowed_ips == []


@pytest.mark.parametrize("role", ["member", "viewer"])
def test_members_and_viewers_cannot_edit_limits(request, project, role):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    client = logged_in(request.getfixturevalue(role))

    page = html(client.get(api_url(project)))
    response = client.post(limits_url(api_url(project), api_key), {"allowed_ips": "::1"})

    assert "Edit limits" not in page
    assert response.status_code == 403
    api_key.refresh_from_db()
    assert api_key.allowed_ips == []


def test_outsiders_and_other_collections_get_404(owner, outsider, project, other_project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    sdk_key, _ = make_key(KeyKind.PUBLIC, project=project)

    outside = logged_in(outsider).post(
        limits_url(api_url(project), api_key), {"allowed_ips": "::1"}
    )
    other_page = logged_in(owner).post(
        limits_url(api_url(other_project), api_key), {"allowed_ips": "::1"}
    )
    other_kind = logged_in(owner).post(
        limits_url(api_url(project), sdk_key), {"rate_limit_requests": "1"}
    )

    assert outside.status_code == other_page.status_code == other_kind.status_code == 404
    api_key.refresh_from_db()
    assert api_key.allowed_ips == []


def test_edit_limits_needs_the_csrf_token_and_a_post(owner, project):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    url = limits_url(api_url(project), api_key)

    forged = logged_in(owner, Client(enforce_csrf_checks=True)).post(url, {"allowed_ips": "::1"})
    get = logged_in(owner).get(url)

    assert forged.status_code == 403
    assert get.status_code == 405
    api_key.refresh_from_db()
    assert api_key.allowed_ips == []


# Roll under a lifetime policy


def test_the_roll_form_suggests_an_expiry_within_the_policy(owner, project, organization):
    api_key, _ = make_key(KeyKind.SECRET, project=project)
    organization.key_max_lifetime_days = 30
    organization.save()

    page = html(logged_in(owner).get(api_url(project)))

    suggested = re.search(rf'id="roll-expiry-{api_key.id}" value="([^"]+)"', page).group(1)
    latest = (timezone.now() + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    assert suggested <= latest and suggested[:10] == latest[:10]


def test_roll_from_the_page_under_a_policy(owner, project, organization):
    api_key, _ = make_key(KeyKind.ORGANIZATION, project=project)
    organization.key_max_lifetime_days = 30
    organization.save()
    client = logged_in(owner)
    url = f"{org_url(organization)}{api_key.id}/roll/"

    refused = client.post(
        url,
        {
            "grace_seconds": "3600",
            "expires_at": "",
            "nonce": nonce_of(client, org_url(organization)),
        },
    )
    within = (timezone.now() + timedelta(days=7)).strftime("%Y-%m-%dT%H:%M")
    rolled = client.post(
        url,
        {
            "grace_seconds": "3600",
            "expires_at": within,
            "nonce": nonce_of(client, org_url(organization)),
        },
    )

    assert "within 30 days" in html(refused)
    minted_key_of(rolled)
    successor = ApiKey.objects.get(replaces=api_key)
    assert successor.expires_at.strftime("%Y-%m-%dT%H:%M") == within


DAY = timedelta(days=1)


def test_an_sdk_roll_form_has_no_expiry_and_keeps_the_old_keys_lifetime(
    owner, project, time_machine
):
    """Found by an audit: the successor took the old key's moment, so a key rolled a day
    before it expired, as the expiry emails advise, gave a successor dying with it."""
    time_machine.move_to(timezone.now(), tick=False)
    api_key, _ = make_key(KeyKind.PUBLIC, project=project, expires_at=timezone.now() + DAY * 3)
    time_machine.shift(DAY * 2)  # a day before it expires
    client = logged_in(owner)
    assert f"roll-expiry-{api_key.id}" not in html(client.get(sdk_url(project)))

    client.post(
        f"{sdk_url(project)}{api_key.id}/roll/",
        {"grace_seconds": "0", "nonce": nonce_of(client, sdk_url(project))},
    )

    lifetime = api_key.expires_at - api_key.created_at
    assert ApiKey.objects.get(replaces=api_key).expires_at == timezone.now() + lifetime


@pytest.mark.parametrize("kind", [KeyKind.SECRET, KeyKind.ORGANIZATION])
def test_a_roll_form_suggests_the_old_keys_lifetime_from_now(
    owner, project, organization, time_machine, kind
):
    """Found by a dates audit: the secret and org key forms suggested the old key's moment,
    so a key rolled as its expiry email advises, the form sent as it came, died with it."""
    time_machine.move_to(timezone.now().replace(second=0, microsecond=0), tick=False)
    api_key, _ = make_key(kind, project=project, expires_at=timezone.now() + DAY * 3)
    time_machine.shift(DAY * 2)  # a day before it expires
    url = org_url(organization) if kind is KeyKind.ORGANIZATION else api_url(project)
    client = logged_in(owner)

    page = html(client.get(url))
    suggested = re.search(rf'id="roll-expiry-{api_key.id}" value="([^"]+)"', page).group(1)
    client.post(
        f"{url}{api_key.id}/roll/",
        {"grace_seconds": "0", "expires_at": suggested, "nonce": nonce_of(client, url)},
    )

    assert suggested == (timezone.now() + DAY * 3).strftime("%Y-%m-%dT%H:%M")
    assert ApiKey.objects.get(replaces=api_key).expires_at == timezone.now() + DAY * 3


# The lifetime policy card (Organization → API Keys)


def policy_url(organization) -> str:
    return f"{org_url(organization)}policy/"


def test_the_owner_sets_the_policy_and_sees_the_keys_outliving_it(owner, project, organization):
    make_key(KeyKind.SECRET, project=project, name="Forever key")
    make_key(KeyKind.ORGANIZATION, project=project, name="Org forever")
    client = logged_in(owner)
    assert 'name="key_max_lifetime_days"' in html(client.get(org_url(organization)))

    response = client.post(policy_url(organization), {"key_max_lifetime_days": "30"})

    assert response.status_code == 302
    organization.refresh_from_db()
    assert organization.key_max_lifetime_days == 30
    page = html(client.get(org_url(organization)))
    assert "must expire within <strong>30 days</strong>" in page
    assert "2 keys outlive this policy" in page
    assert "Forever key" in page and f"/projects/{project.id}/api-keys/" in page
    assert page.count("Outlives policy") == 1  # the org key's row; the project key is elsewhere
    assert AuditEvent.objects.filter(action="organization.updated").count() == 1

    client.post(policy_url(organization), {"key_max_lifetime_days": ""})
    organization.refresh_from_db()
    assert organization.key_max_lifetime_days is None


@pytest.mark.parametrize("days", ["0", "3651", "thirty"])
def test_a_bad_policy_is_shown_next_to_the_field(owner, organization, days):
    response = logged_in(owner).post(policy_url(organization), {"key_max_lifetime_days": days})

    assert response.status_code == 200
    assert field_errors(html(response))
    organization.refresh_from_db()
    assert organization.key_max_lifetime_days is None


@pytest.mark.parametrize("role", ["admin", "member", "viewer"])
def test_only_owners_set_the_policy_from_the_page(request, organization, role):
    client = logged_in(request.getfixturevalue(role))

    page = html(client.get(org_url(organization)))
    response = client.post(policy_url(organization), {"key_max_lifetime_days": "30"})

    assert "Key lifetime policy" in page and 'name="key_max_lifetime_days"' not in page
    assert response.status_code == 403
    organization.refresh_from_db()
    assert organization.key_max_lifetime_days is None


def test_outsiders_get_404_and_forged_posts_403(owner, outsider, organization):
    outside = logged_in(outsider).post(policy_url(organization), {"key_max_lifetime_days": "30"})
    forged = logged_in(owner, Client(enforce_csrf_checks=True)).post(
        policy_url(organization), {"key_max_lifetime_days": "30"}
    )

    assert (outside.status_code, forged.status_code) == (404, 403)
    organization.refresh_from_db()
    assert organization.key_max_lifetime_days is None


def test_the_audit_log_shows_a_key_update_before_and_after(owner, project, organization):
    api_key, _ = make_key(
        KeyKind.SECRET, project=project, rate_limit={"requests": 5, "perSeconds": 60}
    )
    client = logged_in(owner)
    client.post(limits_url(api_url(project), api_key), {"allowed_ips": "::1"})

    page = html(client.get(f"/orgs/{organization.id}/audit-log/?action=key.updated"))

    assert "key.updated" in page
    assert "{&quot;rateLimit&quot;: {&quot;requests&quot;: 5, &quot;perSeconds&quot;: 60}" in page
    assert "{&quot;rateLimit&quot;: null, &quot;allowedIps&quot;: [&quot;::1/128&quot;]}" in page
