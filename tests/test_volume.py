"""How much a search would send, estimated before anyone subscribes: the numbers, and the signup and edit
pages that show them with a warning for a search that matches too much."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.utils import timezone

from alerts import tokens, volume
from alerts.models import Subscriber, Subscription
from alerts.volume import Emails, Volume, amount, estimate
from questions.search import canonical, parse
from tests.conftest import BROAD, NARROW_IT, SIGNUP, TOO_OFTEN, visible
from tests.factories import FILLER, NEWEST, ask, filler, store

pytestmark = pytest.mark.django_db

def estimate_of(query: str, today: dt.date | None = None) -> Volume:
    return estimate(parse(query), today or timezone.localdate())


# The numbers


def test_rates_are_counted_over_the_last_year_of_the_archive_by_tabled_and_answered_dates():
    filler()
    # Two questions a week for a year, one of each pair answered the day after it was tabled.
    weekly = [NEWEST - dt.timedelta(days=7 * week + 1) for week in range(52)]
    store([ask(heading="Prison staffing", tabled=day) for day in weekly]
          + [ask(heading="Prison staffing", tabled=day, answered=day + dt.timedelta(days=1)) for day in weekly])

    found = estimate_of("prison")

    assert (found.window_from, found.window_to) == (NEWEST - dt.timedelta(days=364), NEWEST)
    assert (found.questions, found.answers) == (104, 52)
    assert found.questions_per_week == pytest.approx(104 * 7 / 365)
    assert found.answers_per_week == pytest.approx(52 * 7 / 365)
    assert (found.question_days, found.answer_days, found.days) == (52, 52, 104)
    assert found.questions_text == "about 2 new questions" and found.answers_text == "about one answer"
    both = found.emails_for("both")
    # A day's new questions come in one email; each answer may come in one of its own.
    assert both.immediate == pytest.approx((52 + 52) * 7 / 365)
    assert both.daily == pytest.approx(104 * 7 / 365) and both.weekly == 1.0
    assert found.emails_for("new").immediate == pytest.approx(52 * 7 / 365)
    assert found.emails_for("answers").daily == pytest.approx(52 * 7 / 365)


def test_matches_before_the_window_count_in_the_share_but_not_in_the_rates():
    filler()
    store([ask(heading="Badger culling", tabled=NEWEST - dt.timedelta(days=365 + number)) for number in range(30)]
          + [ask(heading="Badger culling", tabled=NEWEST - dt.timedelta(days=364))])

    found = estimate_of("badger")

    assert found.matching == 31 and found.questions == 1 and found.answers == 0
    assert found.questions_text == "fewer than one new question"


def test_the_window_ends_on_the_newest_day_held_not_today_and_never_after_today():
    filler(newest=NEWEST)
    store([ask(heading="Hedgehogs", tabled=NEWEST - dt.timedelta(days=number)) for number in range(10)])

    assert estimate_of("hedgehogs", today=NEWEST + dt.timedelta(days=400)).questions == 10
    # A record dated in the future cannot stretch the window past today.
    store([ask(heading="Hedgehogs", tabled=NEWEST + dt.timedelta(days=30))])
    found = estimate_of("hedgehogs", today=NEWEST)
    assert found.window_to == NEWEST and found.questions == 10


def test_an_archive_shorter_than_a_year_gives_a_rate_over_its_own_span():
    # Ten weeks of archive, 30 matching questions in it: three a week, not 30 spread over a year.
    filler(count=70, days=70)
    store([ask(heading="Hedgehogs", tabled=NEWEST - dt.timedelta(days=number * 2)) for number in range(30)])

    found = estimate_of("hedgehogs")

    assert found.window_days == 70
    assert found.questions_per_week == pytest.approx(3.0)
    assert found.questions_text == "about 3 new questions"


def test_a_day_with_a_match_tabled_and_another_answered_is_one_digest():
    filler()
    store([ask(heading="Hedgehogs", tabled=NEWEST), ask(heading="Hedgehogs", tabled=NEWEST - dt.timedelta(days=9),
                                                        answered=NEWEST)])

    found = estimate_of("hedgehogs")

    assert (found.question_days, found.answer_days, found.days) == (2, 1, 2)


def test_the_share_is_of_every_question_in_the_archive_and_broad_from_one_in_ten():
    filler(count=270)
    store([ask(heading="Government spending", tabled=NEWEST - dt.timedelta(days=number)) for number in range(29)])
    assert estimate_of("government").share == pytest.approx(29 / 299)
    assert not estimate_of("government").broad

    store([ask(heading="Government spending", tabled=NEWEST)])

    found = estimate_of("government")
    assert found.share == pytest.approx(0.10) and found.share_percent == 10
    assert found.broad and (found.matching_text, found.archive_text) == ("30", "300")


def test_a_small_archive_calls_no_search_broad():
    filler(count=FILLER - 11)
    store([ask(heading="Government spending", tabled=NEWEST) for _ in range(10)])

    found = estimate_of("government")

    assert found.share == pytest.approx(10 / (FILLER - 1))
    assert not found.broad


def test_an_empty_archive_estimates_nothing():
    found = estimate_of("government")

    assert (found.archive, found.matching, found.share, found.broad) == (0, 0, 0.0, False)
    assert found.window_to is None and found.emails == [] and found.questions_per_week == 0


def test_fields_select_as_the_search_page_does():
    filler()
    store([ask(heading="Fisheries", tabled=NEWEST, department="Home Office") for _ in range(3)])

    assert estimate_of('department:"Home Office"').matching == 3
    assert estimate_of('fisheries -department:"Home Office"').matching == FILLER


def test_as_it_happens_is_too_often_from_three_emails_a_day_on_average():
    assert Emails(Subscription.AlertOn.BOTH, immediate=21, daily=7, weekly=1).too_many_as_it_happens
    assert not Emails(Subscription.AlertOn.BOTH, immediate=20.9, daily=7, weekly=1).too_many_as_it_happens
    assert Emails(Subscription.AlertOn.BOTH, immediate=21, daily=7, weekly=1).immediate_per_day_text == (
        "up to about 3 emails")


def test_a_busy_month_in_a_quiet_year_averages_out():
    filler()
    # Every day of the last four weeks: new questions in one email, and two answers in emails of their own.
    days = [NEWEST - dt.timedelta(days=number) for number in range(28)]
    store([ask(heading="Prison staffing", tabled=day, answered=day) for day in days for _ in range(2)])

    found = estimate_of("prison")

    both = found.emails_for("both")
    assert both.immediate_per_day == pytest.approx(3 * 28 * 7 / 365 / 7)
    assert found.window_days == 365
    # Over a year the four weeks average out: not too often.
    assert not both.too_many_as_it_happens


def test_amounts_read_as_a_person_would_say_them():
    assert amount(0, "email") == "no emails"
    assert amount(0.4, "email") == "fewer than one email"
    assert amount(1.2, "email") == "about one email"
    assert amount(2.46, "email") == "about 2.5 emails"
    assert amount(3.02, "email") == "about 3 emails"
    assert amount(1234.4, "email") == "about 1,234 emails"


# The pages


def test_signup_warns_about_a_broad_search_and_suggests_a_daily_digest(client, busy_archive):
    response = client.get(SIGNUP, {"q": "government"})

    assert response.status_code == 200
    text = visible(response)
    assert BROAD in text and NARROW_IT in text and TOO_OFTEN in text
    warning = re.search(r'<div class="caution">.*?</div>', response.content.decode(), re.S).group(0)
    assert 'href="/help/"' in warning
    # Beside the button that saves the alert, not only in the preview below it.
    assert text.index(NARROW_IT) < text.index("Email me a link to confirm") < text.index("How much email to expect")
    assert ("In the 28 days to 30 June 2025, the newest day in our archive, this search matched about 28 new "
            "questions and about 28 answers a week.") in text
    assert ("Set to email you about new questions and answers, this alert would send: "
            "As it happens: up to about 35 emails a week (your choice) "
            "Daily digest: about 7 emails a week "
            "Weekly digest: one email a week") in text


def test_a_narrow_search_gets_its_numbers_and_no_warning(client, busy_archive):
    text = visible(client.get(SIGNUP, {"q": "hedgehogs"}))

    assert "very broad" not in text and "many times a day" not in text
    assert "this search matched about 3 new questions and about 3 answers a week" in text
    assert "As it happens: up to about 6 emails a week (your choice)" in text
    assert "Daily digest: about 3 emails a week" in text


def test_the_daily_digest_suggestion_is_only_for_as_it_happens(client, busy_archive):
    base = {"email": "", "q": "government", "alert_on": "both", "preview": "1"}

    daily = visible(client.post(SIGNUP, base | {"frequency": "daily"}))
    weekly = visible(client.post(SIGNUP, base | {"frequency": "weekly"}))
    new_only = visible(client.post(SIGNUP, base | {"frequency": "immediate", "alert_on": "new"}))

    for text in (daily, weekly, new_only):
        assert BROAD in text and "many times a day" not in text
    assert "Daily digest: about 7 emails a week (your choice)" in daily
    assert "Weekly digest: one email a week (your choice)" in weekly
    # New questions come out in one batch a day: one email a day at most.
    assert ("Set to email you about new questions only, this alert would send: "
            "As it happens: up to about 7 emails a week (your choice)") in new_only


def test_a_refused_search_shows_no_estimate(client, busy_archive):
    text = visible(client.post(SIGNUP, {"email": "", "q": "government AND", "frequency": "immediate",
                                        "alert_on": "both", "preview": "1"}))

    assert "nothing after it" in text
    assert "very broad" not in text and "How much email to expect" not in text


def edit_page(frequency: str, query: str = "government", alert_on: str = "both") -> str:
    subscriber = Subscriber.objects.create(email="ada@example.org", confirmed_at=timezone.now())
    subscription = Subscription.objects.create(
        subscriber=subscriber, query=query, canonical_query=canonical(parse(query)), frequency=frequency,
        alert_on=alert_on, confirmed_at=timezone.now())
    return f"/alerts/manage/{tokens.make(subscriber, tokens.MANAGE)}/{subscription.pk}/"


def test_editing_an_immediate_broad_alert_warns_and_suggests_a_daily_digest(client, busy_archive):
    response = client.get(edit_page("immediate"))

    assert response.status_code == 200
    text = visible(response)
    assert BROAD in text and NARROW_IT in text and TOO_OFTEN in text
    assert text.index(TOO_OFTEN) < text.index("Save changes")
    assert "As it happens: up to about 35 emails a week (your choice)" in text


def test_editing_a_daily_alert_warns_of_breadth_only(client, busy_archive):
    text = visible(client.get(edit_page("daily")))

    assert BROAD in text and "many times a day" not in text
    assert "Daily digest: about 7 emails a week (your choice)" in text


def test_editing_to_a_narrow_search_drops_the_warning(client, busy_archive):
    url = edit_page("immediate")

    text = visible(client.post(url, {"q": "hedgehogs", "label": "", "frequency": "immediate", "alert_on": "both",
                                     "preview": "1"}))

    assert "very broad" not in text and "many times a day" not in text
    assert "As it happens: up to about 6 emails a week (your choice)" in text


# An estimate too slow for the page


def prisons_archive() -> None:
    filler()
    store([ask(heading=f"Prisons {n}", tabled=NEWEST - dt.timedelta(days=n), answered=NEWEST) for n in range(20)])


@pytest.mark.worker
@pytest.mark.postgres
def test_an_estimate_too_slow_for_the_page_is_worked_out_by_a_worker_for_the_next_preview(
        celery_worker, client, monkeypatch):
    from tests.conftest import wait_until

    prisons_archive()
    # As if counting over the year took longer than a page may wait: the page asks a worker instead.
    monkeypatch.setattr(volume, "ESTIMATE_NOW_SECONDS", 0)
    page = client.get(SIGNUP, {"q": "prisons"}).content.decode()
    assert "What this alert would have sent" in page and "20 in all" in page
    assert "still working out how much email this search would send" in page
    assert "How much email to expect" not in page
    wait_until(lambda: "How much email to expect" in client.get(SIGNUP, {"q": "prisons"}).content.decode(),
               timeout=60, message="the worker's estimate to show in the preview")


@pytest.mark.django_db
def test_a_few_estimates_a_minute_are_asked_of_the_workers_whatever_is_previewed(client, monkeypatch):
    prisons_archive()
    monkeypatch.setattr(volume, "ESTIMATE_NOW_SECONDS", 0)
    monkeypatch.setattr(volume, "ESTIMATES_ASKED_PER_MINUTE", 2)
    # Tasks run in this process here: each one asked for is worked out before the page answers.
    for query in ("prisons", "prisons 1", "prisons 2", "prisons 2"):
        client.get(SIGNUP, {"q": query})
    from django.core.cache import cache

    def kept(query: str) -> Volume | None:
        return cache.get(volume._estimate_key(parse(query), timezone.localdate()))

    assert kept("prisons").questions and kept("prisons 1").questions
    assert kept("prisons 2") is None
