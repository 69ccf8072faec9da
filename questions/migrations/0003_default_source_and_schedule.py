"""The official API as the first source, and beat's poll every five minutes, both editable in the admin."""

from django.conf import settings
from django.db import migrations


def create(apps, schema_editor):
    Source = apps.get_model("questions", "Source")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    Source.objects.get_or_create(
        name="Parliament Written Questions API",
        defaults={"kind": "api", "url": settings.PARLIAMENT_API_URL, "poll_interval_minutes": 5},
    )
    every, _ = IntervalSchedule.objects.get_or_create(every=settings.POLL_INTERVAL_MINUTES, period="minutes")
    PeriodicTask.objects.get_or_create(
        name="Poll sources", defaults={"task": "questions.poll_sources", "interval": every}
    )


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name="Poll sources").delete()


class Migration(migrations.Migration):
    dependencies = [("questions", "0002_trigram_indexes"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(create, remove)]
