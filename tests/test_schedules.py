"""The digests' periods end at 07:00 London wall-clock time on both sides of the 2026 UK clock changes (BST
from 29 March 01:00 UTC to 25 October 01:00 UTC), so at 06:00 UTC in summer and 07:00 UTC in winter; and one
entry of beat's schedule starts every digest run."""

import datetime as dt
import importlib

import pytest

from alerts import digests

pytestmark = pytest.mark.django_db

UTC = dt.UTC
HALF_MINUTE = dt.timedelta(seconds=30)


# The UTC hours are written out rather than derived, so that the zone itself is under test.
@pytest.mark.parametrize("day, utc_hour", [
    (dt.date(2026, 3, 28), 7),  # Saturday, GMT
    (dt.date(2026, 3, 29), 6),  # Sunday, BST since 01:00 UTC
    (dt.date(2026, 3, 30), 6),
    (dt.date(2026, 10, 24), 6),  # Saturday, BST
    (dt.date(2026, 10, 25), 7),  # Sunday, GMT since 01:00 UTC
    (dt.date(2026, 10, 26), 7),
])
def test_each_daily_period_ends_at_seven_london_time_across_the_clock_changes(day, utc_hour):
    end = dt.datetime.combine(day, dt.time(utc_hour), tzinfo=UTC)
    assert digests.last_end("daily", end) == end
    # Half a minute before, the period ending then has not ended: the last one ended the day before.
    before = digests.last_end("daily", end - HALF_MINUTE)
    assert before == digests.end_before("daily", end) and end - before in (dt.timedelta(hours=h) for h in (23, 24, 25))
    # An hour out either way (BST kept in winter, UTC in summer) would end a period here.
    assert digests.last_end("daily", end + dt.timedelta(hours=1) - HALF_MINUTE) == end


@pytest.mark.parametrize("monday, utc_hour", [(dt.date(2026, 3, 30), 6), (dt.date(2026, 10, 26), 7)])
def test_each_weekly_period_ends_on_monday_at_seven_london_time_after_each_clock_change(monday, utc_hour):
    end = dt.datetime.combine(monday, dt.time(utc_hour), tzinfo=UTC)
    assert digests.last_end("weekly", end) == end
    assert digests.last_end("weekly", end + dt.timedelta(days=6, hours=23)) == end
    # Last week's ended at the other offset.
    assert end - digests.end_before("weekly", end) == dt.timedelta(days=7, hours=1 if utc_hour == 7 else -1)


def test_one_entry_of_beats_schedule_starts_every_digest_run():
    from django.apps import apps
    from django.db import connection
    from django_celery_beat.models import PeriodicTask

    # As the migration makes it: an earlier test that emptied the tables removed its rows.
    importlib.import_module("alerts.migrations.0013_schedule_runs_and_requests").schedule(
        apps, connection.schema_editor())
    entry = PeriodicTask.objects.get(task="alerts.start_digest_runs")
    assert entry.name == "Start digest runs" and entry.interval.every == 1 and entry.interval.period == "minutes"
    assert not PeriodicTask.objects.filter(task__in=["alerts.deliver_daily", "alerts.deliver_weekly"]).exists()
