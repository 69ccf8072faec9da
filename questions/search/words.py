"""Cutting text into words: the one tokeniser shared by documents and queries.

Every place that compares a query with a question goes through `words()` on both
sides, so the rules of section 1 of the query-language contract live here only.

The letter/digit/mark categories come from the `regex` module's Unicode tables,
decomposition and case folding from Python's `unicodedata`.  Upgrading either can
change how rare characters are cut, so stored normalised text should be rebuilt
after such an upgrade (`UNICODE_VERSIONS` says which tables are in use).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

import regex

FIELDS: tuple[str, ...] = (
    "heading",
    "question",
    "answer",
    "member",
    "party",
    "constituency",
    "department",
    "minister",
    "house",
    "uin",
)
DEFAULT_FIELDS: tuple[str, ...] = ("heading", "question", "answer")

UNICODE_VERSIONS = f"unicodedata {unicodedata.unidata_version}; regex {regex.__version__}"

_MARKS = regex.compile(r"\p{M}+")
WORD_RE = regex.compile(r"[\p{L}\p{N}]+")


def fold(text: str) -> str:
    """The text after step 1 of section 1 (NFKD, combining marks dropped, casefolded).

    Marks are dropped before case folding because folding works on the
    decomposed letters; this order was checked to be stable over every code point
    (folding the result again changes nothing).
    """
    stripped: str = _MARKS.sub("", unicodedata.normalize("NFKD", text))
    return stripped.casefold()


def words(text: str) -> list[str]:
    """The words of `text`, in order: maximal runs of letters and digits after `fold`."""
    found: list[str] = WORD_RE.findall(fold(text))
    return found


def normalise(text: str) -> str:
    """The words of `text` joined by single spaces, with one space before and after.

    The surrounding spaces make a plain substring test exact: word `w` is present
    iff `f" {w} "` occurs, and some word starts with `p` iff `f" {p}"` occurs.  Text
    without words gives two spaces.
    """
    return " " + " ".join(words(text)) + " "


def document(record: Mapping[str, str | None]) -> dict[str, str]:
    """Each field of a question mapped to its normalised text; absent or None is empty."""
    doc: dict[str, str] = {}
    for field in FIELDS:
        value = record.get(field)
        doc[field] = normalise("" if value is None else str(value))
    return doc
