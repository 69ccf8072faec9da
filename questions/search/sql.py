"""The query tree as a Django filter over the `norm_<field>` and `base_<field>` columns.

Each `norm_<field>` column holds exactly `words.normalise()` of that field, and each `base_<field>` column
the same words in their base forms (`words.base_text()`); neither is ever NULL, so the same substring tests
that `evaluate` makes select the same questions here, and `~Q` is the exact complement.

On PostgreSQL a word is also looked up as a whole word: the words of the default fields, split into an
array, have an index of their own (migration 0019), one posting list per word, where the trigram indexes
read the posting lists of every trigram of it (" mi", "mic", ... are in most questions). Splitting
normalised text at its spaces gives exactly its words, so "word in a default field" is exactly "word in
that array"; for other leaves over default fields, each word in the array is a condition the exact test
implies, added so that the index can narrow the rows first.
"""

from __future__ import annotations

from functools import reduce
from operator import and_, or_

from django.contrib.postgres.fields import ArrayField
from django.db import connection
from django.db.models import F, Func, Q, TextField

from .ast import And, Node, Not, Or, Phrase, Prefix, Term, leaves
from .evaluate import keys, needle
from .words import DEFAULT_FIELDS, FIELDS, base, base_key


def column(key: str) -> str:
    """The model column holding a document's text under `key`: a field's words as written, or in their base
    forms (`words.base_key`)."""
    return f"norm_{key}" if key in FIELDS else key


# The word indexes keep a word to its first 255 characters (an index entry has a size limit): a word that long
# or longer is looked up by the substring tests alone.
INDEXED_WORD_LENGTH = 255


class DefaultWords(Func):
    """The words of a question's default fields, as written or in their base forms, spelt exactly as the word
    indexes of migration 0019 spell them (else PostgreSQL would not use them)."""

    template = "string_to_array(regexp_replace(%(expressions)s, '([^ ]{255})[^ ]+', '\\1', 'g'), ' ')"
    arg_joiner = " || "
    output_field = ArrayField(TextField())

    def __init__(self, base_forms: bool) -> None:
        super().__init__(*(F(column(base_key(f) if base_forms else f)) for f in DEFAULT_FIELDS))


def _has_words(leaf: Term | Phrase, found: list[str]) -> Q:
    words = DefaultWords(base_forms=isinstance(leaf, Term))
    return Q(words.output_field.get_lookup("contains")(words, found))


def _leaf_q(node: Term | Prefix | Phrase) -> Q:
    text = needle(node)
    exact = reduce(or_, (Q(**{f"{column(key)}__contains": text}) for key in keys(node)))
    if (isinstance(node, Prefix) or connection.vendor != "postgresql"
            or not set(node.fields) <= set(DEFAULT_FIELDS)):
        return exact
    found = [base(node.word)] if isinstance(node, Term) else list(node.words)
    if any(len(word) >= INDEXED_WORD_LENGTH for word in found):
        return exact
    if len(found) == 1 and node.fields == DEFAULT_FIELDS:
        return _has_words(node, found)
    return _has_words(node, found) & exact


def to_q(node: Node) -> Q:
    """A `Q` selecting exactly the rows whose normalised columns `evaluate.matches` accepts."""
    if isinstance(node, Term | Prefix | Phrase):
        return _leaf_q(node)
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
