"""Is the service working? The database answers, the broker answers, and the sources are being read."""

from __future__ import annotations

import datetime as dt
import logging

from celery import current_app
from django.conf import settings
from django.db import connection
from django.utils import timezone

from questions.models import Source

log = logging.getLogger(__name__)


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def check_broker() -> str:
    # One retry at once: a load balancer must hear back within its own time-out, and a broker that
    # hangs costs each try REDIS_TIMEOUT (see the broker's transport options).
    with current_app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=3)
    return "ok"


def check_polling(now: dt.datetime | None = None) -> str:
    now = now or timezone.now()
    stale = []
    for source in Source.objects.filter(enabled=True):
        allowed = dt.timedelta(minutes=source.poll_interval_minutes * settings.HEALTH_POLL_INTERVALS)
        last = source.last_success_at or source.created_at
        if now - last > allowed:
            stale.append(source.name)
    if stale:
        raise RuntimeError("no successful poll lately: " + ", ".join(stale))
    return "ok"


CHECKS = {"database": check_database, "broker": check_broker, "polling": check_polling}
# What /healthz runs unless asked for others. Apps add checks of their own to CHECKS ("delivery", which
# only runs when asked for: a slow ESP must not take the site out of a load balancer's rotation).
DEFAULT_CHECKS = ["database", "broker", "polling"]


def health(names: list[str] | None = None) -> tuple[bool, dict[str, str]]:
    """Each check's outcome, "ok" or "failing" (the reason goes to the log, not to the public)."""
    results: dict[str, str] = {}
    for name in names or DEFAULT_CHECKS:
        try:
            results[name] = CHECKS[name]()
        except Exception as error:  # noqa: BLE001 - any failure is reported, never raised to the load balancer
            # One line, not a traceback: a load balancer asks every few seconds, and the reason is what an
            # operator needs.
            log.warning("health check failing", extra={"check": name, "error": type(error).__name__,
                                                       "reason": str(error) or type(error).__name__})
            results[name] = "failing"
    return all(value == "ok" for value in results.values()), results
