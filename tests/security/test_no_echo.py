"""No error body echoes a credential (SPEC §3), wherever a client puts it.

A client that sends its key (or session token) in the wrong JSON field gets the usual
400 VALIDATION_ERROR, naming the same field, but the body quotes the credential only as
its type prefix and "…": neither the credential nor any 12 characters of it come back.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.accounts.mfa_login import issue_mfa_token
from apps.accounts.tokens import mask_tokens
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind, mask_keys
from core.errors import error_body
from tests.conftest import access_token_for
from tests.factories import PASSWORD, make_key, make_legacy_key
from tests.orgs.helpers import error_fields, user_client

pytestmark = pytest.mark.django_db

#: The shortest run of a credential's characters that counts as echoing it.
SLICE = 12
CREDENTIALS = ("sdk-key", "secret-key", "org-key", "legacy-key", "jwt")
#: What the body may show of each credential instead.
MASKED = {
    "sdk-key": "ss_pub_…",
    "secret-key": "ss_secret_…",
    "org-key": "ss_org_…",
    "legacy-key": "tb_…",
    "jwt": "eyJ…",
}


def echoed_slices(credential: str, text: str) -> list[str]:
    """Every `SLICE`-character run of `credential` that `text` contains."""
    runs = (credential[i : i + SLICE] for i in range(len(credential) - SLICE + 1))
    return [run for run in runs if run in text]


@dataclass(frozen=True)
class WrongField:
    """A request that puts the credential `sent` where the API expects something else."""

    field: str  # as the error names it
    message: str  # how the field's message starts
    path: Callable[[Any], str]
    body: Callable[[str], dict[str, Any]]


WRONG_FIELDS = {
    "sdk-key-allowedOrigins": WrongField(
        "allowedOrigins",
        "Not an origin of the form https://host[:port]: ",
        lambda project: f"/v1/projects/{project.id}/sdk-keys",
        lambda sent: {"name": "Web", "allowedOrigins": [sent]},
    ),
    "secret-key-allowedIps": WrongField(
        "allowedIps",
        "Not a CIDR or IP address: ",
        lambda project: f"/v1/projects/{project.id}/api-keys",
        lambda sent: {"name": "CI", "permissions": ["analysis:read"], "allowedIps": [sent]},
    ),
    "secret-key-permissions": WrongField(
        "permissions",
        "Unknown permission: ",
        lambda project: f"/v1/projects/{project.id}/api-keys",
        lambda sent: {"name": "CI", "permissions": [sent]},
    ),
    "org-key-projectIds": WrongField(
        "projectIds",
        "Not a project id: ",
        lambda project: f"/v1/organizations/{project.organization_id}/api-keys",
        lambda sent: {"name": "CI", "permissions": ["analysis:read"], "projectIds": [sent]},
    ),
    "webhook-events": WrongField(
        "events",
        "Unknown event: ",
        lambda project: f"/v1/organizations/{project.organization_id}/webhooks",
        lambda sent: {"url": "https://8.8.8.8/hooks/sigsentry", "events": [sent]},
    ),
    "channel-kind": WrongField(
        "kind",
        '"',
        lambda project: "/v1/config/channels",
        lambda sent: {"name": "on-call", "kind": sent, "target": "#ops"},
    ),
    "log-source-kind": WrongField(
        "kind",
        '"',
        lambda project: "/v1/config/log-sources",
        lambda sent: {"name": "edge", "kind": sent},
    ),
}


@pytest.fixture
def credential(api_client, project, organization, owner):
    """`credential(who)`: the plaintext of a real credential of kind `who` (CREDENTIALS)."""

    def make(who: str) -> str:
        if who == "sdk-key":
            return make_key(KeyKind.PUBLIC, project=project)[1]
        if who == "secret-key":
            return make_key(KeyKind.SECRET, project=project)[1]
        if who == "org-key":
            return make_key(KeyKind.ORGANIZATION, organization=organization)[1]
        if who == "legacy-key":
            return make_legacy_key(project)[1]
        response = api_client.post(
            "/v1/auth/login", {"email": owner.email, "password": PASSWORD}, format="json"
        )
        assert response.status_code == 200, response.json()
        return response.json()["access"]

    return make


@pytest.mark.parametrize("who", CREDENTIALS)
@pytest.mark.parametrize("case", list(WRONG_FIELDS.values()), ids=list(WRONG_FIELDS))
def test_a_credential_in_the_wrong_field_is_refused_without_being_echoed(
    case, who, credential, project, owner
):
    sent = credential(who)

    response = user_client(owner).post(
        case.path(project), case.body(sent), format="json", HTTP_X_PROJECT_ID=str(project.id)
    )

    assert response.status_code == 400
    fields = error_fields(response)
    assert list(fields) == [case.field]
    assert fields[case.field][0].startswith(case.message), fields
    assert echoed_slices(sent, response.content.decode()) == []
    assert MASKED[who] in fields[case.field][0]


#: The list fields whose message names the refused entry after its prefix.
LIST_ENTRY_FIELDS = [name for name, case in WRONG_FIELDS.items() if case.message != '"']


@pytest.mark.parametrize(("sent", "shown"), [(None, "null"), (True, "true"), ({"a": 1}, '{"a":1}')])
@pytest.mark.parametrize("name", LIST_ENTRY_FIELDS)
def test_an_entry_that_is_not_text_is_named_as_the_client_wrote_it(
    name, sent, shown, project, owner
):
    """`null`, not Python's `None`: the message quotes the JSON the client sent."""
    case = WRONG_FIELDS[name]

    response = user_client(owner).post(
        case.path(project), case.body(sent), format="json", HTTP_X_PROJECT_ID=str(project.id)
    )

    assert response.status_code == 400
    assert error_fields(response) == {case.field: [case.message + shown]}


