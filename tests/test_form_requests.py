"""What a person asks for on a public form is written to the database before the page answers, and a worker
takes it from there: a broker that loses its messages loses no request, two workers never both do one, a
request that keeps failing does not hold up the others, and with the database down the page says to try again.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import logging
import os
import signal
import subprocess
import threading

import pytest
import redis
from django.core import mail
from django.db import connection, connections
from django.utils import timezone
from kombu.exceptions import OperationalError

from alerts import form_requests, tasks
from alerts.form_requests import address_in_logs, take, take_waiting
from alerts.models import Delivery, FormRequest, Subscriber, Subscription
from config.celery import app
from tests.conftest import (
    Worker,
    at_once,
    backends_waiting_on_a_lock,
    free_port,
    mail_worker_env,
    post_form,
    wait_until,
)
from tests.esp_stub import emails_to, link

SIGNUP = "/alerts/new/"
LINK = "/alerts/link/"


def sign_up(client, email: str, q: str = "palantir", ip: str = "192.0.2.1"):
    return client.post(SIGNUP, {"email": email, "q": q, "frequency": "daily", "alert_on": "both", "label": "",
                                "website": ""}, REMOTE_ADDR=ip)


def signup_data(email: str, query: str = "palantir") -> dict:
    return {"email": email, "query": query, "frequency": "daily", "alert_on": "both", "label": ""}


def seen_from_another_connection(request_id: int) -> bool:
    """Whether a worker would find the row now: committed, not just written in the request's transaction."""
    seen = []

    def look() -> None:
        try:
            seen.append(FormRequest.objects.filter(pk=request_id).exists())
        finally:
            connections.close_all()

    thread = threading.Thread(target=look)
    thread.start()
    thread.join(30)
    return seen == [True]


@pytest.fixture
def broker(monkeypatch):
    """The broker as the views see it, running no form request: each wake-up is kept in `sent` with whether
    its row was already committed when it was sent; with `down`, it refuses everything."""

    class Broker:
        def __init__(self) -> None:
            self.sent: list[tuple[str, dict, bool]] = []
            self.down = False

        def send_task(self, name, args=None, kwargs=None, **options):
            if self.down:
                raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            if name != "alerts.take_form_request":
                # Not what is looked at here (waking a sender, say): done at once, as a worker would.
                return app.tasks[name].apply(args, kwargs)
            self.sent.append((name, kwargs, seen_from_another_connection(kwargs["request_id"])))
            return None

    stub = Broker()
    app.conf.task_always_eager = False  # put back by conftest's _emails_through_anymail
    monkeypatch.setattr(app, "send_task", stub.send_task)
    return stub


# The page answers once the request is saved.


@pytest.mark.django_db(transaction=True)
def test_the_request_is_saved_before_the_page_answers_and_the_wake_up_carries_only_its_id(client, broker):
    page = sign_up(client, "ada@example.org", q='"school meals"')
    link_page = client.post(LINK, {"email": "ada@example.org", "website": ""}, REMOTE_ADDR="192.0.2.1")

    assert page["Location"] == link_page["Location"] == "/alerts/check-your-inbox/"
    signup, asked = FormRequest.objects.order_by("pk")
    assert (signup.kind, signup.data, signup.held) == ("signup", signup_data("ada@example.org", '"school meals"'),
                                                        False)
    assert (asked.kind, asked.data) == ("link", {"email": "ada@example.org"})
    # Each wake-up was sent with its row already committed, and says nothing of what was typed.
    assert broker.sent == [("alerts.take_form_request", {"request_id": signup.pk}, True),
                           ("alerts.take_form_request", {"request_id": asked.pk}, True)]
    # Nothing done yet: the worker does it.
    assert not Subscriber.objects.exists() and not Delivery.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_request_whose_wake_up_the_broker_refused_is_confirmed_by_the_sweep(client, broker):
    broker.down = True
    page = sign_up(client, "ada@example.org")
    broker.down = False  # back, without the wake-up it refused

    sweep = take_waiting(older_than_seconds=0)

    assert page["Location"] == "/alerts/check-your-inbox/"
    assert (sweep.found, sweep.taken) == (1, 1) and not FormRequest.objects.exists()
    [confirmation] = mail.outbox
    assert confirmation.to == ["ada@example.org"] and "/alerts/confirm/" in confirmation.body


