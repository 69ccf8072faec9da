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

The due field (section 8 of docs/query-language.md) has no column: its words are conditions on the question's
dates and answer (`questions.conditions`), read on the day the search is made.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import reduce
from operator import and_, or_

from django.contrib.postgres.fields import ArrayField
from django.db import connection
from django.db.models import F, Func, Q, TextField
from django.utils import timezone

from questions.conditions import answered_late, named_day, overdue

from .ast import And, Node, Not, Or, Phrase, Prefix, Term, leaves
from .evaluate import keys, needle
from .words import DEFAULT_FIELDS, DUE, FIELDS, base, base_key


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

    template = ("string_to_array(regexp_replace(%(expressions)s, "
                f"'([^ ]{{{INDEXED_WORD_LENGTH}}})[^ ]+', '\\1', 'g'), ' ')")
    arg_joiner = " || "
    output_field = ArrayField(TextField())

    def __init__(self, base_forms: bool) -> None:
        super().__init__(*(F(column(base_key(f) if base_forms else f)) for f in DEFAULT_FIELDS))


def _has_words(leaf: Term | Phrase, found: list[str]) -> Q:
    words = DefaultWords(base_forms=isinstance(leaf, Term))
    return Q(words.output_field.get_lookup("contains")(words, found))


def due_q(word: str) -> Q:
    """The questions that have `word` in the due field today (`Question.due_words`): worked out as the search
    is made, where the alert matcher works it out as it matches."""
    if word == "overdue":
        return overdue(timezone.localdate())
    if word == "late":
        return answered_late()
    assert word == "named", "the due field's words are checked when its term is made"
    return named_day()


def _leaf_q(node: Term | Prefix | Phrase, common: Collection[str], bounding: bool) -> Q:
    if node.fields == (DUE,):
        assert isinstance(node, Term), "the due field takes words alone"
        return due_q(node.word)
    text = needle(node)
    exact = reduce(or_, (Q(**{f"{column(key)}__contains": text}) for key in keys(node)))
    # Only a word every match must have is looked up: a word left out, or one of an OR's alternatives, is
    # tested on the questions the rest of the search finds, and building a question's array of words to test
    # it costs far more than a substring test.
    if (not bounding or isinstance(node, Prefix) or connection.vendor != "postgresql"
            or not set(node.fields) <= set(DEFAULT_FIELDS)):
        return exact
    found = [base(node.word)] if isinstance(node, Term) else list(node.words)
    # A common word is found sooner by reading questions and testing their text than through its long
    # posting list, and building a question's array of words to test it costs far more than a substring test.
    looked_up = [word for word in found if len(word) < INDEXED_WORD_LENGTH and word not in common]
    if not looked_up:
        return exact
    if looked_up == found and len(found) == 1 and node.fields == DEFAULT_FIELDS:
        return _has_words(node, found)
    return _has_words(node, looked_up) & exact


def to_q(node: Node, common: Collection[str] = frozenset(), bounding: bool = True) -> Q:
    """A `Q` selecting exactly the rows whose normalised columns `evaluate.matches` accepts. Only words every
    match must have (`bounding`: reached through ANDs alone) and not in `common` (the archive's most frequent)
    are looked up in the word indexes."""
    if isinstance(node, Term | Prefix | Phrase):
        return _leaf_q(node, common, bounding)
    if isinstance(node, Not):
        # NOT NOT x is x: stripping pairs keeps long chains of NOTs out of the SQL.
        negate = False
        while isinstance(node, Not):
            node = node.child
            negate = not negate
        inner = to_q(node, common, bounding and not negate)
        return ~inner if negate else inner
    if isinstance(node, And):
        return reduce(and_, (to_q(child, common, bounding) for child in node.children))
    assert isinstance(node, Or)
    return reduce(or_, (to_q(child, common, False) for child in node.children))


# A pattern's trigrams are looked up one by one: a long phrase costs as much as several words.
CHARACTERS_PER_PATTERN = 32


def weight(node: Node) -> int:
    """How much work the query's SQL asks of the database, in substring tests of one column: what sets a
    search of sixty-four words, or of a thousand-character phrase, apart from the searches people make."""
    return sum(len(leaf.fields) * (1 + len(needle(leaf)) // CHARACTERS_PER_PATTERN) for leaf in leaves(node))
