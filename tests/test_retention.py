"""Retention and erasure: each kind of row goes once it has outlived its period, nothing younger or still needed
goes with it, what went is still counted, pruning works in bounded batches, and an address erased after
it bounced is never mailed again."""

from __future__ import annotations

import datetime as dt
import re
import time
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts.delivery import deliver_immediate
from alerts.models import Delivery, ErasedAddress, Match, Subscriber, Subscription, WebhookEvent, WebhookTally
from alerts.retention import erased_digest, prune
from alerts.subscribing import sign_up
from questions.models import Question, QuestionEvent, Source, SourceProblem
from tests.conftest import POSTMARK_BOUNCE, POSTMARK_COMPLAINT, post_webhook
from tests.factories import match, pairs, subscriber

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

NOW = dt.datetime(2027, 3, 1, 12, 0, tzinfo=dt.UTC)


def older(days: int, now: dt.datetime = NOW) -> dt.datetime:
    """Just past a period of this many days."""
    return now - dt.timedelta(days=days, minutes=1)


def younger(days: int, now: dt.datetime = NOW) -> dt.datetime:
    """Just within a period of this many days."""
    return now - dt.timedelta(days=days) + dt.timedelta(minutes=1)


def digest(email: str) -> str:
    return erased_digest(email)


def source(name: str = "Stub API") -> Source:
    return Source.objects.create(name=name, kind=Source.Kind.PARLIAMENT_API, url="https://example.org/api")


_questions = iter(range(1, 10_000))


def event(created_at: dt.datetime = NOW, matched_at: dt.datetime | None = NOW, kind: str = "tabled") -> QuestionEvent:
    question = Question.objects.create(external_id=f"r-{next(_questions)}", heading="Schools: Heating")
    return QuestionEvent.objects.create(question=question, kind=kind, key=kind, created_at=created_at,
                                        matched_at=matched_at)


def alert(owner: Subscriber, query: str = "schools") -> Subscription:
    return Subscription.objects.create(subscriber=owner, query=query, canonical_query=query,
                                       confirmed_at=owner.confirmed_at, created_at=owner.created_at)


def email(owner: Subscriber, status: str, created_at: dt.datetime, events=()) -> Delivery:
    """A delivery of `status`, carrying a match of `events` for the owner's first alert."""
    delivery = Delivery.objects.create(subscriber=owner, kind="immediate", status=status, created_at=created_at,
                                       sent_at=created_at if status == "sent" else None)
    subscription = owner.subscriptions.first() or alert(owner)
    if events:
        match(subscription, *events, delivery=delivery, created_at=created_at)
    return delivery


# Each kind of row, and its period.


def test_source_problems_past_their_period_go_and_each_source_keeps_their_count(settings):
    first, second = source("First"), source("Second")
    for owner, created_at in [(first, older(30)), (first, older(30)), (second, older(365)), (first, younger(30)),
                              (second, NOW)]:
        SourceProblem.objects.create(source=owner, created_at=created_at, record_id="x", message="bad date")

    report = prune(now=NOW)

    assert report.counts["source problems"] == 3 and report.finished
    assert sorted(SourceProblem.objects.values_list("source__name", "created_at")) == [
        ("First", younger(30)), ("Second", NOW)]
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.pruned_problems, second.pruned_problems) == (2, 1)

    SourceProblem.objects.create(source=first, created_at=older(31), message="again")
    prune(now=NOW)
    first.refresh_from_db()
    assert first.pruned_problems == 3


def test_webhook_events_past_their_period_go_and_the_tally_keeps_their_count():
    for event_type, created_at in [("bounced", older(30)), ("bounced", older(90)), ("delivered", older(30)),
                                   ("bounced", younger(30)), ("delivered", NOW)]:
        WebhookEvent.objects.create(esp="Postmark", event_type=event_type, recipient="ada@example.org",
                                    created_at=created_at)

    report = prune(now=NOW)

    assert report.counts["webhook events"] == 3
    assert sorted(WebhookEvent.objects.values_list("event_type", "created_at")) == [
        ("bounced", younger(30)), ("delivered", NOW)]
    assert dict(WebhookTally.objects.values_list("event_type", "pruned")) == {"bounced": 2, "delivered": 1}

    WebhookEvent.objects.create(esp="Postmark", event_type="bounced", created_at=older(31))
    prune(now=NOW)
    assert WebhookTally.objects.get(esp="Postmark", event_type="bounced").pruned == 3


