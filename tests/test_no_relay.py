"""Our domain is no relay for a stranger: what anyone can make us email to any address repeats their words
only defanged, and their unconfirmed signups of someone else's address are not that person's alerts."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.core import mail
from django.utils import timezone

from alerts.models import Subscriber, Subscription
from alerts.retention import prune
from tests.conftest import confirmed_subscriber, link_in, sign_up

pytestmark = pytest.mark.django_db(transaction=True)

PITCH = "prize\r\nClaim it now at https://evil.example/win or mail claims@evil.example\r\n\r\nwww.evil.example"


def parts(message) -> tuple[str, str]:
    return message.body, message.alternatives[0][0]


def test_a_strangers_search_and_name_reach_a_confirmation_email_defanged_on_one_line(client):
    sign_up(client, "victim@example.org", q=PITCH, label="Visit www.evil.example today")

    text, html = parts(mail.outbox[-1])
    for part in (text, html):
        assert "evil.example" not in part and "https://evil" not in part and "claims@evil" not in part
        assert "hxxps://evil[.]example/win" in part and "claims[@]evil[.]example" in part
        assert "Visit www[.]evil[.]example today" in part
    # One line, however many the stranger typed.
    line = next(line for line in text.splitlines() if "new questions matching" in line)
    assert "prize Claim it now at hxxps://evil[.]example/win" in line and "www[.]evil[.]example" in line


def test_a_long_search_is_cut_short(client):
    words = "counterintelligence " * 12
    sign_up(client, "victim@example.org", q=words.strip(), label="Mine\u00a0too")

    text, html = parts(mail.outbox[-1])
    line = next(line for line in text.splitlines() if "new questions matching" in line)
    shown = re.search(r"matching (.*?) \(Mine too\)", line).group(1)
    assert len(shown) == 120 and shown.endswith("…")
    assert re.search(r"matching <strong>(.*?)</strong>", html).group(1) == shown


def test_the_duplicate_notice_repeats_the_search_defanged_too(client):
    confirmed_subscriber(client, "ada@example.org", q="evil.example")

    sign_up(client, "ada@example.org", q="evil.example")

    text, html = parts(mail.outbox[-1])
    assert "already have one for that search" in text
    assert "evil.example" not in text and "evil.example" not in html and "evil[.]example" in text


def test_a_strangers_unconfirmed_signups_are_not_on_the_owners_manage_page(client):
    _, manage = confirmed_subscriber(client, "ada@example.org")
    sign_up(client, "ADA@example.org", q='"cheap pills"')

    page = client.get(manage).content.decode()

    assert "cheap pills" not in page
    assert "One alert asked for with this address is waiting to be confirmed" in page


def test_unconfirmed_signups_take_no_room_under_the_cap(client, settings):
    settings.MAX_SUBSCRIPTIONS_PER_ADDRESS = 2
    settings.RATELIMIT_SIGNUP_PER_ADDRESS = "10/h"  # this test is about the cap, not the emails' limits
    ada, manage = confirmed_subscriber(client, "ada@example.org")
    for query in ("prisons", "schools", "hospitals"):
        sign_up(client, "ada@example.org", q=query)

    response = client.post(f"{manage}add/", {"q": "farming", "frequency": "daily", "alert_on": "both", "label": ""},
                           follow=True)

    assert "Added “farming”" in response.content.decode()
    assert sorted(ada.subscriptions.filter(confirmed_at__isnull=False).values_list("query", flat=True)) == [
        '"facial recognition"', "farming"]
    # The requests are bounded by the cap as well, the oldest giving way.
    assert sorted(ada.subscriptions.filter(confirmed_at__isnull=True).values_list("query", flat=True)) == [
        "hospitals", "schools"]


def test_a_link_confirms_no_more_than_the_cap_allows(client, settings):
    settings.MAX_SUBSCRIPTIONS_PER_ADDRESS = 2
    ada, manage = confirmed_subscriber(client, "ada@example.org")
    sign_up(client, "ada@example.org", q="prisons")
    late = link_in(mail.outbox[-1], "/alerts/confirm/")
    client.post(f"{manage}add/", {"q": "farming", "frequency": "daily", "alert_on": "both", "label": ""})

    page = client.post(late, follow=True).content.decode()

    assert ada.subscriptions.get(query="prisons").confirmed_at is None
    assert "could not be turned on: this address already has 2 alerts" in page


@pytest.mark.postgres
def test_unconfirmed_signups_of_a_confirmed_address_are_pruned(settings):
    now = timezone.now()
    ada = Subscriber.objects.create(email="ada@example.org", confirmed_at=now - dt.timedelta(days=30))
    kept = Subscription.objects.create(subscriber=ada, query="kept", canonical_query="kept",
                                       confirmed_at=ada.confirmed_at)
    stale = Subscription.objects.create(subscriber=ada, query="stale", canonical_query="stale")
    fresh = Subscription.objects.create(subscriber=ada, query="fresh", canonical_query="fresh")
    eight_days_ago = now - dt.timedelta(days=settings.RETAIN_UNCONFIRMED_DAYS + 1)
    Subscription.objects.filter(pk=stale.pk).update(created_at=eight_days_ago, updated_at=eight_days_ago)

    report = prune(now=now)

    assert report.counts["unconfirmed alerts"] == 1
    assert set(ada.subscriptions.values_list("pk", flat=True)) == {kept.pk, fresh.pk}


def test_a_strangers_flood_of_requests_does_not_cost_the_owner_the_alert_they_asked_for(client, settings):
    settings.MAX_SUBSCRIPTIONS_PER_ADDRESS = 2
    sign_up(client, "ada@example.org", q="prisons", label="Mine", frequency="daily")
    mine = link_in(mail.outbox[-1], "/alerts/confirm/")
    for query in ("cheap pills", "casino", "crypto"):
        sign_up(client, "ada@example.org", q=query)
    ada = Subscriber.objects.get()
    assert not ada.subscriptions.filter(query="prisons").exists()  # pushed out of the requests held

    assert "<strong>prisons</strong>: daily" in client.get(mine).content.decode()
    page = client.post(mine, follow=True).content.decode()

    assert "Your alert is on: we’ll email you when new questions match “Mine”" in page
    alert = ada.subscriptions.get(confirmed_at__isnull=False)
    assert (alert.query, alert.label, alert.frequency) == ("prisons", "Mine", "daily")
    # The stranger's requests are still only requests, bounded by the cap as before.
    assert ada.subscriptions.filter(confirmed_at__isnull=True).count() == 1


def test_look_alike_dots_and_phone_and_mail_links_are_defanged_too(client):
    # Small, one-dot-leader and full-width full stops, a full-width scheme and a small "@".
    sign_up(client, "victim@example.org", q="evil\ufe52example evil\u2024example ｅｖｉｌ．ｅｘａｍｐｌｅ ｈｔｔｐｓ",
            label="Ring tel:+447700900123 or mailto:claims\ufe6bevil\uff0eexample")

    text, html = parts(mail.outbox[-1])
    for part in (text, html):
        assert "\ufe52" not in part and "\u2024" not in part and "\uff0e" not in part and "\ufe6b" not in part
        assert "evil[.]example evil[.]example evil[.]example hxxps" in part
        assert "Ring tel[:]+447700900123 or mailto[:]claims[@]evil[.]example" in part
        assert "tel:" not in part and "mailto:" not in part
