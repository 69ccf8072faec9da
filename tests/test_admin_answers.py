"""An admin that answers: each action says what it did and what it left, a suppression is lifted with its history
kept, Resend asks before sending a sent email again and never rewrites when it was sent, a failing source is on the
home page and in the overview's headline, a first poll says it was a backfill, what the poller keeps is read-only,
and a source's error is a sentence."""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

import pytest
from django.contrib.messages import get_messages
from django.core import mail
from django.utils import timezone

from alerts.delivery import queue_delivery
from alerts.models import Delivery, Subscriber, SuppressionLift
from questions.models import Question, QuestionEvent, Source
from questions.polling import plainly, poll_source
from questions.sources.http import PoliteClient
from tests.conftest import RSS

pytestmark = pytest.mark.django_db(transaction=True)

SUBSCRIBERS, DELIVERIES = "/admin/alerts/subscriber/", "/admin/alerts/delivery/"


def text(response) -> str:
    """A page's words as they read, without its markup."""
    html = re.sub(r"<(script|style)\b.*?</\1>", " ", response.content.decode(), flags=re.S)
    html = re.sub(r"</?(a|strong|span|em)\b[^>]*>", "", html)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", html)).split())


def act(admin_client, url: str, action: str, rows, **extra):
    return admin_client.post(url, {"action": action, "_selected_action": [row.pk for row in rows], **extra},
                             follow=True)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs) -> None:
        attrs = dict(attrs)
        if tag == "form":
            self.forms.append({"fields": []})
        elif tag == "input" and self.forms and attrs.get("type") == "hidden":
            self.forms[-1]["fields"].append((attrs["name"], attrs.get("value") or ""))


def hidden_fields(page, form_with: str) -> dict[str, list[str]]:
    """What the page's form that has a field named `form_with` posts."""
    parser = _Forms()
    parser.feed(page.content.decode())
    form = next(form for form in parser.forms if any(name == form_with for name, _ in form["fields"]))
    data: dict[str, list[str]] = {}
    for name, value in form["fields"]:
        data.setdefault(name, []).append(value)
    return data


def confirm(client, asked):
    """Submit a confirmation page's form as a browser would: exactly what the page holds, to where it came from."""
    return client.post(asked.wsgi_request.get_full_path(), hidden_fields(asked, "confirm"), follow=True)


