"""Resend's confirmation page sends once: a second submit of it (a double click, the back button, the same page in
two tabs) queues nothing and says so; a page altered, or older than an hour, queues nothing; and a confirmation
resends the emails its page named, never another posted with it."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.core import mail, signing
from django.test import Client
from django.utils import timezone

from alerts.delivery import ResendRefused, queue_delivery, resend_confirmed, resend_token
from alerts.models import Delivery, ResendToken
from alerts.retention import prune
from tests.conftest import at_once
from tests.test_admin_answers import DELIVERIES, confirm, hidden_fields, said, subscriber, text

pytestmark = pytest.mark.django_db(transaction=True)

SENT_AGAIN = ("{} email(s) already sent are queued to be sent again, each as a new email; the first keeps its "
              "record of when it was sent.")
USED = ("These emails were already sent again from this confirmation page: nothing more is queued. To send them "
        "again, select them and choose Resend once more.")


@pytest.fixture
def operator() -> Client:
    """A logged-in operator whose every post must carry the CSRF token its page gave it, as in production."""
    user = get_user_model().objects.create_superuser("operator", "operator@example.org", "a long password here")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def choose_resend(client: Client, rows: list[Delivery]):
    """Tick the rows in the list and choose Resend, with the list's own CSRF token."""
    csrf = hidden_fields(client.get(DELIVERIES), "csrfmiddlewaretoken")["csrfmiddlewaretoken"]
    return client.post(DELIVERIES, {"csrfmiddlewaretoken": csrf, "action": "resend",
                                    "_selected_action": [row.pk for row in rows]}, follow=True)


def sent_email(email: str) -> Delivery:
    delivery = queue_delivery(subscriber(email), Delivery.Kind.MANAGE_LINK)
    delivery.refresh_from_db()
    assert delivery.status == "sent"
    return delivery


def copies_of(delivery: Delivery) -> int:
    return Delivery.objects.filter(payload__resend_of=delivery.pk).count()


def test_a_confirmation_submitted_twice_sends_each_email_once_more(operator):
    ada, bob = sent_email("ada@example.org"), sent_email("bob@example.org")
    failed = Delivery.objects.create(subscriber=ada.subscriber, kind=Delivery.Kind.MANAGE_LINK, status="failed",
                                     error="HTTP 500")
    asked = choose_resend(operator, [ada, bob, failed])
    assert "These 2 emails were already sent:" in text(asked)
    assert "This page sends them once, if confirmed within an hour." in text(asked)

    first = confirm(operator, asked)
    second = confirm(operator, asked)

    assert said(first) == ["1 email(s) not sent are queued to be made and tried again.", SENT_AGAIN.format(2)]
    assert said(second) == [USED]
    assert copies_of(ada) == copies_of(bob) == 1
    assert sorted(m.to[0] for m in mail.outbox) == ["ada@example.org"] * 3 + ["bob@example.org"] * 2
    failed.refresh_from_db()
    assert failed.status == "sent"
    # The operator may still choose to send them again: a new page, used once too.
    again = choose_resend(operator, [ada])
    assert said(confirm(operator, again)) == [SENT_AGAIN.format(1)] and said(confirm(operator, again)) == [USED]
    assert copies_of(ada) == 2 and copies_of(bob) == 1


def test_a_confirmation_resends_only_what_its_page_named(operator):
    shown, other = sent_email("ada@example.org"), sent_email("bob@example.org")
    asked = choose_resend(operator, [shown])

    done = operator.post(DELIVERIES, hidden_fields(asked, "confirm") | {"_selected_action": [shown.pk, other.pk]},
                         follow=True)

    assert said(done) == [SENT_AGAIN.format(1)]
    assert copies_of(shown) == 1 and copies_of(other) == 0
    assert [m.to for m in mail.outbox] == [["ada@example.org"], ["bob@example.org"], ["ada@example.org"]]


@pytest.mark.parametrize("forge", [
    pytest.param(lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"), id="altered"),
    pytest.param(lambda token: signing.dumps({"sent": [1, 2, 3], "others": [], "once": "x"}, salt="another purpose",
                                             compress=True), id="signed-for-something-else"),
    pytest.param(lambda token: "", id="missing"),
])
def test_a_forged_confirmation_queues_nothing(operator, forge):
    delivery = sent_email("ada@example.org")
    asked = choose_resend(operator, [delivery])
    fields = hidden_fields(asked, "confirm")

    done = operator.post(DELIVERIES, fields | {"token": [forge(fields["token"][0])]}, follow=True)

    assert said(done) == ["This confirmation could not be checked: nothing was sent. To send them again, select them "
                          "and choose Resend once more."]
    assert Delivery.objects.count() == 1 and len(mail.outbox) == 1 and not ResendToken.objects.exists()
    # The page as it was given still sends.
    assert said(confirm(operator, asked)) == [SENT_AGAIN.format(1)] and copies_of(delivery) == 1


def test_a_confirmation_page_more_than_an_hour_old_queues_nothing(operator, monkeypatch):
    delivery = sent_email("ada@example.org")
    real_time = time.time
    monkeypatch.setattr(signing.time, "time", lambda: real_time() - 61 * 60)
    asked = choose_resend(operator, [delivery])
    monkeypatch.setattr(signing.time, "time", real_time)

    done = confirm(operator, asked)

    assert said(done) == ["This confirmation page is more than an hour old: nothing was sent. To send them again, "
                          "select them and choose Resend once more."]
    assert Delivery.objects.count() == 1 and len(mail.outbox) == 1


def test_a_page_confirmed_within_the_hour_sends(monkeypatch):
    delivery = sent_email("ada@example.org")
    token = resend_token([delivery.pk], [])
    real_time = time.time
    monkeypatch.setattr(signing.time, "time", lambda: real_time() + 59 * 60)

    done = resend_confirmed(token)

    assert (done.sent_again, done.made_again, done.left) == (1, 0, 0) and copies_of(delivery) == 1


# Two submits at the very same moment, each waiting on the other's row: PostgreSQL's (SQLite takes one at a time).
@pytest.mark.postgres
def test_two_submits_at_once_send_once():
    delivery = sent_email("ada@example.org")
    token = resend_token([delivery.pk], [])
    outcomes = at_once(lambda: resend_confirmed(token).sent_again, 4)

    assert sorted((getattr(outcome, "reason", outcome) for outcome in outcomes), key=str) == [1, "used", "used", "used"]
    assert copies_of(delivery) == 1


def test_the_marks_of_used_pages_go_well_after_their_pages_would_be_refused_anyway():
    delivery = sent_email("ada@example.org")
    token = resend_token([delivery.pk], [])
    resend_confirmed(token)

    # Kept for twice a page's life: a web process whose clock runs behind the worker's still refuses the page.
    kept = prune(now=timezone.now() + 2 * ResendToken.MAX_AGE - timezone.timedelta(minutes=1))
    assert kept.counts["resend marks"] == 0 and ResendToken.objects.count() == 1
    with pytest.raises(ResendRefused, match="used"):
        resend_confirmed(token)

    pruned = prune(now=timezone.now() + 2 * ResendToken.MAX_AGE + timezone.timedelta(minutes=1))
    assert pruned.counts["resend marks"] == 1 and not ResendToken.objects.exists()
    assert copies_of(delivery) == 1
