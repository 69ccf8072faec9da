"""Beat's schedules for matching and delivery, editable in the admin (django-celery-beat)."""

from django.conf import settings
from django.db import migrations

SCHEDULES = [
    # name, task, interval in minutes or a crontab (minute, hour, day_of_week)
    ("Match new events", "alerts.match_events", 1, None),
    ("Send stalled emails again", "alerts.resend_stale", 5, None),
    ("Daily digests", "alerts.deliver_daily", None, ("0", str(settings.DIGEST_HOUR), "*")),
    ("Weekly digests", "alerts.deliver_weekly", None, ("0", str(settings.DIGEST_HOUR), "1")),
]


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, minutes, cron in SCHEDULES:
        if minutes:
            every, _ = IntervalSchedule.objects.get_or_create(every=minutes, period="minutes")
            PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": every})
        else:
            minute, hour, day_of_week = cron
            crontab, _ = CrontabSchedule.objects.get_or_create(
                minute=minute, hour=hour, day_of_week=day_of_week, day_of_month="*", month_of_year="*",
                timezone=settings.TIME_ZONE,
            )
            PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "crontab": crontab})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[s[0] for s in SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0001_initial"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(create, remove)]
