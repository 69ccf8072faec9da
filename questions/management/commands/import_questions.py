from collections import Counter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from questions.importing import read_records
from questions.ingest import upsert
from questions.models import Question


class Command(BaseCommand):
    help = ("Import questions from JSON or JSONL, gzipped or not: API list pages, API detail records, normalised "
            "records, or API records as republished in bulk (questions/fixtures/written_questions_sample.jsonl.gz).")

    def add_arguments(self, parser):
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument("--alert", action="store_true",
                            help="email subscribers about these questions as if they had just appeared "
                                 "(by default an import is a backfill, and alerts nobody)")
        parser.add_argument("--if-empty", action="store_true",
                            help="import only into an archive with no questions yet: a sample loaded again would "
                                 "put back what the poller has brought since")

    def handle(self, *args, files, alert=False, if_empty=False, **options):
        if if_empty and Question.objects.exists():
            self.stdout.write("The archive has questions already: nothing imported.")
            return
        for path in files:
            if not path.exists():
                raise CommandError(f"{path}: no such file")
            try:
                reading = read_records(path)
            except OSError as exc:
                raise CommandError(f"{path}: {exc.strerror or exc}") from None
            for where, reason in reading.repaired:
                self.stderr.write(f"{path}: {where} repaired: {reason}")
            for where, reason in reading.refused:
                self.stderr.write(f"{path}: {where + ' ' if where else ''}skipped: {reason}")
            for ident, count in Counter(record.external_id for record in reading.records).items():
                if count > 1:
                    self.stderr.write(f"{path}: id {ident} is given {count} times: the last one was kept")
            result = upsert(reading.records, alert=alert)
            for ident, reason in result.refused:
                self.stderr.write(f"{path}: id {ident} skipped: {reason}")
            self.stdout.write(f"{path}: {result}")
