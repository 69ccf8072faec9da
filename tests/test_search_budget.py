"""One costly search cannot hold the site: every public search, preview and feed stops within its budget and
says why, and a client repeating costly searches is refused for a while, without touching anyone else."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from functools import partial

import psycopg
import pytest
from django.db import OperationalError, connection

from questions import allowance, budget, searching
from questions.models import Question
from tests.conftest import database_url_for_tests

# Counting to a hundred million takes PostgreSQL and SQLite many seconds: a statement only a budget stops.
ENDLESS = ("WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000000) "
           "SELECT count(*) FROM c")
TOO_BROAD = "too broad or too long to run"
# Sixty-four words joined by OR: as much as the language allows one search to ask for.
COSTLIEST = " OR ".join(f"w{n:03d}x" for n in range(64))


@pytest.mark.django_db
def test_a_statement_past_the_budget_is_stopped_and_said_to_be_too_costly():
    with pytest.raises(budget.TooCostly), budget.budget(0.3), connection.cursor() as cursor:
        cursor.execute(ENDLESS)
    # The connection is left fit for the next request.
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_budget_inside_a_transaction_leaves_no_time_limit_behind():
    # The test runs in a transaction: the budget is a savepoint in it.
    with budget.budget(30):
        Question.objects.count()
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone() == ("0",)


@pytest.mark.django_db
def test_no_statement_starts_once_the_budget_is_spent(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(budget, "clock", lambda: now[0])
    with pytest.raises(budget.TooCostly), budget.budget(1.0):
        Question.objects.count()
        now[0] += 1.0
        Question.objects.count()


@pytest.mark.postgres
@pytest.mark.django_db
def test_a_statement_past_its_own_shorter_time_limit_is_not_called_too_costly():
    # The search's fallbacks rest on this: a walk cut off after its own 50 ms is tried another way.
    with budget.budget(30):
        with pytest.raises(OperationalError), searching.planner(statement_timeout=50), \
                connection.cursor() as cursor:
            cursor.execute(ENDLESS)
        assert Question.objects.count() == 0


@contextmanager
def questions_locked(seconds: float) -> Iterator[None]:
    """Another connection holds the questions table for `seconds`, so that every search waits on it: a slow
    statement that needs no slow data. Without a budget, a search waits for as long as the lock is held."""
    locked, release = threading.Event(), threading.Event()

    def hold():
        with psycopg.connect(database_url_for_tests()) as conn:
            conn.execute("LOCK TABLE questions_question IN ACCESS EXCLUSIVE MODE")
            locked.set()
            release.wait(seconds)

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    try:
        yield
    finally:
        release.set()
        holder.join()


@pytest.fixture
def short_budget(settings):
    settings.SEARCH_BUDGET_SECONDS = 0.5


def held_past_budget(client, path: str, query: str):
    """`path?q=query` asked for while the questions table is held. What the page lists besides its results
    (departments, members) is asked for once before, so that it is in the cache: only the search waits."""
    client.get(path, {"q": "police"})
    with questions_locked(20):
        return client.get(path, {"q": query})


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_search_held_past_its_budget_says_so_instead_of_waiting(client, short_budget):
    response = held_past_budget(client, "/", "police OR prisons")
    assert response.status_code == 422
    assert TOO_BROAD in response.content.decode()
    # The search box keeps what was typed, to be narrowed.
    assert 'value="police OR prisons"' in response.content.decode()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_feed_held_past_its_budget_says_so(client, short_budget):
    response = held_past_budget(client, "/feeds/search.rss", "police")
    assert (response.status_code, TOO_BROAD in response.content.decode()) == (422, True)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_preview_held_past_its_budget_says_so_and_the_alert_can_still_be_made(client, short_budget):
    with questions_locked(20):
        response = client.get("/alerts/new/", {"q": "police"})
    assert response.status_code == 200
    page = response.content.decode()
    assert TOO_BROAD in page and "You can still make the alert" in page
    response = client.post("/alerts/new/", {"email": "a@example.org", "q": "police", "frequency": "daily",
                                            "alert_on": "both", "label": "", "website": ""})
    assert response.status_code == 302


@pytest.mark.django_db
def test_the_costliest_search_a_visitor_can_write_is_answered(client):
    Question.objects.bulk_create([Question(external_id=str(n), heading=f"Question w{n:03d}x", house="Commons")
                                  for n in range(50)])
    for question in Question.objects.all():
        question.refresh_search_text()
        question.save()
    response = client.get("/", {"q": COSTLIEST})
    assert response.status_code == 200
    assert "50 questions match" in response.content.decode()


@pytest.fixture
def slow_searches(monkeypatch, settings):
    """Every search takes two seconds by the allowance's clock: each costs 1.7 s of a 4 s allowance."""
    ticks = itertools.count()
    monkeypatch.setattr(allowance, "clock", lambda: 2.0 * next(ticks))
    now = [999_980.0]  # 40 s before a window ends
    monkeypatch.setattr(allowance, "wall_clock", lambda: now[0])
    settings.SEARCH_FREE_SECONDS = 0.3
    settings.SEARCH_ALLOWANCE_SECONDS = 4.0
    settings.SEARCH_ALLOWANCE_WINDOW_SECONDS = 60
    return now