@pytest.mark.postgres
@pytest.mark.redis  # the limits are counted in Redis here, so that the database alone is down
@pytest.mark.django_db(transaction=True)
def test_with_the_database_down_the_forms_say_try_again_whatever_the_address(client, broker, caplog):
    Subscriber.objects.create(email="known@example.org", confirmed_at=timezone.now())
    settings_dict = connection.settings_dict
    port = settings_dict["PORT"]
    connection.close()
    settings_dict["PORT"] = str(free_port())  # nothing listens there: the database is down
    try:
        pages = [sign_up(client, "known@example.org"), sign_up(client, "nobody@example.org"),
                 client.post(LINK, {"email": "known@example.org", "website": ""}, REMOTE_ADDR="192.0.2.1")]
    finally:
        connection.close()
        settings_dict["PORT"] = port

    for page in pages:
        assert page.status_code == 503 and page["Retry-After"] == "60"
        assert "try again in a minute" in page.content.decode()
    # The same page for every address, nothing saved, no worker woken, and no address in the log.
    assert len({page.content for page in pages[:2]}) == 1
    assert broker.sent == [] and not FormRequest.objects.exists()
    assert "could not be saved" in caplog.text and "@example.org" not in caplog.text


# A worker takes it.


@pytest.mark.django_db(transaction=True)
def test_held_requests_are_dropped_and_nothing_is_sent(client, broker, settings, limiter_clock):
    settings.RATELIMIT_SIGNUP_PER_ADDRESS = "2/h"
    pages = [sign_up(client, "victim@example.org", q=f"topic{n}") for n in range(4)]
    rows = list(FormRequest.objects.order_by("pk"))

    taken = [take(row.pk) for row in rows]

    # Every page alike, every request saved and a worker woken alike; the two over the limit dropped undone.
    assert {page["Location"] for page in pages} == {"/alerts/check-your-inbox/"} and len(broker.sent) == 4
    assert [row.held for row in rows] == [False, False, True, True] and taken == [True] * 4
    assert sorted(Subscription.objects.values_list("query", flat=True)) == ["topic0", "topic1"]
    assert Delivery.objects.count() == 2 and len(mail.outbox) == 2
    assert not FormRequest.objects.exists()


# Row locks taken and skipped by concurrent takers: PostgreSQL's (the embedded SQLite runs one worker process).
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_request_is_done_once_however_many_take_it_at_once():
    request = form_requests.record("signup", signup_data("ada@example.org"), held=False)
    results = at_once(lambda: take(request.pk), 6)

    assert sorted(results) == [False] * 5 + [True]
    assert Delivery.objects.filter(subscriber__email="ada@example.org", kind="confirmation").count() == 1


