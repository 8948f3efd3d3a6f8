"""Scheduled notification checks and their emails (SPEC §4.11), with a real SMTP server."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection
from django.utils import timezone

from apps.accounts.models import User
from apps.apikeys import keyformat
from apps.apikeys.keyformat import KeyKind
from apps.apikeys.leaks import report_leaked_keys
from apps.apikeys.models import ApiKey
from apps.apikeys.services import roll_key
from apps.notifications import checks, mail, tasks
from apps.notifications.models import Reminder
from apps.webhooks.models import Delivery, Event, Webhook
from apps.webhooks.services import create_webhook
from core import counters, mailserver
from core.permissions import Role
from tests.factories import (
    MembershipFactory,
    ProjectFactory,
    bulk_secret_keys,
    make_key,
    make_legacy_key,
)
from tests.outbound import hung_smtp, text_of
from tests.schema import a_column_this_release_does_not_fill
from tests.tasks import run_ready_tasks

pytestmark = pytest.mark.django_db


def subjects(smtp) -> list[str]:
    return sorted(str(m["Subject"]) for m in smtp.messages)


def what_a_reader_sees(message) -> list[str]:
    """Every header value (the subject too) and every part's decoded content: quoted-printable
    or base64 may split a value in the raw message, so it is looked for in these."""
    return [str(value) for value in message.values()] + [
        part.get_content() for part in message.walk() if not part.is_multipart()
    ]


def assert_no_secret_of_these_keys(messages, *keys) -> None:
    """No message shows anything of a key but its display prefix: not the key, its digest,
    its secret part (after the type prefix) nor the rest after the display prefix.

    `keys` are (api_key, plaintext) pairs."""
    assert messages
    for api_key, plaintext in keys:
        legacy = keyformat.legacy_prefix_of(plaintext)
        type_prefix = legacy or keyformat.parse(plaintext).kind.prefix
        secrets = {
            plaintext,
            api_key.digest,
            api_key.digest.upper(),
            plaintext[len(type_prefix) :],
            plaintext[len(api_key.prefix) :],
        }
        for message in messages:
            for text in what_a_reader_sees(message):
                assert not [secret for secret in secrets if secret in text], str(message["Subject"])


def test_7_day_and_1_day_reminders_go_out_once_each(smtp, owner, project, settings):
    settings.DEFAULT_FROM_EMAIL = "SigSentry <no-reply@sigsentry.example.com>"
    now = timezone.now()
    soon, soon_text = make_key(
        KeyKind.SECRET, project=project, name="Weekly", expires_at=now + timedelta(days=5)
    )
    tomorrow, tomorrow_text = make_key(
        KeyKind.SECRET, project=project, name="Nightly", expires_at=now + timedelta(hours=20)
    )
    make_key(KeyKind.SECRET, project=project, name="Far", expires_at=now + timedelta(days=30))

    call_command("send_notifications")
    call_command("send_notifications")

    assert subjects(smtp) == [
        "An API key of Acme expires within 24 hours",
        "An API key of Acme expires within 7 days",
    ]
    [week] = [m for m in smtp.messages if "7 days" in str(m["Subject"])]
    plain, html = text_of(week)
    assert "Weekly" in plain and soon.prefix in plain and "Checkout" in plain
    assert f"https://sigsentry.test/projects/{project.id}/api-keys/" in plain
    assert "Weekly" in html and soon.prefix in html
    for message in smtp.messages:
        assert str(message["To"]) == owner.email
        raw = message.as_string()
        assert soon_text not in raw and tomorrow_text not in raw
        # RFC 3834: no out-of-office reply comes back; the id names the sender's domain
        assert message["Auto-Submitted"] == "auto-generated"
        assert str(message["Message-ID"]).endswith("@sigsentry.example.com>")
    assert_no_secret_of_these_keys(smtp.messages, (soon, soon_text), (tomorrow, tomorrow_text))
    assert Event.objects.filter(type="key.expiring").count() == 2

    # Three days later the weekly key enters its last day: now the 1-day notice.
    checks.run_all_checks(now + timedelta(days=4, hours=6))
    assert subjects(smtp).count("An API key of Acme expires within 24 hours") == 2
    checks.run_all_checks(now + timedelta(days=4, hours=7))
    assert len(smtp.messages) == 3
    assert_no_secret_of_these_keys(smtp.messages, (soon, soon_text), (tomorrow, tomorrow_text))


def test_the_organizations_name_is_isolated_in_the_emails_sentences(smtp, owner, project):
    """As on the dashboard: in a <bdi>, a right-to-left name or one stored before the name
    rules with an unclosed override cannot reorder the words after it."""
    project.organization.name = "شركة\u202e"
    project.organization.save(update_fields=["name"])
    make_key(KeyKind.SECRET, project=project, expires_at=timezone.now() + timedelta(days=5))

    call_command("send_notifications")

    [message] = smtp.messages
    _plain, html = text_of(message)
    assert "SigSentry · <bdi>شركة\u202e</bdi></p>" in html
    assert "an owner or admin of <bdi>شركة\u202e</bdi>, or as the creator" in html


def test_a_rolled_keys_grace_expiry_is_not_announced(smtp, owner, project):
    old, _ = make_key(KeyKind.SECRET, project=project)
    roll_key(actor=owner, api_key=old, grace_seconds=3600)

    checks.run_all_checks()

    assert smtp.messages == []


def test_a_rolled_key_still_used_is_announced_once_on_its_last_day(smtp, owner, project):
    now = timezone.now()
    old, _ = make_key(KeyKind.SECRET, project=project, name="Deploy bot")
    roll_key(actor=owner, api_key=old, grace_seconds=3 * 24 * 3600)
    ApiKey.objects.filter(pk=old.pk).update(last_used_at=now + timedelta(minutes=5))

    checks.run_all_checks(now + timedelta(hours=1))  # in use, but days from its end
    assert smtp.messages == []

    last_day = now + timedelta(days=2, hours=6)
    checks.run_all_checks(last_day)
    checks.run_all_checks(last_day + timedelta(hours=1))

    assert subjects(smtp) == ["An API key of Acme expires within 24 hours"]
    assert "Deploy bot" in text_of(smtp.messages[0])[0]
    assert Event.objects.filter(type="key.expiring").count() == 1


def test_unused_keys_are_announced_once_per_idle_spell(smtp, owner, project):
    now = timezone.now()
    idle, idle_text = make_key(KeyKind.SECRET, project=project, name="Idle")
    ApiKey.objects.filter(pk=idle.pk).update(created_at=now - timedelta(days=200))
    used, _ = make_key(KeyKind.SECRET, project=project, name="Busy")
    ApiKey.objects.filter(pk=used.pk).update(
        created_at=now - timedelta(days=200), last_used_at=now - timedelta(days=3)
    )

    checks.run_all_checks(now)
    checks.run_all_checks(now)

    assert subjects(smtp) == ["An API key of Acme unused for 90 days"]
    assert "Idle" in text_of(smtp.messages[0])[0]
    assert "Busy" not in text_of(smtp.messages[0])[0]
    assert_no_secret_of_these_keys(smtp.messages, (idle, idle_text))
    assert Event.objects.filter(type="key.unused").count() == 1

    # Used the next day, then idle again for 90 days: a new spell, a new notice.
    ApiKey.objects.filter(pk=idle.pk).update(last_used_at=now + timedelta(days=1))
    ApiKey.objects.filter(pk=used.pk).update(last_used_at=now + timedelta(days=89))
    checks.run_all_checks(now + timedelta(days=90))
    assert len(smtp.messages) == 1
    checks.run_all_checks(now + timedelta(days=91, minutes=1))
    checks.run_all_checks(now + timedelta(days=92))
    assert len(smtp.messages) == 2
    assert Event.objects.filter(type="key.unused").count() == 2


def test_a_key_told_already_is_not_read_again(smtp, owner, project):
    """The checks run every 5 minutes: after a key's notice they do not load it again (the
    database leaves it out), so a run costs the keys newly due, not every idle key."""
    now = timezone.now()
    idle, _ = make_key(KeyKind.SECRET, project=project, name="Idle")
    ApiKey.objects.filter(pk=idle.pk).update(created_at=now - timedelta(days=200))
    make_key(KeyKind.SECRET, project=project, name="Weekly", expires_at=now + timedelta(days=5))
    make_key(KeyKind.SECRET, project=project, name="Nightly", expires_at=now + timedelta(hours=9))
    assert len(list(checks.unused_keys(now))) == 1
    assert len(list(checks.expiring_keys(now))) == 2

    checks.run_all_checks(now)

    assert list(checks.unused_keys(now + timedelta(minutes=5))) == []
    assert list(checks.expiring_keys(now + timedelta(minutes=5))) == []
    # The weekly key's last day is a new notice, due then and read then.
    [last_day] = checks.expiring_keys(now + timedelta(days=4, hours=6))
    assert last_day.api_key.name == "Weekly" and last_day.kind == "key_expiring_1d"


def test_many_due_keys_are_claimed_in_batches_each_once(smtp, owner, project, monkeypatch):
    """However many keys are due at once, each batch asks about CLAIM_BATCH of them (a
    bounded IN list: PostgreSQL binds at most 65,535 parameters a statement)."""
    monkeypatch.setattr(checks, "CLAIM_BATCH", 2)
    now = timezone.now()
    for n in range(5):
        key, _ = make_key(KeyKind.SECRET, project=project, name=f"Idle {n}")
        ApiKey.objects.filter(pk=key.pk).update(created_at=now - timedelta(days=200))

    checks.run_all_checks(now)
    checks.run_all_checks(now)

    assert Reminder.objects.filter(kind="key_unused").count() == 5
    assert Event.objects.filter(type="key.unused").count() == 5


def _idle_keys(project, now, count):
    for n in range(count):
        key, _ = make_key(KeyKind.SECRET, project=project, name=f"Idle {n}")
        ApiKey.objects.filter(pk=key.pk).update(created_at=now - timedelta(days=200))


def test_a_batch_is_written_in_one_transaction(owner, project, django_assert_max_num_queries):
    """A batch's reminders and events are a few statements, not some per reminder (10,000
    newly idle keys took 28 s on PostgreSQL one transaction each, 2.3 s a batch each)."""
    now = timezone.now()
    _idle_keys(project, now, 30)

    with django_assert_max_num_queries(12):
        checks.claim(checks.unused_keys(now), now, checks.Report())

    assert Reminder.objects.filter(kind="key_unused").count() == 30
    assert Event.objects.filter(type="key.unused").count() == 30


def test_a_batch_reads_no_creator_and_queues_no_attempt_per_key(
    settings, owner, organization, project, django_assert_max_num_queries
):
    """Found by a scale audit: each key's creator was read on its own (for its webhook
    event) and each delivery's attempt queued in the checks' transaction: 10,000 newly
    idle keys of an organization with a webhook took 20,113 queries and 16 s."""
    settings.WEBHOOKS_ALLOW_PRIVATE = True
    create_webhook(
        actor=owner, organization=organization, url="https://127.0.0.1/hooks", events=["key.unused"]
    )
    now = timezone.now()
    for n in range(12):
        key, _ = make_key(KeyKind.SECRET, project=project, actor=owner, name=f"Idle {n}")
        ApiKey.objects.filter(pk=key.pk).update(created_at=now - timedelta(days=200))

    with django_assert_max_num_queries(12):
        checks.claim(checks.unused_keys(now), now, checks.Report())

    events = Event.objects.filter(type="key.unused")
    assert {event.data["key"]["createdBy"]["email"] for event in events} == {owner.email}
    run_ready_tasks()  # the fan-out, then the attempts
    assert Delivery.objects.filter(event__in=events).count() == 12


def test_a_reminder_written_meanwhile_by_another_worker_leaves_the_others_written_once(
    owner, project, monkeypatch
):
    """Between a batch's read of the reminders written and its write, another worker wrote
    one of them: the batch's transaction fails whole and is redone a reminder at a time,
    so every other reminder and its event are written once and that one is not again."""
    now = timezone.now()
    _idle_keys(project, now, 4)
    found = list(checks.unused_keys(now))
    write = checks._write

    def another_worker_first(batch, moment):
        if len(batch) > 1:  # the batch's own attempt: the other worker got there before it
            Reminder.objects.create(
                kind=found[2].kind,
                dedupe_key=found[2].dedupe_key,
                organization_id=found[2].organization_id,
                api_key=found[2].api_key,
                created_at=moment,
                next_email_at=moment,
            )
        write(batch, moment)

    monkeypatch.setattr(checks, "_write", another_worker_first)
    report = checks.Report()

    checks.claim(found, now, report)

    assert report.created == {"key_unused": 3}
    assert Reminder.objects.filter(kind="key_unused").count() == 4
    unused = Event.objects.filter(type="key.unused")
    assert sorted(unused.values_list("data__key__id", flat=True)) == sorted(
        str(f.api_key.id) for f in found if f is not found[2]
    )


@pytest.mark.parametrize("batch", [1, 3])
def test_a_reminder_the_database_refuses_otherwise_is_raised_not_counted_as_written_first(
    owner, project, batch
):
    """Found by a rolling-deploy audit: the release before a column without a database
    default (`Reminder.emailed_to`), run against the migrated database, wrote no reminder
    and said "reminders created: none", logging nothing: any broken constraint was taken
    for another worker's write of the same reminder."""
    now = timezone.now()
    _idle_keys(project, now, batch)
    a_column_this_release_does_not_fill(Reminder)
    report = checks.Report()

    with pytest.raises(IntegrityError, match="next_release"):
        checks.claim(checks.unused_keys(now), now, report)

    assert report.created == {} and not Reminder.objects.exists()


