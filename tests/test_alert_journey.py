"""The journey's edges, as a subscriber sees them: what the pages say after each step, and never that an
alert is on when nothing is sent."""

from __future__ import annotations

import datetime as dt
import re
import time
from io import StringIO

import pytest
from django.core import mail, signing
from django.core.management import call_command
from django.template import loader
from django.test import RequestFactory
from django.views.defaults import server_error

from alerts.models import Subscription
from tests.conftest import (
    FIXTURES,
    confirmed_subscriber,
    link_in,
    page,
    page_text,
    sign_up,
    status_region,
    unsubscribe_everything,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def archive():
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), stdout=StringIO())


def statuses(text: str) -> list[str]:
    """The Status column of the manage page's table, one cell per alert."""
    rows = re.findall(r"<tr>\s*<td[^>]*>.*?</tr>", text, re.S)
    return [re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)[3] for row in rows]


# a. The manage page never says an alert is on when nothing is sent.


def test_an_unsubscribed_address_is_told_so_and_offered_a_way_back(client):
    subscriber, manage = confirmed_subscriber(client)
    sign_up(client, q="prisons")
    client.post(link_in(mail.outbox[-1], "/alerts/confirm/"))
    assert statuses(page(client.get(manage))) == ["On", "On"]
    unsubscribe_everything(subscriber)

    text = page(client.get(manage))

    assert "You unsubscribed from everything, so none of these alerts is sending" in text
    assert statuses(text) == ["Not sending", "Not sending"]
    assert text.count(">Email me a link to turn this on<") == 2
    assert ">Resume<" not in text and ">Pause<" not in text

    prisons = subscriber.subscriptions.get(query="prisons")
    sent = len(mail.outbox)
    after = page(client.post(f"{manage}{prisons.pk}/resume/", follow=True))

    assert statuses(after) == ["Not sending", "Not sending"]  # resuming alone turns nothing on
    assert "We’ve emailed ada@example.org a link to turn “prisons” back on" in status_region(after)
    assert "works for 7 days" in status_region(after)
    assert len(mail.outbox) == sent + 1 and "Confirm" in mail.outbox[-1].subject

    confirmed = page(client.post(link_in(mail.outbox[-1], "/alerts/confirm/"), follow=True))

    assert "Your alert is on" in status_region(confirmed) and "“prisons”" in status_region(confirmed)
    assert "none of these alerts is sending" not in confirmed
    states = dict(zip(["facial", "prisons"], statuses(confirmed), strict=True))
    assert states == {"facial": "Paused", "prisons": "On"}  # only the alert asked for comes back


@pytest.mark.parametrize("reason, words", [
    ("bounced", "were returned as undeliverable"),
    ("complained", "was reported as spam"),
])
def test_an_address_we_cannot_email_is_told_so_and_never_shows_on(client, reason, words):
    subscriber, manage = confirmed_subscriber(client)
    subscriber.suppress(reason)
    subscription = subscriber.subscriptions.get()
    sent = len(mail.outbox)

    text = page(client.get(manage))

    assert "We can’t send email to this address, so none of these alerts is sending" in text and words in text
    assert statuses(text) == ["Not sending"]
    assert "turn this on" not in text and ">Resume<" not in text

    after = page(client.post(f"{manage}{subscription.pk}/resume/", follow=True))

    assert statuses(after) == ["Not sending"]
    assert "We can’t send email to this address" in status_region(after)
    assert len(mail.outbox) == sent


def test_a_bounced_address_that_had_unsubscribed_is_not_offered_confirmation(client):
    subscriber, manage = confirmed_subscriber(client)
    unsubscribe_everything(subscriber)
    subscriber.suppress("bounced")

    text = page(client.get(manage))

    assert "We can’t send email to this address" in text and "turn this on" not in text
    assert statuses(text) == ["Not sending"]


# b. Messages after actions.


def test_confirming_says_the_alert_is_on(client):
    sign_up(client)

    text = page(client.post(link_in(mail.outbox[-1], "/alerts/confirm/"), follow=True))

    assert "Your alert is on" in status_region(text) and "“\"facial recognition\"”" in status_region(text)


def test_a_used_confirmation_link_says_already_confirmed(client):
    sign_up(client)
    confirm = link_in(mail.outbox[-1], "/alerts/confirm/")
    client.post(confirm)

    text = page(client.get(confirm))

    assert "Already confirmed" in text and "Confirm my alert" not in text
    again = page(client.post(confirm, follow=True))
    assert "You had already confirmed" in status_region(again) and "Your alert is on" not in again


def test_a_link_naming_one_unconfirmed_alert_still_offers_its_button(client):
    confirmed_subscriber(client)
    sign_up(client, q="prisons")

    text = page(client.get(link_in(mail.outbox[-1], "/alerts/confirm/")))

    assert "Confirm my alert" in text and "Already confirmed" not in text