def test_finished_emails_past_their_period_go_with_their_matches_and_pending_ones_stay():
    ada = subscriber("ada@example.org", created_at=older(400))
    alert(ada)
    recent = [event() for _ in range(7)]
    sent_old = email(ada, "sent", older(90), recent[0:2])
    rejected_old = email(ada, "rejected", older(90), recent[2:3])
    failed_old = email(ada, "failed", older(200), recent[3:4])
    sent_young = email(ada, "sent", younger(90), recent[4:5])
    pending_old = email(ada, "pending", older(365), recent[5:6])
    schools = ada.subscriptions.get()
    undelivered = match(schools, recent[6], created_at=older(365))

    report = prune(now=NOW)

    assert report.counts["emails"] == 3
    assert set(Delivery.objects.values_list("pk", flat=True)) == {sent_young.pk, pending_old.pk}
    gone = [sent_old.pk, rejected_old.pk, failed_old.pk]
    # Their matches went with them: none is left undelivered, to be sent again.
    assert pairs() == [(schools.pk, e.pk) for e in recent[4:7]]
    assert not Match.objects.filter(delivery_id__in=gone).exists()
    assert pairs(sent_young.matches.all()) == [(schools.pk, recent[4].pk)]
    assert pairs(pending_old.matches.all()) == [(schools.pk, recent[5].pk)]
    assert pairs(Match.objects.filter(pk=undelivered.pk, delivery__isnull=True)) == [(schools.pk, recent[6].pk)]
    # The events themselves are recent: they stay.
    assert QuestionEvent.objects.count() == 7
    assert Subscriber.objects.filter(pk=ada.pk).exists()


def test_a_pruned_emails_matches_are_not_sent_again(settings):
    settings.RETAIN_EMAILS_DAYS = 1
    now = timezone.now()
    ada = subscriber("ada@example.org", created_at=now - dt.timedelta(days=30))
    alert(ada)
    delivered = email(ada, "sent", now - dt.timedelta(days=1, hours=1), [event(), event()])

    report = prune(now=now)

    assert report.counts["emails"] == 1
    assert not Delivery.objects.filter(pk=delivered.pk).exists()
    # What the next immediate run would send: nothing, as it was sent already.
    assert deliver_immediate() == []
    assert not Delivery.objects.exists() and mail.outbox == []


def test_matched_events_past_their_period_go_and_unmatched_ones_stay():
    old = event(created_at=older(91), matched_at=older(90))
    young = event(created_at=older(91), matched_at=younger(90))
    waiting = event(created_at=older(365), matched_at=None)

    report = prune(now=NOW)

    assert report.counts["matched events"] == 1
    assert set(QuestionEvent.objects.values_list("pk", flat=True)) == {young.pk, waiting.pk}
    # The archive keeps the question itself.
    assert Question.objects.filter(pk=old.question_id).exists()


def test_a_pending_email_keeps_what_it_carries_however_old_its_events():
    """Pending emails are the queue, never pruned: their matches must not go with old events either."""
    ada = subscriber("ada@example.org", created_at=older(400))
    alert(ada)
    old_event = event(created_at=older(200), matched_at=older(200))
    pending = email(ada, "pending", older(200), [old_event])

    prune(now=NOW)

    assert Delivery.objects.filter(pk=pending.pk, status="pending").exists()
    assert pairs(pending.matches.all()) == [(ada.subscriptions.get().pk, old_event.pk)]
    assert QuestionEvent.objects.filter(pk=old_event.pk).exists()


