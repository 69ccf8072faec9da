"""Beat's schedule is the list in config/schedule.py: `migrate` makes every entry of it, brings back one that
was deleted, and keeps what an operator changed."""

from __future__ import annotations

import pytest
from celery import current_app
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config.schedule import entries


def schedule_rows() -> dict[str, tuple]:
    return {task.name: (task.task, task.interval.every, task.interval.period, task.expire_seconds, task.enabled)
            for task in PeriodicTask.objects.select_related("interval")}


def declared() -> dict[str, tuple]:
    return {e.name: (e.task, e.every, e.period, e.expire_seconds, True) for e in entries()}


@pytest.mark.django_db
def test_a_migrated_database_runs_exactly_the_declared_schedule():
    # The shipped data migrations made these rows first: they must agree with the list, entry for entry.
    assert schedule_rows() == declared()


def test_every_declared_task_is_one_a_worker_knows():
    import alerts.tasks  # noqa: F401
    import questions.tasks  # noqa: F401

    assert {e.task for e in entries()} <= set(current_app.tasks)


@pytest.mark.django_db(transaction=True)
def test_migrate_brings_back_a_deleted_entry_and_keeps_the_operators_changes():
    call_command("migrate", verbosity=0)  # the test database as the migrations left it, flushes aside
    PeriodicTask.objects.filter(name="Prune old data").delete()
    PeriodicTask.objects.filter(name="End-to-end canary").update(enabled=False)
    seven, _ = IntervalSchedule.objects.get_or_create(every=7, period="minutes")
    PeriodicTask.objects.filter(name="Poll sources").update(interval=seven)

    call_command("migrate", verbosity=0)

    rows = schedule_rows()
    assert rows["Prune old data"] == declared()["Prune old data"]
    assert rows["End-to-end canary"][-1] is False
    assert rows["Poll sources"][1] == 7
    # Every other entry as declared: the edit was that entry's alone.
    assert {name: row for name, row in rows.items() if name not in ("Poll sources", "End-to-end canary")} == {
        name: row for name, row in declared().items() if name not in ("Poll sources", "End-to-end canary")}
    assert set(rows) == set(declared())


@pytest.mark.django_db
def test_the_upgrade_to_one_poll_interval_polls_no_source_more_often_than_before():
    import importlib

    from django.apps import apps
    from django_celery_beat.models import IntervalSchedule

    from questions.models import Source

    upgrade = importlib.import_module("questions.migrations.0014_one_poll_interval").look_every_minute
    ten, _ = IntervalSchedule.objects.get_or_create(every=10, period="minutes")
    PeriodicTask.objects.filter(name="Poll sources").update(interval=ten)  # the tick an operator had set
    often = Source.objects.create(name="often", kind="feed", url="https://example.org/a", poll_interval_minutes=5)
    seldom = Source.objects.create(name="seldom", kind="feed", url="https://example.org/b", poll_interval_minutes=60)
    between = Source.objects.create(name="between", kind="feed", url="https://example.org/d", poll_interval_minutes=15)

    upgrade(apps, None)

    often.refresh_from_db()
    seldom.refresh_from_db()
    between.refresh_from_db()
    # Each as often as it really was: at the first ten-minute tick after its interval had passed.
    assert (often.poll_interval_minutes, seldom.poll_interval_minutes, between.poll_interval_minutes) == (10, 60, 20)
    assert schedule_rows()["Poll sources"] == declared()["Poll sources"]


def test_a_new_source_is_polled_as_often_as_the_setting_says(settings):
    from questions.models import Source

    settings.POLL_INTERVAL_MINUTES = 15
    assert Source(name="new", kind="feed", url="https://example.org/c").poll_interval_minutes == 15
