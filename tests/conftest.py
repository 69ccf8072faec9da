"""Shared fixtures: the real services (PostgreSQL, Redis, a Celery worker) and recorded source data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "questions" / "fixtures"
REQUIRE_SERVICES = os.environ.get("REQUIRE_SERVICES") == "1"


def load_fixture(name: str):
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def _postgres_ready() -> bool:
    return "postgresql" in settings.DATABASES["default"]["ENGINE"]


def _redis_ready() -> bool:
    if not settings.REDIS_URL:
        return False
    import redis

    try:
        return bool(redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def _chromium_path() -> str | None:
    path = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
    return path if Path(path).exists() else None


def pytest_runtest_setup(item):
    missing = []
    if item.get_closest_marker("postgres") and not _postgres_ready():
        missing.append("PostgreSQL (set DATABASE_URL=postgres://...)")
    if (item.get_closest_marker("redis") or item.get_closest_marker("worker")) and not _redis_ready():
        missing.append("Redis (set REDIS_URL=redis://...)")
    if item.get_closest_marker("browser") and not _chromium_path():
        missing.append("Chromium (apt-get install chromium)")
    if missing:
        message = "needs " + " and ".join(missing)
        if REQUIRE_SERVICES:
            pytest.fail(message + " but REQUIRE_SERVICES=1")
        pytest.skip(message)


_skipped: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    # In CI every test must really run: a skip there hides a missing service.
    if REQUIRE_SERVICES and _skipped and session.exitstatus == 0:
        print(f"\n{len(_skipped)} test(s) skipped with REQUIRE_SERVICES=1: {_skipped[:10]}", file=sys.stderr)
        session.exitstatus = 1


def database_url_for_tests() -> str:
    """The URL of the database the tests are using, for a worker process to share it."""
    from django.db import connection

    s = connection.settings_dict
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class Worker:
    """A real Celery worker in its own process group, on the test database and the real Redis (or,
    with `beat=True`, Celery beat on its database schedule)."""

    def __init__(self, env: dict[str, str], *arguments: str, beat: bool = False) -> None:
        self.env = env
        self.arguments = arguments or ("--pool=solo",)
        self.beat = beat
        self.process: subprocess.Popen | None = None
        self.log = ROOT / "var" / f"test-{'beat' if beat else 'worker'}-{os.getpid()}.log"

    def start(self) -> None:
        self.log.parent.mkdir(exist_ok=True)
        if self.beat:
            command = ["beat", "--loglevel=INFO", "--max-interval=1"]
        else:
            # The default queue and the polling one, as `make run` serves them.
            queues = [] if "-Q" in self.arguments else ["-Q", f"celery,{settings.POLL_QUEUE}"]
            command = ["worker", *self.arguments, *queues, "--loglevel=INFO", "--without-heartbeat",
                       "--without-gossip", "--without-mingle"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *command], cwd=ROOT, env=self.env,
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )

    def kill(self, sig: int = 9) -> None:
        """Signal the whole process group: a prefork worker's children die with it."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)

    def stop(self) -> None:
        stop_group(self.process)


def stop_group(process: subprocess.Popen | None) -> None:
    """Stop a process started in a session of its own, and its children: asked first, then killed."""
    if process and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


@pytest.fixture
def worker_env(transactional_db):
    if not _postgres_ready():
        pytest.skip("a worker shares the test database, which needs PostgreSQL")
    env = dict(os.environ)
    env.update(DATABASE_URL=database_url_for_tests(), REDIS_URL=settings.REDIS_URL, CELERY_TASK_ALWAYS_EAGER="0")
    return env


def purge_queues() -> None:
    """Empty the default and polling queues: a task a previous test's worker left must not run in this one."""
    from config.celery import app

    app.control.purge()
    with app.connection_for_write() as connection:
        connection.default_channel.queue_purge(settings.POLL_QUEUE)


@pytest.fixture
def celery_worker(worker_env):
    purge_queues()
    worker = Worker(worker_env)
    worker.start()
    yield worker
    worker.stop()


