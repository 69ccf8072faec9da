"""The saved-search query language: words, parsing, matching, SQL and highlighting, and (in `percolate`)
the index that matches many saved searches against a batch of questions at once.

Everything here is plain Python except `to_q`, which needs Django and is only
imported when first asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .ast import MIN_PREFIX, And, Leaf, Node, Not, Or, Phrase, Prefix, Term, leaves
from .evaluate import Matcher, compile_matcher, matches
from .highlight import highlight
from .parser import MAX_DEPTH, MAX_LENGTH, MAX_TERMS, QueryError, canonical, parse, parse_canonical, parse_or_none
from .words import (
    DEFAULT_FIELDS,
    DOCUMENT_KEYS,
    DUE,
    DUE_WORDS,
    FIELDS,
    QUERY_FIELDS,
    UNICODE_VERSIONS,
    base,
    base_key,
    document,
    normalise,
    words,
)

if TYPE_CHECKING:
    from .sql import to_q

__all__ = [
    "DEFAULT_FIELDS",
    "DOCUMENT_KEYS",
    "DUE",
    "DUE_WORDS",
    "FIELDS",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "MAX_TERMS",
    "MIN_PREFIX",
    "QUERY_FIELDS",
    "UNICODE_VERSIONS",
    "And",
    "Leaf",
    "Matcher",
    "Node",
    "Not",
    "Or",
    "Phrase",
    "Prefix",
    "QueryError",
    "Term",
    "base",
    "base_key",
    "canonical",
    "compile_matcher",
    "document",
    "highlight",
    "leaves",
    "matches",
    "normalise",
    "parse",
    "parse_canonical",
    "parse_or_none",
    "to_q",
    "words",
]


def __getattr__(name: str) -> Any:
    if name == "to_q":
        from .sql import to_q

        return to_q
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
