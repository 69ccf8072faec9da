"""What an operator follows the service by: web requests counted by route, status and time on /metrics, with
the release running and the broker's queues; every request named by an id that its log lines, its response
and the tasks it queues all carry; a worker's and beat's output all JSON; a failing health check one line."""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import logging
import logging.config
import os
import platform
import socket
import subprocess
import sys
import tomllib
import uuid

import django
import pytest
import requests
from django.conf import settings
from django.http import HttpResponse
from django.test import Client
from django.urls import include, path
from django.utils import timezone

from alerts.models import FormRequest, Subscriber
from config.celery import app
from questions.health import health
from questions.models import Source
from tests.conftest import (
    ROOT,
    SIGNUP_FORM,
    TOKEN,
    SilentServer,
    WebServer,
    Worker,
    beat_sends_due_emails,
    mail_worker_env,
    parse_lines,
    purge_queues,
    samples,
    value,
    wait_until,
)

# The site, and a page that fails, for the tests that need a 500.


def broken_page(request):
    raise RuntimeError("this page is broken")


def quiet_page(request):
    return HttpResponse("fine")


urlpatterns = [
    path("test-broken/", broken_page, name="test-broken"),
    path("test-quiet/", quiet_page, name="test-quiet"),
    path("", include("config.urls")),
]

RELEASE = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
# Celery warns a worker run as root before any logging is set up; the tests may run as root (the image does not).
NOT_AS_ROOT_WARNING = {"PYTHONWARNINGS": "ignore:You're running the worker with superuser privileges"}


@pytest.fixture
def metrics(settings):
    settings.METRICS_TOKEN = TOKEN
    return settings


def scrape(client) -> dict:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    return samples(response.content.decode())


@pytest.fixture
def console():
    """What the root logger writes through the console handler LOGGING configures (LOG_FORMAT=json), filters
    and all."""
    conf = copy.deepcopy(settings.LOGGING)
    configurator = logging.config.DictConfigurator(conf)
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(configurator.configure_formatter(conf["formatters"]["json"]))
    for name in conf["handlers"]["console"]["filters"]:
        handler.addFilter(configurator.configure_filter(conf["filters"][name]))
    root = logging.getLogger()
    root.addHandler(handler)
    yield stream
    root.removeHandler(handler)


# Web requests on /metrics.


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_requests_are_counted_by_method_status_and_route_and_timed(metrics):
    client = Client(raise_request_exception=False)
    before = scrape(client)

    assert client.get("/test-quiet/").status_code == 200
    assert client.get("/test-quiet/").status_code == 200
    assert client.post("/test-quiet/").status_code == 200
    assert client.get("/test-broken/").status_code == 500
    assert client.get(f"/no-such-page-{uuid.uuid4().hex}/").status_code == 404
    assert client.generic("BREW", "/test-quiet/").status_code == 200
    assert client.get("/questions/id/999999999/").status_code == 404
    after = scrape(client)

    def counted(method: str, status: str, route: str) -> float:
        labels = {"method": method, "status": status, "route": route}
        return (value(after, "wqa_http_requests_total", **labels) or 0) - (
            value(before, "wqa_http_requests_total", **labels) or 0)

    assert counted("GET", "200", "test-quiet") == 2
    assert counted("POST", "200", "test-quiet") == 1
    assert counted("GET", "500", "test-broken") == 1
    # No route took it: counted as "unmatched", never by its path.
    assert counted("GET", "404", "unmatched") >= 1
    assert not [labels for (name, labels) in after if name == "wqa_http_requests_total"
                and "no-such-page" in dict(labels)["route"]]
    # A route that took the request and found nothing is counted by its name.
    assert counted("GET", "404", "question-by-row") == 1
    # A made-up method is "other", not a new series per word.
    assert counted("other", "200", "test-quiet") == 1
    # The scrape before this one was counted too.
    assert counted("GET", "200", "metrics") >= 1

    def observed(name: str, **labels) -> float:
        return (value(after, name, **labels) or 0) - (value(before, name, **labels) or 0)

    assert observed("wqa_http_request_duration_seconds_count", method="GET", route="test-quiet") == 2
    assert observed("wqa_http_request_duration_seconds_bucket", method="GET", route="test-quiet", le="+Inf") == 2
    assert observed("wqa_http_request_duration_seconds_count", method="GET", route="test-broken") == 1
    assert observed("wqa_http_request_duration_seconds_sum", method="GET", route="test-broken") > 0
    buckets = {dict(labels)["le"] for (name, labels) in after
               if name == "wqa_http_request_duration_seconds_bucket" and dict(labels)["route"] == "test-quiet"}
    assert {"0.01", "0.1", "1.0", "10.0", "+Inf"} <= buckets


