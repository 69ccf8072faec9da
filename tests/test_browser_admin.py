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

from alerts.models import Delivery, DigestRun, Subscriber, Subscription, SuppressionLift, WebhookEvent
from questions.models import Question, QuestionEvent, Source, SourceProblem
from tests.browser import axe_violations, browser_page, screenshot
from tests.factories import match

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
    match(alert, event, delivery=sent)
    DigestRun.objects.create(frequency="daily", period_start=now - dt.timedelta(days=1), period_end=now)
    WebhookEvent.objects.create(esp="postmark", event_type="bounced", recipient=bounced.email)
    return {"source": failing, "bounced": bounced}


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


def model_pages(live_server) -> list[tuple[str, str]]:
    """Every model's list, the list narrowed by its first filter's first choice, and the change page of a row of
    each (its add page, for a model with none)."""
    pages = []
    for model in admin.site._registry:
        opts = model._meta
        base = f"{live_server.url}/admin/{opts.app_label}/{opts.model_name}/"
        pages.append((f"{opts.model_name}-list", base))
        row = model.objects.order_by("pk").first()
        if row is None:
            pages.append((f"{opts.model_name}-add", f"{base}add/"))
        else:
            pages.append((f"{opts.model_name}-change", f"{base}{row.pk}/change/"))
    return pages


def run_action(page, rows: list[str], action: str) -> None:
    """Tick the rows of the list whose text has these words, and run the action."""
    for words in rows:
        page.locator("#result_list tbody tr").filter(has_text=words).get_by_role("checkbox").check()
    page.get_by_label("Action:").select_option(action)
    page.get_by_role("button", name="Go").click()
    page.wait_for_load_state()


def messages(page) -> list[str]:
    return page.locator("ul.messagelist li").all_inner_texts()


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_every_admin_page_passes_axe(live_server, records, width):
    pages = model_pages(live_server)
    with browser_page() as page:
        try:
            page.set_viewport_size({"width": width, "height": 900})
            page.goto(f"{live_server.url}/admin/login/")
            assert page.get_by_role("heading", level=1).inner_text() == "Log in to Written question alerts"
            checked(page, "login", width)
            log_in(page, live_server.url)
            failing = page.locator(".failing-sources li")
            assert failing.inner_text().startswith("Parliament API has failed 3 poll(s) in a row: ")
            assert failing.get_by_role("link", name="Parliament API").get_attribute("href") == (
                f"/admin/questions/source/{records['source'].pk}/change/")
            checked(page, "index", width)
            page.goto(f"{live_server.url}/admin/overview/")
            assert page.locator("p.headline").inner_text().startswith(
                "Not working: Parliament API has failed 3 poll(s) in a row")
            checked(page, "overview", width)
            for name, url in pages:
                page.goto(url)
                checked(page, name, width)
                filters = page.locator("#changelist-filter details li:not(.selected) a")
                if filters.count():
                    filters.first.click()
                    page.wait_for_load_state()
                    checked(page, f"{name}-filtered", width)
        finally:
            connections.close_all()


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_the_actions_that_ask_first_and_what_they_say(live_server, records, width):
    with browser_page() as page:
        try:
            page.set_viewport_size({"width": width, "height": 900})
            log_in(page, live_server.url)

            page.goto(f"{live_server.url}/admin/alerts/delivery/?status__exact=sent")
            run_action(page, ["jane.reader@example.org"], "resend")
            assert page.get_by_role("heading", level=1).inner_text() == "Send these emails again?"
            assert "sent on" in page.locator(".confirm-list").inner_text()
            checked(page, "resend-confirmation", width)
            page.get_by_role("button", name="Yes, send again").click()
            page.wait_for_load_state()
            assert messages(page) == ["1 email(s) already sent are queued to be sent again, each as a new email; "
                                      "the first keeps its record of when it was sent."]
            checked(page, "resend-done", width)

            page.goto(f"{live_server.url}/admin/alerts/subscriber/")
            run_action(page, ["gone@example.org"], "lift_suppression")
            assert "Lifting this is a deliberate act" in page.locator(".confirm-list").inner_text()
            checked(page, "lift-confirmation", width)
            page.get_by_role("button", name="Yes, lift the suppression").click()
            page.wait_for_load_state()
            assert messages(page)[0].startswith("Suppression lifted for 1 address(es)")
            checked(page, "lift-done", width)

            run_action(page, ["gone@example.org", "jane.reader@example.org"], "suppress")
            assert messages(page) == [
                "Suppressed 2 address(es): nothing more is sent to them. Lift suppression undoes it."]
            run_action(page, ["jane.reader@example.org"], "suppress")
            assert messages(page) == ["1 address(es) left as they were: already suppressed by a bounce, a "
                                      "complaint or an operator."]
            checked(page, "suppress-left", width)

            page.goto(f"{live_server.url}/admin/alerts/subscriber/{records['bounced'].pk}/change/")
            history = page.locator(".field-lifted_suppressions li").all_inner_texts()
            assert [line.split(":")[0] for line in history] == ["Bounced", "Suppressed by an operator"]
            checked(page, "subscriber-lifted", width)
        finally:
            connections.close_all()
