import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from questions.search import QueryError
from questions.searching import answer_queries, matching, search


class Command(BaseCommand):
    help = ("Print the questions of the archive that a search matches, or, with --queries, one JSON line "
            'per query of a JSONL file: {"id": ..., "matches": [question ids]} or {"id": ..., "error": ...}.')

    def add_arguments(self, parser):
        parser.add_argument("query", nargs="?")
        parser.add_argument("--queries", type=Path, help='a JSONL file of {"id": ..., "query": ...}')

    def handle(self, *args, query=None, queries=None, **options):
        if queries:
            if not queries.exists():
                raise CommandError(f"{queries}: no such file")
            select = lambda node: matching(node).values_list("external_id", flat=True)  # noqa: E731
            for answer in answer_queries(queries, select):
                self.stdout.write(json.dumps(answer))
            return
        if not query:
            raise CommandError("Give a search, or --queries FILE.")
        try:
            found = search(query)
        except QueryError as exc:
            raise CommandError(exc.message) from exc
        for question in found:
            self.stdout.write(f"{question.external_id}\t{question.date_tabled or ''}\t{question.title}")
        self.stderr.write(f"{found.count()} matching question(s)")
