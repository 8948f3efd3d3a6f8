"""Failed credentials are throttled per client IP; valid keys never are (SPEC §3)."""

from __future__ import annotations

import pytest

from tests.analyses.helpers import send
from tests.apikeys.auth_helpers import assert_error, fresh_ip, mutate

pytestmark = pytest.mark.django_db


@pytest.mark.usefixtures("throttle_clock")
def test_repeated_failures_from_one_address_are_rate_limited_but_valid_keys_are_not(
    api_client, credential, settings
):
    settings.THROTTLE_RATES = settings.THROTTLE_RATES | {"failed_auth_ip": (3, 60)}
    cred = credential("secret")
    bad = mutate(cred.token, 20)
    for _ in range(3):
        assert_error(send(api_client, "GET", "/v1/analyses", credential=bad), 401, "KEY_INVALID")
    limited = send(api_client, "GET", "/v1/analyses", credential=bad)
    assert_error(limited, 429, "RATE_LIMITED")
    assert 1 <= int(limited["Retry-After"]) <= 60
    assert send(api_client, "GET", "/v1/analyses", credential=cred.token).status_code == 200
    elsewhere = send(api_client, "GET", "/v1/analyses", credential=bad, **fresh_ip())
    assert_error(elsewhere, 401, "KEY_INVALID")