def test_a_match_waiting_for_its_email_keeps_its_events_however_old():
    """A match not yet emailed keeps the events it holds, and every event matched after its first: its email
    still tells of each."""
    ada = subscriber("ada@example.org", created_at=older(400))
    schools = alert(ada)
    before, first, between, last = (event(created_at=older(200), matched_at=older(200)) for _ in range(4))
    waiting = match(schools, first, last, created_at=older(200))

    report = prune(now=NOW)

    assert report.counts["matched events"] == 1
    assert set(QuestionEvent.objects.values_list("pk", flat=True)) == {first.pk, between.pk, last.pk}
    assert pairs(Match.objects.filter(pk=waiting.pk, delivery__isnull=True)) == [(schools.pk, first.pk),
                                                                                  (schools.pk, last.pk)]
    [sent] = deliver_immediate()
    assert Delivery.objects.get(pk=sent).payload["matches"] == 2
    [message] = mail.outbox
    assert {first.question.external_id, last.question.external_id} <= set(re.findall(r"r-\d+", message.body))
    assert before.question.external_id not in re.findall(r"r-\d+", message.body)


def test_matches_that_will_never_be_sent_go_once_their_events_would_have():
    ada = subscriber("ada@example.org", created_at=older(400))
    paused, resumed, active = alert(ada, "schools"), alert(ada, "heating"), alert(ada, "boilers")
    Subscription.objects.filter(pk=paused.pk).update(paused=True)
    Subscription.objects.filter(pk=resumed.pk).update(resumed_at=older(10))
    old, young = event(created_at=older(91), matched_at=older(91)), event(created_at=older(91), matched_at=older(89))
    never = [match(paused, old, created_at=older(91)), match(resumed, old, created_at=older(91))]
    kept = [match(paused, young, created_at=older(89)), match(active, old, created_at=older(91))]
    # Written while its alert was being deleted: the database does not check a match's alert.
    Match.of(Subscription.objects.order_by("pk").last().pk + 1, [young.pk]).save()

    report = prune(now=NOW)

    assert report.counts["matches never sent"] == 2 and report.counts["matches of deleted alerts"] == 1
    assert sorted(Match.objects.values_list("pk", flat=True)) == [m.pk for m in kept]
    assert not Match.objects.filter(pk__in=[m.pk for m in never]).exists()
    # The active alert's match still waits for its email, and keeps its event.
    assert report.counts["matched events"] == 0
    assert set(QuestionEvent.objects.values_list("pk", flat=True)) == {old.pk, young.pk}

    Subscription.objects.filter(pk=active.pk).update(paused=True)
    report = prune(now=NOW)

    assert report.counts["matches never sent"] == 1 and report.counts["matched events"] == 1
    assert pairs() == [(paused.pk, young.pk)]
    assert list(QuestionEvent.objects.values_list("pk", flat=True)) == [young.pk]


def test_unconfirmed_addresses_go_after_their_period_and_confirmed_ones_stay():
    stale = subscriber("stale@example.org", created_at=older(7), confirmed=False)
    alert(stale)
    email(stale, "sent", older(7))
    fresh = subscriber("fresh@example.org", created_at=younger(7), confirmed=False)
    loyal = subscriber("loyal@example.org", created_at=older(3650))
    alert(loyal)
    # Never confirmed, and bounced: kept until it can be erased to a digest, never simply forgotten.
    bounced_lately = subscriber("bounced@example.org", created_at=older(20), confirmed=False,
                                suppressed_at=younger(30), suppressed_reason="bounced")
    subscriber("Long.Gone@Example.org", created_at=older(60), confirmed=False, suppressed_at=older(30),
               suppressed_reason="bounced")

    report = prune(now=NOW)

    assert report.counts["unconfirmed subscribers"] == 1
    assert report.counts["erased addresses"] == 1
    assert set(Subscriber.objects.values_list("email", flat=True)) == {
        "fresh@example.org", "loyal@example.org", "bounced@example.org"}
    assert not Subscription.objects.filter(subscriber_id=stale.pk).exists()
    assert not Delivery.objects.filter(subscriber_id=stale.pk).exists()
    assert loyal.subscriptions.count() == 1
    assert not ErasedAddress.objects.filter(digest=digest("stale@example.org")).exists()
    assert ErasedAddress.objects.get(digest=digest("long.gone@example.org")).reason == "bounced"
    assert Subscriber.objects.get(pk=bounced_lately.pk).suppressed_reason == "bounced"
    assert Subscriber.objects.get(pk=fresh.pk).confirmed_at is None


