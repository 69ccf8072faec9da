import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from questions.records import RecordError
from questions.search import compile_matcher, document
from questions.searching import answer_queries, read_jsonl


class Command(BaseCommand):
    help = ("Match a JSONL file of queries against a JSONL file of questions, with no database. "
            "Answers exactly what `search --queries` answers for the same questions.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--queries", type=Path, required=True)
        parser.add_argument("--questions", type=Path, required=True,
                            help="a JSONL file of questions: the fields of the query language plus an id")

    def handle(self, *args, queries, questions, **options):
        for path in (queries, questions):
            if not path.exists():
                raise CommandError(f"{path}: no such file")
        documents = []
        for number, item in read_jsonl(questions):
            if isinstance(item, RecordError) or not isinstance(item, dict) or item.get("id") in (None, ""):
                self.stderr.write(f"{questions}: line {number} skipped: not a question with an id")
                continue
            documents.append((str(item["id"]), document(item)))

        def select(node):
            matcher = compile_matcher(node)
            return [question_id for question_id, doc in documents if matcher(doc)]

        for answer in answer_queries(queries, select):
            self.stdout.write(json.dumps(answer))
