"""Each kind of source turns what it reads into QuestionRecords; the poller stores them."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from questions.records import QuestionRecord

# What one problem names of the other items it hit, and how much of each name: a hostile source that sends
# thousands of bad items in a poll still costs the source's page one short line a cause.
NAMED = 20
NAME_LENGTH = 100
MESSAGE_LENGTH = 2000


@dataclass
class Problem:
    """One cause of trouble in one poll: the first item it hit, in full, and how many more it hit."""

    record_id: str
    message: str
    # Whether the items were left out (not stored). A repaired entry was stored; a listing cut short is no item.
    skipped: bool
    items: int = 1
    # Every other item it hit, by name: the page names the first few, the log all of them.
    others: list[str] = field(default_factory=list)

    def add(self, name: str) -> None:
        self.items += 1
        if name:
            self.others.append(name[:NAME_LENGTH])

    @property
    def text(self) -> str:
        """What the source's page says: the first item's reason, then how many more like it, naming some."""
        message = self.message if len(self.message) <= MESSAGE_LENGTH else self.message[:MESSAGE_LENGTH] + " …"
        more = self.items - 1
        if not more:
            return message
        if not self.others:
            return f"{message} (and {more} more like it)"
        label = "ids " if self.record_id else ""
        named = ", ".join(self.others[:NAMED]) + (", …" if more > min(len(self.others), NAMED) else "")
        return f"{message} (and {more} more like it: {label}{named})"


@dataclass
class Batch:
    records: list[QuestionRecord] = field(default_factory=list)
    # What could not be used, one problem per cause (see `problem`); the rest still land.
    problems: dict[str, Problem] = field(default_factory=dict)
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

    def problem(self, record_id: str, message: str, *, cause: str, name: str = "", skipped: bool = True) -> None:
        """Record one item that could not be used (or was used only in part), under its cause: the kind of
        failure, with no id, address or value in it. A poll says each cause once, with how many items it hit:
        a source that fails a thousand items the same way is one problem, not a thousand. `name` says which
        item it was when it has no id (a day's listing)."""
        found = self.problems.get(cause)
        if found is None:
            self.problems[cause] = Problem(record_id, message, skipped)
        else:
            found.add(record_id or name)

    @property
    def items_skipped(self) -> int:
        """How many items were left out, whatever their causes: what "N item(s) skipped" counts."""
        return sum(p.items for p in self.problems.values() if p.skipped)
