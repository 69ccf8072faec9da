"""Reading files of questions: API list pages, API detail records, or normalised records."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from questions.records import QuestionRecord, RecordError, from_normalised
from questions.sources.parliament import record_from_api


def _items(data: Any) -> Iterator[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _items(item)
    elif isinstance(data, dict) and isinstance(data.get("results"), list):
        yield from data["results"]
    else:
        yield data


def _is_api_record(item: Any) -> bool:
    return isinstance(item, dict) and ("value" in item or "questionText" in item)


def read_records(path: Path) -> tuple[list[QuestionRecord], list[tuple[str, str]]]:
    """Every record of a JSON or JSONL file, and (position, reason) for each that was refused."""
    raw = path.read_text(encoding="utf-8")
    try:
        documents = [json.loads(raw)]
    except ValueError:
        documents = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if line.strip():
                try:
                    documents.append(json.loads(line))
                except ValueError as exc:
                    documents.append(RecordError(f"line {number} is not valid JSON: {exc}"))
    records, problems = [], []
    for position, item in enumerate((i for doc in documents for i in _items(doc)), start=1):
        try:
            if isinstance(item, RecordError):
                raise item
            records.append(record_from_api(item) if _is_api_record(item) else from_normalised(item))
        except RecordError as exc:
            ident = item.get("id") if isinstance(item, dict) else None
            problems.append((f"record {position}" + (f" (id {ident})" if ident else ""), str(exc)))
    return records, problems