def test_a_credential_in_a_message_or_a_field_name_is_masked_and_nothing_else():
    key = keyformat.generate(KeyKind.ORGANIZATION)
    legacy = "ss_live_" + "Ab3dE6gH" * 4
    fields = {key: [f"see ({legacy})"], "allowedIps": ["Not a CIDR or IP address: 10.0.0.300"]}

    body = error_body(
        "VALIDATION_ERROR",
        f"Refused {key}.",
        {"fields": fields, "tried": [(key[:40], 3, None)], "required": "config:write"},
    )

    assert body == {
        "error": {
            "code": "VALIDATION_ERROR",
            "message": "Refused ss_org_….",
            "details": {
                "fields": {
                    "ss_org_…": ["see (ss_live_…)"],
                    "allowedIps": ["Not a CIDR or IP address: 10.0.0.300"],
                },
                "tried": [["ss_org_…", 3, None]],
                "required": "config:write",
            },
        }
    }


@pytest.mark.parametrize("kind", list(KeyKind))
def test_every_key_in_a_text_is_masked_in_a_url_and_next_to_punctuation(kind):
    key = keyformat.generate(kind)
    text = (
        f"Not an origin: https://{key}, nor http://x.io/?k={key}&a=1; "
        f"('{key}'), {key[:40]}… and xx{key}. Also tb_{key[3:20]}-x_y/ss_live_Q, not ss_pub."
    )

    masked = mask_keys(text)

    assert masked == (
        f"Not an origin: https://{kind.prefix}…, nor http://x.io/?k={kind.prefix}…&a=1; "
        f"('{kind.prefix}…'), {kind.prefix}…… and xx{kind.prefix}…. Also tb_…/ss_live_…, "
        "not ss_pub."
    )
    assert echoed_slices(key, masked) == []


#: What stood before a key and hid it from the scans (found by a fuzzing audit: a scan by
#: whole matches took the key's own "ss" into a match starting at an earlier prefix).
GLUE = ["ss_pub_", "ss_org_", "ss_secret_", "tb_", "ss_live_", "ss_pub_" + "0" * 36, "ss_org_-"]


