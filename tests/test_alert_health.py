"""The manage page answers "is my alert working?" (when questions were last checked, when each alert last matched,
what became of the last email carrying it, which alerts have gone quiet, where a followed question stands) and
takes the address's choice of one email or one per alert."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from alerts import activity, tokens
from alerts.delivery import deliver_immediate
from alerts.models import Delivery, Subscriber, Subscription
from questions.models import QuestionEvent, Source
from tests.conftest import (
    POSTMARK_BOUNCE,
    confirmed_subscriber,
    page,
    post_webhook,
    send_alerts,
    status_region,
    use_postmark_webhooks,
    when,
)
from tests.factories import follow_question, match, matched, question, quiet_for

pytestmark = pytest.mark.django_db(transaction=True)

POSTMARK_DELIVERED = {
    "RecordType": "Delivery", "ServerID": 23, "MessageStream": "outbound", "MessageID": "", "Recipient":
    "ada@example.org", "Tag": "immediate", "DeliveredAt": "2026-11-27T10:00:00Z", "Details": "Test delivery",
    "Metadata": {},
}


def text_of(html: str) -> str:
    """What a reader sees: inline tags join their text, other tags separate it."""
    html = re.sub(r"</?(a|strong|span)\b[^>]*>", "", html)
    return " ".join(re.sub(r"<[^>]+>", " ", html).split())


def row(html: str, subscription: Subscription) -> str:
    """The HTML of the table row of `subscription`, found by its Delete form."""
    marker = f"/{subscription.pk}/delete/"
    rows = [r for r in html.split("<tr>")[1:] if marker in r.split("</tr>")[0]]
    assert len(rows) == 1, f"no single row for {subscription}"
    return rows[0].split("</tr>")[0]


def cell(html: str, subscription: Subscription, label: str) -> str:
    found = re.search(rf'<td data-label="{label}"[^>]*>(.*?)</td>', row(html, subscription), re.S)
    assert found, label
    return text_of(found.group(1))


@pytest.fixture
def alert(client):
    """A confirmed address with one alert, its manage page, and the alert."""
    subscriber, manage = confirmed_subscriber(client)
    return subscriber, manage, subscriber.subscriptions.get()


# When questions were last checked: once, above the table.

def test_the_page_says_when_questions_were_last_checked_by_an_enabled_source(client, alert):
    _, manage, _ = alert
    assert "We haven’t checked for new questions yet" in page(client.get(manage))

    checked = timezone.now() - dt.timedelta(minutes=7)
    Source.objects.create(name="Feed", kind="feed", url="http://127.0.0.1:9/a", last_success_at=checked)
    Source.objects.create(name="Old feed", kind="feed", url="http://127.0.0.1:9/b",
                          last_success_at=checked - dt.timedelta(days=2))
    # A disabled source is not checking anything, however recently it last did.
    Source.objects.create(name="Off", kind="feed", url="http://127.0.0.1:9/c", enabled=False,
                          last_success_at=timezone.now())

    text = text_of(page(client.get(manage)))

    assert f"We last checked for new questions at {when(checked, 'H:i')} on {when(checked, 'j F Y')}." in text


# When the alert last matched and what became of its last email.

def test_a_new_alert_has_matched_nothing_and_been_in_no_email(client, alert):
    _, manage, subscription = alert

    activity_cell = cell(page(client.get(manage)), subscription, "Activity")

    assert activity_cell == "Nothing has matched yet. No email has carried it yet."


def test_after_an_alert_is_sent_the_page_says_when_it_matched_and_when_the_email_went(client, alert):
    _, manage, subscription = alert
    match = matched(subscription)

    waiting = cell(page(client.get(manage)), subscription, "Activity")
    assert f"Last matched {when(match.created_at)}: see what it finds" in waiting
    assert "No email has carried it yet." in waiting

    delivery = send_alerts()
    assert delivery.status == "sent" and mail.outbox[-1].to == ["ada@example.org"]

    html = page(client.get(manage))
    sent = cell(html, subscription, "Activity")
    assert f"Last email sent {when(delivery.sent_at)}: on its way to your mail server; we haven’t heard yet that " \
           "it arrived." in sent
    assert "Newest email" not in sent
    # The match links to the alert's search, named for the alert for those who hear the link alone.
    assert ('<a href="/?q=%22facial%20recognition%22">see what it finds<span class="visually-hidden"> for '
            '“"facial recognition"”</span></a>') in row(html, subscription)


def test_a_delivery_report_and_then_a_bounce_are_told_in_words(client, alert, settings):
    subscriber, manage, subscription = alert
    matched(subscription)
    delivery = send_alerts()
    use_postmark_webhooks(settings)

    delivered = POSTMARK_DELIVERED | {"MessageID": delivery.esp_message_id}
    assert post_webhook(client, "/anymail/postmark/tracking/", delivered).status_code == 200
    assert cell(page(client.get(manage)), subscription, "Activity").endswith(
        f"Last email sent {when(delivery.sent_at)}: delivered to your inbox.")

    bounce = POSTMARK_BOUNCE | {"MessageID": delivery.esp_message_id}
    assert post_webhook(client, "/anymail/postmark/tracking/", bounce).status_code == 200

    html = page(client.get(manage))
    assert f"Last email sent {when(delivery.sent_at)}: your mail server refused it (bounced)." in cell(
        html, subscription, "Activity")
    assert "<strong>your mail server refused it (bounced)</strong>" in row(html, subscription)
    assert "We can’t send email to this address, so none of these alerts is sending" in html
    subscriber.refresh_from_db()
    assert subscriber.suppressed_reason == "bounced"


def test_an_email_not_yet_out_says_where_it_is_beside_the_last_one_sent(client, alert, monkeypatch):
    _, manage, subscription = alert
    matched(subscription)
    sent = send_alerts()
    matched(subscription)
    # No sender is woken, so the new email waits in the queue.
    monkeypatch.setattr("alerts.delivery.kick", lambda count=1: None)
    [waiting_id] = deliver_immediate()
    waiting = Delivery.objects.get(pk=waiting_id)

    text = cell(page(client.get(manage)), subscription, "Activity")
    assert f"Last email sent {when(sent.sent_at)}:" in text
    assert f"Newest email ({when(waiting.created_at)}): waiting to be sent." in text

    Delivery.objects.filter(pk=waiting_id).update(attempts=2)
    assert "we couldn’t send it yet, and will try again shortly." in cell(page(client.get(manage)), subscription,
                                                                          "Activity")

    Delivery.objects.filter(pk=waiting_id).update(status="failed")
    html = page(client.get(manage))
    assert (f"Newest email ({when(waiting.created_at)}): we couldn’t send it, and have stopped trying."
            in cell(html, subscription, "Activity"))
    assert "<strong>we couldn’t send it, and have stopped trying</strong>" in row(html, subscription)


def test_each_alert_shows_only_its_own_matches_and_emails(client, alert):
    subscriber, manage, facial = alert
    other = Subscription.objects.create(subscriber=subscriber, query="prisons", canonical_query="prisons",
                                        confirmed_at=timezone.now())
    matched(facial)
    send_alerts()

    html = page(client.get(manage))

    assert "Last email sent" in cell(html, facial, "Activity")
    assert cell(html, other, "Activity") == "Nothing has matched yet. No email has carried it yet."


@pytest.mark.parametrize(("reported", "words", "trouble"), [
    ("delivered", "delivered to your inbox", False),
    ("opened", "delivered to your inbox", False),
    ("deferred", "your mail server delayed it; it is still trying", True),
    ("bounced", "your mail server refused it (bounced)", True),
    ("complained", "it was reported as spam", True),
    ("rejected", "our email provider refused to send it", True),
    ("failed", "our email provider couldn’t send it", True),
    ("queued", "waiting to leave our email provider", False),
    ("queued,sent", "on its way to your mail server; we haven’t heard yet that it arrived", False),
    ("", "on its way to your mail server; we haven’t heard yet that it arrived", False),
    ("something_new", "on its way to your mail server; we haven’t heard yet that it arrived", False),
])
def test_what_the_esp_said_is_put_in_words(reported, words, trouble):
    assert activity.esp_words(reported) == (words, trouble)


# An alert that has gone quiet.

QUIET = "Nothing has matched this alert in the last 90 days."


def test_an_alert_quiet_for_90_days_says_so_and_offers_to_edit_or_delete_it(client, alert):
    _, manage, subscription = alert
    quiet_for(subscription, 91)
    matched(subscription, at=timezone.now() - dt.timedelta(days=95))

    html = page(client.get(manage))

    text = cell(html, subscription, "Activity")
    assert QUIET in text
    assert "If it isn’t finding what you hoped for, change its search “\"facial recognition\"” or delete it" in text
    quiet = re.search(r'<div class="quiet">(.*?)</div>', row(html, subscription), re.S).group(1)
    token = manage.split("/")[3]
    assert f'<a href="/alerts/manage/{token}/{subscription.pk}/">change its search' in quiet
    assert f'action="/alerts/manage/{token}/{subscription.pk}/delete/"' in quiet

    # Its offer to delete does delete it.
    response = client.post(f"/alerts/manage/{token}/{subscription.pk}/delete/", follow=True)
    assert "Deleted “\"facial recognition\"”." in status_region(page(response))
    assert not Subscription.objects.filter(pk=subscription.pk).exists()


@pytest.mark.parametrize("case", ["young", "matched lately", "paused", "edited lately", "setting"])
def test_an_alert_is_not_called_quiet_before_its_time(client, alert, settings, case):
    _, manage, subscription = alert
    quiet_for(subscription, 91)
    if case == "young":
        quiet_for(subscription, 89)
    elif case == "matched lately":
        matched(subscription, at=timezone.now() - dt.timedelta(days=89))
    elif case == "paused":
        # A paused alert is not matched at all: its silence says nothing about its search.
        Subscription.objects.filter(pk=subscription.pk).update(paused=True)
    elif case == "edited lately":
        Subscription.objects.filter(pk=subscription.pk).update(updated_at=timezone.now() - dt.timedelta(days=3))
    elif case == "setting":
        settings.QUIET_ALERT_DAYS = 120

    assert "Nothing has matched this alert" not in page(client.get(manage))


def test_the_quiet_period_follows_the_setting(client, alert, settings):
    settings.QUIET_ALERT_DAYS = 30
    _, manage, subscription = alert
    quiet_for(subscription, 31)

    assert "Nothing has matched this alert in the last 30 days." in cell(page(client.get(manage)), subscription,
                                                                         "Activity")


# A followed question is a row too.

def test_a_followed_question_waiting_for_an_answer(client, alert):
    subscriber, manage, _ = alert
    q = question(heading="Prisons: Staff numbers")
    follow = follow_question(subscriber=subscriber, question=q)

    html = page(client.get(manage))

    assert cell(html, follow, "Search") == "Following: Prisons: Staff numbers Waiting for an answer."
    assert f'<a href="{q.get_absolute_url()}">Prisons: Staff numbers</a>' in row(html, follow)
    assert cell(html, follow, "About") == "Its answer, corrections and withdrawal"
    assert cell(html, follow, "Status") == "On"
    token = manage.split("/")[3]
    actions = row(html, follow)
    # A follow has no search to edit; it can be paused and deleted like any alert.
    assert f"/alerts/manage/{token}/{follow.pk}/\"" not in actions and ">Edit<" not in actions
    assert f"/{follow.pk}/pause/" in actions and f"/{follow.pk}/delete/" in actions


def test_a_followed_question_that_was_answered_says_until_when_corrections_are_followed(client, alert, settings):
    settings.FOLLOW_WINDOW_DAYS = 30
    subscriber, manage, _ = alert
    answered = dt.date(2026, 3, 3)
    q = question(heading="Prisons: Staff numbers", date_answered=answered, answer_text="There are 20,000.")
    follow = follow_question(subscriber=subscriber, question=q)
    event = QuestionEvent.objects.create(question=q, kind="answered", key="answered", matched_at=timezone.now())
    found = match(follow, event)

    html = page(client.get(manage))

    assert cell(html, follow, "Search") == ("Following: Prisons: Staff numbers Answered on 3 March 2026. "
                                            "Corrections followed until 2 April 2026.")
    assert cell(html, follow, "Activity").startswith(f"Last matched {when(found.created_at)}: see the question")
    assert f'<a href="{q.get_absolute_url()}">see the question' in row(html, follow)


def test_a_retired_follow_says_why_it_ended_and_offers_only_delete(client, alert):
    subscriber, manage, _ = alert
    q = question(heading="Prisons: Staff numbers", date_answered=dt.date(2026, 1, 5), answer_text="20,000.")
    retired_at = timezone.now() - dt.timedelta(days=2)
    follow = follow_question(subscriber=subscriber, question=q, retired_at=retired_at)

    html = page(client.get(manage))

    assert cell(html, follow, "Search") == (
        f"Following: Prisons: Staff numbers Ended on {when(retired_at, 'j F Y')}: this question was answered and "
        "its corrections window has passed, so we stopped following it.")
    assert cell(html, follow, "Status") == "Ended"
    actions = row(html, follow)
    assert "/pause/" not in actions and "/resume/" not in actions and ">Edit<" not in actions
    assert f"/{follow.pk}/delete/" in actions


def test_a_withdrawn_question_is_said_to_be_withdrawn(client, alert):
    subscriber, manage, _ = alert
    follow = follow_question(subscriber=subscriber,
                             question=question(heading="Prisons: Staff numbers", is_withdrawn=True))

    assert cell(page(client.get(manage)), follow, "Search") == (
        "Following: Prisons: Staff numbers This question was withdrawn.")


# A bounded number of queries, however many alerts.

def manage_queries(client, manage: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(manage).status_code == 200
    return len(queries)


def test_the_page_costs_the_same_queries_for_one_alert_as_for_many(client, alert, django_assert_max_num_queries):
    subscriber, manage, subscription = alert
    matched(subscription)
    send_alerts()
    one = manage_queries(client, manage)

    for number in range(12):
        extra = Subscription.objects.create(subscriber=subscriber, query=f"topic{number}",
                                            canonical_query=f"topic{number}", confirmed_at=timezone.now())
        matched(extra)
        follow_question(subscriber=subscriber, question=question(), retired_at=timezone.now() if number % 2 else None)
    send_alerts()
    deliver_immediate()

    assert manage_queries(client, manage) == one
    with django_assert_max_num_queries(2):
        found = activity.alert_activity(subscriber)
    assert len(found) == 25 and all(a.last_matched_at for pk, a in found.items() if pk == subscription.pk)


# One email or one per alert.

def grouping(client, manage: str, choice: str | None, **extra):
    data = {} if choice is None else {"grouping": choice}
    return client.post(f"{manage}grouping/", data, **extra)


def checked(html: str) -> list[str]:
    return re.findall(r'<input type="radio" name="grouping" id="grouping-\w+" value="(\w+)" checked', html)


def test_the_grouping_form_starts_at_one_email_and_keeps_a_new_choice(client, alert):
    subscriber, manage, _ = alert
    html = page(client.get(manage))
    form = re.search(r'<form method="post" action="([^"]+)">(.*?)</form>', html.split('id="grouping-heading"')[1],
                     re.S)
    assert form.group(1) == f"{manage}grouping/"
    assert "csrfmiddlewaretoken" in form.group(2)
    assert "<legend>When more than one alert has news, send it as</legend>" in form.group(2)
    assert checked(html) == ["combined"]

    response = grouping(client, manage, "separate")

    assert response.status_code == 302 and response["Location"] == manage
    subscriber.refresh_from_db()
    assert subscriber.email_grouping == "separate"
    html = page(client.get(manage))
    assert "Saved: each alert will now come in an email of its own." in status_region(html)
    assert checked(html) == ["separate"]

    assert grouping(client, manage, "combined").status_code == 302
    html = page(client.get(manage))
    assert "Saved: news from all your alerts will now come together in one email" in status_region(html)
    assert checked(html) == ["combined"]


@pytest.mark.parametrize("choice", ["weekly", "", "SEPARATE", None])
def test_a_choice_that_is_not_offered_is_refused(client, alert, choice):
    subscriber, manage, _ = alert
    grouping(client, manage, "separate")

    response = grouping(client, manage, choice)

    assert response.status_code == 400
    html = page(response)
    assert "<title>Error: My alerts" in html
    assert "Choose one email for all your alerts, or one email per alert." in html
    assert 'href="#grouping-combined"' in html and 'id="grouping-combined"' in html
    subscriber.refresh_from_db()
    assert subscriber.email_grouping == "separate"


def test_the_grouping_needs_a_good_link_a_post_and_its_csrf_token(client, alert):
    subscriber, manage, _ = alert
    token = manage.split("/")[3]

    tampered = grouping(client, f"/alerts/manage/{token[:-2]}xx/", "separate")
    assert tampered.status_code == 400
    other = Subscriber.objects.create(email="bo@example.org", confirmed_at=timezone.now())
    unsubscribe_link = f"/alerts/manage/{tokens.make(other, tokens.UNSUBSCRIBE)}/"
    assert grouping(client, unsubscribe_link, "separate").status_code == 400
    assert client.get(f"{manage}grouping/").status_code == 405

    strict = Client(enforce_csrf_checks=True)
    assert grouping(strict, manage, "separate").status_code == 403
    subscriber.refresh_from_db()
    other.refresh_from_db()
    assert subscriber.email_grouping == other.email_grouping == "combined"

    csrf = str(strict.get(manage).context["csrf_token"])
    assert strict.post(f"{manage}grouping/", {"grouping": "separate", "csrfmiddlewaretoken": csrf}).status_code == 302
    subscriber.refresh_from_db()
    assert subscriber.email_grouping == "separate"


def test_set_email_grouping_refuses_what_is_not_a_choice():
    from alerts.subscribing import set_email_grouping

    subscriber = Subscriber.objects.create(email="cy@example.org")
    with pytest.raises(ValueError):
        set_email_grouping(subscriber, "daily")
    set_email_grouping(subscriber, Subscriber.Grouping.SEPARATE)
    subscriber.refresh_from_db()
    assert subscriber.email_grouping == "separate"
