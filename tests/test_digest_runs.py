"""Digest runs as records, the email stored when its row is made, and senders that wait out an ESP outage
together: what a subscriber receives and what an operator sees."""

from __future__ import annotations

import datetime as dt
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core import mail
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.utils import timezone

from alerts import canary, digests
from alerts.delivery import deliver_immediate, fresh_statistics, queue_delivery, resend, send_due
from alerts.models import Delivery, DigestRun, EspState, Match, Subscriber, Subscription
from alerts.subscribing import set_paused
from questions.models import Question, QuestionEvent
from tests.conftest import FIXTURES, wait_until
from tests.factories import match

pytestmark = pytest.mark.django_db(transaction=True)
LONDON = ZoneInfo("Europe/London")


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=LONDON)


@pytest.fixture
def archive():
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), stdout=StringIO())


def alert(frequency: str, email: str = "ada@example.org", confirmed: str = "2026-10-01 12:00") -> Subscription:
    subscriber, _ = Subscriber.objects.get_or_create(email=email, defaults={"confirmed_at": at(confirmed)})
    return Subscription.objects.create(subscriber=subscriber, query="police", canonical_query="police",
                                       frequency=frequency, confirmed_at=at(confirmed))


def matched(subscription: Subscription, when: str, index: int = 0) -> Question:
    """A match found at `when` (local time), of the latest event of the index-th question of the archive."""
    question = Question.objects.order_by("pk")[index]
    event = QuestionEvent.objects.filter(question=question).latest("pk")
    match(subscription, event, created_at=at(when))
    return question


def digests_to(address: str) -> list:
    return [m for m in mail.outbox if m.to == [address]]


@pytest.mark.parametrize(("frequency", "now", "end", "start"), [
    ("daily", "2026-12-07 06:59", "2026-12-06 07:00", "2026-12-05 07:00"),
    ("daily", "2026-12-07 07:00", "2026-12-07 07:00", "2026-12-06 07:00"),
    # The clock went back an hour on 25 October: the digest still comes at 07:00 London time.
    ("daily", "2026-10-25 08:00", "2026-10-25 07:00", "2026-10-24 07:00"),
    ("weekly", "2026-11-16 08:00", "2026-11-16 07:00", "2026-11-09 07:00"),
    ("weekly", "2026-11-15 23:00", "2026-11-09 07:00", "2026-11-02 07:00"),
    ("monthly", "2026-11-01 07:30", "2026-11-01 07:00", "2026-10-01 07:00"),
    ("monthly", "2026-11-01 06:30", "2026-10-01 07:00", "2026-09-01 07:00"),
    ("monthly", "2027-01-15 12:00", "2027-01-01 07:00", "2026-12-01 07:00"),
])
def test_each_frequency_ends_its_periods_at_the_digest_hour_in_london(frequency, now, end, start):
    last = digests.last_end(frequency, at(now))
    assert last == at(end) and digests.end_before(frequency, last) == at(start)
    assert timezone.localtime(last, LONDON).hour == 7


def test_a_missed_weekly_run_is_made_when_the_stack_is_back_and_sends_the_question_once(archive):
    """The operator's bad week: confirmed on Tuesday 3 November, a question that day, the stack down from
    Monday 9 November 07:00 until Monday 16 November 08:00."""
    weekly = alert("weekly", confirmed="2026-11-03 09:00")
    question = matched(weekly, "2026-11-03 10:00")
    first = digests.start_due_runs(at("2026-11-02 07:05"))
    assert [r.period_end for r in first if r.frequency == "weekly"] == [at("2026-11-02 07:00")]
    assert not mail.outbox  # nothing matched before that run's period ended

    runs = digests.start_due_runs(at("2026-11-16 08:00"))

    assert [(r.period_start, r.period_end) for r in runs if r.frequency == "weekly"] == [
        (at("2026-11-02 07:00"), at("2026-11-09 07:00")), (at("2026-11-09 07:00"), at("2026-11-16 07:00"))]
    [email] = digests_to("ada@example.org")
    assert email.subject == "Weekly digest, 2 November to 9 November 2026: 1 answer matches ‘police’"
    assert question.title in email.body
    # Beat's next tick, and the next week's run: nothing is sent twice.
    digests.start_due_runs(at("2026-11-16 08:05"))
    digests.start_due_runs(at("2026-11-23 07:05"))
    assert len(digests_to("ada@example.org")) == 1
    assert DigestRun.objects.filter(frequency="weekly").count() == 4
    assert set(DigestRun.objects.values_list("emails", flat=True)) == {0, 1}


