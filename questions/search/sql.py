"""The query tree as a Django filter over the `norm_<field>` and `base_<field>` columns.

Each `norm_<field>` column holds exactly `words.normalise()` of that field, and each `base_<field>` column
the same words in their base forms (`words.base_text()`); neither is ever NULL, so the same substring tests
that `evaluate` makes select the same questions here, and `~Q` is the exact complement.
"""

from __future__ import annotations

from functools import reduce
from operator import and_, or_

from django.db.models import Q

from .ast import And, Node, Not, Or, Phrase, Prefix, Term, leaves
from .evaluate import keys, needle
from .words import FIELDS


def column(key: str) -> str:
    """The model column holding a document's text under `key`: a field's words as written, or in their base
    forms (`words.base_key`)."""
    return f"norm_{key}" if key in FIELDS else key


def to_q(node: Node) -> Q:
    """A `Q` selecting exactly the rows whose normalised columns `evaluate.matches` accepts."""
    if isinstance(node, Term | Prefix | Phrase):
        text = needle(node)
        return reduce(or_, (Q(**{f"{column(key)}__contains": text}) for key in keys(node)))
    if isinstance(node, Not):
        # NOT NOT x is x: stripping pairs keeps long chains of NOTs out of the SQL.
        negate = False
        while isinstance(node, Not):
            node = node.child
            negate = not negate
        inner = to_q(node)
        return ~inner if negate else inner
    children = [to_q(child) for child in node.children]
    if isinstance(node, And):
        return reduce(and_, children)
    assert isinstance(node, Or)
    return reduce(or_, children)


# A pattern's trigrams are looked up one by one: a long phrase costs as much as several words.
CHARACTERS_PER_PATTERN = 32


def weight(node: Node) -> int:
    """How much work the query's SQL asks of the database, in substring tests of one column: what sets a
    search of sixty-four words, or of a thousand-character phrase, apart from the searches people make."""
    return sum(len(leaf.fields) * (1 + len(needle(leaf)) // CHARACTERS_PER_PATTERN) for leaf in leaves(node))
