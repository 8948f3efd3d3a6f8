"""Finding 2: look-alike spellings of an email are one account (SPEC §7).

The attack: the throttle keyed on Python's `.lower()` while the lookup was
`email__iexact` (PostgreSQL's UPPER(), where the long s U+017F is S and the
dotless i U+0131 is I), so wrong passwords spread over spellings never met the
per-account limit, and an unused spelling then logged in. Runs on SQLite and
PostgreSQL alike (CI runs the suite on both).
"""

from __future__ import annotations

import importlib
import io
import re

import pytest
from django.apps import apps
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail.message import sanitize_address
from django.core.management import CommandError, call_command
from django.core.validators import validate_email
from django.db import connection
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from hypothesis import given
from hypothesis import strategies as st

from apps.accounts.emails import (
    FOLDS_TO_ANOTHER_ADDRESS,
    SENT_AS_ANOTHER_ADDRESS,
    address_refusal,
    changes_when_folded,
    normalize_email,
)
from apps.accounts.models import User
from apps.accounts.services import authenticate_login
from apps.orgs.models import Membership
from core.errors import InvalidCredentials, RateLimited
from tests.factories import PASSWORD, UserFactory
from tests.orgs.helpers import error_code, error_fields, user_client
from tests.tasks import run_ready_tasks

pytestmark = pytest.mark.django_db

LONG_S = "\u017f"  # the long s: uppercases to S, casefolds to s
DOTLESS_I = "\u0131"  # the dotless i: uppercases to I; casefold keeps it
KELVIN = "\u212a"  # the Kelvin sign: NFKC and casefold give k
ADDRESS = "sam.kim@example.com"


