"""Each kind of source turns what it reads into QuestionRecords; the poller stores them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from questions.records import QuestionRecord


@dataclass
class Batch:
    records: list[QuestionRecord] = field(default_factory=list)
    # (item id, reason) for every item that could not be used; the rest still land.
    problems: list[tuple[str, str]] = field(default_factory=list)
    # Set when the source failed part way: what was read still lands, the cursor does not move.
    error: str = ""
    # Set when the source was read but something about it was wrong (a feed that is not well-formed):
    # what was read lands and the source is healthy; the operator is told once.
    warning: str = ""
    # What kind of warning it is (the start of its message): the operator is told once of each kind, not of
    # each line and column a changing feed breaks at.
    warning_kind: str = ""
    not_modified: bool = False
    cursor: dt.date | None = None
    etag: str = ""
    last_modified: str = ""
    requests: int = 0
