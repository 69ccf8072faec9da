"""Following a question, end to end on the real stack: the Parliament API (a local stand-in) polled by a real
Celery worker, a visitor in Chromium, and the emails through Anymail's Postmark backend to a local ESP."""

from __future__ import annotations

import datetime as dt
import html
import re

import pytest
from django.utils import dateformat, timezone

from alerts.following import retire_follows
from alerts.models import Delivery, Subscription
from questions.models import Question, QuestionEvent, Source
from tests.browser import axe_violations, browser_page_closing_connections, screenshot
from tests.conftest import polled_api, send, wait_until
from tests.esp_stub import emails_to, link
from tests.factories import TODAY, pairs, real_record, stamp
from tests.parliament_stub import member

pytestmark = [pytest.mark.worker, pytest.mark.postgres, pytest.mark.browser]

HEADING = "Apprentices: Employment Agencies"
ASKED = "how many (a) starts and (b) completions of flexi-job apprenticeships"
ANSWER = "There have been 1,250 starts and 420 completions of flexi-job apprenticeships since 2022."
CORRECTED = "There have been 1,250 starts and 380 completions of flexi-job apprenticeships since 2022."
CORRECTED_AGAIN = "There have been 1,250 starts and 385 completions of flexi-job apprenticeships since 2022."


@pytest.fixture
def api(httpserver):
    return polled_api(httpserver, range(1000, 1004))


@pytest.fixture
def worker(site_worker):
    return site_worker


def poll() -> None:
    """What beat does every few minutes: the worker polls each due source (this one is made due now)."""
    Source.objects.filter(name="Stub API").update(last_polled_at=None)
    send("questions.poll_sources")


def all_matched() -> bool:
    return QuestionEvent.objects.exists() and not QuestionEvent.objects.filter(matched_at__isnull=True).exists()


def answered_by_minister(text: str, **changes) -> dict:
    return real_record(1000, dateAnswered=stamp(TODAY), answerText=f"<p>{text}</p>", **changes)


browser = browser_page_closing_connections


def words(content: str) -> str:
    content = re.sub(r"<head>.*?</head>", " ", content, flags=re.S)
    content = re.sub(r"</?(a|strong|span|mark)\b[^>]*>", "", content)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", content)).split())