def _at_once(job, now, reports) -> list[Exception]:
    """`job(now, report)` for each report, each in its own thread and database connection
    (a worker each), released together; what they raised."""
    start = threading.Barrier(len(reports))
    failures = []

    def worker(report):
        try:
            start.wait()
            job(now, report)
        except Exception as exc:  # returned to the test, which asserts there is none
            failures.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(r,)) for r in reports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return failures


@pytest.mark.django_db(transaction=True)
def test_two_workers_checking_at_once_write_each_reminder_once(owner, project, monkeypatch):
    """Two processes' checks race over the same due keys (PostgreSQL: each worker has its
    own connection; the unique `dedupe_key` decides)."""
    if connection.vendor != "postgresql":
        pytest.skip("two connections writing at once need PostgreSQL")
    monkeypatch.setattr(checks, "CLAIM_BATCH", 7)
    now = timezone.now()
    _idle_keys(project, now, 60)
    reports = [checks.Report(), checks.Report()]

    assert _at_once(checks.find_scheduled, now, reports) == []
    assert sum(r.created["key_unused"] for r in reports) == 60
    assert Reminder.objects.filter(kind="key_unused").count() == 60
    assert Event.objects.filter(type="key.unused").count() == 60


def test_a_message_names_25_keys_and_counts_the_rest_by_page(smtp, owner, project, other_project):
    """The first run after an upgrade may find hundreds of idle keys in one organization:
    one message names the first 25 (by project and name) and counts the others by the page
    that lists them, most first, with its link."""
    now = timezone.now()
    for name, where, count in (("Alpha", other_project, 30), ("Beta", project, 12)):
        for n in range(count):
            key, _ = make_key(KeyKind.SECRET, project=where, name=f"{name} {n:02}")
            ApiKey.objects.filter(pk=key.pk).update(created_at=now - timedelta(days=200))

    checks.run_all_checks(now)

    [message] = smtp.messages
    assert str(message["Subject"]) == "42 API keys of Acme unused for 90 days"
    plain, html = text_of(message)
    named = [line.split(" (")[0][2:] for line in plain.splitlines() if " (ss_secret_" in line]
    assert named == [f"Alpha {n:02}" for n in range(25)]  # Billing's, before Checkout's
    counted = [line for line in plain.splitlines() if line.startswith("* …and")]
    assert counted == ["* …and 12 more in Checkout", "* …and 5 more in Billing"]
    assert f"https://sigsentry.test/projects/{project.id}/api-keys/" in plain
    assert html.count("ss_secret_") == 25
    assert "12 more in <bdi>Checkout</bdi></a>" in html
    assert "5 more in <bdi>Billing</bdi></a>" in html


