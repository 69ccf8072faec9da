from celery import current_app, shared_task

from questions.models import Source
from questions.polling import PollReport, poll_source, poll_sources


def _match_if_new(reports: list[PollReport]) -> None:
    # By name, so that the archive does not depend on the alerts app that consumes its events.
    if any(report.landed and report.landed.events for report in reports):
        current_app.tasks["alerts.match_events"].delay()


@shared_task(name="questions.poll_sources")
def poll_sources_task(name: str | None = None) -> list[str]:
    reports = poll_sources(name, only_due=name is None)
    _match_if_new(reports)
    return [str(report) for report in reports]


@shared_task(name="questions.poll_source")
def poll_source_task(source_id: int) -> str:
    report = poll_source(Source.objects.get(pk=source_id))
    _match_if_new([report])
    return str(report)
