"""What an authenticated webhook may still not do: replay an old signature or event, or lose the good
events of a batch to a bad one beside them; and what it must do: apply Postmark's unsubscribe requests
and SendGrid's drops."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json

import pytest
from django.db import connection
from django.utils import timezone

from alerts.models import Delivery, Subscriber, WebhookEvent, WebhookToken
from alerts.retention import prune
from alerts.webhooks import SIGNATURE_MAX_SKEW
from tests.conftest import MAILGUN_KEY, SECRET, mailgun_signature, postmark_bounce, sendgrid, use_esp
from tests.factories import subscribe

pytestmark = pytest.mark.django_db(transaction=True)
def post(client, esp: str, payload, auth=SECRET, **headers):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    token = base64.b64encode(":".join(auth).encode()).decode()
    return client.post(f"/anymail/{esp}/tracking/", data=body, content_type="application/json",
                       HTTP_AUTHORIZATION=f"Basic {token}", **headers)


def reason(email: str) -> str:
    return Subscriber.objects.get(email=email).suppressed_reason


def sent_to(email: str, message_id: str) -> Delivery:
    subscriber = subscribe(email=email).subscriber
    return Delivery.objects.create(subscriber=subscriber, kind=Delivery.Kind.IMMEDIATE, status=Delivery.Status.SENT,
                                   esp_message_id=message_id, sent_at=timezone.now())


def move_time(monkeypatch, by: dt.timedelta) -> None:
    later = timezone.now() + by
    monkeypatch.setattr(timezone, "now", lambda: later)


# Postmark (basic auth only).

def test_an_old_bounce_replayed_stops_nobody(client, settings):
    """Postmark posts a bounce within hours (retrying for 10.5 at most): one dated ten days ago is a replay."""
    use_esp(settings, "postmark", POSTMARK_SERVER_TOKEN="token")
    subscribe()
    subscribe(email="bo@example.org")

    old = post(client, "postmark", postmark_bounce(at=timezone.now() - dt.timedelta(days=10)))
    fresh = post(client, "postmark", postmark_bounce(email="bo@example.org"))

    assert old.status_code == 200 and fresh.status_code == 200
    assert reason("ada@example.org") == "" and reason("bo@example.org") == "bounced"
    assert WebhookEvent.objects.count() == 2  # both kept, for support to read


def test_a_bounce_of_an_email_we_never_sent_from_before_the_address_signed_up_stops_nothing(client, settings,
                                                                                             monkeypatch):
    use_esp(settings, "postmark", POSTMARK_SERVER_TOKEN="token")
    bounced_at = timezone.now()
    move_time(monkeypatch, dt.timedelta(hours=2))
    subscribe(email="new@example.org")
    sent_to("ours@example.org", "our-message")
    Subscriber.objects.update(created_at=timezone.now())

    before = post(client, "postmark", postmark_bounce(email="new@example.org", at=bounced_at))
    of_ours = post(client, "postmark",
                   postmark_bounce(email="ours@example.org", at=bounced_at, MessageID="our-message"))

    assert before.status_code == 200 and of_ours.status_code == 200
    assert reason("new@example.org") == ""
    assert reason("ours@example.org") == "bounced"  # about an email of ours: its time is not in question


def test_postmarks_unsubscribe_request_stops_the_address_its_email_went_to(client, settings):
    """Postmark's "Unsubscribe request" bounce names the email it was about, not the address."""
    use_esp(settings, "postmark", POSTMARK_SERVER_TOKEN="token")
    sent_to("ada@example.org", "b7bc2f4a-e38e-4336-af7d-e6c392c2f817")
    subscribe(email="bo@example.org")
    request = postmark_bounce(email=None, Type="Unsubscribe", TypeCode=16, Name="Unsubscribe request",
                              MessageID="b7bc2f4a-e38e-4336-af7d-e6c392c2f817",
                              Description="The recipient has requested to be unsubscribed.")

    assert post(client, "postmark", request).status_code == 200

    assert reason("ada@example.org") == "unsubscribed" and reason("bo@example.org") == ""
    assert WebhookEvent.objects.get().recipient == "ada@example.org"


# Mailgun: its signature covers a timestamp and a token, not the event.

