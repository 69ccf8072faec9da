"""The digests go out at 07:00 London wall-clock time on both sides of the 2026 UK clock changes
(BST from 29 March 01:00 UTC to 25 October 01:00 UTC), so 06:00 UTC in summer and 07:00 UTC in winter."""

import datetime as dt
import importlib
from zoneinfo import ZoneInfo

import pytest

pytestmark = pytest.mark.django_db

LONDON = ZoneInfo("Europe/London")
UTC = dt.UTC
HALF_MINUTE = dt.timedelta(seconds=30)


@pytest.fixture
def schedules():
    from django.apps import apps
    from django.db import connection
    from django_celery_beat.models import PeriodicTask

    # As the migration makes them: an earlier test that emptied the tables removed its rows.
    importlib.import_module("alerts.migrations.0002_schedules").create(apps, connection.schema_editor())
    tasks = ("alerts.deliver_daily", "alerts.deliver_weekly")
    return {task: PeriodicTask.objects.get(task=task).schedule for task in tasks}


def due(schedule, last_run: dt.datetime, now: dt.datetime) -> bool:
    schedule.nowfun = lambda: now
    return schedule.is_due(last_run).is_due


def seven_in_london(day: dt.date, second: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(7, 0, second), tzinfo=LONDON)


# The UTC hours are written out rather than derived, so that the zone itself is under test.
@pytest.mark.parametrize("day, utc_hour", [
    (dt.date(2026, 3, 28), 7),  # Saturday, GMT
    (dt.date(2026, 3, 29), 6),  # Sunday, BST since 01:00 UTC
    (dt.date(2026, 3, 30), 6),
    (dt.date(2026, 10, 24), 6),  # Saturday, BST
    (dt.date(2026, 10, 25), 7),  # Sunday, GMT since 01:00 UTC
    (dt.date(2026, 10, 26), 7),
])
def test_the_daily_digest_fires_at_seven_london_time_across_the_clock_changes(schedules, day, utc_hour):
    daily = schedules["alerts.deliver_daily"]
    fire = dt.datetime.combine(day, dt.time(utc_hour), tzinfo=UTC)
    assert fire == seven_in_london(day)
    yesterday = seven_in_london(day - dt.timedelta(days=1), second=10)

    daily.nowfun = lambda: fire - HALF_MINUTE
    assert daily.remaining_estimate(yesterday) == HALF_MINUTE
    # A schedule an hour ahead (BST kept in winter) would fire here.
    assert not due(daily, yesterday, fire - dt.timedelta(hours=1) + HALF_MINUTE)
    assert not due(daily, yesterday, fire - HALF_MINUTE)
    assert due(daily, yesterday, fire + HALF_MINUTE)
    # Having run, it must not run again an hour later, as one an hour behind (UTC in summer) would.
    assert not due(daily, fire + dt.timedelta(seconds=10), fire + dt.timedelta(hours=1) + HALF_MINUTE)


@pytest.mark.parametrize("monday, utc_hour", [(dt.date(2026, 3, 30), 6), (dt.date(2026, 10, 26), 7)])
def test_the_weekly_digest_fires_on_monday_at_seven_london_time_after_each_clock_change(schedules, monday,
                                                                                        utc_hour):
    weekly = schedules["alerts.deliver_weekly"]
    fire = dt.datetime.combine(monday, dt.time(utc_hour), tzinfo=UTC)
    assert fire == seven_in_london(monday)
    # Last week's run was at the other offset.
    last_week = seven_in_london(monday - dt.timedelta(days=7), second=10)

    assert not due(weekly, last_week, fire - HALF_MINUTE)
    assert due(weekly, last_week, fire + HALF_MINUTE)
    assert not due(weekly, fire + dt.timedelta(seconds=10), fire + dt.timedelta(days=1, seconds=30))
