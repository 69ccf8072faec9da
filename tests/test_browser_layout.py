"""Every page state at a phone's width and a desktop's, and the admin pages that are ours, against axe-core."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.core.management import call_command

from questions.models import Source, SourceProblem
from tests.browser import ARTIFACTS, axe_violations, browser_page, check_page, screenshot
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE, DESKTOP = 375, 1280
# Unbreakable runs are what push a page wider than a phone: a pasted link, and a long reference with no spaces.
LONG_URL = ("https://assets.publishing.service.gov.uk/media/0123456789abcdef01234567/"
            "police-use-of-facial-recognition-technology-governance-and-oversight-framework-2025.pdf")
LONG_WORD = "HomeOfficeBiometricsAndForensicsEthicsGroupReferenceNumber20250624000123"


@pytest.fixture
def archive(tmp_path):
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), stdout=StringIO())
    paragraphs = [f"The police guidance is published at {LONG_URL} and is kept under review.",
                  f"Its reference is {LONG_WORD}; the framework sets out when forces may deploy it."]
    paragraphs += [f"Paragraph {n} of a long answer about police technology, oversight and data." for n in range(12)]
    long_answer = {
        "id": "long-answer-1", "uin": "999001", "house": "Commons", "heading": "Police: Long Answer With Links",
        "date_tabled": "2099-01-01", "date_answered": "2099-01-02", "member": "A Member", "party": "Labour",
        "constituency": "Norwich South", "department": "Home Office", "minister": "A Minister",
        "minister_role": "Minister of State (Home Office)",
        "question": "To ask the Secretary of State for the Home Department, where the police guidance is published.",
        "answer": "\n\n".join(paragraphs),
    }
    path = tmp_path / "long.json"
    path.write_text(json.dumps([long_answer]), encoding="utf-8")
    call_command("import_questions", str(path), stdout=StringIO())


def check(page, name: str, width: int) -> None:
    check_page(page, f"layout-{name}", width)


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_public_pages_fit_and_pass_axe(live_server, archive, settings, width):
    settings.SITE_URL = live_server.url
    with browser_page() as page:
        # 812: an iPhone 13 mini's screen, 375 by 812.
        page.set_viewport_size({"width": width, "height": 812})

        page.goto(f"{live_server.url}/?q=police")
        assert page.get_by_role("heading", name="Police: Long Answer With Links").count() == 1
        check(page, "search-results", width)
        page.screenshot(path=str(ARTIFACTS / f"layout-{width}-search-first-screen.png"))
        # On a phone the filters must not push every result below the first screen.
        assert page.locator("ol.results h2").first.bounding_box()["y"] < page.viewport_size["height"]
        # Opening the filters and searching with them still sends the same fields.
        filters = page.locator("details.filters")
        if not filters.evaluate("d => d.open"):
            filters.locator("summary").click()
        page.get_by_label("House").select_option("Commons")
        page.get_by_label("Answer on time?").select_option("late")
        page.get_by_label("Named day questions only").check()
        page.get_by_label("Due on or after").fill("2020-01-01")
        check(page, "search-filters-open", width)
        page.get_by_role("button", name="Search").click()
        page.wait_for_load_state()
        assert "house=Commons" in page.url and "q=police" in page.url
        assert "timing=late" in page.url and "named_day=on" in page.url and "due_from=2020-01-01" in page.url
        check(page, "search-due-filters", width)

        page.goto(f"{live_server.url}/?q=zzxqvb")
        assert page.get_by_role("heading", level=2, name="No questions match").count() == 1
        check(page, "search-none", width)

        page.goto(f"{live_server.url}/questions/long-answer-1/")
        assert page.get_by_role("heading", level=1).inner_text() == "Police: Long Answer With Links"
        assert LONG_URL in page.content()
        check(page, "question-long-answer", width)

        page.goto(f"{live_server.url}/help/")
        check(page, "help", width)

        page.goto(f"{live_server.url}/alerts/new/?q=police")
        page.get_by_label("Your email address").fill("not an address")
        page.get_by_role("button", name="Email me a link to confirm").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", name="There is a problem").count() == 1
        check(page, "signup-error", width)

        page.get_by_label("Your email address").fill(f"layout-{width}@example.org")
        page.get_by_role("button", name="Email me a link to confirm").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "Check your inbox"
        check(page, "check-inbox", width)

        # The manage page's table stacks on a phone, each cell labelled with its column.
        confirm_url = re.search(r"(http://\S+/alerts/confirm/\S+)", mail.outbox[-1].body).group(1)
        page.goto(confirm_url)
        page.get_by_role("button", name="Confirm my alert").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "My alerts"
        if width == PHONE:
            label = page.locator("table.manage td[data-label='How often']").first.evaluate(
                "td => getComputedStyle(td, '::before').content")
            assert label == '"How often: "'
        check(page, "manage", width)

        response = page.goto(f"{live_server.url}/no-such-page/")
        assert response.status == 404
        check(page, "404", width)


def test_admin_pages_that_are_ours_pass_axe(live_server):
    get_user_model().objects.create_superuser("operator", "operator@example.org", "a long operator password")
    source = Source.objects.create(name="Parliament API", kind=Source.Kind.PARLIAMENT_API,
                                   url="https://questions-statements-api.parliament.uk/api/writtenquestions/questions",
                                   consecutive_failures=2, last_error="HTTP 503 from the API")
    SourceProblem.objects.create(source=source, record_id="1234", message="the record has no heading")
    from alerts.models import Delivery, Subscriber

    reader = Subscriber.objects.create(email="jane.reader@example.org")
    Delivery.objects.create(subscriber=reader, kind="immediate", subject="5 new questions match ‘police’")

    with browser_page() as page:
        page.set_viewport_size({"width": DESKTOP, "height": 900})
        page.goto(f"{live_server.url}/admin/login/")
        page.get_by_label("Username").fill("operator")
        page.get_by_label("Password").fill("a long operator password")
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()

        for name, path in [("overview", "/admin/overview/"), ("sources", "/admin/questions/source/"),
                           ("source", f"/admin/questions/source/{source.pk}/change/")]:
            page.goto(live_server.url + path)
            assert page.url == live_server.url + path
            screenshot(page, f"admin-{name}")
            assert axe_violations(page) == [], name
        # The lists' columns fit beside the admin's sidebar, without scrolling sideways.
        for path in ("/admin/questions/source/", "/admin/alerts/delivery/"):
            page.goto(live_server.url + path)
            screenshot(page, "admin-list" + path.replace("/", "-"))
            assert page.evaluate("(e => e.scrollWidth <= e.clientWidth)(document.querySelector('.results'))"), path
