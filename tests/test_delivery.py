"""Alert emails: what they contain, when they go, to whom, and what happens when the ESP fails."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.utils import timezone

from alerts.delivery import deliver_immediate, send_due
from alerts.models import Delivery, EspState, Match, Subscriber, Subscription
from questions.search import parse
from tests.conftest import POSTMARK_BOUNCE, POSTMARK_COMPLAINT, post_webhook, run_digest
from tests.factories import match_everything, pairs, subscribe

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_immediate_alert_lists_the_matching_questions_with_headers_and_links(archive, settings):
    settings.SITE_URL = "https://alerts.example.org"
    subscribe()
    match_everything()

    deliver_immediate()

    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.org"]
    # The sample's questions were tabled and answered: each is counted once, as what last happened to it.
    assert message.subject == "5 answers match ‘facial recognition’"
    html = message.alternatives[0][0]
    assert html.count("Police: Artificial Intelligence") >= 3 and "Bedfordshire" in html
    assert "<mark>facial recognition</mark>" in html
    assert "Asked by:</strong> Clive Lewis (Labour - Norwich South)" in html
    assert "Question to the</strong> Home Office" in html
    assert "Answered by</strong> Diana Johnson - Minister of State (Home Office)" in html
    assert ">Answered<" in html  # tabled and answered together are listed once, as answered
    assert "Read the full answer" in html
    headers = message.extra_headers
    assert re.fullmatch(r"<https://alerts\.example\.org/unsubscribe/[^>]+/>", headers["List-Unsubscribe"])
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Id"] == "Written question alerts <alerts.alerts.example.org>"
    assert headers["Auto-Submitted"] == "auto-generated"
    assert "https://alerts.example.org/alerts/manage/" in message.body
    assert "Stop this alert: https://alerts.example.org/unsubscribe/" in message.body
    assert "Police: Artificial Intelligence" in message.body
    # The sample questions have no UIN: each still links to its own page, in both parts.
    assert re.search(r'<a href="https://alerts\.example\.org/questions/seed-\d+/"[^>]*>Police', html)
    assert html.count('href="https://alerts.example.org/"') == 0
    assert message.body.count("Read it: https://alerts.example.org/questions/seed-") == 5
    delivery = Delivery.objects.get(kind="immediate")
    assert delivery.status == "sent" and pairs(delivery.matches.all()) == pairs()
    assert abs(Subscription.objects.get().last_sent_at - delivery.sent_at).total_seconds() < 5

    deliver_immediate()
    assert len(mail.outbox) == 1  # nothing is sent twice


def test_one_email_per_subscriber_grouped_by_search(archive):
    subscribe(query='"facial recognition"')
    subscribe(query="taser")
    subscribe(email="bo@example.org", query="palantir")
    match_everything()

    deliver_immediate()

    by_recipient = {m.to[0]: m for m in mail.outbox}
    assert set(by_recipient) == {"ada@example.org", "bo@example.org"}
    ada = by_recipient["ada@example.org"]
    assert "2 of your alerts" in ada.subject
    assert ada.body.index('"facial recognition"') < ada.body.index("taser\n")


def test_digests_go_at_their_time_and_empty_ones_are_not_sent(archive):
    subscribe(frequency="daily")
    subscribe(email="bo@example.org", query="taser", frequency="weekly")
    match_everything()

    assert deliver_immediate() == [] and not mail.outbox
    run_digest("daily")
    assert [m.to for m in mail.outbox] == [["ada@example.org"]]
    assert mail.outbox[0].subject.startswith("Daily digest, ")
    run_digest("daily")
    assert len(mail.outbox) == 1
    run_digest("weekly")
    assert mail.outbox[-1].to == ["bo@example.org"] and mail.outbox[-1].subject.startswith("Weekly digest, ")


@pytest.mark.parametrize("who", ["suppressed", "unconfirmed subscriber", "unconfirmed alert", "paused"])
def test_nothing_goes_to_suppressed_unconfirmed_or_paused(archive, who):
    subscription = subscribe()
    subscriber = subscription.subscriber
    if who == "suppressed":
        subscriber.suppress("bounced")
    elif who == "unconfirmed subscriber":
        Subscriber.objects.filter(pk=subscriber.pk).update(confirmed_at=None)
    elif who == "unconfirmed alert":
        Subscription.objects.filter(pk=subscription.pk).update(confirmed_at=None)
    else:
        Subscription.objects.filter(pk=subscription.pk).update(paused=True)
    match_everything()

    deliver_immediate()
    run_digest("daily")

    assert not mail.outbox and not Delivery.objects.exists()


def test_a_suppression_after_the_email_was_queued_still_stops_it(archive):
    subscription = subscribe()
    match_everything()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("alerts.delivery.kick", lambda count=1: None)
        [delivery_id] = deliver_immediate()
    subscription.subscriber.suppress("complained")

    send_due()

    delivery = Delivery.objects.get(pk=delivery_id)
    assert delivery.status == "failed" and "suppressed" in delivery.error and not mail.outbox


def test_the_cap_per_email_links_to_the_rest(archive, settings):
    settings.EMAIL_MAX_QUESTIONS = 2
    subscribe()
    match_everything()

    deliver_immediate()

    html = mail.outbox[0].alternatives[0][0]
    assert html.count("Asked by:") == 2
    assert "3 more questions match this search" in html
    assert "/?q=%22facial+recognition%22" in html


def test_an_esp_that_fails_twice_then_succeeds_sends_one_email(archive, postmark):
    stub = postmark
    stub.failures_left = 2
    subscribe()
    match_everything()

    deliver_immediate()  # the first try, as the commit wakes the sender
    assert Delivery.objects.get().status == "pending" and not stub.messages
    assert send_due() == {}  # the ESP is down: nothing until its probe is due
    for _ in range(2):
        EspState.objects.update(next_probe_at=timezone.now())  # the probe's wait, passed
        send_due()

    assert stub.to() == ["ada@example.org"]
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("sent", 3)
    assert delivery.esp_message_id and delivery.error == ""
    sent = stub.messages[0]
    assert {h["Name"]: h["Value"] for h in sent["Headers"]}["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "facial recognition" in sent["HtmlBody"] and sent["TextBody"]


def test_an_esp_that_keeps_failing_gives_up_visibly_and_resend_brings_it_back(archive, postmark, settings,
                                                                             admin_client):
    stub = postmark
    stub.failures_left = 99
    settings.DELIVERY_GIVE_UP_HOURS = 0
    subscribe()
    match_everything()

    deliver_immediate()

    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("failed", 1)
    assert delivery.error.startswith("gave up after 1 attempts") and "500" in delivery.error
    assert stub.messages == [] and Match.objects.filter(delivery=delivery).events() == 10  # kept for a resend
    assert "1 failed" in admin_client.get("/admin/overview/").content.decode()

    stub.failures_left = 0
    settings.DELIVERY_GIVE_UP_HOURS = 72
    EspState.objects.update(next_probe_at=timezone.now())
    admin_client.post("/admin/alerts/delivery/", {"action": "resend", "_selected_action": [delivery.pk]})

    delivery.refresh_from_db()
    assert delivery.status == "sent" and stub.to() == ["ada@example.org"]


# Postmark's "Transient" is a temporary failure: Anymail reports it as deferred, a soft bounce.
POSTMARK_SOFT_BOUNCE = POSTMARK_BOUNCE | {"Type": "Transient", "TypeCode": 2, "Name": "Message delayed",
                                          "Inactive": False}
MAILGUN_FAILED = {
    "signature": {"timestamp": "1529006854", "token": "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0",
                  "signature": "unused"},
    "event-data": {
        "event": "failed", "severity": "permanent", "timestamp": 1521233123.501324, "id": "CPgfbmQMTCKtHW6uIWtuVe",
        "reason": "suppress-bounce", "recipient": "bo@example.org", "message": {"headers": {
            "message-id": "20130503182626.18666.16540@example.org", "to": "bo@example.org",
            "from": "alerts@example.org", "subject": "Alert"}, "attachments": [], "size": 111},
        "delivery-status": {"code": 605, "message": "", "description": "Not delivering to previously bounced address",
                            "attempt-no": 1},
    },
}


def test_postmark_bounce_and_complaint_suppress_and_soft_bounce_only_records(client, webhook_secret):
    ada = subscribe().subscriber
    bo = subscribe(email="bo@example.org").subscriber

    assert post_webhook(client, "/anymail/postmark/tracking/", POSTMARK_SOFT_BOUNCE).status_code == 200
    ada.refresh_from_db()
    assert ada.suppressed_at is None

    assert post_webhook(client, "/anymail/postmark/tracking/", POSTMARK_BOUNCE).status_code == 200
    ada.refresh_from_db()
    assert ada.suppressed_reason == "bounced"

    complaint = POSTMARK_COMPLAINT | {"Email": "BO@example.org"}
    assert post_webhook(client, "/anymail/postmark/tracking/", complaint).status_code == 200
    bo.refresh_from_db()
    assert bo.suppressed_reason == "complained"
    from alerts.models import WebhookEvent

    assert list(WebhookEvent.objects.order_by("pk").values_list("event_type", flat=True)) == [
        "deferred", "bounced", "complained"]


def test_mailgun_permanent_failure_suppresses(client, webhook_secret, settings):
    import hashlib
    import hmac

    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    bo = subscribe(email="bo@example.org").subscriber
    now = str(int(timezone.now().timestamp()))
    signature = MAILGUN_FAILED["signature"] | {"timestamp": now}
    # Signed as Mailgun signs, with the key we share with it, as it happens.
    signed = signature | {"signature": hmac.new(b"key", (signature["timestamp"] + signature["token"]).encode(),
                                                hashlib.sha256).hexdigest()}
    failed = MAILGUN_FAILED | {"signature": signed, "event-data": MAILGUN_FAILED["event-data"] | {"timestamp": now}}

    assert post_webhook(client, "/anymail/mailgun/tracking/", failed).status_code == 200

    bo.refresh_from_db()
    assert bo.suppressed_reason == "bounced"


def test_a_webhook_without_the_secret_is_refused(client, webhook_secret):
    ada = subscribe().subscriber

    no_auth = post_webhook(client, "/anymail/postmark/tracking/", POSTMARK_BOUNCE, auth=None)
    wrong = post_webhook(client, "/anymail/postmark/tracking/", POSTMARK_BOUNCE, auth=("hook", "guess"))

    assert no_auth.status_code in (400, 401, 403) and wrong.status_code in (400, 401, 403)
    ada.refresh_from_db()
    assert ada.suppressed_at is None


def test_a_chunk_part_of_which_another_sender_took_sends_nothing_more(archive, monkeypatch):
    """A sender that stalled past its lease: another took one of its rows, so it must stop where it is."""
    from alerts import delivery as queue

    subscribe()
    subscribe(email="bo@example.org", query="palantir")
    match_everything()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("alerts.delivery.kick", lambda count=1: None)
        first, second = deliver_immediate()
    real_message = queue.emails.as_message
    taken_until = timezone.now() + timezone.timedelta(minutes=5)

    def read_while_another_sender_takes_one_row(delivery):
        if delivery.pk == second:
            Delivery.objects.filter(pk=second).update(leased_until=taken_until)
        return real_message(delivery)

    monkeypatch.setattr(queue.emails, "as_message", read_while_another_sender_takes_one_row)

    outcome = send_due()

    assert outcome == {"taken": 2} and not mail.outbox
    ours, theirs = Delivery.objects.get(pk=first), Delivery.objects.get(pk=second)
    assert theirs.leased_until == taken_until and theirs.status == "pending"
    # Still leased by the first sender, so nobody takes it before its lease runs out.
    assert ours.status == "pending" and ours.leased_until > timezone.now()


def test_rows_whose_sender_died_are_taken_one_at_a_time_and_given_up_in_the_end(archive, settings):
    from alerts.delivery import claim_due

    for email in ("ada@example.org", "bo@example.org", "cy@example.org"):
        subscribe(email=email)
    match_everything()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("alerts.delivery.kick", lambda count=1: None)
        deliver_immediate()
    settings.DELIVERY_LEASE_SECONDS = 0  # the sender dies holding the chunk, and its lease runs out at once

    far_ahead = timezone.now() + timezone.timedelta(days=1)
    first = claim_due(far_ahead)
    again = claim_due(far_ahead)

    assert len(first.ids) == 3 and len(again.ids) == 1  # one suspect at a time
    suspect = Delivery.objects.get(pk=again.ids[0])
    assert suspect.attempts == 2 and suspect.next_attempt_at > timezone.now()
    Delivery.objects.update(give_up_at=timezone.now())
    assert claim_due(far_ahead) is None
    assert {(d.status, "its sender stopped while sending it" in d.error) for d in Delivery.objects.all()} == {
        ("failed", True)}


def test_a_label_with_line_breaks_and_bidi_controls_makes_a_one_line_subject(archive, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # it checks the headers
    subscribe(label="Otters\r\nBcc: attacker@evil.example \u202eevil")
    match_everything()

    deliver_immediate()

    [message] = mail.outbox
    assert message.subject == "5 answers match ‘Otters Bcc: attacker@evil.example evil’"
    assert Delivery.objects.get().status == "sent" and message.bcc == []


def test_an_address_anymail_cannot_parse_is_rejected_and_the_rest_go(archive, postmark):
    subscribe()
    subscribe(email="not an address")
    match_everything()

    deliver_immediate()

    assert postmark.to() == ["ada@example.org"]
    rejected = Delivery.objects.get(subscriber__email="not an address")
    assert rejected.status == "rejected" and "Invalid" in rejected.error


def test_a_batch_postmark_refuses_whole_is_sent_one_by_one_so_only_the_culprit_waits(archive, postmark):
    stub = postmark
    subscribe()
    subscribe(email="bo@example.org")
    match_everything()
    real = stub.handler

    def refuse_batches(request):
        from werkzeug.wrappers import Response

        if request.path.endswith("/batch"):
            return Response('{"ErrorCode": 402, "Message": "Invalid JSON"}', status=422)
        if "bo@example.org" in request.get_data(as_text=True):
            return Response('{"ErrorCode": 300, "Message": "Invalid \'From\' address"}', status=422)
        return real(request)

    stub.handler = refuse_batches

    deliver_immediate()

    assert stub.to() == ["ada@example.org"]
    assert dict(Delivery.objects.values_list("subscriber__email", "status")) == {
        "ada@example.org": "sent", "bo@example.org": "pending"}


def test_retries_back_off_doubling_with_jitter_up_to_the_cap(settings):
    from alerts.delivery import backoff

    settings.DELIVERY_BACKOFF_SECONDS, settings.DELIVERY_BACKOFF_MAX_SECONDS = 30, 3600
    delays = {attempts: [backoff(attempts) for _ in range(200)] for attempts in (1, 2, 3, 8, 30)}

    for attempts, expected in ((1, 30), (2, 60), (3, 120), (8, 3600), (30, 3600)):
        assert all(0.75 * expected <= d <= 1.25 * expected for d in delays[attempts])
        assert len({round(d, 3) for d in delays[attempts]}) > 100  # spread, so an outage's emails come back apart


def test_by_default_a_dead_senders_emails_go_within_two_minutes_and_failures_retry_for_three_days():
    import importlib

    from django.apps import apps
    from django.conf import settings as defaults
    from django.db import connection
    from django_celery_beat.models import PeriodicTask

    importlib.import_module("alerts.migrations.0005_delivery_queue").schedule_sender(apps, connection.schema_editor())
    beat = PeriodicTask.objects.get(task="alerts.send_due").interval

    assert beat.period == "seconds" and defaults.DELIVERY_LEASE_SECONDS + beat.every <= 90
    assert defaults.DELIVERY_GIVE_UP_HOURS == 72 and defaults.DELIVERY_BACKOFF_MAX_SECONDS <= 3600


def test_an_address_the_esp_refuses_for_good_is_not_retried_and_holds_nothing_back(archive, postmark):
    stub = postmark
    stub.inactive = {"bo@example.org"}
    for email in ("ada@example.org", "bo@example.org", "cy@example.org"):
        subscribe(email=email)
    match_everything()

    deliver_immediate()
    send_due()

    assert sorted(stub.to()) == ["ada@example.org", "cy@example.org"]
    statuses = dict(Delivery.objects.values_list("subscriber__email", "status"))
    assert statuses == {"ada@example.org": "sent", "bo@example.org": "rejected", "cy@example.org": "sent"}
    rejected = Delivery.objects.get(status="rejected")
    assert rejected.attempts == 1 and "inactive" in rejected.error


def test_subjects_count_each_question_once_with_the_right_grammar(archive):
    subscribe(query='"facial recognition"')
    subscribe(query="police")  # matches the same questions, and more
    subscribe(email="bo@example.org", query='heading:"stun guns"', frequency="daily")
    match_everything()

    deliver_immediate()
    run_digest("daily")

    ada, bo = sorted(mail.outbox, key=lambda m: m.to)
    from questions.models import Question
    from questions.search import matches as matches_node

    either = [q for q in Question.objects.all() if matches_node(parse('"facial recognition" OR police'),
                                                               q.search_document())]
    assert len(either) > 1 and all(q.answer_text for q in either)
    assert ada.subject == f"{len(either)} answers match 2 of your alerts"
    assert bo.subject.endswith(": 1 answer matches ‘stun guns in the heading’")
