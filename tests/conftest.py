"""Shared fixtures and helpers: the real services (PostgreSQL, Redis, a Celery worker), stubs of the sources and
the ESP, recorded source data, and pages and emails as a reader sees them. Test data is made in tests.factories."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import hmac
import html
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from contextlib import contextmanager
from io import StringIO
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.core import mail
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.utils import dateformat, timezone
from prometheus_client.parser import text_string_to_metric_families

from alerts import tokens
from alerts.delivery import deliver_immediate, send_due
from alerts.matching import match_events
from alerts.models import Delivery, Subscriber
from config import schedule
from questions.models import Source
from questions.sources.http import PoliteClient
from tests.browser import browser_page
from tests.esp_stub import PostmarkStub, StubServer
from tests.parliament_stub import LIST_PATH, ParliamentStub

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


def at_once(work, times: int) -> list:
    """What `work()` returns (or raises) in each of `times` threads started at the very same moment, each with a
    database connection of its own: how concurrent workers or requests meet."""
    start, outcomes = threading.Barrier(times), []

    def one() -> None:
        try:
            start.wait()
            outcomes.append(work())
        except Exception as error:  # noqa: BLE001 - what a thread raised is its outcome
            outcomes.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=one) for _ in range(times)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


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


# The Parliament API source on the local server.


@pytest.fixture
def stub(httpserver):
    api = ParliamentStub()
    httpserver.expect_request(LIST_PATH).respond_with_handler(api)
    for path in (f"{LIST_PATH}/{n}" for n in range(1000, 1010)):
        httpserver.expect_request(path).respond_with_handler(api)
    return api


@pytest.fixture
def source(httpserver):
    return Source.objects.create(name="API", kind=Source.Kind.PARLIAMENT_API, url=httpserver.url_for("/"))


def api_client(**overrides) -> PoliteClient:
    options = dict(requests_per_second=1000, backoff_seconds=0.01, read_timeout=2, max_retries=2)
    return PoliteClient(**(options | overrides))


# Alerts as a reader receives them.


def deliver() -> list:
    """Match what is new and send the immediate emails: the new messages in the outbox."""
    before = len(mail.outbox)
    match_events()
    deliver_immediate()
    send_due()
    return mail.outbox[before:]


def words(content: bytes | str) -> str:
    """A page or an email part as a reader sees its text."""
    text = content.decode() if isinstance(content, bytes) else content
    text = re.sub(r"<head>.*?</head>", " ", text, flags=re.S)
    text = re.sub(r"</?(a|strong|span|mark|em|code)\b[^>]*>", "", text)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


def html_part(message) -> str:
    return message.alternatives[0][0]


# Sample questions and the ESP's tracking webhooks.


@pytest.fixture
def archive():
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), stdout=StringIO())


@pytest.fixture
def webhook_secret(settings):
    """Email through Postmark, whose tracking webhook takes these basic-auth credentials."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = settings.ANYMAIL | {"WEBHOOK_SECRET": "hook:s3cret", "MAILGUN_WEBHOOK_SIGNING_KEY": "key"}
    return "hook", "s3cret"


# Without Postmark's "BouncedAt": an event of a fixed date would, in a few days, be too old to believe.
POSTMARK_BOUNCE = {
    "RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce", "TypeCode": 1, "Name": "Hard bounce",
    "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "Description": "The server was unable to deliver your "
    "message (ex: unknown user, mailbox not found).", "Details": "smtp;550 5.1.1 The email account that you tried "
    "to reach does not exist.", "Email": "ada@example.org", "From": "alerts@example.org",
    "DumpAvailable": True, "Inactive": True, "CanActivate": True,
    "Subject": "Alert", "ServerID": 23, "MessageStream": "outbound", "Content": "", "Tag": "immediate",
    "Metadata": {"delivery_id": "1"},
}


POSTMARK_COMPLAINT = {
    "RecordType": "SpamComplaint", "ID": 42, "Type": "SpamComplaint", "TypeCode": 512, "Name": "Spam complaint",
    "Tag": "", "MessageID": "00000000-0000-0000-0000-000000000000", "ServerID": 1234, "Description": "",
    "Details": "Test spam complaint details", "Email": "ada@example.org", "From": "alerts@example.org",
    "Inactive": True, "CanActivate": False, "Subject": "Alert",
    "MessageStream": "outbound",
}