def test_a_monthly_digest_across_a_month_end_and_the_clock_change(archive):
    monthly = alert("monthly")
    october = [matched(monthly, "2026-10-20 12:00", 0), matched(monthly, "2026-10-28 12:00", 1)]
    november = matched(monthly, "2026-11-03 12:00", 2)
    digests.start_due_runs(at("2026-10-01 07:05"))  # the run before: nothing yet

    digests.start_due_runs(at("2026-11-01 07:05"))
    [first] = digests_to("ada@example.org")
    # The latest event of each sample question is its answer.
    assert first.subject == "Monthly digest, October 2026: 2 answers match ‘police’"
    assert all(q.title in first.body for q in october) and november.title not in first.body

    digests.start_due_runs(at("2026-12-01 07:05"))
    second = digests_to("ada@example.org")[1]
    assert second.subject == "Monthly digest, November 2026: 1 answer matches ‘police’"
    assert november.title in second.body
    assert len(digests_to("ada@example.org")) == 2


def test_a_new_install_makes_only_the_latest_run_and_catches_up_with_a_bound(archive):
    daily = alert("daily")
    question = matched(daily, "2026-01-05 12:00")
    assert len(digests.start_due_runs(at("2026-02-01 08:00"))) == 3  # daily, weekly, monthly: one each
    [email] = digests_to("ada@example.org")
    assert question.title in email.body
    # Down for three months: at most CATCH_UP_MAX daily runs are made, each with its own period.
    made = digests.start_due_runs(at("2026-05-01 08:00"))
    daily_runs = [r for r in made if r.frequency == "daily"]
    assert len(daily_runs) == digests.CATCH_UP_MAX
    assert daily_runs[-1].period_end == at("2026-05-01 07:00")


def test_a_pause_drops_what_was_found_before_it_and_only_that(archive):
    daily = alert("daily")
    before = matched(daily, "2026-12-01 09:00", 0)
    set_paused(daily, True)
    set_paused(daily, False)
    Subscription.objects.filter(pk=daily.pk).update(resumed_at=at("2026-12-01 10:00"))
    after = matched(daily, "2026-12-01 11:00", 1)

    digests.start_due_runs(at("2026-12-02 07:05"))

    [email] = digests_to("ada@example.org")
    assert after.get_absolute_url() in email.body and before.get_absolute_url() not in email.body


def test_every_way_of_resuming_sets_when_and_other_saves_ask_nothing(archive, monkeypatch,
                                                                        django_assert_num_queries):
    daily = alert("daily")
    set_paused(daily, True)
    monkeypatch.setattr(timezone, "now", lambda: at("2026-12-03 10:00"))
    set_paused(daily, False)  # the manage page
    assert Subscription.objects.get(pk=daily.pk).resumed_at == at("2026-12-03 10:00")

    Subscription.objects.filter(pk=daily.pk).update(paused=True)
    monkeypatch.setattr(timezone, "now", lambda: at("2026-12-04 10:00"))
    again = Subscription.objects.get(pk=daily.pk)
    again.paused = False
    again.save()  # the admin saves every field
    assert Subscription.objects.get(pk=daily.pk).resumed_at == at("2026-12-04 10:00")

    again.label = "Police"
    with django_assert_num_queries(1):  # no question of a pause for a save that cannot end one
        again.save(update_fields=["label"])
    again.save()  # not paused before: not a resume
    assert Subscription.objects.get(pk=daily.pk).resumed_at == at("2026-12-04 10:00")


def test_each_email_is_stored_as_sent_and_a_retry_sends_the_same_bytes(archive, postmark):
    stub = postmark
    stub.failures_left = 1
    immediate = alert("immediate")
    question = matched(immediate, "2026-12-01 09:00")

    deliver_immediate()  # the first try fails at the ESP
    delivery = Delivery.objects.get()
    assert delivery.status == "pending" and delivery.rendered_at and question.title in delivery.body_text
    stored = (delivery.subject, delivery.body_text, delivery.body_html, delivery.headers)
    # What the email was made from changes before the retry: the retry still sends what was stored.
    Question.objects.filter(pk=question.pk).update(heading="Renamed since")
    EspState.objects.update(next_probe_at=timezone.now())
    send_due()

    [sent] = stub.messages
    assert (sent["Subject"], sent["TextBody"], sent["HtmlBody"]) == stored[:3]
    assert {h["Name"]: h["Value"] for h in sent["Headers"]}["List-Unsubscribe"] == stored[3]["List-Unsubscribe"]
    assert "Renamed since" not in sent["TextBody"]