@pytest.mark.usefixtures("before_the_sunset")  # legacy keys work on any day
def test_legacy_sunset_is_announced_30_and_7_days_before_once_per_organization(
    smtp, settings, owner, project, other_project
):
    sunset = settings.LEGACY_KEYS_SUNSET_AT
    in_use = {"last_used_at": sunset - timedelta(days=1)}  # no "unused" notice in this test
    first, first_text = make_legacy_key(project, plaintext="tb_" + "a" * 30, **in_use)
    second, second_text = make_legacy_key(other_project, plaintext="tb_" + "b" * 30, **in_use)

    checks.run_all_checks(sunset - timedelta(days=40))
    assert smtp.messages == []
    checks.run_all_checks(sunset - timedelta(days=29))
    checks.run_all_checks(sunset - timedelta(days=20))
    checks.run_all_checks(sunset - timedelta(days=6))
    checks.run_all_checks(sunset - timedelta(days=5))

    assert subjects(smtp) == [
        "Legacy API keys of Acme stop working on 26 May 2027",
        "Reminder: legacy API keys of Acme stop working on 26 May 2027",
    ]  # the day, not "in 30 days": sent on day 29 and day 6 (a dates audit)
    plain, html = text_of(smtp.messages[0])
    assert f"https://sigsentry.test/orgs/{project.organization_id}/api-keys/" in plain
    assert "stop working on 26 May 2027, 00:00 UTC" in plain
    assert "last used 2027-05-25 (UTC)" in plain  # every date says its zone
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    for key in (first, second):  # which keys to replace, and where
        assert key.prefix in plain and key.project.name in plain
    assert_no_secret_of_these_keys(smtp.messages, (first, first_text), (second, second_text))


