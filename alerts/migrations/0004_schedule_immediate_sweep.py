"""Immediate alerts also go out on a schedule, so that matches a match run could not hand on (a worker
lost after its commit, a delivery error) are sent within a minute rather than never."""

from django.db import migrations


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(name="Send immediate alerts", defaults={
        "task": "alerts.deliver_immediate", "interval": every})


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name="Send immediate alerts").delete()


class Migration(migrations.Migration):
    dependencies = [("alerts", "0003_delivery_claimed_at")]
    operations = [migrations.RunPython(create, remove)]