def test_saving_pausing_and_resuming_say_what_happened(client):
    subscriber, manage = confirmed_subscriber(client)
    edit = f"{manage}{subscriber.subscriptions.get().pk}/"

    saved = page(client.post(edit, {"q": "palantir", "label": "Palantir", "frequency": "daily",
                                    "alert_on": "both"}, follow=True))
    assert "Saved your changes to “Palantir”." in status_region(saved)

    paused = page(client.post(f"{edit}pause/", follow=True))
    assert "Paused “Palantir”" in status_region(paused) and statuses(paused) == ["Paused"]

    resumed = page(client.post(f"{edit}resume/", follow=True))
    assert "Resumed “Palantir”: it is on again." in status_region(resumed) and statuses(resumed) == ["On"]

    # Shown once: the next page has no message left over.
    assert status_region(page(client.get(manage))) == ""


def test_deleting_can_be_undone_with_the_same_settings(client):
    subscriber, manage = confirmed_subscriber(client)
    subscription = subscriber.subscriptions.get()
    client.post(f"{manage}{subscription.pk}/", {"q": "palantir", "label": "Palantir", "frequency": "weekly",
                                                 "alert_on": "answers"})

    deleted = page(client.post(f"{manage}{subscription.pk}/delete/", follow=True))

    assert not Subscription.objects.exists()
    region = status_region(deleted)
    assert "Deleted “Palantir”." in region
    form = re.search(r'<form method="post" action="([^"]+)" class="undo">.*?name="undo" value="([^"]+)"', region, re.S)
    assert form and "Undo" in region
    action, undo = form.groups()

    restored = page(client.post(action, {"undo": undo}, follow=True))

    again = Subscription.objects.get()
    assert (again.query, again.label, again.frequency, again.alert_on) == ("palantir", "Palantir", "weekly", "answers")
    assert again.confirmed_at and not again.paused
    assert "Brought back “Palantir”." in status_region(restored) and statuses(restored) == ["On"]

    twice = page(client.post(action, {"undo": undo}, follow=True))
    assert Subscription.objects.count() == 1 and "already have an alert" in status_region(twice)


def test_an_undo_needs_a_token_we_made_for_this_address_within_the_hour(client, monkeypatch):
    subscriber, manage = confirmed_subscriber(client)
    pk = subscriber.subscriptions.get().pk
    _, other_manage = confirmed_subscriber(client, "eve@example.org", q="palantir")

    real_time = time.time
    monkeypatch.setattr(signing.time, "time", lambda: real_time() - 61 * 60)
    client.post(f"{manage}{pk}/delete/")
    stale = re.search(r'name="undo" value="([^"]+)"', page(client.get(manage))).group(1)
    monkeypatch.setattr(signing.time, "time", real_time)

    late = page(client.post(f"{manage}{pk}/undo/", {"undo": stale}, follow=True))
    assert "too late to undo" in status_region(late)
    forged = page(client.post(f"{manage}{pk}/undo/", {"undo": "x" + stale}, follow=True))
    assert "isn’t for this alert" in status_region(forged)

    # Eve's page cannot use Ada's (fresh) token to put the alert into Eve's list.
    fresh = signing.dumps({"s": subscriber.pk, "pk": pk, "q": "x", "label": "", "frequency": "daily",
                           "alert_on": "both"}, salt="alerts.undo-delete", compress=True)
    other = page(client.post(f"{other_manage}{pk}/undo/", {"undo": fresh}, follow=True))
    assert "isn’t for this alert" in status_region(other)
    assert list(Subscription.objects.values_list("query", flat=True)) == ["palantir"]
    assert client.get(f"{manage}{pk}/undo/").status_code == 405


def test_messages_are_in_a_status_region_in_base(client):
    _, manage = confirmed_subscriber(client)

    text = client.get(manage).content.decode()

    assert '<div class="messages" role="status">' in text


# c. Check your inbox.


def test_check_your_inbox_repeats_the_address_typed_for_known_and_unknown_alike(client):
    confirmed_subscriber(client, "known@example.org")
    pages = {}
    for email in ("known@example.org", "stranger@example.org"):
        response = sign_up(client, email, q="prisons")
        assert response["Location"] == "/alerts/check-your-inbox/"
        pages[email] = page_text(client.get(response["Location"]))

    assert "You asked us to email known@example.org." in pages["known@example.org"]
    assert "You asked us to email stranger@example.org." in pages["stranger@example.org"]
    known, stranger = pages["known@example.org"], pages["stranger@example.org"]
    assert known.replace("known@", "X@") == stranger.replace("stranger@", "X@")
    assert "The link works for 7 days." in pages["stranger@example.org"]


def test_check_your_inbox_after_a_typo_shows_the_typo(client):
    sign_up(client, "ada@exmaple.org")

    text = page(client.get("/alerts/check-your-inbox/"))

    assert "ada@exmaple.org" in text and "Not the right address?" in text


