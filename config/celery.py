import logging
import os

from celery import Celery
from celery.signals import beat_init, worker_ready, worker_shutdown

import config.observability  # noqa: F401 - its task signals carry a web request's id into the tasks it queues

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("wqalerts")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

log = logging.getLogger(__name__)


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
