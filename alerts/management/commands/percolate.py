import json
from itertools import compress
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from questions.records import RecordError
from questions.search import document
from questions.search.percolate import QueryIndex, Rarity, collector_paused
from questions.searching import read_jsonl, read_queries

# Bit characters to the bytes 0 and 1, so that a mask written in binary selects ids in C (itertools.compress).
_BITS = bytes.maketrans(b"01", b"\x00\x01")


class Command(BaseCommand):
    help = ("Match a JSONL file of queries against a JSONL file of questions with the percolator, with no "
            "database. Answers exactly what `search --queries` answers for the same questions, byte for byte.")
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--queries", type=Path, required=True)
        parser.add_argument("--questions", type=Path, required=True,
                            help="a JSONL file of questions: the fields of the query language plus an id")

    def handle(self, *args, queries, questions, **options):
        for path in (queries, questions):
            if not path.exists():
                raise CommandError(f"{path}: no such file")
        with collector_paused():
            self.percolate(queries, questions)

    def percolate(self, queries: Path, questions: Path) -> None:
        found = []
        for number, item in read_jsonl(questions):
            if isinstance(item, RecordError) or not isinstance(item, dict) or item.get("id") in (None, ""):
                self.stderr.write(f"{questions}: line {number} skipped: not a question with an id")
                continue
            found.append((str(item["id"]), document(item)))
        # In the order `search --queries` lists matches (sorted ids), so a match's bits come out in that order.
        found.sort(key=lambda pair: pair[0])
        ids = [json.dumps(question_id) for question_id, _ in found]
        documents = [doc for _, doc in found]

        # Each query is read once, and filed with its tree: the questions are then matched in one pass. A
        # text repeated in the file is read into the same tree, filed once under a label of its own.
        index = QueryIndex(Rarity(documents))
        lines: list[tuple[object, int | None, str]] = []
        filed: dict[int, int] = {}  # id of a tree -> its id in the index
        for query_id, node, error in read_queries(queries):
            key = None
            if node is not None:
                key = filed.get(id(node))
                if key is None:
                    key = filed[id(node)] = index.add(f"#{len(filed)}", node)
            lines.append((query_id, key, error))
        masks = index.match_ids(documents)

        width = len(ids)
        written: dict[int, str] = {}

        def matches(key: int) -> str:
            # The ids of the bits set, joined in C: no Python step per match.
            joined = written.get(key)
            if joined is None:
                bits = format(masks.get(key, 0), f"0{width}b")[::-1].encode().translate(_BITS) if width else b""
                joined = written[key] = ", ".join(compress(ids, bits))
            return joined

        # As json.dumps writes {"id": ..., "matches": [...]}, built from the pieces, and written a block of
        # lines at a time.
        block: list[str] = []
        for query_id, key, error in lines:
            if key is None:
                block.append(json.dumps({"id": query_id, "error": error}))
            else:
                block.append(f'{{"id": {json.dumps(query_id)}, "matches": [{matches(key)}]}}')
            if len(block) == 1000:
                self.stdout.write("\n".join(block))
                block.clear()
        if block:
            self.stdout.write("\n".join(block))
