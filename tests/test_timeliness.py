"""How quickly departments answer (questions/timeliness.py, /departments/): on real records of the bundled
sample, every figure of the pages is what a plain SQL count over the same archive gives, the same on SQLite and
PostgreSQL; the median time to answer; addresses for any name; and the pages in a browser, against axe."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import statistics
from functools import cache
from html.parser import HTMLParser
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.cache import cache as django_cache
from django.db import connection
from django.utils import timezone

from questions.importing import read_records
from questions.ingest import upsert
from questions.models import Question
from questions.timeliness import department_timeliness
from tests.browser import browser_page, check_page
from tests.conftest import FIXTURES

D = dt.date.fromisoformat
TODAY = "2026-06-15"
# The twelve months of the pages on TODAY, by the month answers were due.
MONTHS = [(dt.date(2025 + (7 + n - 1) // 12, (7 + n - 1) % 12 + 1, 1)) for n in range(12)]
LABELS = [month.strftime("%b %Y") for month in MONTHS]
JUSTICE = "Ministry of Justice"
# A name with all that an address must survive: spaces, a comma, "&", "/" and quotes.
HOSTILE = 'Office of "Scotland" & the Isles / Borders, the Speaker\'s'


@cache
def sample():
    return read_records(FIXTURES / "written_questions_sample.jsonl.gz").records


def at(monkeypatch, day: str) -> None:
    """Today, where the site is, is `day` (noon in London)."""
    moment = timezone.make_aware(dt.datetime.combine(D(day), dt.time(12)))
    monkeypatch.setattr(timezone, "now", lambda: moment)


def store_archive() -> None:
    """Real questions of three departments, the Scotland Office's under a hostile name, one withdrawn, and a
    canary question (which no page counts)."""
    records = [r for r in sample() if r.answering_body_name in (JUSTICE, "Northern Ireland Office",
                                                                  "Women and Equalities", "Scotland Office")]
    records = [dataclasses.replace(r, answering_body_name=HOSTILE) if r.answering_body_name == "Scotland Office"
               else r for r in records]
    unanswered = next(r for r in records if r.answering_body_name == JUSTICE and not r.answer_text
                      and r.date_tabled and r.date_tabled >= D("2026-03-01") and r.date_tabled < D("2026-05-01"))
    records = [dataclasses.replace(r, is_withdrawn=True) if r is unanswered else r for r in records]
    answered = next(r for r in records if r.answering_body_name == JUSTICE and r.answer_text
                    and r.date_tabled and r.date_tabled >= D("2025-09-01"))
    records.append(dataclasses.replace(answered, external_id="canary:timeliness", uin="C1", answer_text="",
                                       answer_html="", date_answered=None))
    upsert(records, alert=False)


class Tables(HTMLParser):
    """The rows of a page's tables, each a list of its cells' text."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self.cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.rows[-1].append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


class Anchors(HTMLParser):
    """A page's links: their text (hidden words too), and where they go."""

    def __init__(self):
        super().__init__()
        self.found: dict[str, str] = {}
        self.text: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.href, self.text = dict(attrs).get("href"), []

    def handle_endtag(self, tag):
        if tag == "a" and self.text is not None:
            self.found[" ".join("".join(self.text).split())] = self.href
            self.text = None

    def handle_data(self, data):
        if self.text is not None:
            self.text.append(data)


def anchors(html: str) -> dict[str, str]:
    parser = Anchors()
    parser.feed(html)
    return parser.found


def figures_shown(html: str) -> dict[str, tuple[int, ...]]:
    """The table's numbers, by its rows' heads: the visible number leads each cell (a link adds hidden words)."""
    parser = Tables()
    parser.feed(html)
    header, *rows = parser.rows
    assert header == ["Month due", "Due", "On time", "Late", "Still overdue", "Other"]
    return {row[0]: tuple(int(cell.split()[0].replace(",", "")) for cell in row[1:]) for row in rows}


PUBLIC = "external_id NOT LIKE 'canary:%%'"
FULL = "(answer_text <> '' AND answer_is_holding = %s)"