def test_the_admin_shows_the_email_as_it_was_sent(archive, admin_client: Client):
    immediate = alert("immediate")
    question = matched(immediate, "2026-12-01 09:00")
    deliver_immediate()
    delivery = Delivery.objects.get()

    page = admin_client.get(f"/admin/alerts/delivery/{delivery.pk}/change/").content.decode()

    assert "The email as sent" in page and delivery.subject in page
    assert question.title in page and "List-Unsubscribe:" in page
    # The HTML is shown in a frame that can run nothing: escaped into srcdoc, never inline.
    assert '<iframe sandbox="" srcdoc="' in page and "&lt;html" in page.lower()


def test_an_email_that_cannot_be_rendered_fails_at_once_alone_and_loudly(archive, monkeypatch, caplog):
    from alerts import emails

    alert("immediate", email="ada@example.org")
    alert("immediate", email="bo@example.org")
    for subscription in Subscription.objects.all():
        matched(subscription, "2026-12-01 09:00")
    real = emails._alert

    def broken_for_bo(delivery, hits):
        if delivery.subscriber.email == "bo@example.org":
            raise ValueError("a template that cannot render")
        return real(delivery, hits)

    monkeypatch.setitem(emails.COMPOSERS, "immediate", broken_for_bo)
    deliver_immediate()

    bo = Delivery.objects.get(subscriber__email="bo@example.org")
    assert bo.status == "failed" and bo.attempts == 0 and "a template that cannot render" in bo.error
    assert [m.to for m in mail.outbox] == [["ada@example.org"]]
    assert any(r.levelname == "ERROR" and r.getMessage() == "email not rendered" for r in caplog.records)
    # The operator fixes it and resends: made again, then sent.
    monkeypatch.setitem(emails.COMPOSERS, "immediate", real)
    assert resend([bo.pk]) == 1
    bo.refresh_from_db()
    assert bo.status == "sent" and mail.outbox[-1].to == ["bo@example.org"]


def test_confirmation_emails_are_stored_too(archive):
    subscriber = Subscriber.objects.create(email="cy@example.org")
    delivery = queue_delivery(subscriber, Delivery.Kind.MANAGE_LINK)
    delivery.refresh_from_db()
    assert delivery.subject == "Your written question alerts" and "/alerts/manage/" in delivery.body_text
    assert mail.outbox[-1].body == delivery.body_text


def test_while_the_esp_is_down_senders_hold_back_and_one_probe_brings_everything(archive, postmark, settings):
    stub = postmark
    stub.failures_left = 10**6
    for n in range(30):
        matched(alert("immediate", email=f"reader{n}@example.org"), "2026-12-01 09:00")
    settings.DELIVERY_CHUNK_SIZE = 10

    deliver_immediate()  # the first chunk meets the outage: the rest are not even tried
    state = EspState.objects.get()
    assert state.down_since and state.failures == 1 and "500" in state.last_error
    tried = stub.requests
    assert send_due() == {} and stub.requests == tried  # too soon for a probe: nothing claimed

    EspState.objects.update(next_probe_at=timezone.now())
    send_due()  # one probe, of one email, fails: the next probe waits longer
    state = EspState.objects.get()
    assert stub.requests == tried + 1 and state.failures == 2
    assert state.next_probe_at - timezone.now() > dt.timedelta(seconds=settings.ESP_PROBE_SECONDS * 1.5)
    assert Delivery.objects.filter(status="pending").count() == 30

    stub.failures_left = 0
    EspState.objects.update(next_probe_at=timezone.now())
    send_due()  # the probe goes through, then everything waiting goes at once

    assert len(stub.messages) == 30 == len(set(stub.to()))
    assert Delivery.objects.filter(status="sent").count() == 30
    assert EspState.objects.get().down_since is None


