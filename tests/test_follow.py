"""Following one question ("email me when this is answered"): the form on its page, the double opt-in, what
the follower is sent, and how a follow ends by itself once its question is settled."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from django.core import mail
from django.utils import timezone

from alerts import tokens
from alerts.delivery import deliver_immediate, send_due
from alerts.following import retire_follows
from alerts.matching import mark_matched, match_events
from alerts.models import Delivery, Match, Subscriber, Subscription
from alerts.percolator import Percolator
from questions.models import Question, QuestionEvent
from tests.conftest import deliver, html_part, link_in, status_region, words
from tests.factories import (
    ANSWER,
    CORRECTED,
    HEADING,
    answered,
    corrected,
    follow_question,
    holding,
    land,
    pairs,
    record,
    subscribe,
    withdrawn,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_percolators")]

def follow_url(question: Question) -> str:
    return f"/alerts/follow/{question.pk}/"


def ask_to_follow(client, question: Question, email: str = "ada@example.org", **extra):
    return client.post(follow_url(question), {"email": email, "website": ""} | extra)


def at(days: float) -> dt.datetime:
    return timezone.now() + dt.timedelta(days=days)


def date_events(question: Question, key: str, when: dt.datetime) -> None:
    assert QuestionEvent.objects.filter(question=question, key=key).update(created_at=when) == 1


def matched_kinds(subscription: Subscription) -> list[str]:
    """The kind of each event matched for the alert, in the order they came: one recorded twice shows twice."""
    kinds = dict(QuestionEvent.objects.values_list("pk", "kind"))
    return [kinds[event] for _, event in pairs(subscription.matches.all())]


# Double opt-in.


def test_a_follow_sends_nothing_until_it_is_confirmed_from_the_inbox(client):
    question = land(record())

    response = ask_to_follow(client, question)

    assert response.status_code == 302 and response["Location"] == "/alerts/check-your-inbox/"
    assert "You asked us to email ada@example.org." in words(client.get(response["Location"]).content)
    [confirmation] = mail.outbox
    assert confirmation.to == ["ada@example.org"]
    assert confirmation.subject == "Confirm your alert for written questions"
    assert f"when this question is answered: {HEADING}" in confirmation.body
    assert f"when this question is answered: {HEADING}" in words(html_part(confirmation))
    follow = Subscription.objects.get()
    assert follow.question == question and follow.confirmed_at is None

    land(answered(record()))

    assert deliver() == []
    assert not Match.objects.exists()

    confirm = link_in(confirmation, "/alerts/confirm/")
    shown = words(client.get(confirm).content)
    assert f"When this question is answered: {HEADING}" in shown and "Confirm my alert" in shown
    after = client.post(confirm, follow=True)
    assert f"Your alert is on: we’ll email you when “{HEADING}” is answered." in status_region(
        html.unescape(after.content.decode()))

    land(corrected(record()))
    [alert] = deliver()

    assert alert.to == ["ada@example.org"]
    assert alert.subject == f"Answer corrected: “{HEADING}”"
    assert "The question you follow" in words(html_part(alert)) and CORRECTED in words(html_part(alert))
    assert f"[Answer corrected] {HEADING}" in alert.body and CORRECTED in alert.body


def test_asking_again_before_confirming_sends_another_confirmation_for_the_same_follow(client):
    question = land(record())
    ask_to_follow(client, question)

    ask_to_follow(client, question, email="ADA@example.org")

    assert [m.subject for m in mail.outbox] == ["Confirm your alert for written questions"] * 2
    assert Subscription.objects.count() == 1 and Subscriber.objects.count() == 1
    client.post(link_in(mail.outbox[-1], "/alerts/confirm/"))
    assert Subscription.objects.receiving().get().question == question


def test_following_a_question_already_followed_sends_a_manage_link_not_a_second_follow(client):
    question = land(record())
    ask_to_follow(client, question)
    client.post(link_in(mail.outbox[-1], "/alerts/confirm/"))

    response = ask_to_follow(client, question, email="Ada@Example.org")

    assert response["Location"] == "/alerts/check-your-inbox/"
    assert Subscription.objects.count() == 1
    again = mail.outbox[-1]
    assert again.subject == "Your written question alerts"
    assert "/alerts/confirm/" not in again.body
    manage = link_in(again, "/alerts/manage/")
    assert HEADING in words(client.get(manage).content)


def test_the_manage_link_for_a_repeated_follow_names_the_question_followed(client):
    question = land(record())
    ask_to_follow(client, question)
    client.post(link_in(mail.outbox[-1], "/alerts/confirm/"))

    ask_to_follow(client, question)

    again = mail.outbox[-1]
    for part in (again.body, words(html_part(again))):
        assert HEADING in part
        assert "an alert for ," not in part and "an alert for  ," not in part


@pytest.mark.parametrize("reason", ["bounced", "complained"])
def test_an_address_we_must_not_email_is_shown_the_same_page_and_sent_nothing(client, reason):
    question = land(record())
    subscriber = Subscriber.objects.create(email="gone@example.org", confirmed_at=timezone.now())
    subscriber.suppress(reason)

    response = ask_to_follow(client, question, email="gone@example.org")

    assert response.status_code == 302 and response["Location"] == "/alerts/check-your-inbox/"
    assert not mail.outbox and not Delivery.objects.exists()
    assert not Subscription.objects.exists()


# The form on the question's page.


def test_the_form_is_on_unanswered_and_holding_answered_questions_only(client):
    waiting = land(record("wq-waiting"))
    held = land(holding(record("wq-holding")))
    done = land(answered(record("wq-answered")))
    gone = land(withdrawn(record("wq-withdrawn")))

    def offers_follow(question: Question) -> bool:
        page = client.get(question.get_absolute_url()).content.decode()
        return "Email me when this is answered" in page or follow_url(question) in page

    assert offers_follow(waiting) and offers_follow(held)
    assert not offers_follow(done) and not offers_follow(gone)
    assert "Withdrawn" in words(client.get(gone.get_absolute_url()).content)


def test_a_bad_address_is_refused_with_a_400_and_an_error_summary(client):
    question = land(record())

    response = ask_to_follow(client, question, email="ada at example")

    assert response.status_code == 400
    page = response.content.decode()
    summary = re.search(r'<div class="error-summary".*?</div>', page, re.S)
    assert summary, "no error summary"
    assert "There is a problem" in summary.group(0)
    assert re.search(r'<a href="#id_email">Enter a valid email address\.</a>', summary.group(0))
    assert 'aria-invalid="true"' in page and 'value="ada at example"' in page
    assert HEADING in words(page)  # still the question's page
    assert not mail.outbox and not Subscription.objects.exists()

    empty = ask_to_follow(client, question, email="")
    assert empty.status_code == 400 and "There is a problem" in empty.content.decode()


def test_a_refused_follow_says_error_in_the_page_title(client):
    question = land(record())

    response = ask_to_follow(client, question, email="ada at example")

    title = re.search(r"<title>(.*?)</title>", response.content.decode(), re.S).group(1)
    assert title.strip().startswith("Error:"), title


def test_a_bot_filling_the_hidden_field_is_shown_success_and_nothing_happens(client):
    question = land(record())

    response = ask_to_follow(client, question, website="https://spam.example")

    assert response.status_code == 302 and response["Location"] == "/alerts/check-your-inbox/"
    assert not mail.outbox and not Subscriber.objects.exists() and not Subscription.objects.exists()


def test_follows_and_signups_share_one_budget_of_emails_per_address(client, settings, limiter_clock):
    settings.RATELIMIT_SIGNUP_PER_IP, settings.RATELIMIT_SIGNUP_PER_ADDRESS = "50/h", "3/h"
    first, second = land(record("wq-1")), land(record("wq-2", heading="Schools: Roofs"))

    def sign_up(q: str):
        return client.post("/alerts/new/", {"email": "victim@example.org", "q": q, "frequency": "daily",
                                            "alert_on": "both", "label": "", "website": ""})

    statuses = [sign_up("boilers").status_code, sign_up("roofs").status_code,
                ask_to_follow(client, first, email="victim@example.org").status_code,
                ask_to_follow(client, second, email="victim@example.org").status_code,
                sign_up("heating").status_code]

    # Over the address's limit the page is the same, and nothing is sent.
    assert statuses == [302] * 5
    assert [m.to for m in mail.outbox] == [["victim@example.org"]] * 3
    assert Subscription.objects.filter(question=second).count() == 0
    assert ask_to_follow(client, second, email="other@example.org").status_code == 302


def test_the_follow_url_takes_only_posts_for_questions_that_exist(client):
    question = land(record())

    assert client.get(follow_url(question)).status_code == 405
    assert client.post(f"/alerts/follow/{question.pk + 1000}/", {"email": "ada@example.org"}).status_code == 404
    assert not mail.outbox and not Subscription.objects.exists()


# What a follower is sent.


def test_a_follower_hears_of_the_answer_and_not_of_the_question_being_tabled(client):
    question = land(record())
    follow = follow_question("ada@example.org", question)

    assert deliver() == []

    land(answered(record()))
    [alert] = deliver()

    assert alert.to == ["ada@example.org"]
    assert alert.subject == f"Answered: “{HEADING}”"
    shown = words(html_part(alert))
    assert shown.startswith(f"Written question alerts The question you follow Answered {HEADING}")
    assert "Asked by: Jane Example (Labour - Norwich South)" in shown
    assert "what funding is available to replace school boilers" in shown and ANSWER in shown
    assert "Stop following this question" in shown
    assert f"[Answered] {HEADING}" in alert.body and ANSWER in alert.body
    assert matched_kinds(follow) == ["answered"]


# Retiring a follow once its question is settled.


def test_an_answered_question_retires_its_follows_a_window_after_the_answer(client, settings):
    settings.FOLLOW_WINDOW_DAYS = 30
    question = land(answered(record()))
    follow = follow_question("ada@example.org", question)
    waiting = follow_question("ada@example.org", land(record("wq-2", heading="Schools: Roofs")))
    search = subscribe("ada@example.org", "schools")

    assert retire_follows(at(29)) == 0
    when = at(31)
    assert retire_follows(when) == 1

    for subscription in (follow, waiting, search):
        subscription.refresh_from_db()
    assert follow.retired_at == when
    assert waiting.retired_at is None and search.retired_at is None
    assert retire_follows(at(32)) == 0


def test_a_holding_answer_does_not_settle_the_question(client, settings):
    settings.FOLLOW_WINDOW_DAYS = 30
    question = land(holding(record()))
    follow = follow_question("ada@example.org", question)

    assert retire_follows(at(365)) == 0

    land(answered(record()))
    assert retire_follows(at(29)) == 0
    assert retire_follows(at(31)) == 1
    follow.refresh_from_db()
    assert follow.retired_at is not None


def test_a_correction_inside_the_window_pushes_retirement_back(client, settings):
    settings.FOLLOW_WINDOW_DAYS = 30
    twenty_days_ago = at(-20)
    question = land(answered(record()))
    date_events(question, "answered", twenty_days_ago)
    follow = follow_question("ada@example.org", question)
    uncorrected = land(answered(record("wq-2", heading="Schools: Roofs")))
    date_events(uncorrected, "answered", twenty_days_ago)
    other = follow_question("ada@example.org", uncorrected)

    land(corrected(record()))  # today

    assert retire_follows(at(11)) == 1
    other.refresh_from_db()
    follow.refresh_from_db()
    assert other.retired_at is not None and follow.retired_at is None
    assert retire_follows(at(29)) == 0
    assert retire_follows(at(31)) == 1
    follow.refresh_from_db()
    assert follow.retired_at is not None


def test_a_withdrawn_question_settles_and_the_manage_page_says_so(client, settings):
    settings.FOLLOW_WINDOW_DAYS = 30
    question = land(withdrawn(record()))
    follow = follow_question("ada@example.org", question)

    assert retire_follows(at(29)) == 0
    assert retire_follows(at(31)) == 1

    page = words(client.get(f"/alerts/manage/{tokens.make(follow.subscriber, tokens.MANAGE)}/").content)
    assert "this question was withdrawn, so we stopped following it" in page


def test_a_retired_follow_is_sent_nothing_more(client, settings):
    settings.FOLLOW_WINDOW_DAYS = 30
    question = land(answered(record()))
    follow = follow_question("ada@example.org", question)
    retire_follows(at(31))

    land(corrected(record()))

    assert deliver() == []
    assert not Match.objects.filter(subscription=follow).exists()


# Matching.


def test_the_percolator_holds_saved_searches_and_never_follows(client):
    question = land(record())
    search = subscribe("ada@example.org", "boilers")
    follow_question("ada@example.org", question)
    follow_question("bo@example.org", question)
    percolator = Percolator()

    first = percolator.refresh()

    assert percolator.held() == {search.pk: "boilers"}
    assert (first.loaded, first.refused) == (1, 0)
    follow_question("cy@example.org", question)
    again = percolator.refresh()
    assert percolator.held() == {search.pk: "boilers"}
    assert (again.loaded, again.refused, again.removed, again.checked_ids) == (0, 0, 0, False)


def test_sharded_matching_gives_each_follower_one_match_per_event(client, settings):
    settings.MATCH_SHARDS = 3
    question = land(record())
    ada = follow_question("ada@example.org", question)
    bo = follow_question("bo@example.org", question)
    for number in range(6):
        subscribe(f"reader{number}@example.org", ("schools", "heating", "boilers", "education",
                                                         "member:example", "department:education")[number])
    QuestionEvent.objects.update(matched_at=timezone.now())
    land(answered(record()))
    ids = list(QuestionEvent.objects.filter(matched_at__isnull=True).values_list("id", flat=True))

    results = [match_events(shard=shard, shards=3, event_ids=ids) for shard in range(3)]
    mark_matched(ids)

    followers = {ada.subscriber_id, bo.subscriber_id}
    assert [len(followers & set(r.immediate_subscriber_ids)) for r in results].count(2) == 1
    assert sum(len(followers & set(r.immediate_subscriber_ids)) for r in results) == 2
    for follow in (ada, bo):
        assert matched_kinds(follow) == ["answered"]
    deliver_immediate()
    send_due()
    to_followers = [m for m in mail.outbox if m.to[0] in ("ada@example.org", "bo@example.org")]
    assert sorted(m.to[0] for m in to_followers) == ["ada@example.org", "bo@example.org"]
    assert {m.subject for m in to_followers} == {f"Answered: “{HEADING}”"}


def test_a_sharded_task_run_sends_each_follower_one_email(client, settings, monkeypatch):
    from celery.backends.cache import CacheBackend

    from alerts import tasks
    from config.celery import app

    settings.MATCH_SHARDS = 3
    question = land(record())
    follow = follow_question("ada@example.org", question)
    for number, query in enumerate(["schools", "heating", "boilers", "education"]):
        subscribe(f"reader{number}@example.org", query)
    QuestionEvent.objects.update(matched_at=timezone.now())
    land(answered(record()))
    monkeypatch.setattr(app._local, "backend", CacheBackend(app=app, backend="memory"), raising=False)

    outcome = tasks.match_events_task.apply().get(disable_sync_subtasks=False)

    assert outcome == {"fanned_out": 1}
    assert matched_kinds(follow) == ["answered"]
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()
    to_ada = [m for m in mail.outbox if m.to == ["ada@example.org"]]
    assert [m.subject for m in to_ada] == [f"Answered: “{HEADING}”"]
