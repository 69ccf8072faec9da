"""Word forms end to end, with real questions: a search or an alert on `prisons` finds the question that says
"prison", in Chromium and in the inbox; quoted, `"prisons"` finds the form typed only.

The questions are real Commons written questions, copied verbatim from mySociety's republication of the
Written Questions API. Contains Parliamentary information licensed under the Open Parliament Licence v3.0.
"""

from __future__ import annotations

import html
import json
import re
from io import StringIO

import pytest
from django.core.management import call_command

from alerts.models import Delivery, Match, Subscription
from questions.models import Question, QuestionEvent, Source
from questions.search.words import words
from tests.browser import axe_violations, browser_page_closing_connections, screenshot
from tests.conftest import polled_api, send, wait_until
from tests.esp_stub import emails_to, link
from tests.factories import pairs, real_record
from tests.parliament_stub import member

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

# Real question, UIN 102051, tabled 2026-01-02: says "prison" (heading and question), never "prisons".
PRISON = {
    "uin": "102051",
    "heading": "Prison Officers: Migrant Workers",
    "question": "To ask the Secretary of State for Justice, how many and what proportion of prison officers hold "
                "work visas.",
    "answer": "The requested data is not held centrally in a reportable format.",
    "asking_member": "Blake Stephenson",
    "answering_member": "Jake Richards",
    "department": "Ministry of Justice",
    "house": "Commons",
    "date_tabled": "2026-01-02",
    "date_answered": "2026-01-12",
    "source": "github:mysociety/uk-parl-written-questions@8f99b2c3207d4a9cc800b3d4f751f870f2e94077:"
              "data/raw/commons/2026-01.json",
    "api_id": 1866934,
    "url": "https://questions-statements.parliament.uk/written-questions/detail/2026-01-02/102051",
    "asking_member_id": 5100,
    "answering_member_id": 5082,
    "question_truncated": False,
    "answer_truncated": False,
    "answer_is_holding": False,
    "is_withdrawn": False,
    "date_for_answer": "2026-01-06",
    "is_named_day": False,
    "date_holding_answer": None,
}

# Real question, UIN 7722, tabled 2023-12-19: says "prisons" (in the answer), never "prison".
PRISONS = {
    "uin": "7722",
    "heading": "Israel: British Nationals Abroad",
    "question": "To ask the Minister of State, Foreign, Commonwealth and Development Office, how many British "
                "nationals are held in Israeli military detention.",
    "answer": "No British Nationals are currently detained in Israeli prisons, including security prisoners.",
    "asking_member": None,
    "answering_member": "Sir Andrew Mitchell",
    "department": "Foreign, Commonwealth and Development Office",
    "house": "Commons",
    "date_tabled": "2023-12-19",
    "date_answered": "2024-01-10",
    "source": "github:mysociety/uk-parl-written-questions@314d42a060828da5b8da22a2ec6a3c1ba2cba016:"
              "data/raw/commons/2023-12.json",
    "api_id": 1679198,
    "url": "https://questions-statements.parliament.uk/written-questions/detail/2023-12-19/7722",
    "asking_member_id": 4848,
    "answering_member_id": 1211,
    "question_truncated": False,
    "answer_truncated": False,
    "answer_is_holding": False,
    "is_withdrawn": False,
    "date_for_answer": "2024-01-08",
    "is_named_day": False,
    "date_holding_answer": None,
}