@pytest.mark.django_db
def test_a_static_file_is_counted_as_static_not_by_its_path(client, metrics):
    before = scrape(client)

    response = client.get("/static/site.css")
    after = scrape(client)

    assert response.status_code == 200
    labels = {"method": "GET", "status": "200", "route": "static"}
    assert value(after, "wqa_http_requests_total", **labels) - (value(before, "wqa_http_requests_total", **labels)
                                                                or 0) == 1


@pytest.mark.django_db
def test_the_release_is_on_metrics_and_in_the_admin(client, metrics, admin_user):
    scraped = scrape(client)
    client.force_login(admin_user)
    index = client.get("/admin/")

    assert value(scraped, "wqa_build_info", version=RELEASE, python=platform.python_version(),
                 django=django.get_version()) == 1
    assert [labels for (name, labels) in scraped if name == "wqa_build_info"] == [
        frozenset({"version": RELEASE, "python": platform.python_version(), "django": django.get_version()}.items())]
    assert f"Site administration (release {RELEASE})" in index.content.decode()


# The broker's queues on /metrics.


@pytest.mark.redis
@pytest.mark.django_db
def test_the_queue_lengths_are_read_from_redis_at_each_scrape(client, metrics):
    purge_queues()
    try:
        for n in range(3):
            app.send_task("alerts.take_form_request", kwargs={"request_id": -n})
        for _ in range(2):
            app.send_task("questions.poll_source", args=(-1,))
        waiting = scrape(client)
    finally:
        purge_queues()
    emptied = scrape(client)

    assert value(waiting, "wqa_celery_queue_length", queue="celery") == 3
    assert value(waiting, "wqa_celery_queue_length", queue=settings.POLL_QUEUE) == 2
    assert value(emptied, "wqa_celery_queue_length", queue="celery") == 0
    assert value(emptied, "wqa_celery_queue_length", queue=settings.POLL_QUEUE) == 0


@pytest.mark.django_db
def test_the_queue_lengths_are_read_from_the_file_broker(client, metrics, monkeypatch, tmp_path):
    """`make run`'s broker: messages are files in a folder."""
    options = {"data_folder_in": str(tmp_path), "data_folder_out": str(tmp_path), "control_folder": str(tmp_path),
               "processed_folder": str(tmp_path / "done"), "store_processed": False}
    monkeypatch.setitem(app.conf, "broker_read_url", "filesystem://")
    monkeypatch.setitem(app.conf, "broker_transport_options", options)
    with app.connection_for_write(url="filesystem://") as connection:
        for _ in range(4):
            app.send_task("alerts.take_form_request", kwargs={"request_id": -1}, connection=connection)
        app.send_task("questions.poll_source", args=(-1,), connection=connection)

    scraped = scrape(client)

    assert value(scraped, "wqa_celery_queue_length", queue="celery") == 4
    assert value(scraped, "wqa_celery_queue_length", queue=settings.POLL_QUEUE) == 1


@pytest.mark.django_db
@pytest.mark.parametrize("broker", ["silent", "closed"])
def test_a_broker_that_does_not_answer_leaves_the_queue_lengths_out_and_the_rest_in(client, metrics, monkeypatch,
                                                                                    broker):
    if broker == "silent":
        server = SilentServer()
        url = server.url(0)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            url = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    monkeypatch.setitem(app.conf, "broker_read_url", url)
    monkeypatch.setitem(app.conf, "broker_transport_options", {"socket_connect_timeout": 0.5, "socket_timeout": 0.5})
    try:
        scraped = scrape(client)
    finally:
        if broker == "silent":
            server.stop()

    assert not [name for (name, _) in scraped if name == "wqa_celery_queue_length"]
    assert value(scraped, "wqa_unmatched_events") == 0
    assert value(scraped, "wqa_build_info", version=RELEASE, python=platform.python_version(),
                 django=django.get_version()) == 1


# Request ids.