def mailgun_failed(recipient: str, at: dt.datetime | None = None) -> dict:
    return {"event-data": {
        "event": "failed", "severity": "permanent", "timestamp": (at or timezone.now()).timestamp(),
        "id": "CPgfbmQMTCKtHW6uIWtuVe", "reason": "bounce", "recipient": recipient,
        "message": {"headers": {"message-id": "20130503182626.18666.16540@example.org", "to": recipient,
                                "from": "alerts@example.org", "subject": "Alert"}, "attachments": [], "size": 111},
        "delivery-status": {"code": 550, "message": "5.1.1 No such user", "description": "", "attempt-no": 1},
    }}


@pytest.fixture
def mailgun(settings):
    use_esp(settings, "mailgun", MAILGUN_API_KEY="api-key", MAILGUN_WEBHOOK_SIGNING_KEY=MAILGUN_KEY)


def test_a_signature_from_2009_glued_to_a_forged_event_is_refused(client, mailgun):
    subscribe(email="victim@example.org")
    signed_long_ago = mailgun_signature(at=dt.datetime(2009, 6, 1, tzinfo=dt.UTC))

    response = post(client, "mailgun", mailgun_failed("victim@example.org") | {"signature": signed_long_ago})

    assert response.status_code == 406 and reason("victim@example.org") == ""
    assert not WebhookEvent.objects.exists()


def test_a_signature_is_taken_once(client, mailgun):
    subscribe()
    subscribe(email="victim@example.org")
    signature = mailgun_signature()

    first = post(client, "mailgun", mailgun_failed("ada@example.org") | {"signature": signature})
    again = post(client, "mailgun", mailgun_failed("victim@example.org") | {"signature": signature})

    assert (first.status_code, again.status_code) == (200, 406)
    assert reason("ada@example.org") == "bounced" and reason("victim@example.org") == ""


def test_a_token_is_remembered_while_its_signature_is_taken_and_then_forgotten(client, mailgun, monkeypatch):
    """Within the window a replay is refused by its token alone: pruning must not forget one sooner."""
    subscribe()
    subscribe(email="victim@example.org")
    signature = mailgun_signature()
    assert post(client, "mailgun", mailgun_failed("bo@example.org") | {"signature": signature}).status_code == 200

    move_time(monkeypatch, SIGNATURE_MAX_SKEW - dt.timedelta(minutes=1))
    kept = prune()
    replayed = post(client, "mailgun", mailgun_failed("victim@example.org") | {"signature": signature})
    late = post(client, "mailgun", mailgun_failed("ada@example.org") | {"signature": mailgun_signature(
        at=timezone.now() - SIGNATURE_MAX_SKEW - dt.timedelta(minutes=1))})
    move_time(monkeypatch, dt.timedelta(days=1, minutes=1))
    pruned = prune()

    assert kept.counts["webhook tokens"] == 0 and replayed.status_code == 406
    assert late.status_code == 406
    assert reason("victim@example.org") == "" and reason("ada@example.org") == ""
    assert pruned.counts["webhook tokens"] == 1 and not WebhookToken.objects.exists()


def test_a_signed_post_with_nothing_readable_still_uses_up_its_token(client, mailgun):
    """Else whoever saw it could glue a forged bounce to its signature."""
    subscribe(email="victim@example.org")
    signature = mailgun_signature()
    unreadable = {"signature": signature, "event-data": {"event": "failed", "timestamp": "not a time"}}

    first = post(client, "mailgun", unreadable)
    forged = post(client, "mailgun", mailgun_failed("victim@example.org") | {"signature": signature})

    assert (first.status_code, forged.status_code) == (400, 406)
    assert reason("victim@example.org") == "" and not WebhookEvent.objects.exists()


