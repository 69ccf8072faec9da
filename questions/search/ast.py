"""The parsed form of a saved search: small immutable, hashable nodes.

Nodes check their own invariants when built, so any node that exists can be
evaluated, turned into SQL and written back as query text: field tuples are
known fields in `QUERY_FIELDS` order, words are single normalised words, phrases have
at least one word, wildcard prefixes at least `MIN_PREFIX` characters, and
`And`/`Or` have at least two children, none of them of their own kind (nested
ones are flattened in).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TypeAlias

from .memo import short_text_cache
from .words import DUE, DUE_WORDS, QUERY_FIELDS, words

MIN_PREFIX = 3

_FIELD_ORDER = {name: index for index, name in enumerate(QUERY_FIELDS)}


def _canonical_fields(fields: tuple[str, ...]) -> tuple[str, ...]:
    return _fields_in_order(tuple(fields))


@functools.lru_cache(maxsize=1024)
def _fields_in_order(fields: tuple[str, ...]) -> tuple[str, ...]:
    # Every leaf goes through here, with one of a handful of field sets.
    unknown = [name for name in fields if name not in _FIELD_ORDER]
    if unknown:
        raise ValueError(f"unknown field(s) {unknown!r}; fields are {QUERY_FIELDS!r}")
    if not fields:
        raise ValueError("a term needs at least one field")
    return tuple(sorted(set(fields), key=_FIELD_ORDER.__getitem__))


def _check_due(fields: tuple[str, ...], word: str | None) -> None:
    """The due field holds only the words of a question's state, looked for alone: any node there can be
    turned into SQL (`sql.due_q`)."""
    if DUE in fields and (fields != (DUE,) or word not in DUE_WORDS):
        raise ValueError(f"the {DUE} field takes a word of {DUE_WORDS!r} on its own, not {word!r}")


def _check_word(word: str) -> None:
    if not _is_word(word):
        raise ValueError(f"{word!r} is not a single normalised word")


@short_text_cache(maxsize=1 << 16)
def _is_word(word: str) -> bool:
    # Saved searches share a vocabulary far smaller than their number: each word is cut once. Lower-case
    # ASCII letters and digits are a word as they stand, which spares most words the Unicode tables.
    if word.isascii() and word.isalnum() and word == word.lower():
        return True
    return words(word) == [word]


@dataclass(frozen=True, slots=True)
class Term:
    """A word in any of its forms in any of `fields` (a word typed without quotes): it matches the words that
    share its base form."""

    fields: tuple[str, ...]
    word: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", _canonical_fields(self.fields))
        _check_word(self.word)
        _check_due(self.fields, self.word)


@dataclass(frozen=True, slots=True)
class Prefix:
    """A word starting with `prefix` in any of `fields` (the query `prefix*`)."""

    fields: tuple[str, ...]
    prefix: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", _canonical_fields(self.fields))
        _check_word(self.prefix)
        _check_due(self.fields, None)
        if len(self.prefix) < MIN_PREFIX:
            raise ValueError(f"a wildcard prefix needs at least {MIN_PREFIX} characters, not {self.prefix!r}")


@dataclass(frozen=True, slots=True)
class Phrase:
    """Words exactly as written, consecutive and in order, within one of `fields`: what quotes mean. A
    one-word phrase is a quoted word, which matches that word only, where a `Term` matches its forms."""

    fields: tuple[str, ...]
    words: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", _canonical_fields(self.fields))
        object.__setattr__(self, "words", tuple(self.words))
        if not self.words:
            raise ValueError("a phrase needs at least one word")
        _check_due(self.fields, None)
        for word in self.words:
            _check_word(word)


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


def _flatten(kind: type[And] | type[Or], children: tuple[Node, ...]) -> tuple[Node, ...]:
    flat: list[Node] = []
    for child in children:
        if isinstance(child, kind):
            flat.extend(child.children)
        else:
            flat.append(child)
    if len(flat) < 2:
        raise ValueError(f"{kind.__name__} needs at least two children")
    return tuple(flat)


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", _flatten(And, tuple(self.children)))


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "children", _flatten(Or, tuple(self.children)))


Leaf: TypeAlias = Term | Prefix | Phrase
Node: TypeAlias = Term | Prefix | Phrase | Not | And | Or


def and_(children: list[Node] | tuple[Node, ...]) -> Node:
    """`And` of the children, or the only child itself."""
    return children[0] if len(children) == 1 else And(tuple(children))


def or_(children: list[Node] | tuple[Node, ...]) -> Node:
    """`Or` of the children, or the only child itself."""
    return children[0] if len(children) == 1 else Or(tuple(children))


def leaves(node: Node) -> list[Leaf]:
    """Every word, wildcard and phrase of the query, left to right."""
    found: list[Leaf] = []
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, Not):
            stack.append(current.child)
        elif isinstance(current, And | Or):
            stack.extend(reversed(current.children))
        else:
            found.append(current)
    return found