@pytest.mark.postgres  # as above: concurrent takers
@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_take_each_request_once():
    for n in range(20):
        form_requests.record("signup", signup_data(f"person{n}@example.org"), held=False)
    start, sweeps = threading.Barrier(2), []

    def sweeper() -> None:
        try:
            start.wait()
            sweeps.append(take_waiting(older_than_seconds=0))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=sweeper) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sum(sweep.taken for sweep in sweeps) == 20 and not FormRequest.objects.exists()
    assert sorted(Delivery.objects.values_list("subscriber__email", flat=True)) == sorted(
        f"person{n}@example.org" for n in range(20))


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_request_being_done_is_not_taken_again_even_once_its_lease_has_run_out(monkeypatch):
    # Leases that run out at once: only the row's lock keeps a second taker off while the first works.
    monkeypatch.setattr(form_requests, "BACKOFF_FIRST_SECONDS", 0)
    request = form_requests.record("signup", signup_data("ada@example.org"), held=False)
    blocker = connection.get_new_connection(connection.get_connection_params())
    first, second = [], []

    def taker(results: list) -> None:
        try:
            results.append(take(request.pk))
        finally:
            connections.close_all()

    try:
        # Held up mid-work: adding the new subscriber waits for this lock.
        blocker.cursor().execute("LOCK TABLE alerts_subscriber IN SHARE MODE")
        working = threading.Thread(target=taker, args=(first,))
        working.start()
        with connection.cursor() as cursor:
            wait_until(lambda: backends_waiting_on_a_lock(cursor), timeout=30, message="the first taker to be held up")
        assert FormRequest.objects.get().taken_until <= timezone.now()
        again = threading.Thread(target=taker, args=(second,))
        again.start()
        again.join(30)
        swept = take_waiting(older_than_seconds=0)
        assert second == [False] and swept.taken == 0 and first == []
    finally:
        blocker.rollback()
        blocker.close()
    working.join(30)

    assert first == [True] and not FormRequest.objects.exists()
    assert Delivery.objects.filter(kind="confirmation").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_request_that_keeps_failing_does_not_block_the_next_and_is_given_up_in_the_end(caplog):
    # A search this release's parser refuses (saved by another release's web process, say) fails every try.
    poison = form_requests.record("signup", signup_data("stuck@example.org", "(unclosed"), held=False)
    FormRequest.objects.filter(pk=poison.pk).update(created_at=timezone.now() - dt.timedelta(minutes=1))
    fine = form_requests.record("signup", signup_data("ada@example.org"), held=False)
    caplog.set_level(logging.INFO, logger="alerts.form_requests")

    first = take_waiting(older_than_seconds=0)

    # Oldest first: the failing one was tried, counted and put off; the next was done all the same.
    assert (first.found, first.taken) == (2, 1)
    assert list(FormRequest.objects.values_list("pk", "attempts")) == [(poison.pk, 1)]
    assert FormRequest.objects.get().taken_until > timezone.now() + dt.timedelta(seconds=50)
    assert Delivery.objects.get().subscriber.email == "ada@example.org"
    assert not FormRequest.objects.filter(pk=fine.pk).exists()
    # Put off: a sweep straight after leaves it alone.
    assert take_waiting(older_than_seconds=0).found == 0

    for attempt in range(2, form_requests.MAX_ATTEMPTS + 1):
        FormRequest.objects.update(taken_until=timezone.now())  # its back-off over
        assert not take(poison.pk)
        waited = FormRequest.objects.get().taken_until - timezone.now()
        assert waited > dt.timedelta(seconds=0.9 * form_requests.backoff(attempt))
    FormRequest.objects.update(taken_until=timezone.now())
    assert take(poison.pk)

    assert not FormRequest.objects.exists()
    assert not Subscriber.objects.filter(email="stuck@example.org").exists()
    given_up = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [(r.getMessage(), r.attempts, r.address) for r in given_up] == [
        ("form request given up after failing every try, nothing sent", form_requests.MAX_ATTEMPTS,
         address_in_logs("stuck@example.org"))]
    failures = [r for r in caplog.records if r.getMessage() == "form request failed, to be tried again"]
    assert len(failures) == form_requests.MAX_ATTEMPTS and {r.error for r in failures} == {"QueryError"}
    logged = " ".join(str(vars(r)) for r in caplog.records)
    assert "stuck@example.org" not in logged and "unclosed" not in logged


@pytest.mark.django_db(transaction=True)
def test_the_sweep_takes_the_oldest_first_a_batch_at_a_time_and_leaves_fresh_ones_to_their_wake_up():
    now = timezone.now()
    for n in range(5):
        request = form_requests.record("signup", signup_data(f"person{n}@example.org"), held=False)
        FormRequest.objects.filter(pk=request.pk).update(created_at=now - dt.timedelta(minutes=10 - n))
    form_requests.record("signup", signup_data("just-now@example.org"), held=False)

    first = take_waiting(limit=2)
    rest = take_waiting(limit=10)

    assert (first.found, first.taken, first.more) == (2, 2, True)
    assert (rest.found, rest.taken, rest.more) == (3, 3, False)
    emails = list(Delivery.objects.order_by("pk").values_list("subscriber__email", flat=True))
    assert emails == [f"person{n}@example.org" for n in range(5)]
    assert list(FormRequest.objects.values_list("data__email", flat=True)) == ["just-now@example.org"]