@pytest.mark.parametrize("reason", ["bounced", "complained", "operator", "unsubscribed"])
def test_an_address_stopped_long_enough_is_erased_down_to_a_digest(reason):
    ada = subscriber("Ada@Example.org", created_at=older(400), suppressed_at=older(30), suppressed_reason=reason)
    alert(ada)
    email(ada, "sent", older(35), [event()])
    email(ada, "pending", older(35))
    recent = subscriber("bo@example.org", created_at=older(400), suppressed_at=younger(30), suppressed_reason=reason)

    report = prune(now=NOW)

    assert report.counts["erased addresses"] == 1
    assert list(Subscriber.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not Subscription.objects.filter(subscriber_id=ada.pk).exists()
    assert not Delivery.objects.filter(subscriber_id=ada.pk).exists()
    assert not Match.objects.exists()
    erased = ErasedAddress.objects.get()
    assert (erased.digest, erased.reason) == (digest("ada@example.org"), reason)
    assert "@" not in str(erased) and "ada" not in erased.digest


# Dry runs, batches and time limits.


def everything_old(count: int, now: dt.datetime) -> None:
    """`count` rows of each kind past its period at `now`, and a subscriber to keep."""
    owner = subscriber("keeper@example.org", created_at=older(400, now))
    alert(owner)
    problems_source = source()
    for n in range(count):
        SourceProblem.objects.create(source=problems_source, created_at=older(30, now), message="bad")
        WebhookEvent.objects.create(esp="Postmark", event_type="delivered", created_at=older(30, now))
        email(owner, "sent", older(90, now), [event(created_at=now, matched_at=now)])
        event(created_at=older(90, now), matched_at=older(90, now))
        subscriber(f"unconfirmed{n}@example.org", created_at=older(7, now), confirmed=False)
        gone = subscriber(f"gone{n}@example.org", created_at=older(400, now), suppressed_at=older(30, now),
                          suppressed_reason="bounced")
        alert(gone)


def counts() -> dict[str, int]:
    return {"problems": SourceProblem.objects.count(), "webhooks": WebhookEvent.objects.count(),
            "emails": Delivery.objects.count(), "matches": Match.objects.events(),
            "events": QuestionEvent.objects.count(), "subscribers": Subscriber.objects.count(),
            "erased": ErasedAddress.objects.count()}


def test_a_dry_run_removes_nothing_and_says_what_a_run_would():
    everything_old(2, timezone.now())
    before = counts()
    out = StringIO()

    call_command("prune", "--dry-run", stdout=out)

    assert counts() == before
    assert out.getvalue().strip() == ("would remove: 2 source problems, 2 webhook events, 2 emails, 2 matched events, "
                                      "2 unconfirmed subscribers, 2 erased addresses")

    out = StringIO()
    call_command("prune", stdout=out)

    assert out.getvalue().strip() == ("removed: 2 source problems, 2 webhook events, 2 emails, 2 matched events, "
                                      "2 unconfirmed subscribers, 2 erased addresses")
    assert counts() == {"problems": 0, "webhooks": 0, "emails": 0, "matches": 0, "events": 2, "subscribers": 1,
                        "erased": 2}
    out = StringIO()
    call_command("prune", "--dry-run", stdout=out)
    assert out.getvalue().strip() == "would remove: nothing"


IN_LIST = re.compile(r"\bIN \(([^()]*)\)")
PRUNED_TABLES = ["questions_sourceproblem", "alerts_webhookevent", "alerts_delivery", "questions_questionevent",
                 "alerts_subscriber"]


def test_every_delete_is_a_bounded_batch_of_ids(settings):
    settings.RETENTION_BATCH = 2
    everything_old(5, NOW)

    with CaptureQueriesContext(connection) as queries:
        report = prune(now=NOW)

    assert report.finished
    assert +report.counts == {"source problems": 5, "webhook events": 5, "emails": 5, "matched events": 5,
                              "unconfirmed subscribers": 5, "erased addresses": 5}
    assert counts() == {"problems": 0, "webhooks": 0, "emails": 0, "matches": 0, "events": 5, "subscribers": 1,
                        "erased": 5}
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("DELETE")]
    assert deletes
    for sql in deletes:
        lists = IN_LIST.findall(sql)
        assert lists and "SELECT" not in sql.upper(), f"a DELETE not bounded by a list of ids: {sql}"
        for ids in lists:
            assert re.fullmatch(r"\s*\d+(\s*,\s*\d+)*\s*", ids), sql
            assert len(ids.split(",")) <= 2, sql
    for table in PRUNED_TABLES:
        own = [sql for sql in deletes if sql.split(" WHERE ")[0].endswith(f'"{table}"')]
        assert len(own) >= 3, f"{table}: {len(own)} DELETE statement(s) for 5 rows in batches of 2"


