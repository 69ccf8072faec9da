"""Celery tasks: thin shells around `questions.polling` and `questions.overdue`."""

from celery import current_app, shared_task
from django.conf import settings
from django.utils import timezone

from questions.models import Source
from questions.overdue import known_day, record_overdue
from questions.polling import PollReport, poll_safely, sources_to_poll


def _match_new_events() -> None:
    # By name, so that the archive does not depend on the alerts app that consumes its events.
    current_app.tasks["alerts.match_events"].delay()


def _match_if_new(reports: list[PollReport]) -> None:
    if any(report.landed and report.landed.events for report in reports):
        _match_new_events()


@shared_task(name="questions.poll_sources")
def poll_sources_task(name: str | None = None) -> list[int]:
    """Each source due a poll gets a task of its own: a slow source never delays another."""
    due = sources_to_poll(name, only_due=name is None)
    for source in due:
        # A poll not started by the time the next is due is dropped: polls never pile up behind a stuck one.
        poll_source_task.apply_async((source.pk,), expires=max(60, source.poll_interval_minutes * 60))
    return [source.pk for source in due]


# The client keeps each response and the whole poll to their budgets; this is the backstop for what it
# cannot see (a server dripping its headers, a slow name lookup): the poll is stopped and recorded.
POLL_TIME_LIMIT = settings.SOURCE_POLL_SECONDS + settings.SOURCE_RESPONSE_SECONDS


@shared_task(name="questions.poll_source", soft_time_limit=POLL_TIME_LIMIT, time_limit=POLL_TIME_LIMIT + 30)
def poll_source_task(source_id: int) -> str:
    source = Source.objects.filter(pk=source_id).first()
    if source is None:
        return "the source was deleted"
    report = poll_safely(source)
    _match_if_new([report])
    return str(report)


@shared_task(name="questions.record_overdue")
def record_overdue_task() -> int:
    # The day as people in Parliament count it (TIME_ZONE is London), whatever the worker's clock zone, and no
    # later than the sources have been read: a day not read yet is told of on the run after the next poll.
    today = known_day(timezone.now())
    if today is None:
        return 0
    made = record_overdue(today)
    if made:
        _match_new_events()
    return made
