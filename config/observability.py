"""What an operator follows the service by, beyond its own events: the id of each web request on every log line
written for it, carried into the tasks it queues; the release that is running; and the broker's queues.

A request's id lives in a context variable, set by `config.middleware.RequestIdMiddleware` for a web request
and by the task signals below for a task, and each log record is given it by `RequestIdFilter`."""

from __future__ import annotations

import logging
import platform
import re
import tomllib
import uuid
from contextvars import ContextVar, Token
from pathlib import Path

import django
from celery import current_app
from celery.signals import before_task_publish, task_postrun, task_prerun
from django.conf import settings
from django.core.signals import request_finished
from kombu.exceptions import ChannelError
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

# The one place the release is named: pyproject.toml, read once as each process starts.
VERSION = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]["version"]

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
# The header a request's id arrives and leaves in, and the task message header that carries it to a worker.
HEADER = "X-Request-ID"
TASK_HEADER = "request_id"
# What a proxy or client may name a request by (a UUID, nginx's $request_id, a cloud load balancer's trace id);
# anything else, or nothing, and the request is given an id of its own.
GIVEN_ID = re.compile(r"[A-Za-z0-9._:+=/-]{1,128}")


def new_request_id() -> str:
    return uuid.uuid4().hex


def start_request(given: str) -> str:
    """The id of the request beginning in this context: the one it came with, if it is fit to log."""
    request_id = given if GIVEN_ID.fullmatch(given) else new_request_id()
    REQUEST_ID.set(request_id)
    return request_id


def end_request(**kwargs) -> None:
    # Once the response is closed: the server's access log line for the request, written before that, has its id.
    REQUEST_ID.set(None)


request_finished.connect(end_request, dispatch_uid="config.observability.end_request")


class RequestIdFilter(logging.Filter):
    """Gives each record the id of the request or task it was written for, as the field `request_id`; a line
    written outside any has none."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = REQUEST_ID.get()
        if request_id is not None:
            record.request_id = request_id
        return True


@before_task_publish.connect(dispatch_uid="config.observability.carry_request_id")
def carry_request_id(headers: dict | None = None, **kwargs) -> None:
    """A task queued while handling a request (or running a task) carries that request's id."""
    request_id = REQUEST_ID.get()
    if request_id is not None and headers is not None:
        headers.setdefault(TASK_HEADER, request_id)


_running: dict[str, Token] = {}


@task_prerun.connect(dispatch_uid="config.observability.take_request_id")
def take_request_id(task_id: str, task, **kwargs) -> None:
    # A task beat started has no request behind it, and is given an id of its own. One run in the queuing
    # process (eagerly) keeps the id it was run under.
    request_id = task.request.get(TASK_HEADER) or REQUEST_ID.get() or new_request_id()
    _running[task_id] = REQUEST_ID.set(request_id)


@task_postrun.connect(dispatch_uid="config.observability.drop_request_id")
def drop_request_id(task_id: str, **kwargs) -> None:
    token = _running.pop(task_id, None)
    if token is None:
        return
    try:
        REQUEST_ID.reset(token)
    except ValueError:  # set in another context: nothing of this task's is left to log under its id
        REQUEST_ID.set(None)


class BuildInfoCollector:
    """Which release, on which Python and Django, answers the scrape."""

    def collect(self):
        info = GaugeMetricFamily("wqa_build_info", "Always 1; its labels name the release running and what it runs "
                                 "on.", labels=["version", "python", "django"])
        info.add_metric([VERSION, platform.python_version(), django.get_version()], 1)
        yield info


def routed_queues() -> list[str]:
    """The broker's queues this app sends tasks to: the default one and each named in CELERY_TASK_ROUTES."""
    queues = {current_app.conf.task_default_queue}
    queues.update(route["queue"] for route in settings.CELERY_TASK_ROUTES.values() if route.get("queue"))
    return sorted(queues)


def queue_lengths() -> dict[str, int]:
    """Messages waiting in each queue, as the broker says. Redis is tried once, each call waiting at most
    REDIS_TIMEOUT (the broker's time-outs): one that does not answer costs a scrape about that long, and raises."""
    with current_app.connection_for_read() as connection:
        connection.ensure_connection(max_retries=0)
        channel = connection.default_channel
        lengths = {}
        for queue in routed_queues():
            try:
                lengths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except ChannelError:  # Redis keeps no empty list: a queue with nothing waiting does not exist
                lengths[queue] = 0
        return lengths


class BrokerCollector:
    """The length of each queue at the broker, read at each scrape; left out when the broker does not answer
    (its health is /healthz's to say, and the scrape goes on without it)."""

    def collect(self):
        try:
            lengths = queue_lengths()
        except Exception as error:  # noqa: BLE001 - the rest of the page matters more than this gauge
            log.debug("queue lengths not read", extra={"error": f"{type(error).__name__}: {error}"})
            return
        gauge = GaugeMetricFamily("wqa_celery_queue_length", "Tasks waiting at the broker, by queue.",
                                  labels=["queue"])
        for queue, length in lengths.items():
            gauge.add_metric([queue], length)
        yield gauge
