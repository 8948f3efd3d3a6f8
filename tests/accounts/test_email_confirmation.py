"""Confirming an account's email address (apps.accounts.email_confirmation).

Found by the authorization audit: sign-up proves nothing about its address, so an account
may be someone else's sign-up with a colleague's address. An account confirms its address
by typing back a code mailed to it (or by using a reset link or an invitation mailed to
it), and the members page says which members have not. Mail goes through a real SMTP server.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts import email_confirmation, forms
from apps.accounts.models import User
from apps.accounts.password_reset import confirm_password_reset, make_reset_token
from apps.invitations import services as invitations
from apps.orgs.models import Membership
from core.errors import ValidationFailed
from tests.factories import UserFactory
from tests.orgs.helpers import user_client
from tests.pages import html, logged_in

pytestmark = pytest.mark.django_db

SIGNUP = {"password": "a-long-unusual-passphrase-9", "organizationName": "Acme"}


def code_in(message) -> str:
    [code] = re.findall(r"\b\d{6}\b", message.text)
    assert code in message.html
    return code


def sign_up(email: str, *, ask_for_a_code: bool = True) -> User:
    """An account signed up through the API; then, as its owner would on the account page,
    a code asked for (sign-up itself mails nothing)."""
    response = APIClient().post("/v1/auth/signup", {"email": email, **SIGNUP}, format="json")
    assert response.status_code == 201, response.json()
    user = User.objects.get(email=email)
    if ask_for_a_code:
        assert logged_in(user).post("/account/email/send/").status_code == 302
    return user


def confirm_on_page(client: Client, code: str):
    return client.post("/account/email/confirm/", {"code": code})


def test_the_account_page_mails_a_code_that_confirms_the_address(mailbox):
    user = sign_up("ana@example.com", ask_for_a_code=False)
    client = logged_in(user)
    assert mailbox.messages("ana@example.com") == []  # sign-up mails as it always did
    assert "Confirm your email address" in html(client.get("/"))
    assert ">Send a code</button>" in html(client.get("/account/"))

    assert client.post("/account/email/send/")["Location"] == "/account/#email"
    [message] = mailbox.wait_for("ana@example.com")
    code = code_in(message)

    assert message.subject == "Your SigSentry confirmation code"
    assert code not in message.subject
    assert user.email_confirmed_at is None
    stored = User.objects.filter(pk=user.pk).values().get()
    assert not any(code in str(value) for value in stored.values())  # a keyed digest only

    page = html(client.get("/account/"))
    assert "Not confirmed" in page and 'action="/account/email/confirm/"' in page
    assert "Enter the 6-digit code we mailed" in page

    response = confirm_on_page(client, f"{code[:3]} {code[3:]}")  # as a person types it

    assert response.status_code == 302 and response["Location"] == "/account/#email"
    user.refresh_from_db()
    assert user.email_confirmed_at is not None and user.email_code_digest == ""
    assert "Confirm your email address" not in html(client.get("/"))
    assert ">Confirmed</span>" in html(client.get("/account/"))


def test_every_page_asks_for_the_address_in_plain_words_until_it_is_confirmed():
    """Found by a first-hour audit: the notice said "until then, your organizations'
    members pages say it is not confirmed", which a new customer could not act on."""
    user = sign_up("ana@example.com", ask_for_a_code=False)

    page = html(logged_in(user).get("/"))

    [notice] = re.findall(r'<p class="flash flash-warning email-notice">(.*?)</p>', page)
    assert re.sub(r"<[^>]+>", "", notice) == (
        "Confirm your email address, ana@example.com: we'll send you a code from your account page."
    )
    assert '<a href="/account/#email">account page</a>' in notice


def test_a_code_typed_in_full_width_digits_confirms(mailbox):
    """As a CJK input method types them (found by a Unicode audit): the page's pattern
    lets them through, and the server reads them by NFKC."""
    user = sign_up("ana@example.com")
    code = code_in(mailbox.wait_for(user.email)[0])
    full_width = "".join(chr(ord(digit) - ord("0") + 0xFF10) for digit in code)

    response = confirm_on_page(logged_in(user), full_width[:3] + "\u3000" + full_width[3:])

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.email_confirmed_at is not None
    assert re.fullmatch(forms.DIGITS_PATTERN, full_width)


