import functools
import logging
import os
import threading

from celery import Celery
from celery.app import trace
from celery.signals import beat_init, task_success, worker_ready, worker_shutdown

import config.observability  # noqa: F401 - its task signals carry a web request's id into the tasks it queues
from config.schedule import ticks

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("wqalerts")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

log = logging.getLogger(__name__)
# Read once the settings are: what beat sends every minute or more often (config/schedule.py).
_ticks = functools.cache(ticks)


@worker_ready.connect(dispatch_uid="config.celery.stop_quietly")
def stop_quietly(sender, **kwargs) -> None:
    """Told to stop, a worker writes "worker: Warm shutdown" to stdout, around logging and in no log format
    (its start-up banner is left out by `celery --quiet`). With JSON logs its handler is put back without
    that line, and the stop is logged instead."""
    from celery.apps.worker import install_worker_term_handler
    from django.conf import settings

    if settings.LOG_FORMAT != "plain":
        install_worker_term_handler(sender.controller, verbose=False)


@worker_shutdown.connect(dispatch_uid="config.celery.log_stop")
def log_stop(sender, **kwargs) -> None:
    log.info("worker stopping", extra={"worker": sender.hostname})


@beat_init.connect(dispatch_uid="config.celery.log_beat_start")
def log_beat_start(sender, **kwargs) -> None:
    # Beat's own lines wait for LOG_LEVEL=DEBUG (see LOGGING): this one says it is up.
    log.info("beat started", extra={"max_interval": sender.max_interval})


_last_idle_tick = threading.local()


def did_nothing(result) -> bool:
    """Whether a tick's result says it found nothing to do: nothing, none, or counts that are all nought."""
    if isinstance(result, dict):
        return not any(result.values())
    return not result


@task_success.connect(dispatch_uid="config.celery.note_idle_tick")
def note_idle_tick(sender, result=None, **kwargs) -> None:
    # Sent just before the worker logs the task's success, in the same thread.
    _last_idle_tick.task_id = sender.request.id if sender.name in _ticks() and did_nothing(result) else None


class QuietTicks(logging.Filter):
    """A tick that finds nothing to do logs nothing at INFO: the worker's line saying it received a tick (written
    before anyone knows whether there is work) and, when it did nothing, the one saying it succeeded are DEBUG
    lines. A tick that did something says so at INFO, with what it did; failures and retries are untouched."""

    def filter(self, record: logging.LogRecord) -> bool:
        data = getattr(record, "data", None)
        if record.levelno != logging.INFO or not isinstance(data, dict) or data.get("name") not in _ticks():
            return True
        idle = record.msg == trace.LOG_RECEIVED or (
            record.msg == trace.LOG_SUCCESS and data.get("id") == getattr(_last_idle_tick, "task_id", None))
        if not idle:
            return True
        record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
