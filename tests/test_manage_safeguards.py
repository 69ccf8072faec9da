"""Every place an alert is made warns as the signup page does, from the same estimate; an existing broad alert
is flagged; an import makes the estimate afresh at once; a signup over the connection's limit keeps what was
typed and says when; and the words of confirming, following and the manage page say what is true."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from alerts import tokens
from alerts.models import Subscriber, Subscription
from questions.models import Source
from questions.search import canonical, parse
from tests.conftest import (
    BROAD,
    NARROW_IT,
    SIGNUP,
    TOO_OFTEN,
    forty_minutes_before_the_window_turns,
    link_in,
    status_region,
    visible,
)
from tests.factories import NEWEST, ask, confirmed, filler, match, store, unanswered

pytestmark = pytest.mark.django_db

HELD = "Check this alert before it is added"


def alert(subscriber: Subscriber, query: str, frequency: str = "immediate", **fields) -> Subscription:
    return Subscription.objects.create(subscriber=subscriber, query=query, canonical_query=canonical(parse(query)),
                                       frequency=frequency, confirmed_at=timezone.now(), **fields)


def add(client, manage: str, q: str, frequency: str = "immediate", **extra):
    return client.post(f"{manage}add/", {"q": q, "label": "", "frequency": frequency, "alert_on": "both"} | extra)


def warned(response) -> str:
    """What the form sends back to say its warnings were seen."""
    return re.search(r'name="warned" value="([^"]*)"', response.content.decode()).group(1)


def row_of(response, query: str) -> str:
    rows = re.findall(r"<tr>.*?</tr>", response.content.decode(), re.S)
    return " ".join(re.sub(r"<[^>]+>", " ", next(row for row in rows if f"q={query}" in row)).split())


# Adding from the manage page


def test_a_broad_search_added_from_the_manage_page_is_warned_of_as_on_signup_and_added_once_seen(
        client, busy_archive):
    subscriber, manage = confirmed()
    on_signup = visible(client.get(SIGNUP, {"q": "government"}))

    held = add(client, manage, "government")

    text = visible(held)
    assert held.status_code == 200 and HELD in text
    for warning in (BROAD, NARROW_IT, TOO_OFTEN):
        assert warning in text and warning in on_signup
    assert "Add this alert anyway" in text and "How much email to expect" in text
    assert not subscriber.subscriptions.exists()

    added = add(client, manage, "government", warned=warned(held))

    assert added.status_code == 302 and added["Location"] == manage
    assert subscriber.subscriptions.get().query == "government"
    assert "Added “government”." in status_region(client.get(manage).content.decode())


def test_warnings_seen_for_one_search_do_not_pass_another(client, busy_archive):
    subscriber, manage = confirmed()
    seen = warned(add(client, manage, "government"))

    # Fisheries match 60% of the archive: as broad, but not the search that was warned of.
    other = add(client, manage, "fisheries", frequency="daily", warned=seen)
    assert other.status_code == 200 and "It matches 60% of all the questions we hold" in visible(other)
    # The same search as a daily digest has one warning fewer, which was seen: it is added.
    assert add(client, manage, "government", frequency="daily", warned=seen).status_code == 302
    assert [s.query for s in subscriber.subscriptions.all()] == ["government"]


def test_previewing_on_the_manage_page_shows_the_numbers_and_adds_nothing(client, busy_archive):
    subscriber, manage = confirmed()

    previewed = add(client, manage, "hedgehogs", preview="1")

    text = visible(previewed)
    assert previewed.status_code == 200 and "very broad" not in text and HELD not in text
    assert "As it happens: up to about 6 emails a week (your choice)" in text
    assert not subscriber.subscriptions.exists()
    # A narrow search is added at once, as before.
    assert add(client, manage, "hedgehogs").status_code == 302


def test_editing_to_a_broad_search_is_saved_only_once_the_warning_is_seen(client, busy_archive):
    subscriber, manage = confirmed()
    narrow = alert(subscriber, "hedgehogs", frequency="daily")
    edit = f"{manage}{narrow.pk}/"
    fields = {"q": "government", "label": "", "frequency": "daily", "alert_on": "both"}

    held = client.post(edit, fields)

    assert held.status_code == 200 and "Check this alert before it is saved" in visible(held)
    assert BROAD in visible(held) and "Save changes anyway" in visible(held)
    narrow.refresh_from_db()
    assert narrow.query == "hedgehogs"

    assert client.post(edit, fields | {"warned": warned(held)}).status_code == 302
    narrow.refresh_from_db()
    assert narrow.query == "government"


def test_an_existing_broad_alert_is_flagged_with_what_to_do(client, busy_archive):
    subscriber, manage = confirmed()
    broad = alert(subscriber, "government")
    alert(subscriber, "hedgehogs")

    page = client.get(manage)

    flagged = row_of(page, "government")
    assert ("This search is very broad: it matches 36% of all the questions we hold, so it may email you about a "
            "large share of everything asked in Parliament. Narrow its search “government” , or choose a digest, "
            "to get fewer emails.") in flagged
    assert f'href="{manage}{broad.pk}/"' in page.content.decode()
    assert "very broad" not in row_of(page, "hedgehogs")


# An estimate after an import


def test_a_large_import_is_estimated_afresh_at_once(client, tmp_path):
    filler()
    store([ask(heading="Hedgehogs", tabled=NEWEST - dt.timedelta(days=n)) for n in range(5)])
    subscriber, manage = confirmed()
    alert(subscriber, "hedgehogs")
    assert "very broad" not in visible(client.get(SIGNUP, {"q": "hedgehogs"}))
    assert "very broad" not in row_of(client.get(manage), "hedgehogs")

    records = [{"id": f"import-{n}", "heading": "Hedgehog habitats", "question": "To ask about hedgehogs.",
                "date_tabled": (NEWEST - dt.timedelta(days=n % 300)).isoformat(), "house": "Commons"}
               for n in range(60)]
    path = tmp_path / "hedgehogs.jsonl"
    path.write_text("\n".join(json.dumps(record) for record in records))
    call_command("import_questions", str(path))

    text = visible(client.get(SIGNUP, {"q": "hedgehogs"}))
    assert "This search is very broad. It matches 25% of all the questions we hold (65 of 265)" in text
    assert "it matches 25% of all the questions we hold" in row_of(client.get(manage), "hedgehogs")


def test_a_question_or_two_leave_what_is_kept_alone(client):
    # Four weeks of 420 questions, 20 of them about hedgehogs: five a week.
    filler(count=400, days=28)
    store([ask(heading="Hedgehogs", tabled=NEWEST - dt.timedelta(days=n)) for n in range(20)])
    assert "this search matched about 5 new questions" in visible(client.get(SIGNUP, {"q": "hedgehogs"}))

    # Three more are fewer than 1% of the archive: the estimate kept still stands.
    store([ask(heading="Hedgehogs", tabled=NEWEST) for _ in range(3)])
    assert "this search matched about 5 new questions" in visible(client.get(SIGNUP, {"q": "hedgehogs"}))
    # Five are not.
    store([ask(heading="Hedgehogs", tabled=NEWEST) for _ in range(2)])
    assert "this search matched about 6.2 new questions" in visible(client.get(SIGNUP, {"q": "hedgehogs"}))


# A signup over the connection's limit


def signup_fields(**extra) -> dict:
    return {"email": "ada@example.org", "q": "prisons", "label": "Prison staffing", "frequency": "weekly",
            "alert_on": "answers", "website": ""} | extra


def test_the_sixth_signup_in_an_hour_keeps_the_form_and_says_when_to_try_again(client, settings, limiter_clock):
    settings.RATELIMIT_SIGNUP_PER_IP = "5/h"
    ip = "198.51.100.23"
    forty_minutes_before_the_window_turns(limiter_clock, ip)
    for n in range(5):
        assert client.post(SIGNUP, signup_fields(email=f"n{n}@example.org"), REMOTE_ADDR=ip).status_code == 302
    sent = len(mail.outbox)

    refused = client.post(SIGNUP, signup_fields(), REMOTE_ADDR=ip)

    # The window's last second is its own: it turns over a second later.
    assert refused.status_code == 429 and refused["Retry-After"] == str(40 * 60 + 1)
    html = refused.content.decode()
    text = visible(refused)
    assert ("We have had a lot of requests from your connection in the last hour, so we are not sending more "
            "emails for now. Please try again in about 40 minutes: what you typed is kept below.") in text
    assert ("Already get alerts from us? Email me a link to my alerts: from there you can add this search at "
            "once, with no email to confirm.") in text
    assert 'href="/alerts/link/"' in html
    for value in ("ada@example.org", "prisons", "Prison staffing"):
        assert f'value="{value}"' in html
    assert re.search(r'value="weekly"[^>]*checked', html) and re.search(r'value="answers"[^>]*checked', html)
    assert len(mail.outbox) == sent

    # The same, when the page said, is taken.
    limiter_clock.now += 40 * 60
    assert client.post(SIGNUP, signup_fields(), REMOTE_ADDR=ip).status_code == 429
    limiter_clock.now += 1
    assert client.post(SIGNUP, signup_fields(), REMOTE_ADDR=ip)["Location"] == "/alerts/check-your-inbox/"


def test_an_address_over_its_limits_still_reads_as_any_other(client, settings, limiter_clock):
    settings.RATELIMIT_SIGNUP_PER_ADDRESS = "1/h"
    assert client.post(SIGNUP, signup_fields(), REMOTE_ADDR="198.51.100.1").status_code == 302

    again = client.post(SIGNUP, signup_fields(q="courts"), REMOTE_ADDR="198.51.100.1")

    assert again.status_code == 302 and again["Location"] == "/alerts/check-your-inbox/"
    assert "Retry-After" not in again


# Words


@pytest.mark.django_db(transaction=True)
def test_confirming_an_answers_only_alert_says_answers(client):
    client.post(SIGNUP, signup_fields(label="", q="prisons"))
    confirm = link_in(mail.outbox[-1], "/alerts/confirm/")

    page = client.post(confirm, follow=True).content.decode()

    assert "Your alert is on: we’ll email you when new answers match “prisons”." in status_region(page)


@pytest.mark.django_db(transaction=True)
def test_the_confirm_page_names_the_alert_and_the_address(client):
    client.post(SIGNUP, signup_fields())
    confirm = link_in(mail.outbox[-1], "/alerts/confirm/")

    text = visible(client.get(confirm))

    assert ("Confirm that we may email ada@example.org about this alert: “Prison staffing”, searching for "
            "prisons: weekly digest, answers only") in text
    client.post(confirm)
    assert "You have already confirmed this alert for ada@example.org" in visible(client.get(confirm))


def test_after_a_follow_signing_up_again_goes_back_to_the_question(client):
    question = unanswered()

    inbox = client.post(f"/alerts/follow/{question.pk}/", {"email": "ada@example.org", "website": ""}, follow=True)

    html = inbox.content.decode()
    assert f'<a href="/questions/id/{question.pk}/#follow-heading">Sign up again with the right one</a>' in html
    assert "Email me when this is answered" in visible(client.get(f"/questions/id/{question.pk}/"))


def test_after_unsubscribing_from_a_follow_signing_up_again_goes_back_to_the_question(client):
    question = unanswered()
    subscriber, _ = confirmed()
    follow = Subscription.objects.create(subscriber=subscriber, question=question, label=question.heading,
                                         confirmed_at=timezone.now())
    searched = alert(subscriber, "prisons")

    def unsubscribed(subscription: Subscription) -> str:
        token = tokens.make(subscriber, tokens.UNSUBSCRIBE, sub=subscription.pk)
        return client.post(f"/unsubscribe/{token}/").content.decode()

    assert (f'<a href="/questions/id/{question.pk}/#follow-heading">Sign up again to follow this question</a>'
            in unsubscribed(follow))
    assert '<a href="/alerts/new/?q=prisons">Sign up again for this search</a>' in unsubscribed(searched)


def test_the_manage_page_never_says_nothing_was_checked_beside_a_match(client):
    from questions.models import QuestionEvent

    subscriber, manage = confirmed()
    searched = alert(subscriber, "hedgehogs")
    assert "We haven’t checked for new questions yet" in visible(client.get(manage))

    event = QuestionEvent.objects.create(question=unanswered(), kind="tabled", key="tabled")
    match(searched, event)
    text = visible(client.get(manage))

    assert "Last matched" in text and "haven’t checked" not in text
    Source.objects.create(name="Feed", kind="feed", url="http://127.0.0.1:9/a", last_success_at=timezone.now())
    assert "We last checked for new questions at" in visible(client.get(manage))


def test_a_search_whose_estimate_is_not_ready_is_not_added_unseen(client, busy_archive, monkeypatch):  # noqa: F811
    # On a large archive the broadest searches are the slowest to count: their estimate goes to a worker, and
    # the page cannot say whether they are broad. They are held like a broad one until the owner has seen that.
    from alerts import subscribing

    monkeypatch.setattr(subscribing, "estimate_now_or_later", lambda node, today=None: None)
    subscriber, manage = confirmed()

    held = add(client, manage, "government")

    text = visible(held)
    assert held.status_code == 200 and HELD in text
    assert "We haven’t yet worked out how much this search matches" in text
    assert not subscriber.subscriptions.exists()
    assert add(client, manage, "government", warned=warned(held)).status_code == 302
    assert subscriber.subscriptions.get().query == "government"