def test_a_leak_report_emails_about_the_revoked_and_the_flagged_key(smtp, owner, member, project):
    secret, secret_text = make_key(KeyKind.SECRET, project=project, name="Server", actor=member)
    sdk, sdk_text = make_key(KeyKind.PUBLIC, project=project, name="Website")

    report_leaked_keys(candidates=[secret_text, sdk_text])
    checks.run_urgent_checks()
    checks.run_urgent_checks()

    by_subject = {str(m["Subject"]): m for m in smtp.to(owner.email)}
    assert set(by_subject) == {
        "An API key of Acme revoked after a leak report",
        "An SDK key of Acme reported as leaked",
    }
    revoked_text, _ = text_of(by_subject["An API key of Acme revoked after a leak report"])
    assert "Server" in revoked_text and secret.prefix in revoked_text
    flagged_text, _ = text_of(by_subject["An SDK key of Acme reported as leaked"])
    assert "Website" in flagged_text and "keep working" in flagged_text
    # The member created the revoked key: they hear about it, not about the SDK key.
    assert [str(m["Subject"]) for m in smtp.to(member.email)] == [
        "An API key of Acme revoked after a leak report"
    ]
    for message in smtp.messages:
        assert secret_text not in message.as_string() and sdk_text not in message.as_string()
    assert_no_secret_of_these_keys(smtp.messages, (secret, secret_text), (sdk, sdk_text))
    assert len(smtp.messages) == 3