def fullwidth(text: str) -> str:
    """The fullwidth form of each ASCII character (U+FF01..U+FF5E): NFKC maps it back."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


#: Spellings of ADDRESS that a reader (and PostgreSQL's UPPER) takes for the same address.
LOOK_ALIKES = {
    "upper-case": "SAM.KIM@EXAMPLE.COM",
    "long-s": f"{LONG_S}am.kim@example.com",
    "dotless-i": f"sam.k{DOTLESS_I}m@example.com",
    "kelvin": f"sam.{KELVIN}im@example.com",
    "fullwidth": fullwidth(ADDRESS),
    "padded": f"  {ADDRESS}\t",
}
SPELLINGS = pytest.mark.parametrize("spelling", LOOK_ALIKES.values(), ids=LOOK_ALIKES.keys())
LIMIT = 3


def login(client, email: str, password: str, ip: str = "198.51.100.7"):
    return client.post(
        "/v1/auth/login", {"email": email, "password": password}, format="json", REMOTE_ADDR=ip
    )


@pytest.fixture
def sam(db):
    return UserFactory(email=ADDRESS)


# The function ----------------------------------------------------------------------------------


@SPELLINGS
def test_every_look_alike_spelling_normalizes_to_the_one_address(spelling):
    assert normalize_email(spelling) == ADDRESS


def test_normalizing_folds_sharp_s_and_ligatures():
    assert normalize_email("Stra\u00dfe@Example.com") == "strasse@example.com"
    assert normalize_email("\ufb01nance@example.com") == "finance@example.com"  # the fi ligature


#: Addresses whose folded spelling names another mailbox or domain (IDNA 2008 keeps the sharp
#: s, final sigma and dotless i apart): storing it would send the account's mail elsewhere.
FOLDED_ELSEWHERE = {
    "sharp-s domain": "anna@stra\u00dfe.de",
    "capital sharp s": "anna@STRA\u1e9eE.DE",
    "final sigma": "eleni@\u03c3\u03b1\u03c2.gr",
    "dotless-i domain": "ayse@\u0131stanbul.example",
    "sharp-s mailbox": "stra\u00dfe@example.de",
}
FOLDED = pytest.mark.parametrize("address", FOLDED_ELSEWHERE.values(), ids=FOLDED_ELSEWHERE.keys())


@FOLDED
def test_an_address_that_folds_to_another_is_recognised(address):
    assert changes_when_folded(address)


@pytest.mark.parametrize(
    "spelling",
    [v for k, v in LOOK_ALIKES.items() if k != "dotless-i"],
    ids=[k for k in LOOK_ALIKES if k != "dotless-i"],
)
def test_a_look_alike_that_folds_to_the_same_letters_is_not_refused(spelling):
    assert not changes_when_folded(spelling)


#: Addresses mail would reach under other text (found by an audit: each signed up as its own
#: account, and every account's reset letter went to demo@sigsentry.dev or the xn-- domain).
SENT_ELSEWHERE = {
    "soft hyphen": "demo@sig\u00adsentry.dev",
    "zero-width space": "demo@sigsen\u200btry.dev",
    "variation selector": "demo@sigsentry.dev\ufe0f",
    "quoted": '"demo"@sigsentry.dev',
    "quoted escapes": '"\\d\\emo"@sigsentry.dev',
    "unicode domain": "ana@b\u00fccher.example",
    "non-ASCII mailbox": "jos\u00e9@example.com",
    # Found by the review: an encoded word is decoded by the backend.
    "encoded word": "=?utf-8?q?demo?=@sigsentry.dev",
    "encoded word, base64": "=?utf-8?b?ZGVtbw==?=@sigsentry.dev",
    # Found by the hypothesis test below: the standard library's parser raised IndexError
    # on an empty encoded word (a 500 at sign-up).
    "empty encoded word": "=?utf-8?q??=@sigsentry.dev",
}
ELSEWHERE = pytest.mark.parametrize("address", SENT_ELSEWHERE.values(), ids=SENT_ELSEWHERE.keys())

#: Every address refused, with its reason.
REFUSED = pytest.mark.parametrize(
    ("address", "reason"),
    [(a, FOLDS_TO_ANOTHER_ADDRESS) for a in FOLDED_ELSEWHERE.values()]
    + [(a, SENT_AS_ANOTHER_ADDRESS) for a in SENT_ELSEWHERE.values()],
    ids=[*FOLDED_ELSEWHERE, *SENT_ELSEWHERE],
)


@REFUSED
def test_signup_refuses_an_address_whose_mail_could_go_elsewhere(
    api_client, mailbox, address, reason
):
    response = api_client.post(
        "/v1/auth/signup",
        {"email": address, "password": "a-long-enough-passphrase", "organizationName": "V"},
        format="json",
    )

    assert response.status_code == 400
    assert error_fields(response)["email"] == [reason]
    assert not User.objects.exists()
    # the owner of the folded domain cannot reset an account that was never made
    api_client.post("/v1/auth/password-reset", {"email": normalize_email(address)}, format="json")
    run_ready_tasks()
    assert mailbox.messages(normalize_email(address)) == []


@REFUSED
def test_createsuperuser_refuses_an_address_whose_mail_could_go_elsewhere(
    db, monkeypatch, address, reason
):
    """An operator's account gets the reset links and security mail too: no folded domain."""
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "a-long-enough-passphrase-2026")

    with pytest.raises(CommandError):  # ours, or Django's "Enter a valid email address."
        call_command("createsuperuser", "--noinput", "--email", address, stdout=io.StringIO())
    with pytest.raises(ValidationError, match=re.escape(reason[:40])):
        User.objects.create_superuser(address, "a-long-enough-passphrase-2026")

    assert not User.objects.exists()


#: Characters that change what the mail backend sends, and plain ones, for addresses to try.
ODD = ["\u00ad", "\u200b", "\ufe0f", '"', "\\", "\u00e9", "\uff44", "\u212a", "\u0131"]
PIECE = st.sampled_from(
    ["demo", "a.b", "x-y", "sigsentry", "dev", "bücher", "=?utf-8?q?", "?=", "=?", *ODD]
)


@ELSEWHERE
def test_an_address_mail_would_reach_under_other_text_is_refused(address):
    assert address_refusal(address) == SENT_AS_ANOTHER_ADDRESS


@given(st.lists(PIECE, min_size=1, max_size=4), st.lists(PIECE, min_size=1, max_size=3))
def test_mail_to_an_accepted_address_goes_to_the_stored_spelling(local, domain):
    """Whatever address is accepted, Django's mail backend sends to its stored spelling:
    no two stored spellings share a mailbox."""
    address = f"{''.join(local)}@{'.'.join(domain)}.example"
    stored = normalize_email(address)
    try:
        validate_email(stored)
    except ValidationError:
        return
    if address_refusal(address) is None:
        assert sanitize_address(stored, "utf-8") == stored


def test_an_internationalized_domain_signs_up_in_its_xn_form(api_client):
    response = api_client.post(
        "/v1/auth/signup",
        {
            "email": "ana@xn--bcher-kva.example",
            "password": "a-long-enough-passphrase",
            "organizationName": "Books",
        },
        format="json",
    )

    assert response.status_code == 201
    assert User.objects.get().email == "ana@xn--bcher-kva.example"


