"""Abuse: floods of signups, and stored HTML from sources in emails."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command

from alerts.delivery import deliver_immediate
from alerts.models import Delivery, Subscriber
from questions.ingest import upsert
from questions.sources.parliament import record_from_api
from tests.conftest import load_fixture

pytestmark = pytest.mark.django_db


def post(client, email, ip, q="palantir"):
    return client.post("/alerts/new/", {"email": email, "q": q, "frequency": "daily", "alert_on": "both",
                                        "website": ""}, REMOTE_ADDR=ip)


def test_a_flood_of_1000_signups_from_one_ip_is_held_to_the_limit(client, settings, limiter_clock):
    settings.RATELIMIT_SIGNUP_PER_IP = "20/h"

    statuses = [post(client, f"person{i}@example.org", "203.0.113.9").status_code for i in range(1000)]

    assert statuses.count(302) == 20 and statuses.count(429) == 980
    assert Delivery.objects.count() == 20 and Subscriber.objects.count() == 20
    assert post(client, "someone@example.org", "203.0.113.10").status_code == 302  # others are not affected


def test_a_flood_of_1000_signups_for_one_address_is_held_to_the_limit(client, settings, limiter_clock):
    settings.RATELIMIT_SIGNUP_PER_ADDRESS = "5/h"

    statuses = [post(client, "Victim@Example.org", f"198.51.100.{i % 250}", q=f"topic{i}").status_code
                for i in range(1000)]

    assert statuses.count(302) == 1000  # the page any address gets, saying nothing of the limit
    assert Delivery.objects.filter(subscriber__email__iexact="victim@example.org").count() == 5
    link = client.post("/alerts/link/", {"email": "victim@example.org"}, REMOTE_ADDR="198.51.100.1")
    assert link.status_code == 302  # the address's limit covers "email me a link" too
    assert Delivery.objects.filter(subscriber__email__iexact="victim@example.org").count() == 5


@pytest.mark.django_db(transaction=True)
def test_html_from_a_source_is_inert_in_emails():
    from django.core import mail
    from django.utils import timezone

    from alerts.models import Subscription
    from questions.models import QuestionEvent
    from tests.factories import match

    record = load_fixture("question_detail.json")["value"] | {
        "id": 7, "heading": 'Palantir<script>alert("h")</script>',
        "answerText": '<p onmouseover="x()">Palantir <a href="javascript:steal()">here</a><script>bad()</script></p>',
    }
    upsert([record_from_api(record)])
    now = timezone.now()
    subscriber = Subscriber.objects.create(email="ada@example.org", confirmed_at=now)
    subscription = Subscription.objects.create(subscriber=subscriber, query="palantir", canonical_query="palantir",
                                               confirmed_at=now)
    match(subscription, *QuestionEvent.objects.all())
    call_command("check_subscriber", "ada@example.org", stdout=StringIO())

    deliver_immediate()

    html = mail.outbox[0].alternatives[0][0]
    assert "<script" not in html and "onmouseover" not in html and "javascript:" not in html
    assert "&lt;script&gt;" in html  # the heading's text is shown, as text