def post_webhook(client, path, payload, auth=("hook", "s3cret")):
    import base64

    headers = {}
    if auth:
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    return client.post(path, data=json.dumps(payload), content_type="application/json", **headers)


# An alert's health as the manage page shows it.


def when(value: dt.datetime | dt.date, fmt: str = "j F Y, H:i") -> str:
    """A moment as the page writes it, in the site's time zone."""
    if isinstance(value, dt.datetime):
        value = timezone.localtime(value)
    return dateformat.format(value, fmt)


def send_alerts() -> Delivery:
    ids = deliver_immediate()
    send_due()
    assert len(ids) == 1
    return Delivery.objects.get(pk=ids[0])


def use_postmark_webhooks(settings) -> None:
    """Tracking webhooks of Postmark, taken with these basic-auth credentials (as the `webhook_secret` fixture)."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = settings.ANYMAIL | {"WEBHOOK_SECRET": "hook:s3cret"}


# Workers and beat sending through an ESP stub on a port of its own.


def beat_sends_due_emails(every_seconds: int | None = None) -> None:
    """Beat's send tick as declared (tests that empty the database remove its rows)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    schedule.sync(only=["Send due emails"])
    if every_seconds:
        interval, _ = IntervalSchedule.objects.get_or_create(every=every_seconds, period="seconds")
        PeriodicTask.objects.filter(task="alerts.send_due").update(interval=interval)


def start(env, *arguments, beat=False) -> Worker:
    if not beat:
        purge_queues()
    worker = Worker(env, *arguments, beat=beat)
    worker.start()
    return worker


def esp_env(worker_env, esp, **settings) -> dict:
    return worker_env | {"EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
                         "ANYMAIL_POSTMARK_SERVER_TOKEN": "test", "ANYMAIL_POSTMARK_API_URL": esp.url(),
                         "ANYMAIL_REQUESTS_TIMEOUT": "5", **settings}


@pytest.fixture
def esp_server():
    """A stub of Postmark's API on a port of its own (`esp_env`), for a stack of workers and beat."""
    server = StubServer(PostmarkStub()).start()
    yield server
    server.stop()


# How much a search would send, as the signup page warns.


SIGNUP = "/alerts/new/"
BROAD = ("This search is very broad. It matches 36% of all the questions we hold (112 of 312), so an alert for it "
         "would email you about a large share of everything asked in Parliament.")


NARROW_IT = ('To narrow it, add another word that a question must also have, put an exact phrase in quotes, such as '
             '"school meals", or look in one field, such as department:"Home Office" or member:"Clive Lewis". '
             "How to search.")


TOO_OFTEN = ("“As it happens” could email you many times a day: up to about 5 emails a day for this search. "
             "A daily digest would gather them into one email a day; choose “Daily digest” under “How often” above.")