@pytest.mark.django_db(transaction=True)
def test_beat_sweeps_the_requests_nobody_took():
    from django.apps import apps
    from django_celery_beat.models import PeriodicTask

    # The entry as the migration makes it: an earlier test that emptied the tables removed its row.
    importlib.import_module("alerts.migrations.0013_schedule_runs_and_requests").schedule(apps, None)
    entry = PeriodicTask.objects.get(name="Take waiting form requests")
    lost = form_requests.record("signup", signup_data("ada@example.org"), held=False)
    FormRequest.objects.filter(pk=lost.pk).update(created_at=timezone.now() - dt.timedelta(minutes=1))

    # As beat calls it: by name, every minute, with the entry's arguments (none).
    app.tasks[entry.task].apply(json.loads(entry.args), json.loads(entry.kwargs))

    assert (entry.enabled, entry.interval.every, entry.interval.period) == (True, 1, "minutes")
    assert not FormRequest.objects.exists() and [m.to for m in mail.outbox] == [["ada@example.org"]]


@pytest.mark.django_db(transaction=True)
def test_requests_the_previous_release_published_are_still_done():
    tasks.take_signup_task.apply(kwargs=signup_data("ada@example.org") | {"held": False})
    tasks.take_link_request_task.apply(kwargs={"email": "ada@example.org", "held": True})

    assert [m.to for m in mail.outbox] == [["ada@example.org"]]
    assert "/alerts/confirm/" in mail.outbox[0].body and not FormRequest.objects.exists()


# On the real stack: the web server, a real worker, and a Redis of the test's own that is killed.


class PrivateRedis:
    """A Redis server of this test's own on a free port, which the test may kill outright (SIGKILL, nothing
    saved) and start afresh on the same port; the shared one is never touched."""

    def __init__(self, folder) -> None:
        self.port = free_port()
        self.folder = folder
        self.process: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_connect_timeout=1, socket_timeout=1)

    def up(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", str(self.folder)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.up, timeout=10, message="Redis to start")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path):
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.kill()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.worker
def test_redis_killed_with_signups_waiting_every_one_is_confirmed_by_email_once(site, private_redis,
                                                                                  worker_env, httpserver,
                                                                                  esp_path, esp, settings):
    from celery import Celery

    addresses = [f"person{n}@example.org" for n in range(5)]
    # The broker is the private Redis; the limits are counted in the test's usual cache.
    web = site(CELERY_BROKER_URL=private_redis.url, REDIS_CACHE_URL=settings.CACHES["default"]["LOCATION"])
    pages = [post_form(web, SIGNUP, {"email": address, "q": f"topic {n}", "frequency": "daily", "alert_on": "both",
                                     "label": "", "website": ""})
             for n, address in enumerate(addresses)]
    assert [page.headers["Location"] for page in pages] == ["/alerts/check-your-inbox/"] * 5
    # No worker yet: every wake-up waits in Redis, and is lost with it.
    assert private_redis.client().llen("celery") == 5

    private_redis.kill()
    private_redis.start()
    assert private_redis.client().dbsize() == 0

    worker = Worker(mail_worker_env(worker_env, httpserver, esp_path, web.url) | {
        "CELERY_BROKER_URL": private_redis.url})
    worker.start()
    try:
        # Beat's sweep (test_beat_sweeps_the_requests_nobody_took), without waiting for the rows to be old enough.
        Celery("beat", broker=private_redis.url, set_as_current=False).send_task(
            "alerts.take_form_requests", kwargs={"older_than_seconds": 0})
        wait_until(lambda: not FormRequest.objects.exists(), timeout=60, message="the waiting requests to be taken")
        wait_until(lambda: Delivery.objects.filter(status="sent").count() == 5, timeout=60,
                   message="the confirmations to be sent")
    finally:
        worker.stop()

    for n, address in enumerate(addresses):
        [confirmation] = emails_to(esp, address)
        assert f"topic {n}" in confirmation["TextBody"]
        assert link(confirmation, "/alerts/confirm/").startswith(web.url)
    assert len(esp.messages) == 5