def test_an_esp_outage_fails_the_delivery_check_within_a_minute_a_refused_key_at_once_and_both_clear_at_once(
        archive, postmark, settings, client, monkeypatch, caplog):
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    stub = postmark
    stub.failures_left, stub.failure_status = 10**6, 503
    matched(alert("immediate"), "2026-12-01 09:00")

    def check() -> tuple[int, list[str]]:
        return client.get("/healthz?checks=delivery").status_code, canary.delivery_problems()

    deliver_immediate()  # the ESP answers 503
    assert check() == (200, [])  # a blip is not yet an outage
    metrics = client.get("/metrics").content.decode()
    assert 'wqa_esp_errors_total{error="server_error",outcome="retry"}' in metrics
    a_minute_on = timezone.now() + dt.timedelta(seconds=settings.ESP_DOWN_ALERT_SECONDS + 1)
    monkeypatch.setattr(timezone, "now", lambda: a_minute_on)
    status, [problem] = check()
    assert status == 503 and problem.startswith("the ESP (postmark) has failed since") and "server_error" in problem

    monkeypatch.undo()
    stub.failure_status = 401  # the key was revoked meanwhile: the next probe says so
    EspState.objects.update(next_probe_at=timezone.now(), down_since=timezone.now())
    with caplog.at_level("ERROR", logger="alerts.delivery"):
        send_due()
        EspState.objects.update(next_probe_at=timezone.now())
        send_due()  # and again: said once, not at every probe
    status, [problem] = check()
    assert status == 503 and "refuses our credentials or account" in problem  # at once, not after a minute
    assert [r.message for r in caplog.records if r.levelname == "ERROR" and r.name == "alerts.delivery"] == [
        "the ESP refuses our credentials or account; nothing is sent until that is put right"]
    assert 'wqa_esp_errors_total{error="auth",outcome="retry"}' in client.get("/metrics").content.decode()

    stub.failures_left = 0
    EspState.objects.update(next_probe_at=timezone.now())
    send_due()  # the first probe it answers ends the outage, and the check is green at once
    assert check() == (200, []) and Delivery.objects.get().status == "sent"


def test_late_and_missed_runs_show_on_health_and_metrics(archive, settings, client):
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1"]
    alert("daily")
    now = timezone.now()
    digests.start_due_runs(now - dt.timedelta(days=2))
    assert digests.late_runs(now) and "has not run" in digests.late_runs(now)[0]

    response = client.get("/healthz?checks=delivery")
    metrics = client.get("/metrics").content.decode()

    assert response.status_code == 503 and response.json()["checks"]["delivery"] == "failing"
    late = len(digests.late_runs())
    assert late >= 1 and f"wqa_digest_runs_late {late:.1f}" in metrics
    digests.start_due_runs(now)
    assert digests.late_runs(now) == []


def test_a_run_waits_for_matches_still_being_committed_when_its_period_ends(archive):
    daily = alert("daily")
    matched(daily, "2026-12-02 06:59")
    assert all(r.period_end < at("2026-12-02 07:00") for r in digests.start_due_runs(at("2026-12-02 07:01")))
    assert [r.period_end for r in digests.start_due_runs(at("2026-12-02 07:02")) if r.frequency == "daily"] == [
        at("2026-12-02 07:00")]
    assert len(digests_to("ada@example.org")) == 1


def test_missed_runs_of_one_frequency_are_made_one_at_a_time_oldest_first(archive):
    daily = alert("daily")
    digests.start_due_runs(at("2026-12-01 07:05"))
    tuesday, wednesday = matched(daily, "2026-12-01 12:00", 0), matched(daily, "2026-12-02 12:00", 1)
    dispatched = []

    digests.start_due_runs(at("2026-12-03 08:00"), build=dispatched.append)
    # Workers would make the runs; only the oldest of each frequency is handed out until it is made.
    assert [(r.frequency, r.period_end) for r in dispatched] == [("daily", at("2026-12-02 07:00"))]
    assert digests.start_due_runs(at("2026-12-03 08:01"), build=dispatched.append) == []

    # The worker it was handed to never made it: once its lease has run out, it is made here and now, then
    # the next.
    digests.start_due_runs(at("2026-12-03 08:10"))
    first, second = digests_to("ada@example.org")
    assert tuesday.get_absolute_url() in first.body and wednesday.get_absolute_url() not in first.body
    assert wednesday.get_absolute_url() in second.body and tuesday.get_absolute_url() not in second.body


def one_email_for_two_alerts_waiting(stub) -> tuple[Subscriber, Subscription, Subscription]:
    """Ada's email for her alerts on police and prisons, made, then failed by the ESP: it waits in the queue."""
    stub.failures_left = 1
    ada = Subscriber.objects.create(email="ada@example.org", confirmed_at=at("2026-10-01 12:00"))
    police, prisons = (Subscription.objects.create(subscriber=ada, query=q, canonical_query=q,
                                                   confirmed_at=ada.confirmed_at) for q in ("police", "prisons"))
    matched(police, "2026-12-01 09:00", 0)
    matched(prisons, "2026-12-01 09:00", 1)
    deliver_immediate()
    return ada, police, prisons