def visible(response) -> str:
    """The page's text as a reader gets it: no tags, entities decoded, spaces collapsed."""
    body = response.content.decode()
    body = re.sub(r"<(script|style)\b.*?</\1>", "", body, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", "", body)).split())


@pytest.fixture
def busy_archive():
    """Four weeks of archive: every day four questions mentioning the government, each answered that day,
    and nearly 200 others, of which a dozen about hedgehogs."""
    from tests.factories import NEWEST, ask, store

    days = [NEWEST - dt.timedelta(days=number) for number in range(28)]
    store([ask(heading="Government spending", tabled=day, answered=day) for day in days for _ in range(4)])
    store([ask(heading="Fisheries", tabled=days[number % 28]) for number in range(188)])
    store([ask(heading="Hedgehogs", tabled=days[number * 2], answered=days[number * 2]) for number in range(12)])


# The rate limiter's hour.


def forty_minutes_before_the_window_turns(limiter_clock, ip: str) -> None:
    """The limiter's clock set 40 minutes before the end of `ip`'s hour (django-ratelimit staggers each key's
    hour by its CRC-32)."""
    hour = int(limiter_clock.now) // 3600 * 3600
    limiter_clock.now = float(hour + zlib.crc32(ip.encode()) % 3600 + 3600 - 40 * 60)


# Pages as a visitor reads them.


def page(response) -> str:
    assert response.status_code in (200, 400), response.status_code
    return html.unescape(response.content.decode())


def status_region(text: str) -> str:
    found = re.search(r'<div class="messages" role="status">(.*?)</div>', text, re.S)
    return found.group(1) if found else ""


def unsubscribe_everything(subscriber: Subscriber) -> None:
    Client(enforce_csrf_checks=True).post(f"/unsubscribe/{tokens.make(subscriber, tokens.UNSUBSCRIBE)}/")
    subscriber.refresh_from_db()


def page_text(response) -> str:
    """The page as text, tags taken out."""
    return re.sub(r"<[^>]+>", "", page(response))


PHONE, DESKTOP = 375, 1280
WIDTHS = [DESKTOP, PHONE]


def add(client, manage: str, q: str = "prisons", follow: bool = False, **extra):
    data = {"q": q, "label": "", "frequency": "daily", "alert_on": "new"}
    return client.post(f"{manage}add/", data | extra, follow=follow)


def sign_up(client, email="ada@example.org", q='"facial recognition"', **extra):
    data = {"email": email, "q": q, "frequency": "immediate", "alert_on": "both", "label": "", "website": ""}
    return client.post(SIGNUP, data | extra)


def link_in(message, path: str) -> str:
    found = re.search(rf"http://testserver({path}[^\s\"<]+)", message.body)
    assert found, message.body
    return found.group(1)


def confirmed_subscriber(client, email="ada@example.org", q='"facial recognition"') -> tuple[Subscriber, str]:
    sign_up(client, email, q)
    confirm = link_in(mail.outbox[-1], "/alerts/confirm/")
    manage = client.post(confirm)["Location"]
    return Subscriber.objects.get(email=email), manage


# A browser signing up on the live server.


def status_message(page) -> str:
    return page.locator("div.messages[role=status]").inner_text()


@contextmanager
def signed_up(live_server, width: int, email: str):
    """A page at `width` on the manage page of `email`, signed up for QUERY and confirmed from the email.
    Yields the page, the manage page's URL and the confirmation link."""
    with browser_page() as page:
        page.set_viewport_size({"width": width, "height": 812})
        page.goto(f"{live_server.url}/alerts/new/?q={QUERY}")
        page.get_by_label("Your email address").fill(email)
        page.get_by_role("button", name="Email me a link to confirm").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "Check your inbox"

        sent = [m for m in mail.outbox if email in m.to]
        assert len(sent) == 1
        confirm_url = CONFIRM_LINK.search(sent[0].body).group(1)
        page.goto(confirm_url)
        page.get_by_role("button", name="Confirm my alert").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "My alerts"
        assert "/alerts/manage/" in page.url
        yield page, page.url, confirm_url


QUERY = '"facial recognition"'
CONFIRM_LINK = re.compile(r"(http://\S+/alerts/confirm/\S+)")


@pytest.fixture
def live_archive(live_server, settings):
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), stdout=StringIO())
    settings.SITE_URL = live_server.url


# The admin's overview.


def delivery_section(client) -> str:
    """The text of the overview's Delivery section, as a logged-in member of staff reads it."""
    response = client.get("/admin/overview/")
    assert response.status_code == 200
    text = response.content.decode()
    section = text.split("<h2>Delivery</h2>", 1)[1].split("<h2>Sources</h2>", 1)[0]
    section = re.sub(r"</?(a|strong|span)\b[^>]*>", "", section)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", section)).split())


# A Redis of a test's own.