@contextlib.contextmanager
def disk_full(table: str):
    """Every row written to the table fails, as on a database whose disk is full."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE FUNCTION disk_full() RETURNS trigger AS $$ BEGIN "
                       "RAISE EXCEPTION 'could not extend file' USING ERRCODE = 'disk_full'; END $$ LANGUAGE plpgsql")
        cursor.execute(f"CREATE TRIGGER disk_full BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION disk_full()")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER disk_full ON {table}")
            cursor.execute("DROP FUNCTION disk_full()")


@pytest.mark.postgres
def test_a_bounce_our_database_failed_to_take_is_taken_when_mailgun_retries_it_hours_later(client, mailgun,
                                                                                           monkeypatch):
    """Mailgun retries a 500 for 8 hours, perhaps with the signature it first sent: neither the failure nor
    the hours between may turn the retry into a replay."""
    subscribe()
    bounce = mailgun_failed("ada@example.org") | {"signature": mailgun_signature()}
    client.raise_request_exception = False

    with disk_full("alerts_webhookevent"):
        failed = post(client, "mailgun", bounce)
    move_time(monkeypatch, dt.timedelta(hours=8))
    retried = post(client, "mailgun", bounce)

    assert (failed.status_code, retried.status_code) == (500, 200)
    assert reason("ada@example.org") == "bounced"


# SendGrid: batches of events.

def test_one_bad_event_in_a_batch_does_not_lose_the_bounce_beside_it(client, settings):
    use_esp(settings, "sendgrid", SENDGRID_API_KEY="key")
    subscribe()
    subscribe(email="bo@example.org")
    bounce = sendgrid("bounce", "ada@example.org", reason="550 5.1.1 unknown user", status="5.1.1", type="bounce")
    complaint = sendgrid("spamreport", "bo@example.org")
    batch = json.dumps([bounce, sendgrid("bounce", "x\udc80@example.org"), sendgrid("bounce", "nul\x00@example.org"),
                        42, {"event": "bounce"}, sendgrid("delivered", "cy@example.org", response="250 OK",
                                                          reason="\x00\ud800"), complaint]).encode()

    response = post(client, "sendgrid", batch)

    assert response.status_code == 200
    assert reason("ada@example.org") == "bounced" and reason("bo@example.org") == "complained"
    assert sorted(WebhookEvent.objects.values_list("recipient", flat=True)) == [
        "", "ada@example.org", "bo@example.org", "cy@example.org"]


@pytest.mark.parametrize("when", [10**18, -10**18, 1e300])
def test_an_event_dated_beyond_any_calendar_does_not_lose_the_bounce_beside_it(client, settings, when):
    use_esp(settings, "sendgrid", SENDGRID_API_KEY="key")
    subscribe()
    subscribe(email="bo@example.org")
    bounce = sendgrid("bounce", "ada@example.org", reason="550 5.1.1 unknown user", status="5.1.1", type="bounce")

    batch = post(client, "sendgrid", [bounce, sendgrid("bounce", "bo@example.org", timestamp=when)])
    alone = post(client, "sendgrid", [sendgrid("bounce", "bo@example.org", timestamp=when)])

    assert (batch.status_code, alone.status_code) == (200, 400)
    assert reason("ada@example.org") == "bounced" and reason("bo@example.org") == ""


@pytest.mark.parametrize(("why", "suppressed"), [
    ("Bounced Address", "bounced"), ("Unsubscribed Address", "unsubscribed"), ("Spam Reporting Address", "complained"),
    ("Invalid", "bounced"), ("Recipient List over Package Quota", ""),
])
def test_sendgrids_drop_of_an_address_it_will_not_mail_stops_ours_too(client, settings, why, suppressed):
    use_esp(settings, "sendgrid", SENDGRID_API_KEY="key")
    subscribe()

    assert post(client, "sendgrid", [sendgrid("dropped", "ada@example.org", reason=why, status="5.0.0")]
                ).status_code == 200

    assert reason("ada@example.org") == suppressed


# What no event can be read from is a 400, never a 500 (which the ESP retries for ever).

DEEP = b"[" * 100_000 + b"]" * 100_000


@pytest.mark.parametrize(("esp", "body"), [
    ("postmark", DEEP), ("postmark", json.dumps(postmark_bounce(email="ada\x00@example.org")).encode()),
    ("sendgrid", DEEP), ("sendgrid", json.dumps([sendgrid("bounce", "ada\x00@example.org")]).encode()),
    ("mailgun", b'{"signature": ' + DEEP + b"}"),
])
def test_an_authenticated_payload_with_nul_or_too_deep_is_a_400_that_changes_nothing(client, settings, esp, body):
    use_esp(settings, esp, POSTMARK_SERVER_TOKEN="token", SENDGRID_API_KEY="key",
            MAILGUN_WEBHOOK_SIGNING_KEY=MAILGUN_KEY)
    subscribe()

    response = post(client, esp, body)

    assert response.status_code == 400
    assert reason("ada@example.org") == "" and not WebhookEvent.objects.exists()


def test_nul_in_what_is_only_stored_is_dropped_and_the_bounce_taken(client, settings):
    use_esp(settings, "postmark", POSTMARK_SERVER_TOKEN="token")
    subscribe()

    response = post(client, "postmark", postmark_bounce(Description="mailbox\x00 gone \ud83d", MessageID="id\x00"))

    assert response.status_code == 200 and reason("ada@example.org") == "bounced"
    assert WebhookEvent.objects.get().description == "mailbox gone "