def test_a_run_out_of_time_stops_between_batches_and_the_next_goes_on(settings):
    settings.RETENTION_BATCH = 2
    problems_source = source()
    for _ in range(5):
        SourceProblem.objects.create(source=problems_source, created_at=older(30), message="bad")
    WebhookEvent.objects.create(esp="Postmark", event_type="delivered", created_at=older(30))

    def slow_deletes(execute, sql, params, many, context):
        if sql.lstrip().upper().startswith("DELETE"):
            time.sleep(0.3)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(slow_deletes):
        first = prune(now=NOW, seconds=0.5)

    removed = 5 - SourceProblem.objects.count()
    assert not first.finished
    assert removed in (2, 4), f"{removed} removed: not a whole number of batches, or no time limit"
    assert first.counts["source problems"] == removed
    assert str(first).endswith("(out of time: the next run goes on)")
    # What comes after the unfinished kind waits for the next run.
    assert WebhookEvent.objects.count() == 1 and "webhook events" not in first.counts
    problems_source.refresh_from_db()
    assert problems_source.pruned_problems == removed

    second = prune(now=NOW)

    assert second.finished and second.counts["source problems"] == 5 - removed
    assert not SourceProblem.objects.exists() and not WebhookEvent.objects.exists()
    problems_source.refresh_from_db()
    assert problems_source.pruned_problems == 5


# What is left of an erased address.


def sign_up_again(address: str) -> None:
    sign_up(address, "apprenticeships", frequency="immediate", alert_on="both")


@pytest.mark.parametrize("reason", ["bounced", "complained"])
def test_an_erased_address_that_bounced_or_complained_is_never_mailed_again(reason):
    now = timezone.now()
    gone = subscriber("ada@example.org", created_at=now - dt.timedelta(days=400),
                      suppressed_at=now - dt.timedelta(days=31), suppressed_reason=reason)
    alert(gone)
    prune(now=now)
    assert not Subscriber.objects.exists()

    sign_up_again(" ADA@example.org ")

    back = Subscriber.objects.get()
    assert back.email.lower() == "ada@example.org"
    assert back.suppressed_reason == reason and back.suppressed_at is not None
    assert not Delivery.objects.exists() and mail.outbox == []
    # Asking again changes nothing, and the digest stays for the next erasure.
    sign_up_again("ada@example.org")
    assert not Delivery.objects.exists() and mail.outbox == []
    assert ErasedAddress.objects.get(digest=digest("ada@example.org")).reason == reason


def test_an_erased_address_that_only_unsubscribed_can_sign_up_again():
    now = timezone.now()
    gone = subscriber("bo@example.org", created_at=now - dt.timedelta(days=400),
                      suppressed_at=now - dt.timedelta(days=31), suppressed_reason="unsubscribed")
    alert(gone)
    prune(now=now)
    assert ErasedAddress.objects.get().reason == "unsubscribed"

    sign_up_again("Bo@example.org")

    back = Subscriber.objects.get()
    assert back.suppressed_at is None and back.suppressed_reason == "" and back.confirmed_at is None
    assert Delivery.objects.get(subscriber=back).kind == "confirmation"
    assert [m.to for m in mail.outbox] == [["Bo@example.org"]]
    assert mail.outbox[0].subject == "Confirm your alert for written questions"
    assert not ErasedAddress.objects.exists()


