"""Is the service working? The database answers, the broker answers, and the sources are being read."""

from __future__ import annotations

import datetime as dt

from django.conf import settings
from django.db import connection
from django.utils import timezone

from questions.models import Source


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return "ok"


def check_broker() -> str:
    from config.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=3)
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


def health() -> tuple[bool, dict[str, str]]:
    results: dict[str, str] = {}
    for name, check in (("database", check_database), ("broker", check_broker), ("polling", check_polling)):
        try:
            results[name] = check()
        except Exception as exc:  # noqa: BLE001 - any failure is reported, never raised to the load balancer
            results[name] = f"failing: {type(exc).__name__}: {exc}"[:300]
    return all(value == "ok" for value in results.values()), results