def test_a_creator_who_left_the_organization_is_not_emailed(smtp, owner, project):
    leaver = MembershipFactory(organization=project.organization, role=Role.MEMBER)
    _key, plaintext = make_key(KeyKind.SECRET, project=project, actor=leaver.user)
    leaver.delete()

    report_leaked_keys(candidates=[plaintext])
    checks.run_urgent_checks()

    assert [str(m["To"]) for m in smtp.messages] == [owner.email]


def test_viewers_and_members_who_created_nothing_are_not_emailed(
    smtp, owner, admin, member, viewer, outsider, project
):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)

    report_leaked_keys(candidates=[plaintext])
    checks.run_urgent_checks()

    assert sorted(str(m["To"]) for m in smtp.messages) == sorted([owner.email, admin.email])


def test_an_smtp_outage_loses_no_reminder(smtp, settings, owner, project):
    _key, plaintext = make_key(KeyKind.SECRET, project=project)
    report_leaked_keys(candidates=[plaintext])
    settings.EMAIL_PORT = smtp.port + 1 if smtp.port < 65535 else smtp.port - 1  # nobody there
    before = sum(mail.email_failures.values())

    report = checks.run_urgent_checks()

    assert report.email_failures == 1 and sum(mail.email_failures.values()) == before + 1
    assert counters.values()["email_failures"] == 1  # what /metrics reads, on any process
    reminder = Reminder.objects.get()
    assert reminder.emailed_at is None and reminder.email_attempts == 1
    assert smtp.messages == []

    settings.EMAIL_PORT = smtp.port
    mailserver.forget()  # the process's mark of a failing server lasts 30 s, not 5 minutes
    checks.run_urgent_checks(timezone.now() + timedelta(minutes=5))
    assert len(smtp.messages) == 1
    reminder.refresh_from_db()
    assert reminder.emailed_at is not None


def _bulk_idle_keys(project, now, count):
    bulk_secret_keys(project, count, created_at=now - timedelta(days=200))


