"""The stored HTML of real alert emails as a mail client shows it, in Chromium and checked by axe-core, on a
desktop and a phone: a correction shown as what changed, and a digest of every kind of news with its dates."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from alerts.matching import match_events
from alerts.models import Delivery
from questions.models import QuestionEvent
from tests.browser import browser_page, check_page
from tests.conftest import deliver, run_digest
from tests.factories import HEADING, TODAY, answered, corrected, land, record, subscribe

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("fresh_percolators")]

WIDTHS = (1280, 375)


def show(page, html: str, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.set_content(html)


def test_a_correction_email_marks_what_was_removed_and_added_in_words_and_in_style():
    subscribe("ada@example.org", "boilers", label="School boilers")
    land(answered(record()))
    deliver()
    land(corrected(record()))
    deliver()
    email = Delivery.objects.latest("pk")
    assert email.subject == f"Answer corrected: {HEADING} – ‘School boilers’"

    with browser_page() as page:
        for width in WIDTHS:
            show(page, email.body_html, width)
            assert page.get_by_role("heading", level=3, name="What the correction changed").is_visible()
            removed, added = page.locator("del"), page.locator("ins")
            assert removed.all_inner_texts() == ["£50"] and added.all_inner_texts() == ["£45"]
            # Marked by its look, and by words that survive a mail client dropping the styles.
            assert "line-through" in removed.evaluate("e => getComputedStyle(e).textDecorationLine")
            assert "underline" in added.evaluate("e => getComputedStyle(e).textDecorationLine")
            assert page.get_by_text("[Removed: £50] [Added: £45] million", exact=False).is_visible()
            assert page.get_by_text(f"Corrected {TODAY:%A}", exact=False).is_visible()
            check_page(page, "email-correction", width)


def test_a_digest_of_every_kind_of_news_shows_each_question_with_its_dates():
    subscribe("ada@example.org", "boilers", frequency="daily")
    land(record("wq-3"))
    land(answered(record("wq-4")))
    QuestionEvent.objects.update(matched_at=timezone.now())
    land(record("wq-1", is_named_day=True))
    land(answered(record("wq-3")))
    land(corrected(record("wq-4")))
    match_events()
    run_digest("daily")
    email = Delivery.objects.get(kind="daily")
    assert email.subject.endswith(": 1 new question, 1 answer and 1 corrected answer match ‘boilers’")
    due = TODAY + dt.timedelta(days=5)

    with browser_page() as page:
        for width in WIDTHS:
            show(page, email.body_html, width)
            assert page.get_by_role("heading", level=2, name=HEADING).count() == 3
            for label in ("New question", "Answered", "Answer corrected"):
                assert page.get_by_text(label, exact=True).count() == 1
            assert page.get_by_text(f"Due for answer on {due:%A}", exact=False).is_visible()
            assert page.get_by_text("(a named day)", exact=False).is_visible()
            assert page.get_by_text(f"Answered {TODAY:%A}", exact=False).count() == 2
            assert page.locator("del").count() == 1 and page.locator("ins").count() == 1
            check_page(page, "email-digest-kinds", width)