def said(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def subscriber(email: str, **fields) -> Subscriber:
    return Subscriber.objects.create(email=email, confirmed_at=timezone.now(), **fields)


def suppressed(email: str, reason: str) -> Subscriber:
    return subscriber(email, suppressed_at=timezone.now(), suppressed_reason=reason)


def test_suppress_says_whom_it_suppressed_and_whom_it_left(admin_client):
    ada, gone = subscriber("ada@example.org"), suppressed("gone@example.org", Subscriber.Suppression.BOUNCED)

    response = act(admin_client, SUBSCRIBERS, "suppress", [ada, gone])

    assert said(response) == [
        "Suppressed 1 address(es): nothing more is sent to them. Lift suppression undoes it.",
        "1 address(es) left as they were: already suppressed by a bounce, a complaint or an operator."]
    ada.refresh_from_db()
    assert ada.suppressed_reason == "operator"


def test_email_a_link_says_whom_it_emailed_and_whom_not(admin_client):
    ada, gone = subscriber("ada@example.org"), suppressed("gone@example.org", Subscriber.Suppression.COMPLAINED)
    for who in (ada, gone):
        who.subscriptions.create(query="palantir", canonical_query="palantir", confirmed_at=timezone.now())

    response = act(admin_client, SUBSCRIBERS, "send_manage_link", [ada, gone])

    assert said(response) == [
        "A link to the manage page is on its way to 1 address(es).",
        "1 address(es) sent nothing: they have no alerts, or are suppressed by a bounce, a complaint or an operator."]
    assert [m.to for m in mail.outbox] == [["ada@example.org"]]


def test_lifting_a_bounce_asks_first_then_keeps_what_it_was(admin_client, admin_user):
    gone = suppressed("gone@example.org", Subscriber.Suppression.BOUNCED)
    since = gone.suppressed_at
    left = suppressed("left@example.org", Subscriber.Suppression.UNSUBSCRIBED)

    asked = act(admin_client, SUBSCRIBERS, "lift_suppression", [gone, left])

    page = text(asked)
    assert "Lifting this is a deliberate act" in page and "bounced hard" in page
    assert "left@example.org: unsubscribed by its owner" in page and "only its owner can come back" in page
    gone.refresh_from_db()
    assert gone.suppressed_reason == "bounced" and not SuppressionLift.objects.exists()

    done = act(admin_client, SUBSCRIBERS, "lift_suppression", [gone, left], confirm="yes")

    assert said(done) == [
        "Suppression lifted for 1 address(es): they receive their alerts again. What each suppression was is kept "
        "on its page.",
        "1 address(es) left as they were: not suppressed, or unsubscribed by their owner, who alone can come back "
        "(by confirming an alert again)."]
    gone.refresh_from_db()
    left.refresh_from_db()
    assert gone.can_receive and gone.suppressed_reason == "" and left.suppressed_reason == "unsubscribed"
    lift = gone.suppression_lifts.get()
    assert (lift.reason, lift.suppressed_at, lift.lifted_by) == ("bounced", since, admin_user.username)
    page = text(admin_client.get(f"{SUBSCRIBERS}{gone.pk}/change/"))
    assert f"Suppressions lifted: Bounced: since {timezone.localtime(since):%-d %b %Y}" in page
    assert f"lifted by {admin_user.username}" in page


def test_resend_of_a_sent_email_asks_first_and_keeps_when_it_was_sent(admin_client):
    ada = subscriber("ada@example.org")
    delivery = queue_delivery(ada, Delivery.Kind.MANAGE_LINK)
    delivery.refresh_from_db()
    assert delivery.status == "sent" and len(mail.outbox) == 1
    first_sent = delivery.sent_at

    asked = act(admin_client, DELIVERIES, "resend", [delivery])

    page = text(asked)
    assert "This email was already sent:" in page and "to ada@example.org" in page
    assert "Yes, send again" in page and len(mail.outbox) == 1 and Delivery.objects.count() == 1

    done = confirm(admin_client, asked)

    assert said(done) == ["1 email(s) already sent are queued to be sent again, each as a new email; the first "
                          "keeps its record of when it was sent."]
    delivery.refresh_from_db()
    again = Delivery.objects.exclude(pk=delivery.pk).get()
    assert delivery.sent_at == first_sent and again.status == "sent" and again.payload["resend_of"] == delivery.pk
    assert [m.to for m in mail.outbox] == [["ada@example.org"]] * 2
    assert mail.outbox[1].subject == mail.outbox[0].subject and mail.outbox[1].body == mail.outbox[0].body
    page = text(admin_client.get(f"{DELIVERIES}{delivery.pk}/change/"))
    assert f"Sent again as: email {again.pk} (Sent)" in page
    # When it was sent is shown, not offered for editing.
    assert 'name="sent_at_0"' not in admin_client.get(f"{DELIVERIES}{delivery.pk}/change/").content.decode()


def test_a_sent_email_whose_text_was_pruned_is_not_sent_again_empty(admin_client):
    ada = subscriber("ada@example.org")
    delivery = queue_delivery(ada, Delivery.Kind.MANAGE_LINK)
    Delivery.objects.filter(pk=delivery.pk).update(body_text="", body_html="")

    done = confirm(admin_client, act(admin_client, DELIVERIES, "resend", [delivery]))

    assert said(done) == ["1 email(s) left as they were: being sent right now, or sent so long ago that their "
                          "text is no longer kept."]
    assert Delivery.objects.count() == 1 and len(mail.outbox) == 1


def test_resend_of_emails_not_sent_asks_nothing(admin_client):
    ada = subscriber("ada@example.org")
    delivery = Delivery.objects.create(subscriber=ada, kind=Delivery.Kind.MANAGE_LINK, status="failed",
                                       error="HTTP 500")

    done = act(admin_client, DELIVERIES, "resend", [delivery])

    assert said(done) == ["1 email(s) not sent are queued to be made and tried again."]
    delivery.refresh_from_db()
    assert delivery.status == "sent" and [m.to for m in mail.outbox] == [["ada@example.org"]]


def test_a_failing_source_is_on_the_home_page_and_the_overview_says_not_working(admin_client):
    working = text(admin_client.get("/admin/overview/"))
    assert "Working: every enabled source’s latest poll succeeded" in working

    source = Source.objects.create(name="Broken feed", kind="feed", url="http://127.0.0.1:9/", consecutive_failures=2,
                                   last_error="http://127.0.0.1:9/: the server could not be reached")

    home = admin_client.get("/admin/")
    overview = text(admin_client.get("/admin/overview/"))

    assert ("Not working Broken feed has failed 2 poll(s) in a row: http://127.0.0.1:9/: the server could not be "
            "reached") in text(home)
    assert f'href="/admin/questions/source/{source.pk}/change/"' in home.content.decode()
    assert "Not working: Broken feed has failed 2 poll(s) in a row, so its new questions are not coming in." in overview
    assert "Working: every enabled" not in overview


def test_a_first_poll_says_it_was_a_backfill_that_alerted_nobody(admin_client, httpserver):
    httpserver.expect_request("/feed").respond_with_data(RSS, content_type="application/rss+xml")
    source = Source.objects.create(name="Feed", kind=Source.Kind.FEED, url=httpserver.url_for("/feed"))
    url = f"/admin/questions/source/{source.pk}/change/"
    assert "its first successful poll will be a backfill that alerts nobody" in text(admin_client.get(url))

    poll_source(source, PoliteClient(requests_per_second=1000, backoff_seconds=0.01, max_retries=1))

    page = text(admin_client.get(url))
    assert re.search(r"was a backfill: 2 question\(s\) stored, and nobody was alerted of them", page)
    assert Question.objects.count() == 2
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()


def test_the_add_pages_of_what_records_history_open(admin_client):
    assert admin_client.get(f"{SUBSCRIBERS}add/").status_code == 200
    assert admin_client.get("/admin/questions/source/add/").status_code == 200


def test_what_the_poller_keeps_is_read_only(admin_client):
    source = Source.objects.create(name="Feed", kind="feed", url="https://example.org/feed", etag='"v1"',
                                   last_modified="Tue, 24 Jun 2025 00:00:00 GMT", consecutive_failures=2,
                                   pruned_problems=7)
    url = f"/admin/questions/source/{source.pk}/change/"
    form = admin_client.get(url).context["adminform"].form

    assert set(form.fields) == {"name", "kind", "url", "enabled", "poll_interval_minutes"}
    admin_client.post(url, {"name": "Feed", "kind": "feed", "url": "https://example.org/feed", "enabled": "on",
                            "poll_interval_minutes": 5, "etag": "forged", "consecutive_failures": 0,
                            "cursor": "2020-01-01"})
    source.refresh_from_db()
    assert (source.etag, source.consecutive_failures, source.cursor, source.pruned_problems) == ('"v1"', 2, None, 7)


def test_a_source_that_cannot_be_reached_says_so_in_a_sentence(httpserver):
    source = Source.objects.create(name="Nowhere", kind="feed", url="http://127.0.0.1:9/feed")

    report = poll_source(source, PoliteClient(requests_per_second=1000, backoff_seconds=0.01, max_retries=1))

    source.refresh_from_db()
    assert source.last_error == "http://127.0.0.1:9/feed: the server could not be reached (gave up after 2 attempts)"
    assert source.problems.get().message == source.last_error
    # The technical detail stays in the report and the log.
    assert "ConnectionError" in report.error


def test_an_error_is_said_as_a_sentence():
    assert plainly("https://x.example/feed: ReadTimeout: HTTPSConnectionPool(host='x.example', port=443): Read "
                   "timed out. (read timeout=10), and no time is left in this poll to try again") == (
        "https://x.example/feed: the server did not answer in time, and no time is left in this poll to try again")
    assert plainly("https://x.example/feed: HTTP 503 (gave up after 4 attempts)") == (
        "https://x.example/feed: HTTP 503 (gave up after 4 attempts)")


def test_resend_leaves_a_link_a_change_of_address_made_void_and_a_row_a_sender_may_still_be_recording():
    from alerts.delivery import resend

    ada = subscriber("ada@example.org")
    void = Delivery.objects.create(subscriber=ada, kind=Delivery.Kind.CONFIRMATION, status="failed",
                                   error=Delivery.SUPERSEDED)
    # Its sender's lease ran out a moment ago: it may still be recording what the ESP said.
    recording = Delivery.objects.create(subscriber=ada, kind=Delivery.Kind.MANAGE_LINK, status="pending",
                                        leased_until=timezone.now() - timezone.timedelta(seconds=1))

    assert resend([void.pk, recording.pk]) == 0
    void.refresh_from_db()
    assert (void.status, void.error) == ("failed", Delivery.SUPERSEDED) and mail.outbox == []


def test_an_email_is_not_sent_again_to_an_address_its_subscriber_has_left():
    from alerts.delivery import send_again

    ada = subscriber("ada@example.org")
    delivery = queue_delivery(ada, Delivery.Kind.MANAGE_LINK)
    Subscriber.objects.filter(pk=ada.pk).update(email="ada@new.example.org")

    assert send_again([delivery.pk]) == 0
    assert Delivery.objects.count() == 1


def test_a_lift_changes_nothing_if_the_suppression_changed_since_it_was_shown(admin_user):
    shown = suppressed("ada@example.org", "bounced")
    Subscriber.objects.filter(pk=shown.pk).update(suppressed_reason="complained", suppressed_at=timezone.now())

    assert shown.lift_suppression(by=admin_user.username) is None
    shown.refresh_from_db()
    assert shown.suppressed_reason == "complained" and not SuppressionLift.objects.exists()


def test_an_error_the_poller_has_no_words_for_is_kept_whole():
    error = "https://x/feed: malformed feed (SAXParseException: <unknown>:3:0: not well-formed (invalid token))"
    assert plainly(error) == error