def test_many_reminders_of_one_kind_make_one_message(smtp, owner, admin, project):
    """1,200 keys falling idle together: one message to each manager, not one per batch of
    rows (500 a run before, so three messages of 500, 500 and 200 keys each)."""
    now = timezone.now()
    _bulk_idle_keys(project, now, 1200)

    checks.run_all_checks(now)
    checks.run_all_checks(now + timedelta(minutes=5))

    assert sorted(str(m["To"]) for m in smtp.messages) == sorted([owner.email, admin.email])
    assert {str(m["Subject"]) for m in smtp.messages} == {
        "1200 API keys of Acme unused for 90 days"
    }
    assert not Reminder.objects.filter(emailed_at__isnull=True).exists()


def test_a_message_holds_at_most_email_per_message_reminders(smtp, owner, project, monkeypatch):
    monkeypatch.setattr(checks, "EMAIL_PER_MESSAGE", 10)
    now = timezone.now()
    _bulk_idle_keys(project, now, 25)

    for run in range(4):
        checks.run_all_checks(now + timedelta(seconds=15 * run))

    assert [str(m["Subject"]).split(" API")[0] for m in smtp.messages] == ["10", "10", "5"]
    assert not Reminder.objects.filter(emailed_at__isnull=True).exists()


@pytest.mark.django_db(transaction=True)
def test_two_workers_sending_at_once_send_each_message_once(smtp, owner, project):
    """Both claim the same due reminders at the same moment: one claim takes them (its
    UPDATE re-checks each row), the other finds nothing left."""
    if connection.vendor != "postgresql":
        pytest.skip("two connections writing at once need PostgreSQL")
    now = timezone.now()
    _bulk_idle_keys(project, now, 300)
    checks.find_scheduled(now, checks.Report())
    reports = [checks.Report(), checks.Report()]

    assert _at_once(checks.send_pending_emails, now, reports) == []
    assert sorted(r.emails_sent for r in reports) == [0, 1]
    assert [str(m["Subject"]) for m in smtp.messages] == ["300 API keys of Acme unused for 90 days"]
    assert not Reminder.objects.filter(emailed_at__isnull=True).exists()


def test_a_worker_whose_lease_ran_out_leaves_the_rest_to_the_worker_that_took_them(
    smtp, monkeypatch
):
    """Worker A claimed three messages six minutes ago and is only now sending the first
    (a mail server timing out on the ones before): its lease on the other two has run out,
    and worker B claims and sends them meanwhile. A then sends neither again."""
    claimed_at = timezone.now() - timedelta(minutes=6)
    for name in ("North", "South", "West"):
        member = MembershipFactory(role=Role.OWNER, organization__name=name)
        project = ProjectFactory(organization=member.organization)
        make_key(KeyKind.SECRET, project=project, expires_at=claimed_at + timedelta(days=5))
    checks.find_scheduled(claimed_at, checks.Report())
    send = mail.send_reminder_email
    worker_b = checks.Report()

    def slow_first_send(*args, **kwargs):
        monkeypatch.setattr(mail, "send_reminder_email", send)
        sent = send(*args, **kwargs)
        checks.send_pending_emails(timezone.now(), worker_b)
        return sent

    monkeypatch.setattr(mail, "send_reminder_email", slow_first_send)
    worker_a = checks.Report()
    checks.send_pending_emails(claimed_at, worker_a)

    recipients = sorted(str(m["To"]) for m in smtp.messages)
    assert len(recipients) == len(set(recipients)) == 3
    assert (worker_a.emails_sent, worker_b.emails_sent) == (1, 2)
    assert not Reminder.objects.filter(emailed_at__isnull=True).exists()


def test_owners_are_emailed_when_a_webhook_is_disabled(smtp, settings, owner, organization):
    from apps.webhooks.delivery import disable_webhook
    from apps.webhooks.services import create_webhook

    settings.WEBHOOKS_ALLOW_PRIVATE = True
    webhook = create_webhook(
        actor=owner, organization=organization, url="http://127.0.0.1:9/x", events=["key.minted"]
    ).webhook
    disable_webhook(webhook=webhook, now=timezone.now())
    checks.run_urgent_checks()
    checks.run_urgent_checks()

    [message] = smtp.messages
    assert str(message["Subject"]) == "A webhook of Acme was disabled"
    plain, _ = text_of(message)
    assert f"https://sigsentry.test/orgs/{organization.id}/webhooks/" in plain
    assert "127.0.0.1" in plain and "/x" not in plain.split("127.0.0.1")[1][:3]
    assert "creator of one of these keys" not in plain  # there are none (an email audit)
    assert Webhook.objects.get().disabled_at is not None