def test_following_a_question_from_its_page_to_its_answer_correction_and_end(api, esp, worker, live_server,
                                                                             settings):
    settings.SITE_URL = live_server.url
    api.put(real_record(1000, answered=False))
    api.put(real_record(1001, heading="Apprentices: Construction"))
    api.put(real_record(1002, heading="Apprentices: Hospitality",
                        askingMember=member("John Other", "Conservative", "Bath", 4000), askingMemberId=4000))
    poll()
    wait_until(lambda: Question.objects.count() == 3 and all_matched(), timeout=90, message="the first poll")
    question = Question.objects.get(external_id="1000")
    assert not question.is_answered

    with browser() as page:
        page.goto(f"{live_server.url}{question.get_absolute_url()}")
        assert page.get_by_role("heading", level=1).inner_text() == HEADING
        assert page.get_by_role("heading", name="Email me when this is answered").is_visible()
        screenshot(page, "follow-question-page")
        assert axe_violations(page) == []

        page.get_by_label("Your email address").fill("ada@example.org")
        page.get_by_role("button", name="Email me when this is answered").click()
        assert page.get_by_role("heading", level=1).inner_text() == "Check your inbox"
        assert "You asked us to email ada@example.org." in page.locator("main").inner_text()

        wait_until(lambda: emails_to(esp, "ada@example.org"), timeout=90, message="the confirmation email")
        [confirmation] = emails_to(esp, "ada@example.org")
        assert confirmation["Subject"] == "Confirm your alert for written questions"
        assert f"when this question is answered: {HEADING}" in confirmation["TextBody"]
        assert not Subscription.objects.receiving().exists()

        page.goto(link(confirmation, "/alerts/confirm/"))
        assert f"When this question is answered: {HEADING}" in page.locator("main").inner_text()
        page.get_by_role("button", name="Confirm my alert").click()
        assert page.get_by_role("heading", level=1).inner_text() == "My alerts"
        assert (f"Your alert is on: we’ll email you when “{HEADING}” is answered."
                in page.get_by_role("status").inner_text())
        assert f"Following: {HEADING}" in page.get_by_role("table").inner_text()
        # The recorded question's due date is long past: it says so, as its overdue email would.
        assert question.is_overdue(timezone.localdate())
        assert f"{question.overdue_label}." in page.get_by_role("table").inner_text()
        assert "Waiting for an answer." not in page.get_by_role("table").inner_text()

        api.put(answered_by_minister(ANSWER))
        poll()
        wait_until(lambda: len(emails_to(esp, "ada@example.org")) >= 2, timeout=90, message="the answer email")
        answer_email = emails_to(esp, "ada@example.org")[1]
        assert answer_email["Subject"] == f"Answered: “{HEADING}”"
        shown = words(answer_email["HtmlBody"])
        assert f"The question you follow Answered {HEADING}" in shown
        assert ASKED in shown and ANSWER in shown
        assert f"[Answered] {HEADING}" in answer_email["TextBody"]
        assert ASKED in answer_email["TextBody"] and ANSWER in answer_email["TextBody"]

        page.set_viewport_size({"width": 375, "height": 800})
        page.set_content(answer_email["HtmlBody"])
        screenshot(page, "follow-answered-email-375")
        assert page.get_by_role("heading", level=1, name="The question you follow").count() == 1
        assert page.get_by_text(ANSWER).is_visible()
        assert axe_violations(page) == []
        page.set_viewport_size({"width": 1000, "height": 900})

        api.put(answered_by_minister(CORRECTED, answerIsCorrection=True, dateAnswerCorrected=stamp(TODAY)))
        poll()
        wait_until(lambda: len(emails_to(esp, "ada@example.org")) >= 3, timeout=90, message="the correction email")
        correction_email = emails_to(esp, "ada@example.org")[2]
        assert correction_email["Subject"] == f"Answer corrected: “{HEADING}”"
        assert f"[Answer corrected] {HEADING}" in correction_email["TextBody"]
        assert CORRECTED in correction_email["TextBody"] and CORRECTED in words(correction_email["HtmlBody"])

        later = timezone.now() + dt.timedelta(days=settings.FOLLOW_WINDOW_DAYS + 1)
        assert retire_follows(later) == 1

        page.goto(link(correction_email, "/alerts/manage/"))
        row = page.get_by_role("row").filter(has_text=HEADING)
        ended_on = dateformat.format(timezone.localtime(later), "j F Y")
        assert (f"Ended on {ended_on}: this question was answered and its corrections window has passed, so we "
                "stopped following it.") in row.inner_text()
        assert row.get_by_role("cell", name="Ended", exact=True).count() == 1
        assert axe_violations(page) == []

        api.put(answered_by_minister(CORRECTED_AGAIN, answerIsCorrection=True, dateAnswerCorrected=stamp(TODAY)))
        poll()
        wait_until(lambda: QuestionEvent.objects.filter(kind="corrected").count() == 2 and all_matched(),
                   timeout=90, message="the second correction to be matched")
        follow = Subscription.objects.get(question=question)
        # The answer and the first correction: nothing after the follow ended.
        kinds = dict(QuestionEvent.objects.values_list("pk", "kind"))
        assert [kinds[event] for _, event in pairs(follow.matches.all())] == ["answered", "corrected"]
        send("alerts.deliver_immediate")
        send("alerts.send_due")
        wait_until(lambda: not Delivery.objects.filter(status="pending").exists(), timeout=30,
                   message="nothing left to send")
        assert [m["Subject"] for m in emails_to(esp, "ada@example.org")] == [
            "Confirm your alert for written questions", f"Answered: “{HEADING}”", f"Answer corrected: “{HEADING}”"]
        assert Question.objects.get(pk=question.pk).answer_text == CORRECTED_AGAIN

        page.goto(f"{live_server.url}{question.get_absolute_url()}")
        assert page.get_by_role("heading", name="Email me when this is answered").count() == 0
        page.get_by_role("link", name=re.compile(r"^Jane Example")).click()
        page.wait_for_load_state()
        assert page.get_by_label("Search written questions").input_value() == 'member:"Jane Example"'
        assert page.get_by_role("heading", level=2, name="2 questions match").count() == 1
        results = page.locator("ol.results > li")
        assert results.count() == 2
        for number in range(results.count()):
            assert "Asked by: Jane Example (Labour - Norwich South)" in results.nth(number).inner_text()
        assert "Apprentices: Hospitality" not in page.locator("main").inner_text()
        assert axe_violations(page) == []
    assert list(esp.to()) == ["ada@example.org"] * 3
