"""Signing up, confirming, managing and unsubscribing, as a visitor and a subscriber do it."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from django.core import mail, signing
from django.core.management import call_command
from django.test import Client

from alerts import tokens
from alerts.models import Delivery, Subscriber, Subscription
from tests.conftest import FIXTURES, clear_rate_limits, confirmed_subscriber, link_in, sign_up

pytestmark = pytest.mark.django_db(transaction=True)

SIGNUP = "/alerts/new/"


@pytest.fixture
def archive():
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), stdout=StringIO())


def test_the_signup_form_is_prefilled_and_previews_the_last_30_days(client, archive):
    response = client.get(SIGNUP, {"q": '"facial recognition"'})

    assert response.status_code == 200
    html = response.content.decode()
    assert 'value="&quot;facial recognition&quot;"' in html
    assert "What this alert would have sent" not in html or "In the last 30 days" in html
    assert response.context["preview"].total == 0  # the sample questions are from 2025


def test_the_preview_counts_recent_matches_and_a_weekly_rate(client, archive):
    from django.utils import timezone

    from questions.models import Question

    Question.objects.filter(external_id__in=["seed-1", "seed-2"]).update(date_tabled=timezone.localdate())

    preview = client.get(SIGNUP, {"q": '"facial recognition"'}).context["preview"]

    assert preview.total == 2 and preview.per_week == round(2 * 7 / 30, 1)
    assert {q.external_id for q in preview.questions} == {"seed-1", "seed-2"}


def test_a_comma_separated_query_gets_a_hint(client, archive):
    response = client.get(SIGNUP, {"q": "prisons, facial recognition"})

    assert 'Did you mean <code>prisons OR &quot;facial recognition&quot;</code>' in response.content.decode()


def test_a_refused_query_is_explained_in_the_form(client):
    response = sign_up(client, q='"facial recognition')

    assert response.status_code == 400
    assert "The quote you opened at character 1 is never closed" in response.content.decode()
    assert Subscription.objects.count() == 0 and not mail.outbox


def test_signup_confirm_and_land_on_the_manage_page(client, archive):
    response = sign_up(client)

    assert response.status_code == 302 and response["Location"] == "/alerts/check-your-inbox/"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ada@example.org"]
    assert "Confirm" in message.subject and '"facial recognition"' in message.body
    assert message.alternatives and "Confirm my alert" in message.alternatives[0][0]
    subscription = Subscription.objects.get()
    assert subscription.confirmed_at is None and subscription.canonical_query == '"facial recognition"'

    confirm = link_in(message, "/alerts/confirm/")
    page = client.get(confirm)
    assert page.status_code == 200 and "Confirm my alert" in page.content.decode()
    subscription.refresh_from_db()
    assert subscription.confirmed_at is None  # a link scanner's GET confirms nothing

    manage = client.post(confirm)
    assert manage.status_code == 302 and manage["Location"].startswith("/alerts/manage/")
    subscription.refresh_from_db()
    assert subscription.confirmed_at and subscription.subscriber.confirmed_at
    html = client.get(manage["Location"]).content.decode()
    assert "ada@example.org" in html and "&quot;facial recognition&quot;" in html


def test_the_response_is_the_same_for_known_and_unknown_addresses(client):
    confirmed_subscriber(client, "known@example.org")

    known = sign_up(client, "known@example.org", q="prisons")
    unknown = sign_up(client, "stranger@example.org", q="prisons")
    known_page = client.get(known["Location"]).content
    unknown_page = client.get(unknown["Location"]).content

    assert (known.status_code, known["Location"]) == (unknown.status_code, unknown["Location"])
    assert known_page == unknown_page

    link_known = client.post("/alerts/link/", {"email": "known@example.org"})
    link_unknown = client.post("/alerts/link/", {"email": "nobody@example.org"})
    assert (link_known.status_code, link_known["Location"]) == (link_unknown.status_code, link_unknown["Location"])
    assert [m.to for m in mail.outbox if m.subject == "Your written question alerts"] == [["known@example.org"]]


def test_a_second_signup_from_a_confirmed_address_needs_its_own_confirmation(client):
    subscriber, _ = confirmed_subscriber(client)

    sign_up(client, "ADA@example.org", q="prisons")

    second = subscriber.subscriptions.get(query="prisons")
    assert second.confirmed_at is None
    assert Subscriber.objects.count() == 1
    client.post(link_in(mail.outbox[-1], "/alerts/confirm/"))
    second.refresh_from_db()
    assert second.confirmed_at is not None


def test_the_same_search_twice_is_refused_politely_by_email(client):
    subscriber, _ = confirmed_subscriber(client)

    sign_up(client, q="“Facial   Recognition”")

    assert subscriber.subscriptions.count() == 1
    assert "already have one for that search" in mail.outbox[-1].body


def test_the_cap_on_alerts_per_address(client, settings):
    settings.MAX_SUBSCRIPTIONS_PER_ADDRESS = 2
    confirmed_subscriber(client)
    sign_up(client, q="prisons")
    # Only confirmed alerts count: what a stranger signs an address up for takes none of its room.
    client.post(link_in(mail.outbox[-1], "/alerts/confirm/"))

    sign_up(client, q="schools")

    assert Subscription.objects.count() == 2
    assert "already has 2 alerts" in mail.outbox[-1].body


def test_the_honeypot_stops_bots_silently(client):
    response = sign_up(client, website="http://spam.example")

    assert response.status_code == 302
    assert Subscriber.objects.count() == 0 and not mail.outbox


def test_nothing_is_emailed_to_a_suppressed_address(client):
    Subscriber.objects.create(email="bounced@example.org", suppressed_reason="bounced",
                              suppressed_at="2025-01-01T00:00:00Z")

    sign_up(client, "bounced@example.org")
    client.post("/alerts/link/", {"email": "bounced@example.org"})

    assert not mail.outbox


def start_of_a_rate_window(value: str, period: int) -> None:
    """Wait until the limiter's window for `value` has just turned over, so a test has a whole window."""
    from django_ratelimit.core import _get_window

    current = _get_window(value, period)
    while _get_window(value, period) == current:
        time.sleep(0.02)