def sql_counts(department: str | None, first: dt.date, last: dt.date, today: dt.date) -> tuple[int, ...]:
    """Due, on time, late, still overdue and other, in plain SQL: due between `first` and `last`."""
    where = f"{PUBLIC} AND date_due >= %s AND date_due <= %s"
    params: list = [first, last]
    if department is not None:
        where += " AND answering_body_name = %s"
        params.append(department)
    parts = [("", []), (f" AND {FULL} AND date_answered <= date_due", [False]),
             (f" AND {FULL} AND date_answered > date_due", [False]),
             (f" AND is_withdrawn = %s AND NOT {FULL} AND date_due < %s", [False, False, today])]
    counts = []
    with connection.cursor() as cursor:
        for extra, extra_params in parts:
            cursor.execute(f"SELECT COUNT(*) FROM questions_question WHERE {where}{extra}", params + extra_params)
            counts.append(cursor.fetchone()[0])
    return (*counts, counts[0] - sum(counts[1:]))


def sql_median(department: str | None, first: dt.date, last: dt.date) -> float | None:
    where = f"{PUBLIC} AND {FULL} AND date_due >= %s AND date_due <= %s"
    params: list = [False, first, last]
    if department is not None:
        where += " AND answering_body_name = %s"
        params.append(department)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT date_tabled, date_answered FROM questions_question WHERE {where} "
                       "AND date_tabled IS NOT NULL AND date_answered IS NOT NULL", params)
        days = [(D(str(answered)) - D(str(tabled))).days for tabled, answered in cursor.fetchall()]
    return statistics.median(days) if days else None


