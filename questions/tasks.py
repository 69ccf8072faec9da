from celery import shared_task

from questions.models import Source
from questions.polling import poll_source, poll_sources


@shared_task(name="questions.poll_sources")
def poll_sources_task(name: str | None = None) -> list[str]:
    return [str(report) for report in poll_sources(name, only_due=name is None)]


@shared_task(name="questions.poll_source")
def poll_source_task(source_id: int) -> str:
    return str(poll_source(Source.objects.get(pk=source_id)))