@given(
    kind=st.sampled_from(list(KeyKind)),
    glue=st.lists(st.sampled_from(GLUE), min_size=1, max_size=3).map("".join),
    after=st.sampled_from(["", ".", "_", "ss_pub_", " tail"]),
)
@settings(max_examples=300, deadline=None)
def test_a_key_glued_behind_other_key_prefixes_is_found_and_masked(kind, glue, after):
    key = keyformat.generate(kind)
    text = f"{glue}{key}{after}"

    assert keyformat.holds_a_key(text)
    assert echoed_slices(key, mask_keys(text)) == []


@pytest.mark.parametrize("kind", list(KeyKind))
def test_a_run_of_a_keys_shape_whose_checksum_fails_is_not_taken_for_a_key(kind):
    """A key's name is refused only for a key (its checksum checks out): 38 letters and
    digits after a prefix are a name like any other when they are no key."""
    key = keyformat.generate(kind)
    not_a_key = key[:-1] + ("1" if key[-1] == "0" else "0")

    assert keyformat.holds_a_key(f"CI {key}")
    assert not keyformat.holds_a_key(f"CI {not_a_key}")


def test_every_session_token_in_a_text_is_masked_whole_or_cut_short(owner):
    token = access_token_for(owner)
    assert re.fullmatch(r"eyJ[\w-]+\.[\w-]+\.[\w-]+", token)
    text = f"Unknown permission: {token[:40]}; Not an origin: https://{token}, ok"

    masked = mask_tokens(text)

    assert masked == "Unknown permission: eyJ…; Not an origin: https://eyJ…, ok"
    assert echoed_slices(token, masked) == []


def test_an_mfa_token_in_a_text_is_masked(owner):
    token = issue_mfa_token(owner)  # Django's signing: JSON:timestamp:signature, no dots
    text = f'"{token}" is not a valid choice.'

    masked = mask_tokens(text)

    assert masked == '"eyJ…" is not a valid choice.'
    assert echoed_slices(token, masked) == []


def test_a_token_that_the_key_masker_cut_into_is_still_masked_whole():
    # Either masker may run first; `tb_` can occur inside a token's payload.
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4tb_In0.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg"

    assert mask_tokens(mask_keys(f"[{token}]")) == "[eyJ…]"


#: What `mask_tokens` masks, as the one pattern it was before it read runs and segments: from
#: the first `eyJ` whose segment ends in a dot or colon to the end of the token characters.
TOKEN_AS_ONE_PATTERN = re.compile(r"eyJ[A-Za-z0-9_\-]*[.:][A-Za-z0-9_.:\-…]*")


@settings(max_examples=400, deadline=None)
@given(
    st.lists(
        st.sampled_from(["eyJ", "e", "y", "J", "a", "0", ".", ":", "…", "-", "_", " ", "/", '"']),
        max_size=16,
    ).map("".join)
)
def test_session_tokens_are_masked_as_the_one_pattern_masks_them(text):
    assert mask_tokens(text) == TOKEN_AS_ONE_PATTERN.sub("eyJ…", text)


@pytest.mark.parametrize("text", ["eyJ" * 300_000, "eyJ." * 250_000, "eyJ…" * 250_000])
def test_masking_a_megabyte_of_token_lookalikes_reads_it_once(text):
    """Found by the DoS audit: the one pattern scanned to the end of the run from every
    `eyJ` in it, so a 16 KB `Content-Type: eyJeyJ…` held a worker 0.4 s in the masking of
    an unauthenticated request's error body, and an SDK key's 330 KB feedback `rating` until
    gunicorn killed the worker. A megabyte that took it about half an hour takes
    milliseconds now; the bound leaves a thousandfold margin for a slow host."""
    started = time.process_time()
    mask_tokens(text)
    assert time.process_time() - started < 2


def test_an_unauthenticated_error_echoing_a_long_header_answers_at_once(client):
    started = time.process_time()
    response = client.post("/v1/auth/login", b"{}", content_type="eyJ" * 5300)
    assert response.status_code == 400
    assert "eyJeyJ" in str(error_fields(response))  # not a token: echoed as it is
    assert time.process_time() - started < 0.2  # 0.4 s before, for this 16 KB header alone
