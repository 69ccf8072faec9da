"""Logs as an operator's log pipeline reads them: one JSON object per line, each event's ids and counts as
fields of their own, from the web process's configuration, from a management command and from a worker."""

from __future__ import annotations

import copy
import io
import logging
import logging.config
import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.utils import timezone

from alerts.models import Delivery
from questions.models import Source
from tests.conftest import ROOT, Worker, parse_lines, purge_queues, serve_postmark, wait_until
from tests.esp_stub import PostmarkStub
from tests.factories import real_record, subscribe

SOURCE_NAME = "Parliament Written Questions API"
def the(records: list[dict], message: str, **fields) -> dict:
    """The one record with this message (and these field values)."""
    found = [r for r in records if r["message"] == message and all(r.get(k) == v for k, v in fields.items())]
    alike = [r for r in records if r["message"] == message]
    assert len(found) == 1, f"{len(found)} records {message!r} with {fields}; with that message: {alike}"
    return found[0]


def official_source(url: str) -> Source:
    """The source the migration adds, pointed at the local stand-in; polled before, so what it brings is news."""
    source, _ = Source.objects.update_or_create(
        name=SOURCE_NAME, defaults={"kind": Source.Kind.PARLIAMENT_API, "url": url, "enabled": True,
                                    "last_success_at": timezone.now(), "last_polled_at": None})
    return source


@pytest.fixture
def json_log():
    """What the root logger writes, through the formatter LOG_FORMAT=json configures."""
    formatter = logging.config.DictConfigurator({}).configure_formatter(
        copy.deepcopy(settings.LOGGING["formatters"]["json"]))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_json_is_the_console_format_unless_plain_is_asked_for():
    assert settings.LOGGING["handlers"]["console"]["formatter"] == (
        "plain" if os.environ.get("LOG_FORMAT") == "plain" else "json")
    assert settings.LOGGING["root"]["handlers"] == ["console"]


@pytest.mark.django_db(transaction=True)
def test_a_pipeline_run_logs_one_json_object_a_line_with_its_ids_and_counts(api, postmark, httpserver, json_log,
                                                                           monkeypatch):
    from questions import polling
    from questions.tasks import poll_sources_task

    source = official_source(httpserver.url_for("/"))
    ada = subscribe("ada@example.org", "apprenticeships")
    bo = subscribe("bo@example.org", "apprenticeships")
    postmark.inactive = {"bo@example.org"}
    api.put(real_record(1000))

    poll_sources_task.delay()

    def crash(*args, **kwargs):
        raise RuntimeError("the parser met\nsomething new")

    monkeypatch.setattr(polling, "poll_source", crash)
    polling.poll_safely(source)

    records = parse_lines(json_log.getvalue())
    polled = the(records, "source polled", source=SOURCE_NAME)
    assert polled["logger"] == "questions.polling" and polled["level"] == "INFO"
    assert polled["source_id"] == source.pk
    assert (polled["new"], polled["updated"], polled["events"], polled["problems"], polled["error"]) == (1, 0, 2, 0, "")
    assert isinstance(polled["requests"], int) and polled["requests"] >= 2

    matched = the(records, "events matched")
    assert (matched["events"], matched["matches"]) == (2, 4)

    created = the(records, "deliveries created")
    assert (created["kind"], created["emails"], created["matches"]) == ("immediate", 2, 4)

    to_ada = Delivery.objects.get(subscriber=ada.subscriber)
    to_bo = Delivery.objects.get(subscriber=bo.subscriber)
    assert (to_ada.status, to_bo.status) == ("sent", "rejected")
    sent = the(records, "emails sent")
    assert sorted(sent["deliveries"]) == sorted([to_ada.pk, to_bo.pk])
    assert (sent["sent"], sent["retry"], sent["rejected"], sent["failed"]) == (1, 0, 1, 0)

    # One line for the round, with counts by outcome and error class, not one per email.
    refused = the(records, "emails not sent")
    assert refused["level"] == "WARNING" and refused["deliveries"] == [to_bo.pk]
    assert refused["errors"] == {"rejected rejected": 1}  # outcome and class: the address, for good
    assert "inactive" in Delivery.objects.get(pk=to_bo.pk).error

    # A traceback, and a message with a line break in it, stay inside the one record.
    crashed = the(records, "source poll crashed")
    assert crashed["level"] == "ERROR" and crashed["source"] == SOURCE_NAME and crashed["source_id"] == source.pk
    assert "Traceback" in crashed["exc_info"] and "RuntimeError: the parser met\nsomething new" in crashed["exc_info"]


SNIPPET = """
import django, logging
django.setup()
logging.getLogger("questions.polling").info(
    "source polled", extra={"source": "Parliament Written Questions API", "source_id": 7, "requests": 3,
                            "new": 1, "updated": 0, "events": 2, "problems": 0, "error": ""})
logging.getLogger("alerts.delivery").warning(
    "email not sent", extra={"delivery": 5, "subscriber": 9, "status": "rejected", "attempts": 1,
                             "error": "Inactive recipient: Ynys Môn – “quoted”"})
"""