# Real question, UIN 13304, tabled 2024-11-08: says "policy", and no word of prisons at all.
POLICY = {
    "uin": "13304",
    "heading": "Northern Ireland Office: Domestic Visits",
    "question": "To ask the Secretary of State for Northern Ireland, what his policy is on notifying an hon. Member "
                "before visiting their constituency.",
    "answer": "The policy is to notify Members of Parliament in advance of visiting their constituency.",
    "asking_member": "Robin Swann",
    "answering_member": "Hilary Benn",
    "department": "Northern Ireland Office",
    "house": "Commons",
    "date_tabled": "2024-11-08",
    "date_answered": "2024-11-13",
    "source": "github:mysociety/uk-parl-written-questions@2a68d63741c6950c958061f43927c1af1f153404:"
              "data/raw/commons/2024-11.json",
    "api_id": 1740315,
    "url": "https://questions-statements.parliament.uk/written-questions/detail/2024-11-08/13304",
    "asking_member_id": 5319,
    "answering_member_id": 413,
    "question_truncated": False,
    "answer_truncated": False,
    "answer_is_holding": False,
    "is_withdrawn": False,
    "date_for_answer": "2024-11-13",
    "is_named_day": True,
    "date_holding_answer": None,
}

SEARCHED = ("heading", "question", "answer", "asking_member", "answering_member", "department")


def words_of(record: dict) -> set[str]:
    """Every word a plain search looks through, as the search cuts them."""
    return {word for key in SEARCHED for word in words(record[key] or "")}


def normalised(record: dict) -> dict:
    """The record in the shape `import_questions` reads (the fields of the query language's section 2)."""
    return {"id": str(record["api_id"]), "uin": record["uin"], "house": record["house"],
            "heading": record["heading"], "question": record["question"], "answer": record["answer"],
            "member": record["asking_member"], "minister": record["answering_member"],
            "department": record["department"], "date_tabled": record["date_tabled"],
            "date_answered": record["date_answered"], "url": record["url"]}


def from_the_api(record: dict) -> dict:
    """The record as the Written Questions API's detail endpoint gives it, re-dated to this week so that the
    poller's window finds it: it is new."""
    def person(name: str | None, member_id: int) -> dict | None:
        # The sample names members without their party or seat; nothing is made up for them.
        return member(name, "", "", member_id) if name else None

    answer = "".join(f"<p>{html.escape(p)}</p>" for p in record["answer"].split("\n") if p.strip())
    return real_record(
        record["api_id"], uin=record["uin"], heading=record["heading"], questionText=record["question"],
        answerText=answer, askingMemberId=record["asking_member_id"],
        askingMember=person(record["asking_member"], record["asking_member_id"]),
        answeringMemberId=record["answering_member_id"],
        answeringMember=person(record["answering_member"], record["answering_member_id"]),
        answeringBodyId=None, answeringBodyName=record["department"], dateForAnswer=None,
        isNamedDay=record["is_named_day"],
    )


def test_the_questions_say_what_this_file_needs_them_to():
    assert "prison" in words_of(PRISON) and "prisons" not in words_of(PRISON)
    assert "prisons" in words_of(PRISONS) and "prison" not in words_of(PRISONS)
    assert "policy" in words_of(POLICY) and not {w for w in words_of(POLICY) if "prison" in w}


browser = browser_page_closing_connections


def search(page, query: str) -> None:
    page.get_by_label("Search written questions").fill(query)
    page.get_by_role("button", name="Search").click()
    page.wait_for_load_state()


def result(page, heading: str):
    return page.locator("ol.results > li").filter(has=page.get_by_role("heading", level=2, name=heading))


def marked(locator) -> list[str]:
    return [text.casefold() for text in locator.locator("mark").all_inner_texts()]


