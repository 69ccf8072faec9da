from django.core.management.base import BaseCommand, CommandError

from questions.models import Source
from questions.polling import poll_sources


class Command(BaseCommand):
    help = "Poll every enabled source now (or one, by name) and print what landed."

    def add_arguments(self, parser):
        parser.add_argument("--source", help="the name of one source to poll, enabled or not")

    def handle(self, *args, source=None, **options):
        if source and not Source.objects.filter(name=source).exists():
            names = ", ".join(Source.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"No source is called {source!r}. Sources: {names}")
        reports = poll_sources(source)
        for report in reports:
            self.stdout.write(str(report))
        failed = [report.source for report in reports if report.error]
        if failed:
            raise CommandError(f"{len(failed)} source(s) failed: {', '.join(failed)}")