@pytest.fixture
def private_redis(tmp_path):
    """A Redis server of this test's own, on a free port, that the test may stop and start: the shared
    one is never touched. Yields its URL and the stop and start functions; it is shut down at the end."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    def start():
        if not redis_up(port):
            subprocess.run(["redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(port),
                            "--save", "", "--appendonly", "no", "--dir", str(tmp_path)], check=True, timeout=10)
        wait_until(lambda: redis_up(port), timeout=10, message="Redis to start")

    def stop():
        subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "shutdown", "nosave"], capture_output=True,
                       timeout=10)
        wait_until(lambda: not redis_up(port), timeout=10, message="Redis to stop")

    start()
    yield f"redis://127.0.0.1:{port}/0", stop, start
    stop()


def redis_up(port: int) -> bool:
    return subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), "ping"], capture_output=True, text=True,
                          timeout=5).stdout.strip() == "PONG"


# Feeds in the two formats a feed source reads.


ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom"><title>Written questions</title><id>urn:example</id>
<updated>2025-06-24T00:00:00Z</updated>
<entry><title>Schools: Heating</title><id>urn:question:70001</id>
<link href="https://example.org/q/70001"/><updated>2025-06-20T09:00:00Z</updated>
<summary>To ask the Secretary of State for Education, what funding is available for school heating.</summary></entry>
</feed>"""


RSS = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>TheyWorkForYou: facial recognition</title>
<link>https://www.theyworkforyou.com/search/?q=facial+recognition</link>
<item><title>Police: Artificial Intelligence</title>
<link>https://www.theyworkforyou.com/wrans/?id=2025-06-24.61234.h</link>
<guid>https://www.theyworkforyou.com/wrans/?id=2025-06-24.61234.h</guid>
<description>&lt;p&gt;To ask the Secretary of State for the Home Department, what assessment her Department has made
of police use of &lt;b&gt;facial recognition&lt;/b&gt;.&lt;/p&gt;</description>
<pubDate>Tue, 24 Jun 2025 00:00:00 +0000</pubDate></item>
<item><title>Prisons: Mobile Phones</title>
<link>https://www.theyworkforyou.com/wrans/?id=2025-06-25.62000.h</link>
<guid>https://www.theyworkforyou.com/wrans/?id=2025-06-25.62000.h</guid>
<description>To ask the Secretary of State for Justice, how many mobile phones were found in prisons.</description>
<pubDate>Wed, 25 Jun 2025 00:00:00 +0000</pubDate></item>
</channel></rss>"""


# Servers of a test's own.


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SilentServer:
    """Accepts every connection, reads what it is sent, and never says a word."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections.append(connection)

    def url(self, database: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self.listener.close()
        for connection in self.connections:
            connection.close()


def post_form(web: WebServer, path: str, fields: dict) -> requests.Response:
    """The form as a browser fills it in: its page first, for the CSRF cookie and field."""
    session = requests.Session()
    page = session.get(web.url + path, timeout=ANSWER_WITHIN)
    assert page.status_code == 200
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return session.post(web.url + path, data=fields | {"csrfmiddlewaretoken": token}, timeout=ANSWER_WITHIN,
                        allow_redirects=False)


@pytest.fixture
def site(worker_env, tmp_path):
    """Starts the site under gunicorn with the given environment on top of the test's."""
    servers = []

    def start(**variables) -> WebServer:
        server = WebServer(worker_env | {"REDIS_TIMEOUT": str(REDIS_TIMEOUT), "PROMETHEUS_MULTIPROC_DIR":
                                         str(tmp_path / "metrics")} | variables, tmp_path / "gunicorn.log")
        (tmp_path / "metrics").mkdir(exist_ok=True)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


SIGNUP_FORM = {"email": "ada@example.org", "q": "palantir", "frequency": "daily", "alert_on": "both", "label": "",
          "website": ""}


TOKEN = "scrape-" + "x" * 32


class WebServer:
    """The site under gunicorn, as the Dockerfile serves it, with more than one worker process."""

    def __init__(self, env: dict[str, str], log) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env | {"SITE_URL": self.url}
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers", "2"],
            cwd=ROOT, env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )

        def up() -> bool:
            try:
                return requests.get(self.url + "/healthz?checks=database", timeout=10).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, timeout=60, message="gunicorn to answer")

    def stop(self) -> None:
        stop_group(self.process)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of an exposition, by its name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(scraped: dict, name: str, **labels) -> float | None:
    return scraped.get((name, frozenset(labels.items())))