def test_email_me_a_link_states_the_manage_links_lifetime(client):
    confirmed_subscriber(client)
    known = page_text(client.post("/alerts/link/", {"email": "ada@example.org"}, follow=True))
    unknown = page_text(client.post("/alerts/link/", {"email": "nobody@example.org"}, follow=True))

    assert "The link works for 90 days." in known and "You asked us to email ada@example.org." in known
    assert known.replace("ada@", "X@") == unknown.replace("nobody@", "X@")


def test_check_your_inbox_without_a_request_still_reads_sensibly(client):
    text = page(client.get("/alerts/check-your-inbox/"))

    assert "Check your inbox" in text and "The link works for 7 days." in text and "You asked us" not in text


# d. Forms, headings, 404 and 500.


def test_an_invalid_signup_gets_an_error_summary_linking_to_each_field(client):
    response = sign_up(client, email="not an address", q='"facial recognition')

    assert response.status_code == 400
    text = response.content.decode()
    assert re.search(r"<title>Error: ", text)
    summary = re.search(r'<div class="error-summary" tabindex="-1" autofocus[^>]*>(.*?)</div>', text, re.S).group(1)
    assert "There is a problem" in summary
    assert '<a href="#id_email">Enter a valid email address.</a>' in summary
    assert '<a href="#id_q">This search can’t be saved: The quote you opened at character 1' in summary
    assert text.index("error-summary") < text.index("<h1>")


def test_a_valid_form_has_no_summary_and_no_error_title(client):
    text = client.get("/alerts/new/").content.decode()

    assert "error-summary" not in text and "<title>Error" not in text


def test_the_link_form_and_a_missing_choice_get_the_summary_too(client, archive):
    link = client.post("/alerts/link/", {"email": ""}).content.decode()
    assert "<title>Error: " in link and '<a href="#id_email">This field is required.</a>' in link

    signup = client.post("/alerts/new/", {"email": "a@example.org", "q": "police"}).content.decode()
    assert '<a href="#id_frequency_0">This field is required.</a>' in signup
    assert 'id="id_frequency_0"' in signup


def test_the_edit_page_names_its_alert_and_summarises_a_duplicate(client):
    subscriber, manage = confirmed_subscriber(client)
    sign_up(client, q="prisons")
    client.post(link_in(mail.outbox[-1], "/alerts/confirm/"))
    prisons = subscriber.subscriptions.get(query="prisons")
    edit = f"{manage}{prisons.pk}/"

    assert "<h1>Edit alert: “prisons”</h1>" in page(client.get(edit))
    duplicate = client.post(edit, {"q": '"Facial Recognition"', "frequency": "daily", "alert_on": "both"})
    text = page(duplicate)
    assert duplicate.status_code == 400 and "<title>Error: Edit “prisons”" in text
    assert '<a href="#id_q">You already have an alert for this search.</a>' in text


def test_a_missing_page_is_branded(client):
    response = client.get("/no-such-page/")

    text = response.content.decode()
    assert response.status_code == 404
    assert "<h1>Page not found</h1>" in text and "Skip to main content" in text
    assert 'href="/alerts/link/"' in text


def test_the_error_page_renders_without_a_request_context():
    text = loader.get_template("500.html").render()
    assert "Sorry, something went wrong" in text and "Skip to main content" in text

    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500 and b"Sorry, something went wrong" in response.content


# e. The signup preview.


def test_the_preview_gives_a_weekly_rate(client, archive):
    from django.utils import timezone

    from questions.models import Question

    Question.objects.filter(external_id="seed-7").update(date_tabled=timezone.localdate())

    text = page_text(client.get("/alerts/new/", {"q": "taser"}))

    assert "In the last 30 days this search matched 1 question: about 0.2 a week." in text


def test_an_empty_preview_counts_the_whole_archive_and_its_latest(client, archive):
    from questions.models import Question

    Question.objects.filter(external_id="seed-7").update(date_tabled=dt.date(2025, 3, 3))

    text = page_text(client.get("/alerts/new/", {"q": "taser"}))

    assert "In the last 30 days this search matched none; 1 in all, the latest on 3 March 2025." in text


def test_a_preview_with_no_match_anywhere_says_so(client, archive):
    text = page_text(client.get("/alerts/new/", {"q": "zzyzxnotaword"}))

    assert "nothing in the whole archive matches it either" in text


def test_undoing_the_delete_of_an_unconfirmed_alert_does_not_confirm_it(client):
    subscriber, manage = confirmed_subscriber(client)
    # Someone else signed this address up for a search its owner never confirmed.
    unwanted = Subscription.objects.create(subscriber=subscriber, query="taser", canonical_query="taser")

    deleted = page(client.post(f"{manage}{unwanted.pk}/delete/", follow=True))
    action, undo = re.search(r'<form method="post" action="([^"]+)" class="undo">.*?name="undo" value="([^"]+)"',
                             status_region(deleted), re.S).groups()
    client.post(action, {"undo": undo})

    assert Subscription.objects.get(query="taser").confirmed_at is None