# A recipient the mail server refuses never costs the others their copy


@pytest.mark.parametrize("first", ["owner", "admin"])
def test_an_address_refused_for_good_costs_no_one_else_their_copy(
    smtp, request, owner, admin, project, first
):
    """The audit's case: one refused address held the leak email from everyone after it, and
    re-sent it to everyone before it at every retry, for three days."""
    refused = request.getfixturevalue("admin" if first == "owner" else "owner")
    kept = admin if refused is owner else owner
    smtp.refusing[refused.email] = "550 5.1.1 No such user here"
    _key, text = make_key(KeyKind.SECRET, project=project)
    report_leaked_keys(candidates=[text])

    report = checks.run_urgent_checks()
    later = checks.run_urgent_checks(timezone.now() + timedelta(days=1))

    assert [str(m["To"]) for m in smtp.messages] == [kept.email]  # once, and only once
    assert (report.emails_sent, later.emails_sent) == (1, 0)  # the refused one is done with
    assert report.email_failures == 0 and mail.email_failures["SMTPRecipientsRefused"]
    assert not Reminder.objects.filter(emailed_at__isnull=True).exists()


def test_a_copy_for_a_mailbox_that_is_not_ascii_is_refused_for_good_not_sent_elsewhere(
    smtp, owner, admin, project
):
    """An account stored before the address rules: Django would send its copy to an RFC 2047
    encoded word (`=?utf-8?b?…?=@example.com`), another mailbox (found by an email audit)."""
    User.objects.filter(pk=owner.pk).update(email="jos\u00e9@example.com")
    _key, text = make_key(KeyKind.SECRET, project=project)
    report_leaked_keys(candidates=[text])

    report = checks.run_urgent_checks()

    assert [str(m["To"]) for m in smtp.messages] == [admin.email]
    assert report.email_failures == 0 and mail.email_failures["RecipientAddressedElsewhere"]
    assert not Reminder.objects.filter(emailed_at__isnull=True).exists()


@pytest.mark.parametrize("refused_role", ["owner", "admin"])
def test_a_copy_refused_for_now_is_sent_again_alone(
    smtp, request, owner, admin, project, refused_role
):
    """Whichever address comes first: a temporary refusal (452) costs the others nothing."""
    refused = request.getfixturevalue(refused_role)
    kept = admin if refused is owner else owner
    smtp.refusing[refused.email] = "452 4.2.2 Mailbox full, try again"
    _key, text = make_key(KeyKind.SECRET, project=project)
    report_leaked_keys(candidates=[text])

    checks.run_urgent_checks()
    assert [str(m["To"]) for m in smtp.messages] == [kept.email]
    reminder = Reminder.objects.get()
    assert (reminder.emailed_at, reminder.emailed_to) == (None, [kept.email])

    del smtp.refusing[refused.email]
    checks.run_urgent_checks(timezone.now() + timedelta(hours=1))

    assert sorted(str(m["To"]) for m in smtp.messages) == sorted([owner.email, admin.email])
    assert Reminder.objects.get().emailed_at is not None


def test_a_reminder_keeps_its_recipients_only_until_its_email_went_out(smtp, owner, admin, project):
    smtp.refusing[admin.email] = "452 4.2.2 Mailbox full, try again"
    _key, text = make_key(KeyKind.SECRET, project=project)
    report_leaked_keys(candidates=[text])
    checks.run_urgent_checks()
    assert Reminder.objects.get().emailed_to == [owner.email]  # the retry skips them

    del smtp.refusing[admin.email]
    checks.run_urgent_checks(timezone.now() + timedelta(hours=1))

    reminder = Reminder.objects.get()
    assert reminder.emailed_at is not None and reminder.emailed_to == []