# Seconds: what each connection to Redis waits (REDIS_TIMEOUT) and, well beyond the few of those a request
# may spend, how long the test waits for an answer. A hang used to hold a worker for gunicorn's 30.
REDIS_TIMEOUT = 1
ANSWER_WITHIN = 10 * REDIS_TIMEOUT


# Logs and the API stub of the pipeline's tests.


def parse_lines(text: str) -> list[dict]:
    """Every line as a JSON log record; fails on the first line that is not one."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            pytest.fail(f"line {number} is not JSON: {line[:300]!r}")
        assert isinstance(record, dict), f"line {number} is not a JSON object: {line[:300]!r}"
        missing = [key for key in REQUIRED if not isinstance(record.get(key), str) or not record[key]]
        assert not missing, f"line {number} lacks {missing}: {line[:300]!r}"
        assert record["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}, line[:300]
        stamp = dt.datetime.fromisoformat(record["time"].replace(",", "."))
        assert abs(stamp.replace(tzinfo=None) - dt.datetime.now()) < dt.timedelta(days=1), record["time"]
        records.append(record)
    return records


REQUIRED = ("time", "level", "logger", "message")


@pytest.fixture
def api(httpserver):
    return serve_api(httpserver)


@pytest.fixture
def mail_env(worker_env, httpserver, esp_path):
    return mail_worker_env(worker_env, httpserver, esp_path, "https://alerts.example.org")


def start_worker(env) -> Worker:
    purge_queues()
    worker = Worker(env)
    worker.start()
    return worker


@pytest.fixture
def api_polled_before(httpserver):
    return polled_api(httpserver)


# The recorded sample of the API.


# Real names of the sample with an apostrophe or a hyphen; the second both asks questions and answers them.
OBRIEN, OPPONG_ASARE = "Neil O'Brien", "Ms Abena Oppong-Asare"


# One of Neil O'Brien's questions to the Department for Business and Trade, not yet answered.
UNANSWERED = 1742394


def import_chosen(tmp_path) -> list[dict]:
    """The sample's questions asked by, or answered by, those members, or to that committee: imported."""
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as lines:
        chosen = [line for line in map(json.loads, lines) if wanted(line)]
    path = tmp_path / "chosen.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in chosen), encoding="utf-8")
    call_command("import_questions", str(path), stdout=StringIO())
    return chosen


SPEAKERS_COMMITTEE = "Speaker's Committee on the Electoral Commission"
SAMPLE = FIXTURES / "written_questions_sample.jsonl.gz"


def wanted(line: dict) -> bool:
    return (line["asking_member"] in (OBRIEN, OPPONG_ASARE) or line["answering_member"] == OPPONG_ASARE
            or line["department"] == SPEAKERS_COMMITTEE)


# Each ESP's tracking webhooks.


MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
SECRET = ("hook", "x7Qp2vLr9KsT4mWz8NbY3cHd")


def mailgun_signature(at: dt.datetime | None = None, token: str | None = None) -> dict:
    timestamp, token = str(int((at or timezone.now()).timestamp())), token or secrets.token_hex(25)
    signature = hmac.new(MAILGUN_KEY.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": signature}


def postmark_bounce(email: str | None = "ada@example.org", at: dt.datetime | None = None, **fields) -> dict:
    event = {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce", "TypeCode": 1,
             "Name": "Hard bounce", "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "ServerID": 23,
             "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
             "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
             "From": "alerts@example.org", "BouncedAt": (at or timezone.now()).isoformat(), "DumpAvailable": True,
             "Inactive": True, "CanActivate": True, "Subject": "Alert", "MessageStream": "outbound", "Tag": ""}
    return event | ({"Email": email} if email else {}) | fields


def sendgrid(event: str, email: str, **fields) -> dict:
    return {"email": email, "timestamp": int(timezone.now().timestamp()), "event": event,
            "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "sg_event_id": secrets.token_urlsafe(16),
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"} | fields


def use_esp(settings, esp: str, **anymail) -> None:
    """Email through this ESP, its tracking webhook secured by the secret (and any signing key given)."""
    settings.EMAIL_BACKEND = f"anymail.backends.{esp}.EmailBackend"
    settings.ANYMAIL = {"WEBHOOK_SECRET": ":".join(SECRET)} | anymail
