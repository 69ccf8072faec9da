"""Random and mutated input on every path that reads from outside: nothing crashes, nothing is a 500."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from questions.ingest import upsert
from questions.records import QuestionRecord, RecordError
from questions.sources.feed import parse_feed
from questions.sources.http import FetchError
from questions.sources.parliament import record_from_api
from tests.conftest import ATOM, RSS, load_fixture

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
    | st.sampled_from(["2024-01-05T00:00:00", "05/01/2024", "", "<script>alert(1)</script>", "\\x00", "9" * 30]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)
DETAIL = load_fixture("question_detail.json")["value"]
LIST_ITEM = load_fixture("list_page_excerpt.json")["results"][0]


@st.composite
def mutated_records(draw) -> dict:
    record = copy.deepcopy(draw(st.sampled_from([DETAIL, LIST_ITEM["value"], LIST_ITEM])))
    target = record.get("value", record)
    for key in draw(st.lists(st.sampled_from(sorted(target)), max_size=6, unique=True)):
        if draw(st.booleans()):
            target[key] = draw(json_values)
        else:
            del target[key]
    return record


@pytest.mark.django_db
@FUZZ
@given(records=st.lists(mutated_records(), max_size=4))
def test_api_records_become_questions_or_clear_refusals(records):
    good = []
    for record in records:
        try:
            good.append(record_from_api(record))
        except RecordError as exc:
            assert str(exc)
    assert all(isinstance(r, QuestionRecord) for r in good)
    upsert(good)


@st.composite
def mutated_feeds(draw) -> bytes:
    document = draw(st.sampled_from([RSS, ATOM])).encode()
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(document)))
        action = draw(st.sampled_from(["cut", "insert", "delete"]))
        if action == "cut":
            document = document[:at]
        elif action == "insert":
            document = document[:at] + draw(st.binary(max_size=12)) + document[at:]
        else:
            document = document[:at] + document[at + draw(st.integers(1, 40)):]
    return document


@pytest.mark.django_db
@FUZZ
@given(body=mutated_feeds() | st.binary(max_size=300))
def test_feeds_land_what_they_can_and_say_what_was_wrong(body):
    try:
        batch = parse_feed(body, {"content-type": "application/rss+xml"}, "http://feed.example/")
    except FetchError as exc:
        assert "malformed feed" in str(exc)
        return
    for problem in batch.problems.values():
        assert problem.text and len(problem.text) < 5000
    upsert(batch.records)


@pytest.mark.django_db
@FUZZ
@given(q=st.text(max_size=80) | st.sampled_from(['"', "(", "member:", "NOT x", "a" * 1200, "po*", "“x„"]),
       house=st.text(max_size=10), answered=st.text(max_size=10), tabled_from=st.text(max_size=12))
def test_the_search_page_never_fails(client, q, house, answered, tabled_from):
    response = client.get("/", {"q": q, "house": house, "answered": answered, "tabled_from": tabled_from})
    assert response.status_code in (200, 400)
    feed = client.get("/feeds/search.atom", {"q": q})
    assert feed.status_code in (200, 400)


@pytest.mark.django_db
@FUZZ
@given(email=st.text(max_size=40) | st.emails(), q=st.text(max_size=60), label=st.text(max_size=120),
       frequency=st.sampled_from(["immediate", "daily", "weekly", "hourly", ""]),
       alert_on=st.sampled_from(["both", "new", "answers", "x"]), website=st.sampled_from(["", "x"]))
def test_the_signup_form_never_fails(client, settings, email, q, label, frequency, alert_on, website):
    settings.RATELIMIT_SIGNUP_PER_IP = settings.RATELIMIT_SIGNUP_PER_ADDRESS = "100000/h"
    settings.RATELIMIT_SIGNUP_PER_ADDRESS_TOTAL = "100000/h"
    response = client.post("/alerts/new/", {"email": email, "q": q, "label": label, "frequency": frequency,
                                            "alert_on": alert_on, "website": website})
    assert response.status_code in (302, 400)
    if response.status_code == 400:
        assert b'class="error"' in response.content