@pytest.fixture
def webhooks(postmark, settings):
    """Email through Postmark (a local stand-in), whose tracking webhook takes a shared secret."""
    settings.ANYMAIL = settings.ANYMAIL | {"WEBHOOK_SECRET": "hook:s3cret"}
    return postmark


@pytest.mark.parametrize(("payload", "reason"), [(POSTMARK_BOUNCE, "bounced"), (POSTMARK_COMPLAINT, "complained")])
def test_a_bounce_for_an_address_we_do_not_hold_blocks_a_later_signup(client, webhooks, payload, reason):
    response = post_webhook(client, "/anymail/postmark/tracking/", payload | {"Email": "Cy@Example.org"})

    assert response.status_code == 200
    assert not Subscriber.objects.exists()
    assert ErasedAddress.objects.get(digest=digest("cy@example.org")).reason == reason

    sign_up_again("cy@example.org")

    assert Subscriber.objects.get().suppressed_reason == reason
    assert not Delivery.objects.exists() and webhooks.messages == []


def test_an_unsubscribe_for_an_address_we_do_not_hold_is_no_reason_to_block_it(client, webhooks):
    unsubscribe = {"RecordType": "SubscriptionChange", "MessageID": "x", "ServerID": 1, "MessageStream": "outbound",
                   "ChangedAt": "2026-11-27T10:00:00Z", "Recipient": "di@example.org", "Origin": "Recipient",
                   "SuppressSending": True, "SuppressionReason": "ManualSuppression", "Tag": "", "Metadata": {}}

    assert post_webhook(client, "/anymail/postmark/tracking/", unsubscribe).status_code == 200
    assert not ErasedAddress.objects.exists()
    sign_up_again("di@example.org")

    assert Subscriber.objects.get().suppressed_at is None
    assert [m["To"] for m in webhooks.messages] == ["di@example.org"]


# An address that asked for a link just now keeps it, however long ago it first came.


CONFIRM_LINK = re.compile(r"https?://[^/\s]+(/alerts/confirm/[^/\s]+/)")


def the_confirmation_link() -> str:
    [message] = mail.outbox
    return CONFIRM_LINK.search(message.body).group(1)


def test_an_unconfirmed_address_that_asked_again_just_now_can_still_confirm(client):
    now = timezone.now()
    subscriber("ed@example.org", created_at=now - dt.timedelta(days=10), confirmed=False)
    sign_up_again("ed@example.org")
    link = the_confirmation_link()

    prune(now=now)

    assert Subscriber.objects.filter(email="ed@example.org").exists()
    response = client.post(link)
    assert response.status_code == 302 and "/alerts/manage/" in response["Location"]


def test_an_address_that_unsubscribed_long_ago_and_is_coming_back_can_still_confirm(client):
    now = timezone.now()
    fay = subscriber("fay@example.org", created_at=now - dt.timedelta(days=400),
                     suppressed_at=now - dt.timedelta(days=40), suppressed_reason="unsubscribed")
    alert(fay, query="apprenticeships")
    sign_up_again("fay@example.org")
    link = the_confirmation_link()

    prune(now=now)

    assert Subscriber.objects.filter(email="fay@example.org").exists()
    response = client.post(link)
    assert response.status_code == 302 and "/alerts/manage/" in response["Location"]


def test_the_text_of_sent_emails_goes_sooner_than_their_record():
    ada = subscriber("ada@example.org", created_at=older(60))
    alert(ada)
    old, recent, waiting = (email(ada, "sent", older(15)), email(ada, "sent", older(13)),
                            email(ada, "pending", older(15)))
    Delivery.objects.update(subject="Daily digest", body_text="the questions", body_html="<p>the questions</p>")

    report = prune(now=NOW)

    assert report.counts["email texts"] == 1
    old.refresh_from_db()
    assert (old.subject, old.body_text, old.body_html, old.status) == ("Daily digest", "", "", "sent")
    assert Delivery.objects.get(pk=recent.pk).body_text == "the questions"
    # A pending email is the queue: it keeps what it is to send, however old.
    assert Delivery.objects.get(pk=waiting.pk).body_html == "<p>the questions</p>"
