"""What beat runs, and how often: the one list of its entries.

Beat reads its schedule from django-celery-beat's tables, where an operator can change an entry in the
admin (its interval, or turning it off). `sync` writes this list there after every `migrate`: an entry
missing from the tables is created as declared here, and an entry already there is left as it is, so an
operator's change outlives upgrades. To stop an entry, turn it off in the admin: one deleted comes back at
the next `migrate`. The data migrations that made the first entries are history; this list is what runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from django.apps import apps as installed_apps
from django.conf import settings
from django.utils import timezone


@dataclass(frozen=True)
class Entry:
    name: str
    task: str
    every: int
    period: str  # "seconds", "minutes" or "hours", as django-celery-beat's IntervalSchedule has them
    # A run still queued this long after beat sent it is dropped: the next one does the same work.
    expire_seconds: int | None = None

    @property
    def seconds(self) -> int:
        return self.every * {"seconds": 1, "minutes": 60, "hours": 3600}[self.period]


def entries() -> list[Entry]:
    return [
        # Each source is polled as often as its own interval (in the admin) says; beat looks for one due.
        Entry("Poll sources", "questions.poll_sources", 1, "minutes"),
        # A safety net: a poll that stored events queues matching itself.
        Entry("Match new events", "alerts.match_events", 1, "minutes"),
        Entry("Send immediate alerts", "alerts.deliver_immediate", 1, "minutes"),
        # What has fallen due, or was left by a sender that stopped: the most an email waits for a sender.
        Entry("Send due emails", "alerts.send_due", 10, "seconds", expire_seconds=60),
        Entry("Start digest runs", "alerts.start_digest_runs", 1, "minutes"),
        # Signups, follows and link requests whose task the broker lost.
        Entry("Take waiting form requests", "alerts.take_form_requests", 1, "minutes"),
        # A question's due date passing unanswered: told to its followers once, within the hour.
        Entry("Record overdue questions", "questions.record_overdue", 1, "hours", expire_seconds=3600),
        Entry("Retire settled follows", "alerts.retire_follows", 1, "hours", expire_seconds=3600),
        Entry("Prune old data", "alerts.prune", 1, "hours", expire_seconds=3600),
        # Does nothing until CANARY_EMAIL is set.
        Entry("End-to-end canary", "alerts.canary", settings.CANARY_INTERVAL_MINUTES, "minutes",
              expire_seconds=settings.CANARY_INTERVAL_MINUTES * 60),
    ]


def ticks() -> frozenset[str]:
    """The tasks beat sends every minute or more often, whether or not there is anything to do: a worker logs
    them at INFO only when they did something (config.celery.QuietTicks)."""
    return frozenset(entry.task for entry in entries() if entry.seconds <= 60)


def sync(models=installed_apps, using: str = "default", only: Iterable[str] | None = None) -> list[str]:
    """Create the declared entries missing from beat's tables (those named in `only`, if given); return
    their names. `models` is an app registry: a migration's state during `migrate`, or the installed apps."""
    interval_model = models.get_model("django_celery_beat", "IntervalSchedule")
    task_model = models.get_model("django_celery_beat", "PeriodicTask")
    wanted = set(only) if only is not None else None
    created = []
    for entry in entries():
        if wanted is not None and entry.name not in wanted:
            continue
        if task_model.objects.using(using).filter(name=entry.name).exists():
            continue
        interval, _ = interval_model.objects.using(using).get_or_create(every=entry.every, period=entry.period)
        task_model.objects.using(using).create(name=entry.name, task=entry.task, interval=interval,
                                               expire_seconds=entry.expire_seconds)
        created.append(entry.name)
    if created:
        # Beat reloads its schedule only when told that it changed.
        models.get_model("django_celery_beat", "PeriodicTasks").objects.using(using).update_or_create(
            ident=1, defaults={"last_update": timezone.now()})
    return created


def sync_after_migrate(sender, using: str = "default", apps=installed_apps, **kwargs) -> None:
    # `flush` (a test emptying its database) sends the same signal without a plan: that is no upgrade.
    if "plan" not in kwargs:
        return
    try:
        apps.get_model("django_celery_beat", "PeriodicTask")
    except LookupError:
        return  # migrated back to before beat's tables
    sync(apps, using)
