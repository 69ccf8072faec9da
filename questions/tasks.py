"""Celery tasks: thin shells around `questions.polling`."""

from celery import current_app, shared_task

from questions.models import Source
from questions.polling import PollReport, poll_safely, sources_to_poll


def _match_if_new(reports: list[PollReport]) -> None:
    # By name, so that the archive does not depend on the alerts app that consumes its events.
    if any(report.landed and report.landed.events for report in reports):
        current_app.tasks["alerts.match_events"].delay()


@shared_task(name="questions.poll_sources")
def poll_sources_task(name: str | None = None) -> list[int]:
    """Each source due a poll gets a task of its own: a slow source never delays another."""
    due = [source.pk for source in sources_to_poll(name, only_due=name is None)]
    for source_id in due:
        poll_source_task.delay(source_id)
    return due


@shared_task(name="questions.poll_source")
def poll_source_task(source_id: int) -> str:
    source = Source.objects.filter(pk=source_id).first()
    if source is None:
        return "the source was deleted"
    report = poll_safely(source)
    _match_if_new([report])
    return str(report)