@pytest.mark.parametrize("code", ["000000", "12345", "1234567", "abcdef", "١٢٣٤٥٦"])
def test_a_wrong_code_is_refused_on_its_field_and_confirms_nothing(mailbox, code):
    user = sign_up("ana@example.com")
    if code == "000000" and code_in(mailbox.wait_for(user.email)[0]) == code:
        code = "000001"

    response = confirm_on_page(logged_in(user), code)

    assert response.status_code == 200
    assert "That code is wrong or has expired" in html(response)
    assert 'aria-invalid="true"' in html(response)
    user.refresh_from_db()
    assert user.email_confirmed_at is None


def test_a_code_lives_24_hours_and_a_new_one_replaces_it(mailbox, time_machine):
    user = sign_up("ana@example.com")
    first = code_in(mailbox.wait_for(user.email)[0])
    mailbox.clear()
    client = logged_in(user)

    sent = client.post("/account/email/send/")
    second = code_in(mailbox.wait_for(user.email)[0])

    assert sent.status_code == 302
    if first != second:
        assert "wrong or has expired" in html(confirm_on_page(client, first))
    time_machine.move_to(timezone.now() + email_confirmation.CODE_LIFETIME + timedelta(seconds=1))
    client = logged_in(user)
    assert "wrong or has expired" in html(confirm_on_page(client, second))
    user.refresh_from_db()
    assert user.email_confirmed_at is None


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"email_code_wrong": (3, 300)})
def test_wrong_codes_are_limited_per_account_and_then_even_the_right_one_waits(mailbox):
    user = sign_up("ana@example.com")
    code = code_in(mailbox.wait_for(user.email)[0])
    wrong = "111111" if code != "111111" else "222222"
    client = logged_in(user)

    for _ in range(3):
        assert "wrong or has expired" in html(confirm_on_page(client, wrong))
    throttled = confirm_on_page(client, code)

    assert "Too many attempts" in html(throttled)
    user.refresh_from_db()
    assert user.email_confirmed_at is None


@override_settings(
    THROTTLE_RATES=settings.THROTTLE_RATES
    | {"email_code_wrong": (2, 300), "email_code_wrong_day": (4, 86400)}
)
def test_codes_refused_by_the_five_minute_limit_do_not_spend_the_days(mailbox, throttle_clock):
    """A code refused unchecked is no guess: it used to count against the day's limit too."""
    user = sign_up("ana@example.com")
    code = code_in(mailbox.wait_for(user.email)[0])
    wrong = "111111" if code != "111111" else "222222"
    client = logged_in(user)
    for _ in range(2):
        assert "wrong or has expired" in html(confirm_on_page(client, wrong))
    for _ in range(3):
        assert "Too many attempts" in html(confirm_on_page(client, wrong))
    throttle_clock.advance(300)  # a new 5-minute window, the same day

    confirm_on_page(client, code)

    user.refresh_from_db()
    assert user.email_confirmed_at is not None


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"email_code_account": (2, 3600)})
def test_new_codes_are_limited_per_account(mailbox):
    user = sign_up("ana@example.com")  # asks for the first
    client = logged_in(user)

    client.post("/account/email/send/")
    refused = client.get(client.post("/account/email/send/")["Location"])

    assert "Too many attempts" in html(refused)
    assert len(mailbox.wait_for(user.email, count=2)) == 2


def test_the_account_forms_need_the_csrf_token(mailbox):
    user = sign_up("ana@example.com")
    code = code_in(mailbox.wait_for(user.email)[0])
    client = logged_in(user, Client(enforce_csrf_checks=True))

    assert confirm_on_page(client, code).status_code == 403
    assert client.post("/account/email/send/").status_code == 403
    user.refresh_from_db()
    assert user.email_confirmed_at is None