@pytest.mark.django_db
@pytest.mark.urls(__name__)
def test_each_request_has_an_id_on_its_response_and_its_log_lines(console, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]  # the test client's address: the proxy in front
    client = Client(raise_request_exception=False)

    missing = client.get("/no-such-page/")
    broken = client.get("/test-broken/", HTTP_X_REQUEST_ID="edge-7f3a9c.42:1")
    client_chosen = client.get("/test-quiet/", HTTP_X_REQUEST_ID="edge-7f3a9c.42:1", REMOTE_ADDR="203.0.113.9")
    assert client_chosen["X-Request-ID"] != "edge-7f3a9c.42:1"  # from anyone else, an id of our own
    logging.getLogger("tests").warning("between requests")

    ids = [missing["X-Request-ID"], broken["X-Request-ID"]]
    assert len(ids[0]) == 32 and int(ids[0], 16) >= 0
    # An id the proxy in front gave it is kept, for its own logs to be matched with ours.
    assert ids[1] == "edge-7f3a9c.42:1"
    records = parse_lines(console.getvalue())
    not_found = [r for r in records if r["message"] == "Not Found: /no-such-page/"]
    failed = [r for r in records if r["message"] == "Internal Server Error: /test-broken/"]
    assert [r["request_id"] for r in not_found] == [ids[0]]
    assert [r["request_id"] for r in failed] == [ids[1]] and "this page is broken" in failed[0]["exc_info"]
    # A line written outside any request names none.
    assert "request_id" not in [r for r in records if r["message"] == "between requests"][0]