def wait_until(condition, timeout: float = 60, interval: float = 0.2, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")


@pytest.fixture(autouse=True)
def _clean_state(request):
    """No test reaches the internet through the live API source the migration adds, and every test
    starts with fresh rate limits."""
    if "transactional_db" in request.fixturenames:
        request.getfixturevalue("transactional_db")
    elif request.node.get_closest_marker("django_db"):
        request.getfixturevalue("db")
    else:
        return
    from questions.models import Source

    Source.objects.filter(url__contains="parliament.uk").update(enabled=False, url="http://127.0.0.1:9/")
    clear_rate_limits()


@pytest.fixture(autouse=True)
def _emails_through_anymail(request, settings):
    """Emails go through Anymail's test backend; tasks run in this process unless a real worker is used."""
    settings.EMAIL_BACKEND = "anymail.backends.test.EmailBackend"
    settings.SITE_URL = "http://testserver"
    from config.celery import app

    eager = not {"celery_worker", "worker_env"} & set(request.fixturenames)
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = eager
    yield
    app.conf.task_always_eager = previous


@pytest.fixture(autouse=True)
def _cache_not_resting(monkeypatch):
    """A cache that failed in one test is not left alone by the next (questions.searching.cache_guard)."""
    from questions import searching

    monkeypatch.setattr(searching, "_cache_rests_until", 0.0)


def clear_rate_limits() -> None:
    """Empty Django's cache (rate-limit counters, cached lists); the broker's queues are elsewhere."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture
def limiter_clock(monkeypatch):
    """The rate limiter's clock, held still: every request of a test falls in one window, whatever the time
    of day; `now` moves it on."""
    from django_ratelimit import core

    class Clock:
        now = float(int(time.time()))

        def time(self) -> float:
            return self.now

    clock = Clock()
    monkeypatch.setattr(core, "time", clock)
    return clock


@pytest.fixture
def esp_path():
    """A path of its own for each test's ESP stub on the shared local server, so that a request a
    previous test left in flight can never reach this test's stub."""
    import uuid

    return f"/esp-{uuid.uuid4().hex}/"


@pytest.fixture
def postmark(settings, httpserver, esp_path):
    """Email sent in this process through Anymail's Postmark backend to a local stub of its API;
    returns the stub (set `failures_left`, `failure_status`, or `handler` to answer differently)."""
    from tests.esp_stub import PostmarkStub

    stub = PostmarkStub()
    serve_postmark(httpserver, esp_path, stub)
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "test", "POSTMARK_API_URL": httpserver.url_for(esp_path)}
    settings.DELIVERY_BACKOFF_SECONDS = 0
    return stub


@pytest.fixture
def fresh_percolators():
    """A process keeps its percolators between runs; a test that builds its own database starts afresh."""
    from alerts import matching

    matching.forget_percolators()
    yield
    matching.forget_percolators()


def serve_api(httpserver, details: range = range(1000, 1010)):
    """A stub of the Written Questions API on the local server: its list, and the detail records of
    `details`; returns the stub to put records in."""
    from tests.parliament_stub import LIST_PATH, ParliamentStub

    stub = ParliamentStub()
    httpserver.expect_request(LIST_PATH).respond_with_handler(stub)
    for api_id in details:
        httpserver.expect_request(f"{LIST_PATH}/{api_id}").respond_with_handler(stub)
    return stub


def polled_api(httpserver, details=range(1000, 1010)):
    """`serve_api` with a source pointing at it that was polled before: what it brings now is news, not a
    first backlog."""
    from django.utils import timezone

    from questions.models import Source

    stub = serve_api(httpserver, details)
    Source.objects.create(name="Stub API", kind=Source.Kind.PARLIAMENT_API, url=httpserver.url_for("/"),
                          last_success_at=timezone.now())
    return stub


@pytest.fixture
def esp(httpserver, esp_path):
    """A local stub of Postmark's API, for workers to send through (`mail_worker_env`)."""
    from tests.esp_stub import PostmarkStub

    stub = PostmarkStub()
    serve_postmark(httpserver, esp_path, stub)
    return stub


def mail_worker_env(worker_env: dict[str, str], httpserver, esp_path: str, site_url: str) -> dict[str, str]:
    """`worker_env` for a worker that emails through the `esp` stub, with retries and leases short enough
    for a test."""
    worker_env.update(
        EMAIL_BACKEND="anymail.backends.postmark.EmailBackend", ANYMAIL_POSTMARK_SERVER_TOKEN="test",
        ANYMAIL_POSTMARK_API_URL=httpserver.url_for(esp_path), SITE_URL=site_url,
        DELIVERY_BACKOFF_SECONDS="0.2", DELIVERY_LEASE_SECONDS="1", SOURCE_BACKOFF_SECONDS="0.05",
    )
    return worker_env


@pytest.fixture
def site_worker(worker_env, httpserver, esp_path, live_server):
    """A real worker emailing through the `esp` stub, its links pointing at the live server."""
    purge_queues()
    process = Worker(mail_worker_env(worker_env, httpserver, esp_path, live_server.url))
    process.start()
    yield process
    process.stop()


def send(task: str, *args) -> None:
    """Queue a task by name, as beat does."""
    from config.celery import app

    app.send_task(task, args=args)


def serve_postmark(httpserver, esp_path: str, stub) -> None:
    """Postmark's single and batch endpoints under `esp_path`, answered by `stub` (or its `handler`)."""
    for endpoint in ("email", "email/batch"):
        httpserver.expect_request(esp_path + endpoint).respond_with_handler(lambda request: stub.handler(request))


def backends_waiting_on_a_lock(cursor) -> list[int]:
    """The pids of other connections to the test database that wait on a lock (a worker held up)."""
    # Activity is a snapshot per transaction unless cleared.
    cursor.execute("SELECT pg_stat_clear_snapshot()")
    cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                   "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()")
    return [row[0] for row in cursor.fetchall()]


def digest_run_now(frequency: str):
    """A digest run of this frequency for a period that ends now (its emails not made yet)."""
    import datetime as dt

    from django.utils import timezone

    from alerts.models import DigestRun

    end = timezone.now()
    return DigestRun.objects.create(frequency=frequency, period_start=end - dt.timedelta(days=1), period_end=end)


def run_digest(frequency: str):
    """The digest run of this frequency for a period that ends now, made as beat's tick would make it."""
    from alerts.delivery import build_run

    run = digest_run_now(frequency)
    build_run(run)
    return run