def test_rate_limits_trip_and_recover(client, settings):
    settings.RATELIMIT_SIGNUP_PER_ADDRESS = "2/4s"
    clear_rate_limits()
    start_of_a_rate_window("ada@example.org", 4)

    statuses = [sign_up(client, q=f"topic{i}").status_code for i in range(4)]

    # Over the address's limit the page is the same, and nothing more is sent.
    assert statuses == [302] * 4 and len(mail.outbox) == 2
    start_of_a_rate_window("ada@example.org", 4)
    assert sign_up(client, q="topic10").status_code == 302 and len(mail.outbox) == 3


def test_tampered_expired_and_revoked_links_are_refused_with_a_friendly_page(client, monkeypatch):
    subscriber, manage = confirmed_subscriber(client)
    token = manage.split("/")[3]

    tampered = client.get(f"/alerts/manage/{token[:-2]}xx/")
    assert tampered.status_code == 400 and "not one we sent" in tampered.content.decode()

    real_time = time.time
    monkeypatch.setattr(signing.time, "time", lambda: real_time() - 91 * 86400)
    old = tokens.make(subscriber, tokens.MANAGE)
    monkeypatch.setattr(signing.time, "time", real_time)
    expired = client.get(f"/alerts/manage/{old}/")
    assert expired.status_code == 400 and "expired" in expired.content.decode()

    unsubscribe_link = tokens.make(subscriber, tokens.UNSUBSCRIBE)
    revoke = client.post(f"/alerts/manage/{token}/revoke/")
    assert revoke.status_code == 200
    revoked = client.get(f"/alerts/manage/{token}/")
    assert revoked.status_code == 400 and "revoked" in revoked.content.decode()
    # A fresh link is emailed, and unsubscribe links keep working.
    assert client.get(link_in(mail.outbox[-1], "/alerts/manage/")).status_code == 200
    assert client.get(f"/unsubscribe/{unsubscribe_link}/").status_code == 200


def test_a_link_for_one_purpose_does_not_open_another(client):
    subscriber, _ = confirmed_subscriber(client)
    unsubscribe_token = tokens.make(subscriber, tokens.UNSUBSCRIBE)

    assert client.get(f"/alerts/manage/{unsubscribe_token}/").status_code == 400


def test_one_click_unsubscribe_works_without_cookies_or_csrf(client):
    subscriber, _ = confirmed_subscriber(client)
    token = tokens.make(subscriber, tokens.UNSUBSCRIBE)
    mail_client = Client(enforce_csrf_checks=True)

    response = mail_client.post(f"/unsubscribe/{token}/", {"List-Unsubscribe": "One-Click"})

    assert response.status_code == 200
    subscriber.refresh_from_db()
    assert subscriber.suppressed_reason == "unsubscribed" and subscriber.suppressed_at