def test_an_unconfirmed_account_is_added_as_the_spec_says_and_marked_on_the_members_page(
    mailbox, owner, organization
):
    """SPEC §4.2 adds any account of the address; the members page says which accounts have
    not shown their address is theirs (someone may have signed up with a colleague's)."""
    squatter = sign_up("colleague@example.com", ask_for_a_code=False)
    url = f"/v1/organizations/{organization.id}/members"
    body = {"email": "colleague@example.com", "role": "member"}

    added = user_client(owner).post(url, body, format="json")

    assert added.status_code == 201
    page = html(logged_in(owner).get(f"/orgs/{organization.id}/members/"))

    def row(email: str) -> str:
        return page.split(f'data-member="{email}"')[1].split("</tr>")[0]

    assert ">Email not confirmed</span>" in row("colleague@example.com")
    assert ">Email not confirmed</span>" not in row(owner.email)

    email_confirmation.mark_confirmed(squatter)
    page = html(logged_in(owner).get(f"/orgs/{organization.id}/members/"))
    assert ">Email not confirmed</span>" not in page


def test_a_used_reset_link_confirms_the_address():
    user = UserFactory(email_confirmed_at=None)

    confirm_password_reset(token=make_reset_token(user), password="a-brand-new-passphrase-26")

    user.refresh_from_db()
    assert user.email_confirmed_at is not None


def test_an_accepted_invitation_confirms_the_address(owner, organization):
    owner_membership = Membership.objects.get(user=owner, organization=organization)
    invitee = UserFactory(email="invitee@example.com", email_confirmed_at=None)
    invitations.invite_member(
        actor_membership=owner_membership, email="invitee@example.com", role="member"
    )
    token = invitations_token_of(invitee)

    invitations.accept_invitation(user=invitee, token=token)

    invitee.refresh_from_db()
    assert invitee.email_confirmed_at is not None


def invitations_token_of(user: User) -> str:
    from django.core import mail

    [message] = [m for m in mail.outbox if m.to == [user.email]]
    return re.search(r"/invitations/([^/\s]+)/", message.body).group(1)


def test_a_failed_code_mail_is_sent_again_with_a_new_code_while_unconfirmed():
    user = UserFactory(email_confirmed_at=None)
    first = email_confirmation._new_code(user, timezone.now())

    letter = email_confirmation._code_again({"user_id": str(user.pk)})

    [second] = re.findall(r"\b\d{6}\b", letter.compose().body)
    if first != second:
        with pytest.raises(ValidationFailed) as refused:
            email_confirmation.confirm(user=user, code=first)
        assert refused.value.details["fields"] == {"code": [email_confirmation.WRONG_CODE]}
    email_confirmation.confirm(user=user, code=second)
    user.refresh_from_db()
    assert user.email_confirmed_at is not None
    assert email_confirmation._code_again({"user_id": str(user.pk)}) is None


def test_an_operator_changing_an_address_unconfirms_it_and_voids_its_code():
    operator = UserFactory(is_staff=True, is_superuser=True)
    user = UserFactory()
    kept = UserFactory()
    ops = Client()
    ops.force_login(operator)
    email_confirmation._new_code(user, timezone.now())

    for account, email in ((user, "renamed@example.com"), (kept, kept.email.upper())):
        response = ops.post(
            reverse("admin:accounts_user_change", args=[account.pk]),
            {"email": email, "is_active": "on"},
        )
        assert response.status_code == 302, html(response)

    user.refresh_from_db()
    kept.refresh_from_db()
    assert user.email == "renamed@example.com"
    assert (user.email_confirmed_at, user.email_code_digest) == (None, "")
    assert kept.email_confirmed_at is not None  # the same address in another case


def test_factories_and_the_demo_hold_confirmed_accounts(settings):
    from django.core.management import call_command

    settings.DEBUG = True
    call_command("seed_demo", verbosity=0)
    assert not User.objects.filter(email_confirmed_at__isnull=True).exists()

    # A demo seeded before confirmation existed (found by the review): seeding again
    # confirms its accounts, and adds its viewer though not yet a member.
    User.objects.update(email_confirmed_at=None)
    Membership.objects.filter(role="viewer").delete()
    call_command("seed_demo", verbosity=0)

    assert not User.objects.filter(email_confirmed_at__isnull=True).exists()
    assert Membership.objects.filter(role="viewer").exists()
    assert UserFactory().email_confirmed_at is not None