@ELSEWHERE
def test_an_invitation_mail_would_reach_under_other_text_is_refused(
    owner, organization, mailbox, address
):
    response = user_client(owner).post(
        f"/v1/organizations/{organization.id}/invitations",
        {"email": address, "role": "member"},
        format="json",
    )

    assert response.status_code == 400
    assert error_fields(response)["email"] == [SENT_AS_ANOTHER_ADDRESS]
    assert mailbox.messages() == []


@given(st.text(max_size=40))
def test_normalizing_twice_changes_nothing(text):
    assert normalize_email(normalize_email(text)) == normalize_email(text)


# Sign-up ---------------------------------------------------------------------------------------


@SPELLINGS
def test_signup_with_a_look_alike_of_an_existing_email_is_refused(api_client, sam, spelling):
    response = api_client.post(
        "/v1/auth/signup",
        {"email": spelling, "password": "a-long-enough-passphrase", "organizationName": "Twin"},
        format="json",
    )

    assert response.status_code == 400
    assert error_code(response) == "VALIDATION_ERROR"
    assert "email" in error_fields(response)
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    "spelling", [LOOK_ALIKES["long-s"], LOOK_ALIKES["fullwidth"]], ids=["long-s", "fullwidth"]
)
def test_signup_stores_the_normalized_email(api_client, spelling):
    response = api_client.post(
        "/v1/auth/signup",
        {"email": spelling, "password": "a-long-enough-passphrase", "organizationName": "New"},
        format="json",
    )

    assert response.status_code == 201
    assert response.json()["user"]["email"] == ADDRESS
    assert User.objects.get().email == ADDRESS


# Login and its per-account throttle ------------------------------------------------------------


@SPELLINGS
def test_any_spelling_with_the_right_password_is_the_same_account(api_client, sam, spelling):
    response = login(api_client, spelling, PASSWORD)

    assert response.status_code == 200
    me = api_client.get("/v1/me", HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert me.json()["user"]["id"] == str(sam.id)


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"login_account": (LIMIT, 3600)})
@SPELLINGS
def test_wrong_passwords_in_one_spelling_lock_every_spelling(api_client, sam, spelling):
    for n in range(LIMIT):
        assert login(api_client, spelling, "wrong-password", f"198.51.100.{n}").status_code == 401

    for other in {ADDRESS, *LOOK_ALIKES.values()}:
        response = login(api_client, other, PASSWORD, "203.0.113.9")
        assert response.status_code == 429, other
        assert error_code(response) == "RATE_LIMITED"


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"login_account": (LIMIT, 3600)})
def test_wrong_passwords_spread_over_spellings_and_clients_add_up(api_client, sam):
    """The reviewer's attack: each spelling and each client stays under every limit alone."""
    spellings = list(LOOK_ALIKES.values())
    for n in range(LIMIT):
        wrong = login(api_client, spellings[n % len(spellings)], "wrong-password", f"10.0.0.{n}")
        assert wrong.status_code == 401

    unused = fullwidth(ADDRESS.upper())
    assert login(api_client, unused, PASSWORD, "10.0.1.1").status_code == 429


@override_settings(THROTTLE_RATES=settings.THROTTLE_RATES | {"login_account": (LIMIT, 3600)})
def test_the_throttle_counts_the_normalized_address_in_the_service(sam):
    for spelling in list(LOOK_ALIKES.values())[:LIMIT]:
        with pytest.raises(InvalidCredentials):
            authenticate_login(email=spelling, password="wrong-password", request=None)

    with pytest.raises(RateLimited):
        authenticate_login(email=ADDRESS, password=PASSWORD, request=None)


# Member add ------------------------------------------------------------------------------------


@SPELLINGS
def test_adding_a_member_by_a_look_alike_spelling_adds_that_user(owner, organization, spelling):
    sam = UserFactory(email=ADDRESS)

    response = user_client(owner).post(
        f"/v1/organizations/{organization.id}/members",
        {"email": spelling, "role": "member"},
        format="json",
    )

    assert response.status_code == 201, response.content
    assert Membership.objects.get(organization=organization, user=sam).role == "member"


# Existing rows ---------------------------------------------------------------------------------

normalize_emails_migration = importlib.import_module(
    "apps.accounts.migrations.0002_normalize_emails"
)


def test_the_migration_stores_existing_emails_normalized():
    legacy = User.objects.create(email=f"  {LONG_S}AM@Example.COM")
    wide = User.objects.create(email=fullwidth("wide@example.com"))

    normalize_emails_migration.normalize_stored_emails(apps, None)

    legacy.refresh_from_db()
    wide.refresh_from_db()
    assert (legacy.email, wide.email) == ("sam@example.com", "wide@example.com")