def test_unsubscribing_from_one_alert_keeps_the_others(client):
    subscriber, _ = confirmed_subscriber(client)
    sign_up(client, q="prisons")
    client.post(link_in(mail.outbox[-1], "/alerts/confirm/"))
    prisons = subscriber.subscriptions.get(query="prisons")
    token = tokens.make(subscriber, tokens.UNSUBSCRIBE, sub=prisons.pk)

    page = client.get(f"/unsubscribe/{token}/")
    assert "Stop the alert for <strong>prisons</strong>" in page.content.decode()
    assert subscriber.subscriptions.count() == 2  # GET changes nothing
    Client(enforce_csrf_checks=True).post(f"/unsubscribe/{token}/")

    assert list(subscriber.subscriptions.values_list("query", flat=True)) == ['"facial recognition"']
    subscriber.refresh_from_db()
    assert subscriber.suppressed_at is None


def test_the_manage_page_edits_pauses_deletes_and_exports(client, archive):
    subscriber, manage = confirmed_subscriber(client)
    subscription = subscriber.subscriptions.get()
    edit = f"{manage}{subscription.pk}/"

    refused = client.post(edit, {"q": "police AND", "frequency": "daily", "alert_on": "answers", "label": ""})
    assert refused.status_code == 400 and "nothing after it" in refused.content.decode()
    saved = client.post(edit, {"q": "police AND palantir", "frequency": "daily", "alert_on": "answers",
                               "label": "Palantir"})
    assert saved.status_code == 302
    subscription.refresh_from_db()
    assert (subscription.canonical_query, subscription.frequency, subscription.alert_on, subscription.label) == (
        "police AND palantir", "daily", "answers", "Palantir")

    client.post(f"{edit}pause/")
    subscription.refresh_from_db()
    assert subscription.paused
    assert "Paused" in client.get(manage).content.decode()

    exported = client.get(f"{manage}data.json").json()
    assert exported["email"] == "ada@example.org" and exported["alerts"][0]["query"] == "police AND palantir"
    assert [e["kind"] for e in exported["emails"]] == ["confirmation"]

    client.post(f"{edit}delete/")
    assert not Subscription.objects.exists()


def test_forms_need_csrf(archive):
    strict = Client(enforce_csrf_checks=True)

    assert strict.post(SIGNUP, {"email": "a@example.org", "q": "police", "frequency": "daily",
                                "alert_on": "both"}).status_code == 403
    assert strict.post("/alerts/link/", {"email": "a@example.org"}).status_code == 403


def test_the_delivery_rows_record_what_was_sent(client):
    confirmed_subscriber(client)

    delivery = Delivery.objects.get()
    assert delivery.kind == "confirmation" and delivery.status == "sent" and delivery.sent_at
    assert delivery.attempts == 1 and delivery.esp_message_id


def test_preview_shows_what_a_changed_search_would_send_and_saves_nothing(client, archive):
    from django.utils import timezone

    from questions.models import Question

    Question.objects.filter(external_id="seed-7").update(date_tabled=timezone.localdate())

    response = client.post(SIGNUP, {"email": "", "q": "taser", "frequency": "daily", "alert_on": "both",
                                    "preview": "1"})

    assert response.status_code == 200
    assert response.context["preview"].total == 1
    assert "Stun Guns" in response.content.decode()
    assert "This field is required" not in response.content.decode()
    assert Subscription.objects.count() == 0 and not mail.outbox
    refused = client.post(SIGNUP, {"email": "", "q": "taser AND", "preview": "1"})
    assert refused.status_code == 400 and "nothing after it" in refused.content.decode()


def test_coming_back_after_unsubscribing_from_everything(client):
    subscriber, _ = confirmed_subscriber(client)
    sign_up(client, q="taser")
    client.post(link_in(mail.outbox[-1], "/alerts/confirm/"))
    Client(enforce_csrf_checks=True).post(f"/unsubscribe/{tokens.make(subscriber, tokens.UNSUBSCRIBE)}/")
    assert set(subscriber.subscriptions.values_list("paused", flat=True)) == {True}

    sign_up(client, q='"facial recognition"', frequency="weekly")

    assert "Confirm" in mail.outbox[-1].subject  # not "you already have it"
    client.post(link_in(mail.outbox[-1], "/alerts/confirm/"))
    subscriber.refresh_from_db()
    assert subscriber.suppressed_at is None
    states = dict(subscriber.subscriptions.values_list("query", "paused"))
    assert states == {'"facial recognition"': False, "taser": True}  # only the one asked for again