@pytest.mark.django_db
def test_a_client_repeating_costly_searches_is_told_when_to_come_back_and_others_are_not(client, slow_searches):
    def search(ip):
        return client.get("/", {"q": "police"}, REMOTE_ADDR=ip)

    assert [search("192.0.2.1").status_code for _ in range(3)] == [200, 200, 200]
    refused = search("192.0.2.1")
    assert refused.status_code == 429
    assert refused["Retry-After"] == "40"
    assert "try again in 40 seconds" in refused.content.decode()
    # Refused before any work: the refusal costs nothing, and it leaves another client alone.
    assert search("198.51.100.7").status_code == 200
    # The preview and the feeds draw on the same allowance.
    assert "try again in 40 seconds" in client.get("/alerts/new/", {"q": "police"}, REMOTE_ADDR="192.0.2.1"
                                                   ).content.decode()
    assert client.get("/feeds/search.atom", {"q": "police"}, REMOTE_ADDR="192.0.2.1").status_code == 429
    slow_searches[0] += 40
    assert search("192.0.2.1").status_code == 200


@pytest.mark.django_db
def test_ordinary_searches_cost_nothing_from_the_allowance(client, monkeypatch, settings):
    # Each search takes 0.2 s (the clock is read as it starts and as it ends), less than the 0.3 s that is free.
    ticks = itertools.count()
    monkeypatch.setattr(allowance, "clock", lambda: 0.2 * next(ticks))
    settings.SEARCH_FREE_SECONDS = 0.3
    settings.SEARCH_ALLOWANCE_SECONDS = 0.001
    assert all(client.get("/", {"q": "police"}).status_code == 200 for _ in range(20))


@pytest.fixture
def lane_taken():
    """Another request is running a heavy search."""
    from django.core.cache import cache

    cache.set("search-heavy-lane:0", "another request", 60)
    yield
    cache.delete("search-heavy-lane:0")


@pytest.mark.django_db
def test_a_heavy_search_waits_for_nothing_while_the_lane_is_taken_and_ordinary_searches_go_on(client, lane_taken):
    refused = client.get("/", {"q": COSTLIEST})
    assert refused.status_code == 429 and refused["Retry-After"] == "2"
    assert "Many long searches are running just now" in refused.content.decode()
    assert client.get("/feeds/search.rss", {"q": COSTLIEST}).status_code == 429
    assert "Many long searches are running" in client.get("/alerts/new/", {"q": COSTLIEST}).content.decode()
    assert client.get("/", {"q": "police OR prisons"}).status_code == 200


@pytest.mark.django_db
def test_the_lane_is_let_go_when_a_heavy_search_ends(client):
    assert [client.get("/", {"q": COSTLIEST}).status_code for _ in range(3)] == [200, 200, 200]


@pytest.mark.django_db
def test_a_client_already_charged_searches_in_the_lane(client, slow_searches, lane_taken):
    assert client.get("/", {"q": "police"}, REMOTE_ADDR="192.0.2.1").status_code == 200  # charged 1.7 s
    assert client.get("/", {"q": "police"}, REMOTE_ADDR="192.0.2.1").status_code == 429
    assert client.get("/", {"q": "police"}, REMOTE_ADDR="198.51.100.7").status_code == 200


@pytest.mark.django_db
def test_a_search_far_larger_than_people_write_is_charged_all_its_time(client, monkeypatch, settings):
    # Each search takes 0.2 s, less than the 0.3 s that is free for others.
    ticks = itertools.count()
    monkeypatch.setattr(allowance, "clock", lambda: 0.2 * next(ticks))
    monkeypatch.setattr(allowance, "wall_clock", lambda: 1_000_000.0)
    settings.SEARCH_ALLOWANCE_SECONDS = 0.5
    assert [client.get("/", {"q": COSTLIEST}).status_code for _ in range(4)] == [200, 200, 200, 429]


@pytest.mark.django_db
def test_large_searches_a_client_sends_at_once_each_see_the_others(settings, monkeypatch):
    monkeypatch.setattr(allowance, "clock", lambda: 0.0)  # each takes no time
    settings.SEARCH_BUDGET_SECONDS, settings.SEARCH_ALLOWANCE_SECONDS = 1.2, 3.0
    large = partial(allowance.metered, "192.0.2.1", free=0, reserve=True)
    with large() as first, large() as second, large() as third:
        # Each reserves the 1.2 s it could cost: the second and third go to a lane, a fourth is refused.
        assert (first, second, third) == (False, True, True)
        with pytest.raises(allowance.TooManySearches), large():
            pass
        with allowance.metered("198.51.100.7", free=0, reserve=True) as elsewhere:
            assert elsewhere is False
    # All took no time: all was given back.
    with large() as later:
        assert later is False


@pytest.mark.django_db
def test_a_dozen_feeds_fetched_at_once_are_all_answered(client):
    # A feed reader refreshing its feeds together: ordinary searches reserve nothing.
    with ExitStack() as stack:
        for _ in range(12):
            assert stack.enter_context(allowance.metered("192.0.2.1", free=0.3)) is False
