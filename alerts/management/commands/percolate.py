import contextlib
import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from questions.records import RecordError
from questions.search import QueryError, canonical, document, parse
from questions.search.percolate import QueryIndex, Rarity, iter_bits
from questions.searching import answer_queries, read_jsonl


class Command(BaseCommand):
    help = ("Match a JSONL file of queries against a JSONL file of questions with the percolator, with no "
            "database. Answers exactly what `search --queries` answers for the same questions.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--queries", type=Path, required=True)
        parser.add_argument("--questions", type=Path, required=True,
                            help="a JSONL file of questions: the fields of the query language plus an id")

    def handle(self, *args, queries, questions, **options):
        for path in (queries, questions):
            if not path.exists():
                raise CommandError(f"{path}: no such file")
        ids, documents = [], []
        for number, item in read_jsonl(questions):
            if isinstance(item, RecordError) or not isinstance(item, dict) or item.get("id") in (None, ""):
                self.stderr.write(f"{questions}: line {number} skipped: not a question with an id")
                continue
            ids.append(str(item["id"]))
            documents.append(document(item))

        # Every query is filed first so that the questions are matched in one pass; answer_queries then
        # reads the file again and reports each line, refusals included, in order.
        index = QueryIndex(Rarity(documents))
        for _number, item in read_jsonl(queries):
            if isinstance(item, dict) and isinstance(item.get("query"), str):
                with contextlib.suppress(QueryError):
                    index.add(canonical(parse(item["query"])))
        found = index.match(documents)

        def select(node):
            return [ids[position] for position in iter_bits(found.get(canonical(node), 0))]

        for answer in answer_queries(queries, select):
            self.stdout.write(json.dumps(answer))