@pytest.mark.django_db
@pytest.mark.urls(__name__)
@pytest.mark.parametrize("given", ["", "x" * 129, "two words", "tab\there", "é-accented", "a;b", "{\"json\": 1}"])
def test_an_id_unfit_for_the_logs_is_replaced_by_a_new_one(client, given, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    response = client.get("/test-quiet/", HTTP_X_REQUEST_ID=given)
    again = client.get("/test-quiet/", HTTP_X_REQUEST_ID=given)

    assert response["X-Request-ID"] != given
    assert len(response["X-Request-ID"]) == 32 and int(response["X-Request-ID"], 16) >= 0
    assert again["X-Request-ID"] != response["X-Request-ID"]


@pytest.mark.django_db(transaction=True)
def test_a_task_run_in_the_requests_process_logs_under_the_requests_id(client, console, settings):
    """Eager tasks (CELERY_TASK_ALWAYS_EAGER, and these tests) keep the id of the request that ran them."""
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    response = client.post("/alerts/new/", SIGNUP_FORM, HTTP_X_REQUEST_ID="eager-request-1")
    logging.getLogger("tests").warning("after the request")

    assert response.status_code == 302
    records = parse_lines(console.getvalue())
    taken = [r for r in records if r["message"] == "form request taken"]
    assert [r["request_id"] for r in taken] == ["eager-request-1"]
    assert "request_id" not in [r for r in records if r["message"] == "after the request"][0]


class Quiet(Worker):
    """A worker, or beat, started as the project starts them: `celery --quiet`, which leaves out the banners;
    its output goes to a file of its own."""

    def __init__(self, env: dict[str, str], log, *arguments: str, beat: bool = False) -> None:
        super().__init__(env, *arguments, beat=beat)
        self.log = log

    def start(self) -> None:
        if self.beat:
            command = ["beat", "--loglevel=INFO", "--max-interval=1"]
        else:
            command = ["worker", *self.arguments, "-Q", f"celery,{settings.POLL_QUEUE}", "--loglevel=INFO",
                       "--without-heartbeat", "--without-gossip", "--without-mingle"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "--quiet", *command], cwd=ROOT, env=self.env,
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


class GunicornAsDeployed(WebServer):
    """The site under gunicorn with the project's gunicorn settings (access log and all), as the image runs it."""

    def __init__(self, env: dict[str, str], log) -> None:
        super().__init__(env | {"GUNICORN_CMD_ARGS": "--config config/gunicorn.conf.py"}, log)


@pytest.mark.worker
@pytest.mark.postgres
def test_a_requests_id_goes_with_the_task_it_queues_to_the_worker(worker_env, esp, httpserver, esp_path, tmp_path):
    env = mail_worker_env(worker_env, httpserver, esp_path, "https://alerts.example.org") | NOT_AS_ROOT_WARNING | {
        "LOG_FORMAT": "json", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    web = GunicornAsDeployed(env, tmp_path / "gunicorn.log")
    purge_queues()
    worker = Quiet(env, tmp_path / "worker.log")
    try:
        worker.start()
        web.start()
        session = requests.Session()
        page = session.get(web.url + "/alerts/new/", timeout=10)
        token = page.text.split('name="csrfmiddlewaretoken" value="', 1)[1].split('"', 1)[0]
        signup = session.post(web.url + "/alerts/new/", data=SIGNUP_FORM | {"csrfmiddlewaretoken": token},
                              allow_redirects=False, timeout=10)
        request_id = signup.headers["X-Request-ID"]
        wait_until(lambda: emails_sent_to("ada@example.org", esp), timeout=60, message="the confirmation email")
        wait_until(lambda: f'"{request_id}"' in worker.log.read_text() and '"form request taken"' in
                   worker.log.read_text(), timeout=30, message="the worker's lines for the request")
    finally:
        web.stop()
        worker.stop()

    assert signup.status_code == 302 and len(request_id) == 32
    assert page.headers["X-Request-ID"] != request_id
    web_lines = [json.loads(line) for line in (tmp_path / "gunicorn.log").read_text().splitlines()
                 if line.startswith("{")]
    posted = [r for r in web_lines if r["logger"] == "gunicorn.access" and '"POST /alerts/new/ ' in r["message"]]
    assert [r.get("request_id") for r in posted] == [request_id], posted
    records = parse_lines(worker.log.read_text())
    assert not FormRequest.objects.exists() and Subscriber.objects.filter(email="ada@example.org").exists()
    taken = [r for r in records if r["message"] == "form request taken"]
    assert [r["request_id"] for r in taken] == [request_id]
    done = [r for r in records if r["logger"] == "celery.app.trace" and "alerts.take_form_request[" in r["message"]]
    assert [r["request_id"] for r in done] == [request_id]


def emails_sent_to(address: str, esp) -> bool:
    return any(message["To"] == address for message in esp.messages)


@pytest.mark.worker
@pytest.mark.postgres
def test_a_worker_and_beat_write_nothing_but_json_lines_and_beat_is_quiet_at_info(worker_env, tmp_path):
    env = worker_env | NOT_AS_ROOT_WARNING | {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO",
                                              "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    beat_sends_due_emails(every_seconds=1)
    # A send tick with nothing to send logs nothing at INFO (config.celery.QuietTicks): beat's pruning, every
    # second too, is what shows in the worker's log.
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.update_or_create(name="Prune old data", defaults={"task": "alerts.prune",
                                                                          "interval": every_second})
    purge_queues()
    worker, beat = Quiet(env, tmp_path / "worker.log", "--concurrency=2"), Quiet(env, tmp_path / "beat.log", beat=True)

    def prunes_done() -> int:
        return worker.log.read_text().count("alerts.prune[") // 2 if worker.log.exists() else 0

    try:
        worker.start()
        beat.start()
        wait_until(lambda: prunes_done() >= 3, timeout=60, message="three of beat's prunes to be done")
    finally:
        beat.stop()
        worker.stop()

    worker_records = parse_lines(worker.log.read_text())
    beat_records = parse_lines(beat.log.read_text())
    assert worker_records and beat_records
    assert [r["message"] for r in beat_records if r["logger"] == "config.celery"] == ["beat started"]
    assert not [r for r in beat_records if "Sending due task" in r["message"]]
    assert [r for r in worker_records if r["message"] == "worker stopping"]
    # Each task beat started has an id of its own.
    assert not [r for r in worker_records if "alerts.send_due[" in r["message"]]
    done = [r for r in worker_records if r["logger"] == "celery.app.trace" and "alerts.prune[" in r["message"]]
    ids = [r["request_id"] for r in done]
    assert len(ids) >= 3 and len(set(ids)) == len(ids) and all(len(i) == 32 for i in ids)


@pytest.mark.parametrize(("level", "beat_level"), [("INFO", "WARNING"), ("DEBUG", "DEBUG")])
def test_beats_every_tick_is_logged_only_at_debug(tmp_path, level, beat_level):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "LOG_"))}
    env |= {"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings", "LOG_LEVEL": level}
    snippet = "import django, logging; django.setup(); print(logging.getLevelName(" \
              "logging.getLogger('celery.beat').getEffectiveLevel()))"

    done = subprocess.run([sys.executable, "-c", snippet], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == beat_level


# Health checks.


@pytest.mark.django_db
def test_a_failing_health_check_logs_one_line_with_its_name_and_reason(console, monkeypatch):
    Source.objects.create(name="Stale feed", kind=Source.Kind.FEED, url="https://example.org/feed",
                          last_success_at=timezone.now() - dt.timedelta(days=3))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    monkeypatch.setitem(app.conf, "broker_write_url", closed)

    healthy, results = health(["database", "broker", "polling"])
    again, _ = health(["polling"])

    assert (healthy, again) == (False, False)
    assert results == {"database": "ok", "broker": "failing", "polling": "failing"}
    records = parse_lines(console.getvalue())
    failing = [r for r in records if r["message"] == "health check failing"]
    assert [(r["check"], r["level"]) for r in failing] == [("broker", "WARNING"), ("polling", "WARNING"),
                                                           ("polling", "WARNING")]
    assert "Stale feed" in failing[1]["reason"] and "Connection refused" in failing[0]["reason"]
    assert not [r for r in records if "exc_info" in r or "Traceback" in r["message"]]
    # One line each: nothing else was logged about them.
    assert len(records) == 3, records

