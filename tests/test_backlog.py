"""Clearing a backlog from the admin (Send now), the email list's next try and error, and what the overview
says of the ESP: emails sent through Anymail's Postmark backend to a local stub of its API."""

from __future__ import annotations

import datetime as dt
import re
from html import unescape

import pytest
from django.contrib.messages import get_messages
from django.utils import formats, timezone

from alerts.delivery import queue_delivery, send_due
from alerts.models import Delivery, EspState
from tests.conftest import delivery_section
from tests.factories import subscribe

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/alerts/delivery/"


def backing_off(email: str, **fields) -> Delivery:
    """An email the ESP failed on its own three times, due again in 50 minutes."""
    values = {"attempts": 3, "error": 'AnymailRequestsAPIError: Postmark API response 500 (INTERNAL SERVER ERROR):\n'
                                       '{"ErrorCode": 100, "Message": "Try again"}',
              "next_attempt_at": timezone.now() + dt.timedelta(minutes=50)} | fields
    return Delivery.objects.create(subscriber=subscribe(email, "prisons").subscriber, kind=Delivery.Kind.MANAGE_LINK,
                                   **values)


def send_now(admin_client, *deliveries: Delivery) -> list[str]:
    """Tick these emails in the list and choose Send now; the messages the admin shows."""
    response = admin_client.post(CHANGELIST, {"action": "send_now", "_selected_action": [d.pk for d in deliveries]},
                                 follow=True)
    assert response.status_code == 200
    return [str(message) for message in get_messages(response.wsgi_request)]


def row(html: str, email: str) -> str:
    """The text of the changelist's row for this address."""
    found = re.search(r"<tr>(?:(?!</tr>).)*" + re.escape(email) + r".*?</tr>", html, re.S)
    assert found, email
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", found.group(0))).split())


def shown(value: dt.datetime) -> str:
    """A time as the admin's lists show it, in the site's time zone."""
    return formats.localize(timezone.template_localtime(value))


def test_send_now_sends_a_backing_off_email_at_once_and_leaves_the_rest(admin_client, postmark):
    waiting = backing_off("ada@example.org")
    # Held by a sender at this moment: taking it back could send it twice.
    held = backing_off("bo@example.org", leased_until=timezone.now() + dt.timedelta(seconds=60))
    sent = Delivery.objects.create(subscriber=subscribe("cy@example.org", "prisons").subscriber,
                                   kind=Delivery.Kind.MANAGE_LINK, status=Delivery.Status.SENT, sent_at=timezone.now())

    messages = send_now(admin_client, waiting, held, sent)

    assert postmark.to() == ["ada@example.org"]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.attempts) == ("sent", 4)  # its attempts kept, and this one counted
    assert messages[:2] == ["1 email(s) due now; the senders are woken.",
                            "2 email(s) left as they were: not pending, or being sent right now."]
    assert Delivery.objects.get(pk=held.pk).next_attempt_at == held.next_attempt_at
    assert Delivery.objects.get(pk=held.pk).status == "pending"
    assert Delivery.objects.get(pk=sent.pk).sent_at == sent.sent_at


def test_send_now_while_the_esp_is_down_says_the_senders_wait_for_its_probe(admin_client, postmark):
    postmark.failures_left = 99
    ada = subscribe("ada@example.org", "prisons").subscriber
    first = queue_delivery(ada, Delivery.Kind.MANAGE_LINK)  # fails at once: the ESP is down from now
    waiting = backing_off("bo@example.org")

    messages = send_now(admin_client, waiting)

    state = EspState.objects.get()
    assert state.down_since is not None and postmark.to() == []
    assert messages[0] == "1 email(s) due now; the senders are woken."
    assert messages[1].startswith("Senders hold back until it answers a probe. postmark has failed since "
                                  f"{state.down_since:%Y-%m-%d %H:%M} UTC")
    assert f"next probe due {state.next_probe_at:%Y-%m-%d %H:%M:%S} UTC" in messages[1]
    waiting.refresh_from_db()
    assert waiting.status == "pending" and waiting.next_attempt_at <= timezone.now()

    # The probe goes through, and everything due goes with the next sender.
    postmark.failures_left = 0
    EspState.objects.update(next_probe_at=timezone.now())
    send_due()
    send_due()

    assert sorted(postmark.to()) == ["ada@example.org", "bo@example.org"]
    assert set(Delivery.objects.filter(pk__in=[first.pk, waiting.pk]).values_list("status", flat=True)) == {"sent"}


def test_the_email_list_shows_each_pending_emails_next_try_and_latest_error(admin_client):
    backing_off("ada@example.org")
    backing_off("bo@example.org", next_attempt_at=timezone.now() - dt.timedelta(seconds=5))
    Delivery.objects.create(subscriber=subscribe("cy@example.org", "prisons").subscriber,
                            kind=Delivery.Kind.MANAGE_LINK, status=Delivery.Status.SENT, sent_at=timezone.now())

    html = admin_client.get(CHANGELIST).content.decode()

    assert "Next try" in html and "Latest error" in html
    # When it is tried next, and the start of its error without the exception's name.
    assert row(html, "ada@example.org") == (
        "ada@example.org Pending in 49 minutes Postmark API response 500 (INTERNAL SERVER ERROR)…")
    assert row(html, "bo@example.org").startswith("bo@example.org Pending due now Postmark API")
    # A sent email has neither a next try nor an error.
    assert row(html, "cy@example.org") == "cy@example.org Sent - -"


def test_the_overview_says_whether_the_esp_answers_and_when_it_is_tried_next(admin_client, postmark):
    assert "ESP: answering (it has never failed as a whole)." in delivery_section(admin_client)
    ada = subscribe("ada@example.org", "prisons").subscriber
    postmark.failures_left = 99

    queue_delivery(ada, Delivery.Kind.MANAGE_LINK)

    state = EspState.objects.get()
    section = delivery_section(admin_client)
    assert (f"ESP DOWN: postmark has failed since {state.down_since:%Y-%m-%d %H:%M} UTC (failed tries: 1); "
            f"next probe due {state.next_probe_at:%Y-%m-%d %H:%M:%S} UTC. Latest error: server_error:") in section
    assert "Postmark API response 500" in section

    postmark.failures_left = 0
    EspState.objects.update(next_probe_at=timezone.now())
    send_due()

    section = delivery_section(admin_client)
    assert "ESP: postmark is answering." in section
    assert "Latest error" not in section and "ESP DOWN" not in section


def test_the_overview_shows_when_the_next_retry_is_due(admin_client):
    html = admin_client.get("/admin/overview/").content.decode()
    assert "next retry (none waiting)" in html

    waiting = backing_off("ada@example.org")

    html = admin_client.get("/admin/overview/").content.decode()
    assert f"next retry {shown(waiting.next_attempt_at)}" in unescape(html)