def test_asking_again_before_confirming_takes_the_new_choices(client):
    sign_up(client, frequency="immediate")
    sign_up(client, frequency="weekly", alert_on="answers")

    subscription = Subscription.objects.get()
    assert (subscription.frequency, subscription.alert_on) == ("weekly", "answers")


def test_a_bounce_after_unsubscribing_stops_even_confirmation_emails(client):
    subscriber, _ = confirmed_subscriber(client)
    Client(enforce_csrf_checks=True).post(f"/unsubscribe/{tokens.make(subscriber, tokens.UNSUBSCRIBE)}/")
    subscriber.refresh_from_db()
    subscriber.suppress("bounced")
    sent = len(mail.outbox)

    sign_up(client, q="taser")

    subscriber.refresh_from_db()
    assert subscriber.suppressed_reason == "bounced" and len(mail.outbox) == sent


def test_the_did_you_mean_link_on_the_edit_page_fills_in_the_suggestion(client):
    subscriber, manage = confirmed_subscriber(client)
    edit = f"{manage}{subscriber.subscriptions.get().pk}/"

    page = client.get(edit, {"q": "prisons OR taser"})

    assert 'value="prisons OR taser"' in page.content.decode()


def test_an_old_confirmation_link_cannot_undo_unsubscribing_from_everything(client):
    sign_up(client)
    confirm = link_in(mail.outbox[-1], "/alerts/confirm/")
    client.post(confirm)
    subscriber = Subscriber.objects.get()
    Client(enforce_csrf_checks=True).post(f"/unsubscribe/{tokens.make(subscriber, tokens.UNSUBSCRIBE)}/")

    replayed = client.post(confirm)  # still within its seven days

    assert replayed.status_code == 400 and "unsubscribed from everything after the link" in replayed.content.decode()
    subscriber.refresh_from_db()
    assert subscriber.suppressed_reason == "unsubscribed"
    assert list(subscriber.subscriptions.values_list("paused", flat=True)) == [True]


def test_a_confirmation_link_confirms_only_what_is_unconfirmed_and_leaves_a_pause_alone(client):
    sign_up(client)
    confirm = link_in(mail.outbox[-1], "/alerts/confirm/")
    client.post(confirm)
    Subscription.objects.update(paused=True)  # paused on the manage page afterwards

    client.post(confirm)

    assert Subscription.objects.get().paused is True


def test_confirmation_subjects_carry_nothing_a_stranger_typed(client):
    sign_up(client, q="police", label="Claim your prize at evil.example")
    sign_up(client, q="palantir", label="Your account is locked: reply with your password")

    subjects = [m.subject for m in mail.outbox]
    assert subjects == ["Confirm your alert for written questions"] * 2


@pytest.mark.parametrize("field, value, message", [
    ("label", "Otters\r\nBcc: attacker@evil.example", "a character that can’t be used in it (U+000D)"),
    ("label", "\u202eevil", "(U+202E) at character 1: a name is plain text on one line"),
    ("q", "police \u202etaser", "(U+202E) at character 8"),
    ("label", "x" * 101, "at most 100 characters"),
])
def test_names_and_searches_are_plain_one_line_text(client, field, value, message):
    response = sign_up(client, **{field: value})

    assert response.status_code == 400 and message in response.content.decode()
    assert not Subscription.objects.exists() and not mail.outbox


def test_a_link_from_between_two_unsubscribes_cannot_undo_the_second(client):
    subscriber, _ = confirmed_subscriber(client)
    unsubscribe_all = f"/unsubscribe/{tokens.make(subscriber, tokens.UNSUBSCRIBE)}/"
    Client(enforce_csrf_checks=True).post(unsubscribe_all)
    sign_up(client)  # coming back: a new link
    confirm = link_in(mail.outbox[-1], "/alerts/confirm/")
    time.sleep(0.01)
    Client(enforce_csrf_checks=True).post(unsubscribe_all)  # and gone again, before using it

    assert client.post(confirm).status_code == 400
    subscriber.refresh_from_db()
    assert subscriber.suppressed_reason == "unsubscribed"