@pytest.mark.django_db(transaction=True)
def test_a_search_for_prisons_shows_and_marks_prison_and_quoted_it_does_not(live_server, tmp_path):
    archive = tmp_path / "archive.json"
    archive.write_text(json.dumps([normalised(r) for r in (PRISON, PRISONS, POLICY)]), encoding="utf-8")
    call_command("import_questions", str(archive), stdout=StringIO())

    with browser() as page:
        page.goto(live_server.url + "/")
        search(page, "prisons")
        assert page.get_by_role("heading", level=2, name="2 questions match").count() == 1
        assert result(page, PRISON["heading"]).count() == 1
        # Each form the question uses is marked, in the heading and in the question.
        assert marked(result(page, PRISON["heading"])) == ["prison", "prison"]
        assert result(page, PRISON["heading"]).get_by_role("heading", level=2).locator("mark").inner_text() == "Prison"
        assert marked(result(page, PRISONS["heading"])) == ["prisons"]
        assert result(page, POLICY["heading"]).count() == 0
        screenshot(page, "word-forms-prisons")
        assert axe_violations(page) == []

        search(page, '"prisons"')
        assert page.get_by_role("heading", level=2, name="1 question matches").count() == 1
        assert result(page, PRISONS["heading"]).count() == 1
        assert marked(result(page, PRISONS["heading"])) == ["prisons"]
        assert result(page, PRISON["heading"]).count() == 0
        assert PRISON["heading"] not in page.locator("main").inner_text()
        screenshot(page, "word-forms-quoted-prisons")
        assert axe_violations(page) == []


@pytest.fixture
def api(httpserver):
    return polled_api(httpserver, (PRISON["api_id"], POLICY["api_id"]))


@pytest.fixture
def worker(site_worker):
    return site_worker


def all_matched() -> bool:
    return QuestionEvent.objects.exists() and not QuestionEvent.objects.filter(matched_at__isnull=True).exists()


@pytest.mark.worker
def test_an_alert_on_prisons_made_in_the_browser_is_emailed_a_new_question_that_says_prison(api, esp, worker,
                                                                                          live_server, settings):
    settings.SITE_URL = live_server.url

    with browser() as page:
        page.goto(f"{live_server.url}/?q=prisons")
        page.get_by_role("link", name="Email me when new questions match this search").click()
        assert page.get_by_label("Search", exact=True).input_value() == "prisons"
        page.get_by_label("Your email address").fill("ada@example.org")
        page.get_by_label("As it happens").check()
        page.get_by_role("button", name="Email me a link to confirm").click()
        assert page.get_by_role("heading", level=1).inner_text() == "Check your inbox"

        wait_until(lambda: emails_to(esp, "ada@example.org"), timeout=90, message="the confirmation email")
        [confirmation] = emails_to(esp, "ada@example.org")
        page.goto(link(confirmation, "/alerts/confirm/"))
        page.get_by_role("button", name="Confirm my alert").click()
        assert page.get_by_role("heading", level=1).inner_text() == "My alerts"
    alert = Subscription.objects.receiving().get()
    assert (alert.query, alert.frequency) == ("prisons", "immediate")

    api.put(from_the_api(PRISON))
    api.put(from_the_api(POLICY))
    Source.objects.filter(name="Stub API").update(last_polled_at=None)
    send("questions.poll_sources")
    wait_until(lambda: Question.objects.count() == 2 and all_matched(), timeout=90,
               message="both questions to land and be matched")
    events = [event for _, event in pairs(Match.objects.filter(subscription=alert))]
    matched = set(QuestionEvent.objects.filter(pk__in=events).values_list("question__uin", flat=True))
    assert matched == {PRISON["uin"]}

    wait_until(lambda: len(emails_to(esp, "ada@example.org")) >= 2, timeout=90, message="the alert email")
    # Whatever is still due goes now: an email about the other question would arrive before this settles.
    send("alerts.deliver_immediate")
    send("alerts.send_due")
    wait_until(lambda: not Delivery.objects.filter(status="pending").exists(), timeout=30,
               message="nothing left to send")
    [_, email] = emails_to(esp, "ada@example.org")
    # It came answered: the answer is the news.
    assert email["Subject"] == f"New answer: {PRISON['heading']} – ‘prisons’"
    assert PRISON["heading"] in email["TextBody"] and PRISON["question"] in email["TextBody"]
    # The email marks the forms it matched, as the search page does.
    assert re.findall(r"<mark>([^<]*)</mark>", email["HtmlBody"]) == ["Prison", "prison"]
    assert POLICY["heading"] not in email["TextBody"] and POLICY["heading"] not in email["HtmlBody"]
    assert esp.to() == ["ada@example.org"] * 2