@pytest.mark.parametrize("log_format", [None, "json"])
def test_a_process_started_with_the_default_or_json_format_writes_json_to_stderr(tmp_path, log_format):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "LOG_FORMAT"))}
    env |= {"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings", "PYTHONIOENCODING": "utf-8"}
    if log_format:
        env["LOG_FORMAT"] = log_format

    done = subprocess.run([sys.executable, "-c", SNIPPET], cwd=ROOT, env=env, capture_output=True, timeout=60)

    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert done.stdout == b""
    records = parse_lines(done.stderr.decode("utf-8"))
    polled = the(records, "source polled")
    assert polled["source"] == SOURCE_NAME and polled["logger"] == "questions.polling"
    assert (polled["source_id"], polled["requests"], polled["new"], polled["events"]) == (7, 3, 1, 2)
    refused = the(records, "email not sent")
    assert refused["level"] == "WARNING" and refused["error"] == "Inactive recipient: Ynys Môn – “quoted”"


def test_plain_is_one_readable_line_a_record(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS"))}
    env |= {"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings", "LOG_FORMAT": "plain"}

    done = subprocess.run([sys.executable, "-c", SNIPPET], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60, encoding="utf-8")

    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(" INFO questions.polling source polled")
    assert lines[1].endswith(" WARNING alerts.delivery email not sent")


class StreamsApart(Worker):
    """A worker whose stderr (where its logs go) is kept apart from its stdout (Celery's start-up banner)."""

    def __init__(self, env: dict[str, str], folder) -> None:
        super().__init__(env)
        self.out, self.err = folder / "worker.out", folder / "worker.err"

    def start(self) -> None:
        command = ["worker", *self.arguments, "-Q", f"celery,{settings.POLL_QUEUE}", "--loglevel=INFO",
                   "--without-heartbeat", "--without-gossip", "--without-mingle"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *command], cwd=ROOT, env=self.env,
            stdout=self.out.open("ab"), stderr=self.err.open("ab"), start_new_session=True,
        )


@pytest.mark.worker
@pytest.mark.postgres
def test_a_worker_logs_the_whole_pipeline_as_json_on_stderr(worker_env, api, httpserver, esp_path, tmp_path):
    from config.celery import app

    esp = PostmarkStub()
    serve_postmark(httpserver, esp_path, esp)
    env = {k: v for k, v in worker_env.items() if k != "LOG_FORMAT"} | {
        "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend", "ANYMAIL_POSTMARK_SERVER_TOKEN": "test",
        "ANYMAIL_POSTMARK_API_URL": httpserver.url_for(esp_path), "SITE_URL": "https://alerts.example.org",
        "SOURCE_BACKOFF_SECONDS": "0.05", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
        # Celery warns a worker run as root before any logging is set up; the tests may run as root.
        "PYTHONWARNINGS": "ignore:You're running the worker with superuser privileges",
    }
    source = official_source(httpserver.url_for("/"))
    ada = subscribe("ada@example.org", "apprenticeships")
    api.put(real_record(1000))
    purge_queues()
    worker = StreamsApart(env, tmp_path)
    try:
        worker.start()
        app.send_task("questions.poll_sources")
        wait_until(lambda: '"emails sent"' in worker.err.read_text(encoding="utf-8"), timeout=90,
                   message="the worker to log the email sent")
    finally:
        worker.stop()

    records = parse_lines(worker.err.read_text(encoding="utf-8"))
    delivery = Delivery.objects.get(subscriber=ada.subscriber)
    assert delivery.status == "sent" and [m["To"] for m in esp.messages] == ["ada@example.org"]
    polled = the(records, "source polled")
    assert polled["source"] == SOURCE_NAME and polled["source_id"] == source.pk
    assert (polled["new"], polled["events"], polled["error"]) == (1, 2, "")
    matched = the(records, "events matched")
    assert (matched["events"], matched["matches"]) == (2, 2)
    created = the(records, "deliveries created")
    assert (created["kind"], created["emails"], created["matches"]) == ("immediate", 1, 2)
    sent = the(records, "emails sent")
    assert sent["deliveries"] == [delivery.pk] and sent["sent"] == 1
    # Celery's own lines go the same way.
    loggers = {r["logger"] for r in records}
    assert {"celery.worker.strategy", "celery.app.trace", "celery.apps.worker"} <= loggers, loggers
    succeeded = [r for r in records if r["logger"] == "celery.app.trace" and "questions.poll_source[" in r["message"]]
    assert len(succeeded) == 1 and SOURCE_NAME in succeeded[0]["message"]
