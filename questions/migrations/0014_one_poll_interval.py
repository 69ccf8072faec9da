"""One knob for how often a source is polled: its own interval. Beat's "Poll sources" used to run every
POLL_INTERVAL_MINUTES, which also bounded every source; it now looks every minute. So that no source is
polled more often than it was, each takes the longer of its interval and the tick it had."""

from django.db import migrations, models
from django.utils import timezone

import questions.models

DJANGO_CELERY_BEAT = ("django_celery_beat", "0019_alter_periodictasks_options")


def look_every_minute(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    Source = apps.get_model("questions", "Source")
    task = PeriodicTask.objects.filter(name="Poll sources").select_related("interval").first()
    if task is None or task.interval is None:
        return
    seconds = task.interval.every * {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}.get(
        task.interval.period, 60)
    if seconds <= 60:
        return
    minutes = -(-seconds // 60)
    Source.objects.filter(poll_interval_minutes__lt=minutes).update(poll_interval_minutes=minutes)
    task.interval, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    task.save(update_fields=["interval"])
    apps.get_model("django_celery_beat", "PeriodicTasks").objects.update_or_create(
        ident=1, defaults={"last_update": timezone.now()})


class Migration(migrations.Migration):

    dependencies = [
        ("questions", "0013_correction_answer_before"),
        DJANGO_CELERY_BEAT,
    ]

    operations = [
        migrations.AlterField(
            model_name="source",
            name="poll_interval_minutes",
            field=models.PositiveIntegerField(default=questions.models.default_poll_interval),
        ),
        migrations.RunPython(look_every_minute, migrations.RunPython.noop),
    ]
