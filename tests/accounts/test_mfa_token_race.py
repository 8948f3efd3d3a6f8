"""Two second steps with one mfaToken at once spend one recovery code, not two.

Found by a race audit: the code was checked (a recovery code spent) before the token was
marked used, so a second request with the same token and another recovery code, arriving
while the first was between the two, spent its code too and was then refused: two of the
ten codes gone for one login. The first call is held just after it spends its code.
"""

from __future__ import annotations

import pytest

from apps.accounts import twofactor
from apps.accounts.services import login_with_second_factor
from core.errors import InvalidCredentials
from tests.accounts.test_two_factor import enable_two_factor, mfa_token
from tests.races import Call, race

pytestmark = pytest.mark.django_db(transaction=True)


def spends_a_recovery_code(sql: str) -> bool:
    return sql.startswith('UPDATE "accounts_recoverycode"')


def test_a_second_request_with_the_same_token_spends_no_code(api_client, owner):
    _secret, codes = enable_two_factor(owner)
    token = mfa_token(api_client, owner)
    first = Call(
        lambda: login_with_second_factor(mfa_token=token, code=codes[0]), spends_a_recovery_code
    )
    second = Call(lambda: login_with_second_factor(mfa_token=token, code=codes[1]))

    race(first, second)

    assert first.error is None, first.error
    assert isinstance(second.error, InvalidCredentials), second.error
    assert twofactor.recovery_codes_left(owner) == 9


def test_a_wrong_code_gives_the_token_back(api_client, owner):
    _secret, codes = enable_two_factor(owner)
    token = mfa_token(api_client, owner)

    with pytest.raises(InvalidCredentials):
        login_with_second_factor(mfa_token=token, code="0000-0000-0000-0000")

    assert login_with_second_factor(mfa_token=token, code=codes[0]).access