def test_housekeeping_empties_the_recipients_of_a_reminder_given_up(
    smtp, owner, admin, project, time_machine
):
    time_machine.move_to(timezone.now(), tick=False)
    smtp.refusing[admin.email] = "452 4.2.2 Mailbox full, try again"
    _key, text = make_key(KeyKind.SECRET, project=project)
    report_leaked_keys(candidates=[text])
    checks.run_urgent_checks()

    time_machine.shift(checks.EMAIL_GIVE_UP_AFTER - timedelta(minutes=1))
    checks.run_urgent_checks()  # the last try: refused again
    tasks.housekeeping.call()
    assert Reminder.objects.get().emailed_to == [owner.email]

    time_machine.shift(checks.EMAIL_LEASE + timedelta(minutes=2))
    tasks.housekeeping.call()

    reminder = Reminder.objects.get()
    assert reminder.emailed_at is None and reminder.emailed_to == []
    checks.run_urgent_checks()
    assert [str(m["To"]) for m in smtp.messages] == [owner.email]  # given up: no retry


def test_a_refused_address_of_one_organization_never_holds_anothers_email(smtp, owner, project):
    """An answer about one message is not the server failing: the run goes on."""
    smtp.refusing[owner.email] = "452 4.2.2 Mailbox full, try again"
    _key, text = make_key(KeyKind.SECRET, project=project)
    other = MembershipFactory(role=Role.OWNER, organization__name="Zeta")
    _other_key, other_text = make_key(
        KeyKind.SECRET, project=ProjectFactory(organization=other.organization)
    )
    report_leaked_keys(candidates=[text, other_text])

    checks.run_urgent_checks()

    assert [str(m["To"]) for m in smtp.messages] == [other.user.email]
    assert Reminder.objects.filter(emailed_at__isnull=False).count() == 1


def test_a_message_that_cannot_be_composed_is_tried_again_later(smtp, owner, project, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the database went away while composing")

    monkeypatch.setattr(mail, "compose", broken)
    _key, text = make_key(KeyKind.SECRET, project=project)
    report_leaked_keys(candidates=[text])

    report = checks.run_urgent_checks()

    reminder = Reminder.objects.get()
    assert (reminder.email_attempts, reminder.locked_until) == (1, None)
    assert reminder.last_error == "RuntimeError" and report.email_failures == 1


def test_a_mail_server_that_hangs_is_waited_for_once_per_run_not_per_message(settings):
    """Each organization's message waited the mail server's full timeout in turn, holding
    the worker (and the webhook deliveries behind it) for a minute and a half."""
    for name in ("North", "South", "West"):
        member = MembershipFactory(role=Role.OWNER, organization__name=name)
        _key, text = make_key(
            KeyKind.SECRET, project=ProjectFactory(organization=member.organization)
        )
        report_leaked_keys(candidates=[text])
    with hung_smtp(settings) as connections:
        report = checks.run_urgent_checks()

    assert len(connections) == 1  # not one wait per message
    assert report.email_failures == 3  # every message waits for its next try
    assert Reminder.objects.filter(emailed_at__isnull=True, email_attempts=1).count() == 3


def test_a_notice_leads_to_the_first_key_it_lists_and_shows_its_last_use_in_both_parts(
    smtp, owner, organization, project
):
    """Found by an email audit: the button led to the first key claimed (a project's page)
    while the list showed the organization's key first, and the HTML part left out the
    last-use dates the text part had."""
    used = timezone.now() - timedelta(days=3)
    make_key(
        KeyKind.SECRET, project=project, name="A", expires_at=timezone.now() + timedelta(days=5)
    )
    org_key, _ = make_key(
        KeyKind.ORGANIZATION,
        organization=organization,
        name="Z",
        expires_at=timezone.now() + timedelta(days=5),
    )
    ApiKey.objects.filter(pk=org_key.pk).update(last_used_at=used)

    call_command("send_notifications")

    [message] = smtp.messages
    plain, html = text_of(message)
    org_page = f"https://sigsentry.test/orgs/{organization.id}/api-keys/"
    assert plain.index("Z (") < plain.index("A (")
    assert f"Open the key page: {org_page}" in plain
    last_used = f"last used {used:%Y-%m-%d}"
    assert last_used in plain and last_used in html


def test_the_uuid_text_expression_gives_its_params_as_a_tuple():
    """Django 6.0 takes a custom expression's params as a tuple only (its release notes:
    custom ORM expressions should return params as a tuple); Django's own give a tuple."""
    query = Event.objects.all().query
    expression = checks._UuidText("id").resolve_expression(query)

    sql, params = query.get_compiler(using="default").compile(expression)

    assert isinstance(params, tuple)
    assert "id" in sql
