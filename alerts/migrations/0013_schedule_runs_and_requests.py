"""Digests are made as runs, one per period, by one entry that also makes the runs a stopped stack missed (the
periods themselves are in `alerts/digests.py`); and form requests the broker lost are taken from the
database."""

from django.db import migrations

OLD = ["alerts.deliver_daily", "alerts.deliver_weekly"]
NEW = [
    ("Start digest runs", "alerts.start_digest_runs"),
    ("Take waiting form requests", "alerts.take_form_requests"),
]


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(task__in=OLD).delete()
    every, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    for name, task in NEW:
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": every})


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task__in=[t for _, t in NEW]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0012_digest_runs_outbox_requests"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(schedule, unschedule)]