def test_the_migration_leaves_a_colliding_look_alike_to_the_operator(capsys):
    holder = User.objects.create(email="sam@example.com")
    twin = User.objects.create(email=f"{LONG_S}am@example.com")

    normalize_emails_migration.normalize_stored_emails(apps, None)

    holder.refresh_from_db()
    twin.refresh_from_db()
    assert holder.email == "sam@example.com"
    assert twin.email == f"{LONG_S}am@example.com"  # not merged, not renamed over the holder
    assert str(twin.pk) in capsys.readouterr().out
    # Whatever spelling is typed, the login reaches the holder's account only.
    assert User.objects.get_by_natural_key(twin.email) == holder


def test_a_reset_for_any_spelling_mails_the_holder_never_the_left_alone_twin(api_client, mailbox):
    # The twin is the older row: a case-insensitive SQL match (PostgreSQL's UPPER() makes
    # the long s an S) would find it first, and the holder would never get the mail.
    twin = User.objects.create(email=f"{LONG_S}am@example.com")
    holder = User.objects.create(email="sam@example.com")
    normalize_emails_migration.normalize_stored_emails(apps, None)
    for user in (twin, holder):
        user.set_password(PASSWORD)
        user.save(update_fields=["password"])

    for spelling in ("sam@example.com", twin.email, "SAM@example.com"):
        response = api_client.post("/v1/auth/password-reset", {"email": spelling}, format="json")
        assert response.status_code == 202
    run_ready_tasks()

    assert len(mailbox.messages("sam@example.com")) == 3
    assert mailbox.messages(twin.email) == []


def test_every_email_lookup_is_an_exact_match_on_the_unique_index(api_client, owner, organization):
    """Stored emails are normalized: no lookup needs the database's own case folding, which
    cannot use the unique index (a sequential scan of every user on PostgreSQL)."""
    member = UserFactory(email=ADDRESS)
    Membership.objects.create(organization=organization, user=member, role="member")

    with CaptureQueriesContext(connection) as queries:
        api_client.post("/v1/auth/login", {"email": ADDRESS, "password": PASSWORD}, format="json")
        api_client.post("/v1/auth/password-reset", {"email": ADDRESS}, format="json")
        run_ready_tasks()  # the worker looks the address up
        invited = user_client(owner).post(
            f"/v1/organizations/{organization.id}/invitations",
            {"email": ADDRESS.upper(), "role": "viewer"},
            format="json",
        )

    assert error_fields(invited) == {"email": ["This person is already a member."]}
    lookups = [q["sql"] for q in queries.captured_queries if '"email"' in q["sql"]]
    assert len(lookups) >= 3
    assert not [sql for sql in lookups if "UPPER(" in sql.upper() or " LIKE " in sql.upper()]


# The admin's user forms ------------------------------------------------------------------------


@pytest.fixture
def ops_client(db):
    client = Client()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    return client


def test_the_admin_refuses_a_new_user_with_a_look_alike_email(ops_client, sam):
    password = "a-brand-new-passphrase-42"
    response = ops_client.post(
        "/admin/accounts/user/add/",
        {
            "email": LOOK_ALIKES["long-s"],
            "usable_password": "true",
            "password1": password,
            "password2": password,
        },
    )

    assert response.status_code == 200
    assert "already exists" in response.content.decode()
    assert User.objects.filter(email__in=[ADDRESS, LOOK_ALIKES["long-s"]]).count() == 1


def test_an_email_changed_in_the_admin_is_stored_normalized(ops_client):
    user = UserFactory()

    response = ops_client.post(
        f"/admin/accounts/user/{user.pk}/change/",
        {"email": LOOK_ALIKES["long-s"], "is_active": "on"},
    )

    assert response.status_code == 302
    user.refresh_from_db()
    assert user.email == ADDRESS


def test_the_admin_refuses_an_address_that_folds_to_another(ops_client):
    password = "a-brand-new-passphrase-42"
    response = ops_client.post(
        "/admin/accounts/user/add/",
        {
            "email": FOLDED_ELSEWHERE["sharp-s domain"],
            "usable_password": "true",
            "password1": password,
            "password2": password,
        },
    )

    assert response.status_code == 200
    assert "Use its plain spelling" in response.content.decode()
    assert User.objects.filter(is_staff=False).count() == 0
