"""Changing the address a subscriber's alerts go to: asked for from the manage page, made from the new inbox,
told to the old one; merged into the alerts the new address has already; never a way round a suppression."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
from urllib.parse import urlsplit

import pytest
from django.core import mail, signing
from django.test import Client
from django.utils import timezone

from alerts import tokens
from alerts.delivery import queue_delivery, render_again
from alerts.models import Delivery, FormRequest, Subscriber, Subscription, WebhookEvent
from alerts.retention import remember_suppressed
from alerts.subscribing import SUPERSEDED
from questions.models import Question, QuestionEvent
from tests.conftest import (
    add,
    confirmed_subscriber,
    link_in,
    page,
    page_text,
    sign_up,
    status_region,
    unsubscribe_everything,
    wait_until,
)
from tests.esp_stub import emails_to, link
from tests.factories import match

pytestmark = pytest.mark.django_db(transaction=True)

NEW_LINK = "/alerts/new-address/"
NOTICE = "The address of your written question alerts has changed"


def ask(client, manage: str, email: str, **extra):
    return client.post(f"{manage}email/", {"email": email} | extra)


def sent_to(email: str) -> list:
    return [m for m in mail.outbox if m.to == [email]]


def change_link(email: str) -> str:
    (message,) = [m for m in sent_to(email) if "new address" in m.subject]
    return link_in(message, NEW_LINK)


def test_the_address_changes_once_the_new_inbox_says_so(client):
    subscriber, manage = confirmed_subscriber(client, "old@example.org")
    assert 'Change your email address' in page(client.get(manage))
    form = client.get(f"{manage}email/")
    assert "Your alerts go to old@example.org" in page_text(form)

    asked = ask(client, manage, "new@example.org")

    assert asked.status_code == 302 and asked["Location"] == manage
    assert "We’ve emailed a link to new@example.org" in status_region(page(client.get(manage)))
    link = change_link("new@example.org")
    # Nothing changes until the link is opened, and opening it (a mail scanner, say) changes nothing either.
    shown = client.get(link)
    assert "Move your alerts to this address" in page_text(shown) and "new@example.org" in page_text(shown)
    subscriber.refresh_from_db()
    assert subscriber.email == "old@example.org"

    moved = client.post(link)

    subscriber.refresh_from_db()
    assert subscriber.email == "new@example.org"
    assert subscriber.subscriptions.get().query == '"facial recognition"'
    text = page(client.get(moved["Location"]))
    assert "Your alerts now go to new@example.org" in status_region(text)
    assert "Alerts for <strong>new@example.org</strong>" in text
    # The old manage link, and the change link itself, no longer open anything.
    assert ("The link no longer works, because the alerts it was for were moved to another address after it was "
            "sent.") in page_text(client.get(manage))
    assert client.post(link).status_code == 400
    (notice,) = [m for m in sent_to("old@example.org") if m.subject == NOTICE]
    assert "moved to n•••@example.org" in notice.body
    assert "/alerts/manage/" not in notice.body


def test_the_page_says_the_same_whatever_the_new_address(client):
    _, manage = confirmed_subscriber(client, "old@example.org")
    confirmed_subscriber(Client(), "taken@example.org")
    Subscriber.objects.create(email="bounced@example.org", suppressed_reason="bounced",
                              suppressed_at="2025-01-01T00:00:00Z")
    client.get(manage)  # the confirmation's own message, read
    sent = len(mail.outbox)

    answers = []
    for email in ("taken@example.org", "bounced@example.org", "free@example.org"):
        answer = ask(client, manage, email)
        answers.append((answer.status_code, answer["Location"],
                        status_region(page(client.get(manage))).replace(email, "ADDRESS")))

    assert answers[0] == answers[1] == answers[2]
    # The bounced address hears nothing; the other two get their link.
    assert [m.to for m in mail.outbox[sent:]] == [["taken@example.org"], ["free@example.org"]]


def test_an_address_that_bounced_is_never_emailed_nor_taken_over(client):
    _, manage = confirmed_subscriber(client, "old@example.org")
    remember_suppressed("erased-bounce@example.org", Subscriber.Suppression.BOUNCED)

    ask(client, manage, "erased-bounce@example.org")

    assert not sent_to("erased-bounce@example.org")
    assert not Subscriber.objects.filter(email="erased-bounce@example.org").exists()


def test_an_address_that_bounced_since_the_link_was_sent_is_not_taken_over(client):
    subscriber, manage = confirmed_subscriber(client, "old@example.org")
    ask(client, manage, "new@example.org")
    link = change_link("new@example.org")
    remember_suppressed("new@example.org", Subscriber.Suppression.COMPLAINED)

    refused = client.post(link)

    assert refused.status_code == 400 and "Nothing has changed" in page_text(refused)
    subscriber.refresh_from_db()
    assert subscriber.email == "old@example.org"


def test_a_subscriber_that_bounced_cannot_move_away_from_its_suppression(client):
    subscriber, manage = confirmed_subscriber(client, "old@example.org")
    subscriber.suppress(Subscriber.Suppression.BOUNCED)

    form = client.get(f"{manage}email/")
    refused = ask(client, manage, "new@example.org")

    assert "We can’t send email to old@example.org" in page_text(form)
    assert 'name="email"' not in page(form)
    assert refused.status_code == 400 and not sent_to("new@example.org")
    assert "Change your email address" not in page(client.get(manage))


def test_the_alerts_join_those_of_an_address_with_alerts_already(client):
    moving, manage = confirmed_subscriber(client, "old@example.org")
    add(client, manage, "prisons")
    other_client = Client()
    holder, holders_manage = confirmed_subscriber(other_client, "kept@example.org", q="prisons")
    add(other_client, holders_manage, "schools")

    ask(client, manage, "kept@example.org")
    moved = client.post(change_link("kept@example.org"))

    assert not Subscriber.objects.filter(pk=moving.pk).exists()
    # The search both had is there once, as the holder had it.
    assert sorted(holder.subscriptions.values_list("query", flat=True)) == ['"facial recognition"', "prisons",
                                                                           "schools"]
    assert holder.subscriptions.filter(confirmed_at__isnull=True).count() == 0
    assert "Alerts for <strong>kept@example.org</strong>" in page(client.get(moved["Location"]))
    assert [m.subject for m in sent_to("old@example.org")][-1] == NOTICE
    # The holder's own links still work: it is their inbox that said yes.
    assert page(other_client.get(holders_manage)).count("<tr>") == 4


def test_a_merge_over_the_cap_changes_nothing_and_says_why(client, settings):
    settings.MAX_SUBSCRIPTIONS_PER_ADDRESS = 2
    moving, manage = confirmed_subscriber(client, "old@example.org")
    add(client, manage, "prisons")
    holder, holders_manage = confirmed_subscriber(Client(), "full@example.org", q="schools")

    ask(client, manage, "full@example.org")
    refused = client.post(change_link("full@example.org"))

    assert refused.status_code == 400
    assert "more than 2, as many as an address can have: it has room for 1 more" in page_text(refused)
    assert moving.subscriptions.count() == 2 and holder.subscriptions.count() == 1


def test_an_address_that_unsubscribed_after_the_link_was_sent_is_left_alone(client):
    moving, manage = confirmed_subscriber(client, "old@example.org")
    holder, _ = confirmed_subscriber(Client(), "quiet@example.org", q="schools")
    ask(client, manage, "quiet@example.org")
    link = change_link("quiet@example.org")
    time.sleep(0.01)
    unsubscribe_everything(holder)

    refused = client.post(link)

    assert refused.status_code == 400 and "unsubscribed from everything after this link was sent" in page_text(refused)
    assert moving.subscriptions.count() == 1 and Subscriber.objects.filter(pk=moving.pk).exists()


def test_coming_back_to_an_address_that_had_unsubscribed(client):
    moving, manage = confirmed_subscriber(client, "old@example.org")
    holder, _ = confirmed_subscriber(Client(), "back@example.org", q="schools")
    unsubscribe_everything(holder)
    time.sleep(0.01)

    ask(client, manage, "back@example.org")
    client.post(change_link("back@example.org"))

    holder.refresh_from_db()
    assert holder.suppressed_at is None
    receiving = holder.subscriptions.receiving().values_list("query", flat=True)
    # What moved in sends; what the unsubscribe paused stays paused.
    assert list(receiving) == ['"facial recognition"']
    assert holder.subscriptions.get(query="schools").paused


def test_the_link_expires_in_a_day_and_is_revoked_with_the_others(client, monkeypatch):
    subscriber, manage = confirmed_subscriber(client, "old@example.org")
    real_time = time.time
    monkeypatch.setattr(signing.time, "time", lambda: real_time() - 25 * 3600)
    old = tokens.make(subscriber, tokens.NEW_EMAIL, to="new@example.org", t=real_time() - 25 * 3600)
    monkeypatch.setattr(signing.time, "time", real_time)

    expired = client.get(f"{NEW_LINK}{old}/")
    assert expired.status_code == 400
    assert "The link has expired: a link to move your alerts to a new address works for 24 hours." in page_text(expired)

    ask(client, manage, "new@example.org")
    link = change_link("new@example.org")
    client.post(f"{manage}revoke/")
    revoked = client.post(link)
    assert revoked.status_code == 400
    assert ("The link was revoked: since it was sent, the alerts it would have moved were moved to another address, "
            "or someone chose “Sign me out of all links” on their alerts page.") in page_text(revoked)
    subscriber.refresh_from_db()
    assert subscriber.email == "old@example.org"


def test_the_same_address_and_a_bad_one_are_told_on_the_form(client):
    _, manage = confirmed_subscriber(client, "old@example.org")
    sent = len(mail.outbox)

    same = ask(client, manage, "OLD@example.org")
    bad = ask(client, manage, "not an address")

    assert same.status_code == 400 and "That is the address your alerts go to already" in page_text(same)
    assert bad.status_code == 400 and "Enter a valid email address" in page_text(bad)
    assert len(mail.outbox) == sent and not FormRequest.objects.exists()


def test_the_form_needs_csrf_and_a_live_manage_link(client):
    _, manage = confirmed_subscriber(client, "old@example.org")

    assert ask(Client(enforce_csrf_checks=True), manage, "new@example.org").status_code == 403
    token = manage.split("/")[3]
    assert ask(client, f"/alerts/manage/{token[:-2]}xx/", "new@example.org").status_code == 400
    assert not sent_to("new@example.org")


def test_asking_spends_the_new_addresss_email_budget(client, settings, limiter_clock):
    settings.RATELIMIT_SIGNUP_PER_ADDRESS = "2/h"
    _, manage = confirmed_subscriber(client, "old@example.org")

    answers = [ask(client, manage, "new@example.org").status_code for _ in range(3)]

    # The third is answered the same and sends nothing.
    assert answers == [302, 302, 302] and len(sent_to("new@example.org")) == 2


def test_asking_is_held_to_the_ips_limit(client, settings, limiter_clock):
    settings.RATELIMIT_SIGNUP_PER_IP = "2/h"
    _, manage = confirmed_subscriber(client, "old@example.org")

    answers = [ask(client, manage, f"new{i}@example.org") for i in range(3)]

    assert [answer.status_code for answer in answers] == [302, 302, 429]
    held = answers[2].content.decode()
    assert answers[2]["Retry-After"]
    assert re.search(r"Please try again in about (a minute|\d+ minutes): what you typed is kept below\.", held)
    assert 'value="new2@example.org"' in held
    assert not sent_to("new2@example.org")


def waiting_for_retry(row: Delivery) -> None:
    """As an email is after the ESP failed on it: still to send, its next try later."""
    Delivery.objects.filter(pk=row.pk).update(status=Delivery.Status.PENDING,
                                              next_attempt_at=timezone.now() + dt.timedelta(hours=1))


def link_on(row: Delivery, path: str) -> str:
    """The link the email of `row` would carry if it were sent now."""
    row.refresh_from_db()
    return re.search(rf"http://testserver({path}\S+)", row.body_text).group(1)


def waiting_alert_email(subscriber: Subscriber) -> Delivery:
    question = Question.objects.create(external_id="change-1", uin="HL1", house="Commons",
                                       heading="Facial recognition: police", date_tabled=timezone.localdate())
    event = QuestionEvent.objects.create(question=question, kind="tabled", key="tabled", matched_at=timezone.now())
    row = Delivery.objects.create(subscriber=subscriber, kind=Delivery.Kind.IMMEDIATE)
    match(subscriber.subscriptions.get(), event, delivery=row)
    render_again([row])
    waiting_for_retry(row)
    return row


def test_waiting_alert_emails_go_to_the_new_address(client):
    subscriber, manage = confirmed_subscriber(client, "old@example.org")
    alert = waiting_alert_email(subscriber)
    manage_link = queue_delivery(subscriber, Delivery.Kind.MANAGE_LINK)
    waiting_for_retry(manage_link)
    assert alert.to_email == manage_link.to_email == "old@example.org"
    ask(client, manage, "new@example.org")

    client.post(change_link("new@example.org"))

    alert.refresh_from_db()
    assert alert.status == Delivery.Status.PENDING and alert.to_email == "new@example.org"
    assert "Facial recognition: police" in alert.body_text
    # Its links are made anew: the old ones were revoked with the change.
    manage_again = link_on(alert, "/alerts/manage/")
    assert "Alerts for <strong>new@example.org</strong>" in page(client.get(manage_again))
    assert Subscription.objects.get().subscriber_id == subscriber.pk
    # A manage link asked for by the old address is not sent to the new one.
    manage_link.refresh_from_db()
    assert manage_link.status == Delivery.Status.FAILED and manage_link.error == SUPERSEDED


def test_a_change_link_waiting_to_be_sent_is_not_revived_by_another_change(client):
    subscriber, manage = confirmed_subscriber(client, "old@example.org")
    ask(client, manage, "first@example.org")
    first = Delivery.objects.get(to_email="first@example.org")
    waiting_for_retry(first)
    ask(client, manage, "second@example.org")

    client.post(change_link("second@example.org"))

    first.refresh_from_db()
    assert first.status == Delivery.Status.FAILED and first.error == SUPERSEDED
    refused = client.post(link_on(first, NEW_LINK))
    assert refused.status_code == 400
    subscriber.refresh_from_db()
    assert subscriber.email == "second@example.org"


def test_after_a_merge_a_change_link_of_the_merged_address_cannot_move_the_others_alerts(client):
    _, manage = confirmed_subscriber(client, "old@example.org")
    owner, _ = confirmed_subscriber(Client(), "taken@example.org", q="police")
    ask(client, manage, "elsewhere@example.org")
    elsewhere = Delivery.objects.get(to_email="elsewhere@example.org")
    waiting_for_retry(elsewhere)
    ask(client, manage, "taken@example.org")

    client.post(change_link("taken@example.org"))

    elsewhere.refresh_from_db()
    assert elsewhere.status == Delivery.Status.FAILED and elsewhere.error == SUPERSEDED
    assert client.post(link_on(elsewhere, NEW_LINK)).status_code == 400
    owner.refresh_from_db()
    assert owner.email == "taken@example.org"
    assert sorted(owner.subscriptions.values_list("query", flat=True)) == ['"facial recognition"', "police"]


def test_a_request_dropped_by_the_change_is_not_confirmed_from_the_new_inbox(client):
    subscriber, manage = confirmed_subscriber(client, "old@example.org")
    sign_up(client, "old@example.org", "police")
    confirmation = Delivery.objects.filter(kind=Delivery.Kind.CONFIRMATION, to_email="old@example.org").first()
    waiting_for_retry(confirmation)
    ask(client, manage, "new@example.org")

    client.post(change_link("new@example.org"))

    confirmation.refresh_from_db()
    assert confirmation.status == Delivery.Status.FAILED and confirmation.error == SUPERSEDED
    assert confirmation.to_email == "old@example.org"
    client.post(link_on(confirmation, "/alerts/confirm/"))
    assert list(subscriber.subscriptions.values_list("query", flat=True)) == ['"facial recognition"']


def test_the_honeypot_sends_nothing(client):
    _, manage = confirmed_subscriber(client, "old@example.org")

    answer = ask(client, manage, "new@example.org", website="http://spam.example")

    assert answer.status_code == 302 and answer["Location"] == manage
    assert not sent_to("new@example.org") and not FormRequest.objects.exists()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.worker
def test_the_change_goes_through_a_worker_to_the_esp(client, esp, site_worker, live_server):
    subscriber = Subscriber.objects.create(email="old@example.org", confirmed_at=timezone.now())
    Subscription.objects.create(subscriber=subscriber, query="prisons", canonical_query="prisons",
                                confirmed_at=timezone.now())
    manage = f"/alerts/manage/{tokens.make(subscriber, tokens.MANAGE)}/"

    assert ask(client, manage, "new@example.org").status_code == 302
    wait_until(lambda: emails_to(esp, "new@example.org"), timeout=60, message="the link to the new address")
    assert not FormRequest.objects.exists()
    [asked] = emails_to(esp, "new@example.org")
    assert asked["Subject"] == "Confirm your new address for written question alerts"
    moved = client.post(urlsplit(link(asked, NEW_LINK)).path)

    assert moved.status_code == 302
    wait_until(lambda: emails_to(esp, "old@example.org"), timeout=60, message="the note to the old address")
    [note] = emails_to(esp, "old@example.org")
    assert note["Subject"] == NOTICE and "n•••@example.org" in note["TextBody"]
    subscriber.refresh_from_db()
    assert subscriber.email == "new@example.org"


def test_links_of_the_alerts_merged_away_say_where_they_went(client):
    _, manage = confirmed_subscriber(client, "old@example.org")
    confirmed_subscriber(Client(), "taken@example.org", q="police")
    ask(client, manage, "taken@example.org")

    client.post(change_link("taken@example.org"))

    old = client.get(manage)
    assert old.status_code == 400
    assert ("The alerts this link was for are no longer kept for the address it was sent to: they were moved to "
            "another address that had alerts already, or deleted.") in page_text(old)


def old_unsubscribe_link(subscriber: Subscriber) -> str:
    """An unsubscribe link as emailed before links carried a mark of their address."""
    return "/unsubscribe/" + signing.dumps({"s": subscriber.pk}, salt="alerts.link.unsubscribe", compress=True) + "/"


def test_an_unsubscribe_link_from_the_old_inbox_stops_nothing_at_the_new_address(client):
    subscriber, manage = confirmed_subscriber(client, "old@example.org")
    unsubscribe = "/unsubscribe/" + tokens.make(subscriber, tokens.UNSUBSCRIBE) + "/"
    ask(client, manage, "new@example.org")
    client.post(change_link("new@example.org"))

    shown = client.get(unsubscribe)
    # The one-click POST a mail client sends from the old inbox's List-Unsubscribe.
    clicked = client.post(unsubscribe)

    for answer in (shown, clicked):
        assert answer.status_code == 400
        assert ("This address no longer gets these alerts: they were moved to another address after this email "
                "was sent. Nothing has been changed") in page_text(answer)
    subscriber.refresh_from_db()
    assert subscriber.email == "new@example.org" and subscriber.suppressed_reason == ""
    assert not subscriber.subscriptions.get().paused


def test_an_unsubscribe_link_emailed_before_links_were_marked_still_works(client):
    subscriber, _ = confirmed_subscriber(client, "old@example.org")

    done = client.post(old_unsubscribe_link(subscriber))

    assert done.status_code == 200
    subscriber.refresh_from_db()
    assert subscriber.suppressed_reason == Subscriber.Suppression.UNSUBSCRIBED


def test_an_unsubscribe_request_about_the_notice_stops_the_old_address_not_the_new(client, settings):
    """Postmark's "Unsubscribe request" names only the email it was about: the notice went to the old address."""
    settings.ANYMAIL = {"WEBHOOK_SECRET": "hook:x7Qp2vLr9KsT4mWz8NbY3cHd", "POSTMARK_SERVER_TOKEN": "token"}
    subscriber, manage = confirmed_subscriber(client, "old@example.org")
    ask(client, manage, "new@example.org")
    client.post(change_link("new@example.org"))
    Delivery.objects.filter(to_email="old@example.org", payload__has_key="old_email").update(
        esp_message_id="b7bc2f4a-e38e-4336-af7d-e6c392c2f817")
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"  # the webhook is the sending ESP's
    event = {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": "Unsubscribe", "TypeCode": 16,
             "Name": "Unsubscribe request", "MessageID": "b7bc2f4a-e38e-4336-af7d-e6c392c2f817", "ServerID": 23,
             "Description": "The recipient has requested to be unsubscribed.", "Details": "",
             "From": "alerts@example.org", "BouncedAt": timezone.now().isoformat(), "Inactive": True,
             "CanActivate": True, "Subject": NOTICE, "MessageStream": "outbound", "Tag": ""}
    auth = base64.b64encode(b"hook:x7Qp2vLr9KsT4mWz8NbY3cHd").decode()

    answer = client.post("/anymail/postmark/tracking/", data=json.dumps(event), content_type="application/json",
                         HTTP_AUTHORIZATION=f"Basic {auth}")

    assert answer.status_code == 200
    assert WebhookEvent.objects.get().recipient == "old@example.org"
    subscriber.refresh_from_db()
    assert subscriber.email == "new@example.org" and subscriber.suppressed_reason == ""


def test_an_unsubscribe_link_emailed_before_links_were_marked_stops_nothing_after_a_move(client):
    # Such a link was sent before any address changed: after a move it was sent to the address left behind.
    subscriber, manage = confirmed_subscriber(client, "old@example.org")
    unsubscribe = old_unsubscribe_link(subscriber)
    ask(client, manage, "new@example.org")
    client.post(change_link("new@example.org"))

    clicked = client.post(unsubscribe)

    assert clicked.status_code == 400 and "This address no longer gets these alerts" in page_text(clicked)
    subscriber.refresh_from_db()
    assert subscriber.email == "new@example.org" and subscriber.suppressed_reason == ""
