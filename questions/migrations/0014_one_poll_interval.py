"""One knob for how often a source is polled: its own interval. Beat's "Poll sources" used to run every
POLL_INTERVAL_MINUTES, which also bounded every source; it now looks every minute. So that no source is
polled more often than it was, each takes the time it was really polled every: its interval rounded up to
a whole number of the ticks it had."""

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
    tick = -(-seconds // 60)
    # A source was polled at the first tick after its interval had passed: a whole number of ticks.
    for source in Source.objects.all():
        polled_every = -(-max(source.poll_interval_minutes, 1) // tick) * tick
        if polled_every != source.poll_interval_minutes:
            Source.objects.filter(pk=source.pk).update(poll_interval_minutes=polled_every)
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