def test_an_address_changed_while_its_code_is_checked_stays_unconfirmed(monkeypatch):
    """Found by the review: the code was checked against the old address, then whatever
    address the row held by then was marked confirmed."""
    user = UserFactory(email="before@example.com", email_confirmed_at=None)
    code = email_confirmation._new_code(user, timezone.now())
    compare = email_confirmation.constant_time_compare

    def compare_then_an_operator_renames(a, b):
        same = compare(a, b)
        User.objects.filter(pk=user.pk).update(
            email="after@example.com", email_code_digest="", email_confirmed_at=None
        )
        return same

    monkeypatch.setattr(
        email_confirmation, "constant_time_compare", compare_then_an_operator_renames
    )
    email_confirmation.confirm(user=user, code=code)

    user.refresh_from_db()
    assert (user.email, user.email_confirmed_at) == ("after@example.com", None)


def test_an_invitation_accepted_as_an_account_renamed_meanwhile_confirms_nothing(
    owner, organization
):
    owner_membership = Membership.objects.get(user=owner, organization=organization)
    invitee = UserFactory(email="invitee@example.com", email_confirmed_at=None)
    invitations.invite_member(
        actor_membership=owner_membership, email="invitee@example.com", role="member"
    )
    token = invitations_token_of(invitee)
    User.objects.filter(pk=invitee.pk).update(email="someone-else@example.com")

    invitations.accept_invitation(user=invitee, token=token)

    assert User.objects.get(pk=invitee.pk).email_confirmed_at is None


def test_the_release_before_these_columns_still_creates_users():
    """Found by the upgrade audit: migrated first, the running release's sign-ups failed on
    the new NOT NULL column (and were answered "already exists")."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO accounts_user (id, password, is_superuser, email, is_active, is_staff,"
            " date_joined) VALUES (%s, '', %s, 'old@example.com', %s, %s, %s)",
            [uuid.uuid4().hex, False, True, False, timezone.now()],
        )

    user = User.objects.get(email="old@example.com")
    assert (user.email_code_digest, user.email_confirmed_at) == ("", None)


def test_a_sign_up_failing_on_another_constraint_is_not_called_a_taken_address(monkeypatch):
    from django.db import IntegrityError

    def broken(*args, **kwargs):
        raise IntegrityError('null value in column "something_new"')

    monkeypatch.setattr(User, "save", broken)  # the insert

    response = APIClient().post(
        "/v1/auth/signup", {"email": "new@example.com", **SIGNUP}, format="json"
    )

    assert response.status_code >= 500, response.json()
    assert "already exists" not in response.content.decode()


def test_an_account_never_mailed_a_code_is_asked_to_send_itself_one(mailbox):
    """Found by the review: accounts an operator made, or made before confirmation existed,
    were told to enter a code nobody had mailed them."""
    user = UserFactory(email_confirmed_at=None)
    client = logged_in(user)

    before = html(client.get("/account/"))
    client.post("/account/email/send/")
    after = html(client.get("/account/"))

    assert "We will mail a 6-digit code" in before and ">Send a code</button>" in before
    assert 'action="/account/email/confirm/"' not in before  # nothing to enter yet
    assert "Enter the 6-digit code we mailed" in after and ">Send a new code</button>" in after
    assert code_in(mailbox.wait_for(user.email)[0])


@pytest.mark.parametrize("old_key_kept", [True, False])
def test_a_code_mailed_before_a_secret_key_rotation_holds_while_the_old_key_is_a_fallback(
    mailbox, settings, old_key_kept
):
    """As reset links and sealed secrets do (README → Rotating SECRET_KEY; found by the
    cryptography audit: the code was checked under the current key alone)."""
    user = sign_up("ana@example.com")
    code = code_in(mailbox.wait_for(user.email)[0])
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY] if old_key_kept else []
    settings.SECRET_KEY = "a-new-secret-key-after-rotation-0123456789abcdefghij"

    response = confirm_on_page(logged_in(user), code)

    user.refresh_from_db()
    if old_key_kept:
        assert response.status_code == 302 and user.email_confirmed_at is not None
    else:
        assert "wrong or has expired" in html(response) and user.email_confirmed_at is None
