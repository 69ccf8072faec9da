"""What the environment makes of the settings: the broker and the cache apart, Anymail's typed values."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def settings_from(tmp_path, **env) -> dict:
    code = ("import json; from django.conf import settings as s; print(json.dumps({'broker': s.CELERY_BROKER_URL, "
            "'cache': s.CACHES['default'].get('LOCATION'), 'anymail': s.ANYMAIL}))")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS", "CELERY", "ANYMAIL", "DATABASE"))}
    result = subprocess.run([sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, env=base | {"VAR_DIR": str(tmp_path), **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_cache_takes_the_next_redis_database_after_the_brokers(tmp_path):
    derived = settings_from(tmp_path, REDIS_URL="redis://cache.internal:6379/3")
    apart = settings_from(tmp_path, REDIS_URL="redis://q:6379", REDIS_CACHE_URL="redis://c:6379/0")

    assert (derived["broker"], derived["cache"]) == ("redis://cache.internal:6379/3", "redis://cache.internal:6379/4")
    assert (apart["broker"], apart["cache"]) == ("redis://q:6379", "redis://c:6379/0")


def test_a_broker_in_the_last_redis_database_needs_only_a_cache_of_its_own(tmp_path):
    last = settings_from(tmp_path, REDIS_URL="redis://q:6379/15", REDIS_CACHE_URL="redis://q:6379/14")

    assert (last["broker"], last["cache"]) == ("redis://q:6379/15", "redis://q:6379/14")


def test_anymail_values_that_are_not_text_are_read_as_what_they_are(tmp_path):
    anymail = settings_from(tmp_path, ANYMAIL_REQUESTS_TIMEOUT="5", ANYMAIL_POSTMARK_USE_BULK_API="false",
                            ANYMAIL_POSTMARK_SERVER_TOKEN="123")["anymail"]

    assert anymail == {"REQUESTS_TIMEOUT": 5.0, "POSTMARK_USE_BULK_API": False, "POSTMARK_SERVER_TOKEN": "123"}
    assert settings_from(tmp_path)["anymail"] == {"REQUESTS_TIMEOUT": [10.0, 20.0]}


@pytest.mark.redis
def test_clearing_the_cache_leaves_the_task_queue_alone():
    import redis
    from django.conf import settings
    from django.core.cache import cache

    from config.celery import app

    queue = "test-cache-apart"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(queue)
    app.send_task("alerts.send_due", queue=queue)
    cache.set("some-key", 1)

    cache.clear()

    assert broker.llen(queue) == 1 and cache.get("some-key") is None
    broker.delete(queue)