def test_an_email_waiting_in_the_queue_leaves_out_an_alert_stopped_meanwhile(archive, postmark):
    stub = postmark
    ada, kept, stopped = one_email_for_two_alerts_waiting(stub)
    assert "prisons" in Delivery.objects.get().body_text

    stopped.delete()  # "stop this alert" while the email waits
    EspState.objects.update(next_probe_at=timezone.now())
    send_due()

    [sent] = stub.messages
    assert "police" in sent["TextBody"] and "prisons" not in sent["TextBody"]
    kept.delete()  # and an email all of whose alerts stopped is not sent at all
    matched(Subscription.objects.create(subscriber=ada, query="tax", canonical_query="tax",
                                        confirmed_at=ada.confirmed_at), "2026-12-01 10:00", 2)
    stub.failures_left = 1
    deliver_immediate()
    Subscription.objects.filter(query="tax").delete()
    EspState.objects.update(next_probe_at=timezone.now())
    send_due()
    assert len(stub.messages) == 1
    assert Delivery.objects.filter(status="failed", error__contains="carries no matches").count() == 1


def test_a_probe_the_esp_answers_for_that_email_alone_still_ends_the_outage(archive, postmark):
    stub = postmark
    stub.failures_left = 1
    for n in range(3):
        matched(alert("immediate", email=f"reader{n}@example.org"), "2026-12-01 09:00")
    stub.inactive = {"reader0@example.org"}  # the probe's email: refused for that address only (406)
    deliver_immediate()
    assert EspState.objects.get().down_since

    EspState.objects.update(next_probe_at=timezone.now())
    send_due()

    assert EspState.objects.get().down_since is None
    assert sorted(stub.to()) == ["reader1@example.org", "reader2@example.org"]
    assert Delivery.objects.get(to_email="reader0@example.org").status == "rejected"


def test_an_alert_paused_while_its_email_waits_is_left_out_of_it(archive, postmark):
    stub = postmark
    _, _, paused = one_email_for_two_alerts_waiting(stub)
    set_paused(paused, True)  # "we won't email you about it" while the email waits out the ESP
    EspState.objects.update(next_probe_at=timezone.now())
    send_due()

    [sent] = stub.messages
    assert "police" in sent["TextBody"] and "prisons" not in sent["TextBody"]


def test_a_postmark_answer_that_is_not_one_result_per_message_sends_nothing_again_at_once(archive, postmark):
    from werkzeug.wrappers import Response

    stub = postmark
    for n in range(3):
        matched(alert("immediate", email=f"reader{n}@example.org"), "2026-12-01 09:00")
    calls = []

    def odd_answer(request):
        calls.append(request.path)
        return Response('{"Message": "OK"}', status=200, content_type="application/json")

    stub.handler = odd_answer
    deliver_immediate()

    # The batch may have been taken: no message is sent again one by one, each waits for a later try.
    assert calls == [calls[0]] and calls[0].endswith("/batch")
    assert set(Delivery.objects.values_list("status", flat=True)) == {"pending"}
    assert all("Postmark answered" in d.error for d in Delivery.objects.all())


def believed_rows(table: str) -> float:
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = %s", [table])
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)  # the server counts a table's rows as each transaction commits
def test_a_run_after_a_purge_first_refreshes_statistics_that_say_the_tables_are_empty(archive):
    event = QuestionEvent.objects.first()
    subscriber = Subscriber.objects.create(email="ada@example.org", confirmed_at=at("2026-10-01 12:00"))

    def fill() -> None:
        alerts = Subscription.objects.bulk_create(
            Subscription(subscriber=subscriber, query=f"police {n}", canonical_query=f"police {n}", frequency="daily",
                         confirmed_at=at("2026-10-01 12:00")) for n in range(12_000))
        Match.objects.bulk_create(Match.of(a.pk, [event.pk], created_at=at("2026-12-01 09:00")) for a in alerts)

    # A purge, the statistics taken while the tables are empty, and the tables full again; autovacuum kept
    # away, as a busy server's can be for a while.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE alerts_match SET (autovacuum_enabled = false); "
                       "ALTER TABLE alerts_subscription SET (autovacuum_enabled = false)")
    fill()
    Match.objects.all().delete()
    Subscription.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE alerts_match; ANALYZE alerts_subscription")
    fill()
    assert believed_rows("alerts_match") == 0

    def counted() -> bool:
        with connection.cursor() as cursor:  # the counts the server keeps reach its view within a second or so
            cursor.execute("SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'alerts_match'")
            return cursor.fetchone()[0] >= 12_000

    wait_until(counted, timeout=10)
    digests.start_due_runs(at("2026-12-02 07:05"))
    assert believed_rows("alerts_match") > 10_000 and believed_rows("alerts_subscription") > 10_000
    [email] = digests_to("ada@example.org")
    assert Delivery.objects.get().payload["matches"] == 12_000
    assert fresh_statistics() == []  # believed right now: nothing analysed again
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE alerts_match RESET (autovacuum_enabled); "
                       "ALTER TABLE alerts_subscription RESET (autovacuum_enabled)")