def month_end(first: dt.date) -> dt.date:
    return (first.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(days=1)


def median_shown(html: str) -> float:
    found = re.search(r"Median time to a full answer: <strong>([\d.]+) days?</strong>", html)
    return float(found.group(1))


@pytest.mark.django_db
@pytest.mark.parametrize("department", [JUSTICE, HOSTILE, None])
def test_every_figure_is_a_plain_sql_count_of_the_archive(client, monkeypatch, department,
                                                          django_assert_max_num_queries):
    store_archive()
    at(monkeypatch, TODAY)
    page = client.get("/departments/")
    if department is not None:
        page = client.get(anchors(page.content.decode())[department])
    assert page.status_code == 200
    html = page.content.decode()
    shown = figures_shown(html)
    today = D(TODAY)
    expected = {label: sql_counts(department, month, month_end(month), today) for label, month in zip(
        LABELS, MONTHS, strict=True)}
    expected["All 12 months"] = sql_counts(department, MONTHS[0], month_end(MONTHS[-1]), today)
    assert shown == expected
    # A mixed archive: answers on time and late, questions overdue, and some not yet due or withdrawn.
    assert all(expected["All 12 months"][:4]), expected["All 12 months"]
    if department != HOSTILE:
        assert expected["All 12 months"][4], "the withdrawn question, and those not yet due"
    # Months with none due are rows of noughts, not missing.
    assert list(shown)[:12] == LABELS
    assert median_shown(html) == sql_median(department, MONTHS[0], month_end(MONTHS[-1]))
    with django_assert_max_num_queries(2):
        figures = department_timeliness(department, today)
    assert [(m.due, m.on_time, m.late, m.overdue, m.other) for m in figures.months] == list(expected.values())[:12]


def search_count(client, url: str) -> int:
    page = client.get(url)
    assert page.status_code == 200
    heading = re.search(r'<h2 id="results-heading" class="count">([^<]*)</h2>', page.content.decode()).group(1)
    return 0 if heading.startswith("No questions") else int(heading.split()[0])


@pytest.mark.django_db
def test_each_figure_links_to_the_questions_behind_it(client, monkeypatch):
    store_archive()
    at(monkeypatch, TODAY)
    html = client.get(anchors(client.get("/departments/").content.decode())[JUSTICE]).content.decode()
    shown = figures_shown(html)
    links = anchors(html)
    due, _, late, overdue, _ = shown["All 12 months"]
    overdue_url = links[f"{overdue} still overdue, due in these 12 months: see them"]
    assert parse_qs(urlsplit(overdue_url).query) == {
        "department": [JUSTICE], "timing": ["overdue"], "due_from": ["2025-07-01"], "due_to": ["2026-06-30"]}
    assert search_count(client, overdue_url) == overdue
    assert search_count(client, links[f"{due} due in these 12 months: see them"]) == due
    assert search_count(client, links[f"{late} answered late, due in these 12 months: see them"]) == late
    # And each month's.
    for label, month in zip(LABELS, MONTHS, strict=True):
        due, _, late, overdue, _ = shown[label]
        for count, words in [(due, "due in"), (late, "answered late, due in"), (overdue, "still overdue, due in")]:
            if count:
                assert search_count(client, links[f"{count} {words} {month:%B %Y}: see them"]) == count, label
    assert shown["May 2026"][3] and any(shown[label][2] for label in LABELS)


def median_record(key: str, department: str, tabled: str, answered: str):
    """A real answered record of the sample, tabled and answered on the days given."""
    record = next(r for r in sample() if r.answer_text and not r.answer_is_holding)
    return dataclasses.replace(record, external_id=key, uin=key, answering_body_name=department,
                               date_tabled=D(tabled), date_for_answer=None, is_named_day=False,
                               date_answered=D(answered))


@pytest.mark.django_db
def test_the_median_time_to_answer(client, monkeypatch):
    at(monkeypatch, TODAY)
    # Tabled on Mondays in March 2026 (due five working days on), answered 1, 2, 5 and 10 days later.
    days = {"m1": ("2026-03-02", 1), "m2": ("2026-03-09", 2), "m3": ("2026-03-16", 5), "m4": ("2026-03-23", 10)}
    records = [median_record(key, "Median Office", tabled, str(D(tabled) + dt.timedelta(days=n)))
               for key, (tabled, n) in days.items()]
    # A holding answer, and a question due outside the twelve months, count for nothing.
    records.append(dataclasses.replace(median_record("m5", "Median Office", "2026-03-02", "2026-03-30"),
                                       answer_is_holding=True))
    records.append(median_record("m6", "Median Office", "2024-03-04", "2024-06-30"))
    upsert(records, alert=False)
    assert department_timeliness("Median Office", D(TODAY)).median_days == 3.5
    assert median_shown(client.get("/departments/median-office/").content.decode()) == 3.5
    upsert([median_record("m7", "Median Office", "2026-03-30", "2026-04-19")], alert=False)
    assert department_timeliness("Median Office", D(TODAY)).median_days == 5
    # The page keeps its figures for ten minutes: the same until then, the new ones after.
    assert median_shown(client.get("/departments/median-office/").content.decode()) == 3.5
    django_cache.clear()
    assert "Median time to a full answer: <strong>5 days</strong>" in client.get(
        "/departments/median-office/").content.decode()
    # With no full answer there is no median, and the page says so.
    upsert([dataclasses.replace(median_record("n1", "Nobody Office", "2026-03-02", "2026-03-03"), answer_text="",
                                answer_html="", date_answered=None)], alert=False)
    assert department_timeliness("Nobody Office", D(TODAY)).median_days is None
    # A new department's address by its name works at once; by its slug once the list of departments (kept ten
    # minutes) has it.
    assert client.get("/departments/nobody-office/").status_code == 404
    assert "no median time to answer" in client.get("/departments/nobody-office/",
                                                    {"name": "Nobody Office"}).content.decode()
    django_cache.clear()
    assert "no median time to answer" in client.get("/departments/nobody-office/").content.decode()


@pytest.mark.django_db
def test_an_unknown_department_is_not_found(client, monkeypatch):
    store_archive()
    at(monkeypatch, TODAY)
    assert client.get("/departments/ministry-of-magic/").status_code == 404
    assert client.get("/departments/ministry-of-magic/", {"name": "Ministry of Magic"}).status_code == 404
    # A name that is there, under an address that is not its own.
    assert client.get("/departments/home-office/", {"name": JUSTICE}).status_code == 404
    # Nor is the canary's question a department's: it counts nowhere.
    assert client.get("/departments/ministry-of-justice/").status_code == 200


@pytest.mark.django_db
def test_any_name_has_an_address(client, monkeypatch):
    store_archive()
    at(monkeypatch, TODAY)
    listing = client.get("/departments/").content.decode()
    assert '<a href="/departments/office-of-scotland-the-isles-borders-the-speakers/">Office of &quot;Scotland&quot; ' \
           '&amp; the Isles / Borders, the Speaker&#x27;s</a>' in listing
    page = client.get("/departments/office-of-scotland-the-isles-borders-the-speakers/")
    assert page.status_code == 200
    assert "<h1>Answers on time: Office of &quot;Scotland&quot; &amp; the Isles / Borders, the Speaker&#x27;s</h1>" \
        in page.content.decode()
    # The same by its name, as a question page links a department the list has not caught up with.
    by_name = client.get("/departments/office-of-scotland-the-isles-borders-the-speakers/", {"name": HOSTILE})
    assert figures_shown(by_name.content.decode()) == figures_shown(page.content.decode())

    # Two names with one slug: the address asks which, and each has an address of its own.
    records = [median_record("w1", "Women, Equalities", "2026-03-02", "2026-03-04"),
               median_record("w2", "Women Equalities", "2026-03-02", "2026-03-05")]
    upsert(records, alert=False)
    django_cache.clear()  # the list of departments is kept ten minutes
    choice = client.get("/departments/women-equalities/").content.decode()
    assert "<h1>Which department?</h1>" in choice
    links = re.findall(r'<li><a href="([^"]+)">([^<]+)</a></li>', choice)
    assert sorted(name for _, name in links) == ["Women Equalities", "Women, Equalities"]
    for url, name in links:
        page = client.get(url.replace("&amp;", "&")).content.decode()
        assert f"<h1>Answers on time: {name}</h1>" in page
        assert figures_shown(page)["Mar 2026"][:2] == (1, 1)

    # The question page links to its department's.
    question = Question.objects.filter(answering_body_name=HOSTILE).first()
    html = client.get(question.get_absolute_url()).content.decode()
    assert ('href="/departments/office-of-scotland-the-isles-borders-the-speakers/">Answers on time'
            in html)
    assert 'href="/departments/">Answers on time, department by department</a>' in client.get(
        "/", {"q": "prison"}).content.decode()


PHONE, DESKTOP = 375, 1280


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_the_pages_pass_axe_and_name_their_chart(live_server, monkeypatch, width):
    store_archive()
    at(monkeypatch, TODAY)
    with browser_page() as page:
        page.set_viewport_size({"width": width, "height": 812})
        for path, name in [("/departments/", "all"), ("/departments/ministry-of-justice/", "justice"),
                           ("/departments/office-of-scotland-the-isles-borders-the-speakers/", "hostile")]:
            page.goto(live_server.url + path)
            chart = page.get_by_role("img", name=re.compile(r"^Questions due each month, July 2025 to June 2026"))
            assert chart.count() == 1
            assert chart.evaluate("svg => svg.tagName") == "svg"
            description = chart.evaluate("svg => document.getElementById(svg.getAttribute('aria-describedby'))"
                                         ".textContent")
            assert description.startswith("Of ") and "answered on time" in description
            table = page.get_by_role("table", name=re.compile("Questions due each month"))
            headers = table.locator("thead th").all_inner_texts()
            assert headers == ["Month due", "Due", "On time", "Late", "Still overdue", "Other"]
            assert table.locator("thead th").evaluate_all("ths => ths.map(th => th.scope)") == ["col"] * 6
            assert table.locator("tbody th").evaluate_all("ths => ths.map(th => th.scope + ' ' + th.textContent)") \
                == [f"row {label}" for label in LABELS]
            # A cell's header is its month and its column, as a screen reader announces it.
            cell = table.locator("tbody tr").nth(10).locator("td").nth(3)
            assert cell.evaluate("td => td.closest('tr').querySelector('th').textContent + ' / ' + "
                                 "td.closest('table').querySelectorAll('thead th')[td.cellIndex].textContent") \
                == "May 2026 / Still overdue"
            check_page(page, f"timeliness-{name}", width)
