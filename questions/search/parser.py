"""Reading query text into a tree (`parse`) and writing a tree back as text (`canonical`).

Sections 3 and 5 of docs/query-language.md.  Reading happens in three
steps: the text is cut into pieces (quotes, brackets, operators, fields and
values; pieces without words are dropped there), the pieces are checked as a
whole (brackets, size), then a recursive-descent parser builds the tree.
Refusals raise `QueryError` with a message meant for the person who typed the
query; character numbers in messages count from 1, `QueryError.position` from 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from .ast import MIN_PREFIX, And, Node, Not, Or, Phrase, Prefix, Term, and_, or_
from .memo import LONGEST_CACHED, short_text_cache
from .words import DEFAULT_FIELDS, DUE, DUE_WORDS, QUERY_FIELDS, document, words

MAX_LENGTH = 1000
MAX_TERMS = 64
MAX_DEPTH = 10

QUOTES = frozenset('"“”„')
_BRACKETS = frozenset("()")
_OPERATORS = frozenset({"AND", "OR", "NOT"})

_EMPTY_DOCUMENT = document({})


class QueryError(ValueError):
    """A refused query: `message` is for a person, `position` is 0-based or None."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.position = position

    def __repr__(self) -> str:
        return f"QueryError({self.message!r}, {self.position!r})"


def _at(position: int) -> str:
    return f"character {position + 1}"


class Kind(Enum):
    VALUE = "value"
    FIELD = "field"
    AND = "AND"
    OR = "OR"
    NOT = "NOT"
    OPEN = "("
    CLOSE = ")"


@dataclass(frozen=True, slots=True)
class Value:
    """A word, wildcard or phrase before the fields it looks in are known."""

    kind: type[Term] | type[Prefix] | type[Phrase]
    text: str | tuple[str, ...]

    def leaf(self, fields: tuple[str, ...]) -> Node:
        return self.kind(fields, self.text)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class Piece:
    kind: Kind
    position: int
    text: str
    field: str | None = None
    value: Value | None = None


@short_text_cache(maxsize=1 << 16)
def _piece_words(text: str) -> tuple[str, ...]:
    # The words of one piece of a query: queries share their pieces, and cutting words is the costly step.
    return tuple(words(text))


def _value(text: str, position: int) -> Value:
    """The value that a run of characters with at least one word stands for."""
    if text.endswith("*"):
        found = _piece_words(text[:-1])
        if len(found) > 1:
            raise QueryError(
                f'The wildcard "{text}" at {_at(position)} has more than one word before the "*": '
                "a wildcard can only end a single word.",
                position,
            )
        if len(found[0]) < MIN_PREFIX:
            raise QueryError(
                f'The wildcard "{text}" at {_at(position)} is too short: '
                f'put at least {MIN_PREFIX} letters or digits before the "*".',
                position,
            )
        return Value(Prefix, found[0])
    found = _piece_words(text)
    if len(found) == 1:
        return Value(Term, found[0])
    return Value(Phrase, tuple(found))


def _field_name(run: str) -> tuple[str, str] | None:
    """(field, rest) when `run` is `NAME:rest` with NAME a field name in any case."""
    colon = run.find(":")
    if colon <= 0:
        return None
    name = run[:colon]
    if not name.isascii() or name.lower() not in QUERY_FIELDS:
        return None
    return name.lower(), run[colon + 1 :]


def _run_piece(run: str, position: int) -> Piece | None:
    """The piece for a run of characters outside quotes and brackets, or None if dropped."""
    if run in _OPERATORS:
        return Piece(Kind[run], position, run)
    named = _field_name(run)
    if named is not None:
        field, rest = named
        rest_position = position + len(run) - len(rest)
        # A rest without words is treated like no rest, as a piece without
        # words would have been dropped: the field then takes what follows.
        value = _value(rest, rest_position) if _piece_words(rest) else None
        return Piece(Kind.FIELD, position, run[: len(run) - len(rest)], field, value)
    if not _piece_words(run):
        return None
    return Piece(Kind.VALUE, position, run, value=_value(run, position))


def _starts_piece(query: str, index: int) -> bool:
    return index == 0 or query[index - 1].isspace() or query[index - 1] == "("


# Spaces, a quoted part (up to the next quote of any kind, if there is one), a bracket, or a run of anything
# else: `\s` is what `str.isspace` says is a space.
_PIECE_RE = re.compile(r'\s+|["“”„]([^"“”„]*)(["“”„]?)|[()]|[^\s"“”„()]+')


def pieces(query: str) -> list[Piece]:
    """The pieces of `query` left to right, without those that have no words."""
    found: list[Piece] = []
    end = len(query)
    for match in _PIECE_RE.finditer(query):
        index = match.start()
        text = match.group()
        char = text[0]
        if char.isspace():
            continue
        if char in QUOTES:
            if not match.group(2):
                raise QueryError(f"The quote you opened at {_at(index)} is never closed.", index)
            inside = _piece_words(match.group(1))
            if inside:
                found.append(Piece(Kind.VALUE, index, text, value=Value(Phrase, inside)))
            continue
        if char == "(":
            found.append(Piece(Kind.OPEN, index, char))
            continue
        if char == ")":
            found.append(Piece(Kind.CLOSE, index, char))
            continue
        if (
            char == "-"
            and _starts_piece(query, index)
            and index + 1 < end
            and not query[index + 1].isspace()
            # "-)" is read as a dropped "-" rather than a NOT left with nothing,
            # just as "-" before a space or at the end is.
            and query[index + 1] != ")"
        ):
            found.append(Piece(Kind.NOT, index, char))
            text, index = text[1:], index + 1
            if not text:
                continue
        piece = _run_piece(text, index)
        if piece is not None:
            found.append(piece)
    return found


def _check_pieces(found: list[Piece]) -> None:
    open_positions: list[int] = []
    for piece in found:
        if piece.kind is Kind.OPEN:
            open_positions.append(piece.position)
            if len(open_positions) > MAX_DEPTH:
                raise QueryError(
                    f"The bracket at {_at(piece.position)} nests the search more than {MAX_DEPTH} brackets deep.",
                    piece.position,
                )
        elif piece.kind is Kind.CLOSE:
            if not open_positions:
                raise QueryError(
                    f"There is a closing bracket at {_at(piece.position)} with no opening bracket before it.",
                    piece.position,
                )
            open_positions.pop()
    if open_positions:
        position = open_positions[0]
        raise QueryError(f"The bracket you opened at {_at(position)} is never closed.", position)
    values = [piece for piece in found if piece.value is not None]
    if len(values) > MAX_TERMS:
        position = values[MAX_TERMS].position
        raise QueryError(
            f"The search has more than {MAX_TERMS} words and phrases; the one at {_at(position)} is one too many.",
            position,
        )


class _Parser:
    """Recursive descent over the pieces, one method per rule of the grammar."""

    def __init__(self, found: list[Piece]) -> None:
        self.pieces = found
        self.index = 0

    def peek(self) -> Piece | None:
        return self.pieces[self.index] if self.index < len(self.pieces) else None

    def take(self) -> Piece:
        piece = self.pieces[self.index]
        self.index += 1
        return piece

    def operand_follows(self) -> bool:
        following = self.peek()
        return following is not None and following.kind not in (Kind.AND, Kind.OR, Kind.CLOSE)

    def nothing_after(self, operator: Piece) -> QueryError:
        return QueryError(f'"{operator.text}" at {_at(operator.position)} has nothing after it.', operator.position)

    def parse_or(self, fields: tuple[str, ...]) -> Node:
        children = [self.parse_and(fields)]
        while (piece := self.peek()) is not None and piece.kind is Kind.OR:
            operator = self.take()
            if not self.operand_follows():
                raise self.nothing_after(operator)
            children.append(self.parse_and(fields))
        return or_(children)

    def parse_and(self, fields: tuple[str, ...]) -> Node:
        children = [self.parse_unary(fields)]
        while (piece := self.peek()) is not None and piece.kind not in (Kind.OR, Kind.CLOSE):
            if piece.kind is Kind.AND:
                operator = self.take()
                if not self.operand_follows():
                    raise self.nothing_after(operator)
            children.append(self.parse_unary(fields))
        return and_(children)

    def parse_unary(self, fields: tuple[str, ...]) -> Node:
        operators: list[Piece] = []
        while (piece := self.peek()) is not None and piece.kind is Kind.NOT:
            operators.append(self.take())
            if not self.operand_follows():
                raise self.nothing_after(operators[-1])
        node = self.parse_primary(fields)
        # Built from the inside out so that a long run of NOTs costs no recursion.
        for _ in operators:
            node = Not(node)
        return node

    def parse_primary(self, fields: tuple[str, ...]) -> Node:
        piece = self.take()
        if piece.kind in (Kind.AND, Kind.OR):
            raise QueryError(f'"{piece.text}" at {_at(piece.position)} has nothing before it.', piece.position)
        if piece.kind is Kind.FIELD:
            assert piece.field is not None
            if piece.value is not None:
                return _leaf(piece.value, (piece.field,), piece)
            following = self.peek()
            if following is None or following.kind not in (Kind.VALUE, Kind.OPEN):
                raise QueryError(
                    f'The field "{piece.text}" at {_at(piece.position)} is not followed by a word, '
                    "a phrase in quotes or a group in brackets to look for.",
                    piece.position,
                )
            return self.parse_primary((piece.field,))
        if piece.kind is Kind.VALUE:
            assert piece.value is not None
            return _leaf(piece.value, fields, piece)
        if piece.kind is Kind.OPEN:
            following = self.peek()
            if following is not None and following.kind is Kind.CLOSE:
                raise QueryError(f"The brackets at {_at(piece.position)} have nothing inside them.", piece.position)
            node = self.parse_or(fields)
            closing = self.take()
            assert closing.kind is Kind.CLOSE, "brackets were checked to balance"
            return node
        # Brackets balance and every operator checks what follows it, so a
        # closing bracket or a NOT never reaches here.
        raise AssertionError(f"unexpected {piece!r}")


_DUE_CHOICES = ", ".join(DUE_WORDS[:-1]) + " or " + DUE_WORDS[-1]


def _leaf(value: Value, fields: tuple[str, ...], piece: Piece) -> Node:
    """The word, wildcard or phrase `value` looked for in `fields`; the due field takes only its own words."""
    if DUE in fields and not (value.kind is Term and value.text in DUE_WORDS):
        shown = value.text if isinstance(value.text, str) else " ".join(value.text)
        if value.kind is Prefix:
            shown += "*"
        # A field's own value (`due:x`) starts after its name.
        position = piece.position + (len(piece.text) if piece.kind is Kind.FIELD else 0)
        raise QueryError(
            f'"{shown}" at {_at(position)} is not something the field "{DUE}:" can look for: '
            f"it takes one of the words {_DUE_CHOICES}, on its own.",
            position,
        )
    return value.leaf(fields)


def parse(query: str, *, max_length: int | None = MAX_LENGTH) -> Node:
    """The tree of a saved-search query, or `QueryError` saying why it is refused.

    `max_length=None` lifts the length limit, for reading back text made by
    `canonical`, which can be longer than what was typed (`a b` becomes
    `a AND b`); every other rule still applies.
    """
    if max_length is not None and len(query) > max_length:
        raise QueryError(f"The search is {len(query):,} characters long; the most allowed is {max_length:,}.")
    try:
        # Text already in canonical form (a saved search, a link from one, a plain word) reads the short
        # road to the same tree; anything else, and every refusal but the last below, is the long road's.
        node = _read_canonical(query)
    except _NotCanonical:
        node = parse_in_full(query)
    if _matches_nothing_present(node):
        raise QueryError(
            "This search would match even a question with no words at all, because part of it only says "
            'what must not be there (like "NOT police" on its own): add a word or phrase that must be present.'
        )
    return node


def parse_in_full(query: str) -> Node:
    """The tree of `query` by the long road, without the length limit or the empty-question check: every
    piece cut into words, every rule checked with its own message."""
    if not query.strip():
        raise QueryError("The search is empty: type a word or a phrase to look for.")
    found = pieces(query)
    if not found:
        raise QueryError("The search has no words to look for: punctuation on its own and empty quotes are ignored.")
    _check_pieces(found)
    parser = _Parser(found)
    node = parser.parse_or(DEFAULT_FIELDS)
    assert parser.index == len(found), "brackets were checked to balance"
    return node


def _matches_nothing_present(node: Node) -> bool:
    """Whether `node` matches a question with no words at all: what the evaluator would say of an empty
    document, where every word, prefix and phrase is absent, worked out without building a matcher."""
    flips = False
    while isinstance(node, Not):
        # Counted rather than recursed into: NOT may be repeated hundreds of times.
        node, flips = node.child, not flips
    return flips != _present_free(node)


def _present_free(node: Node) -> bool:
    if isinstance(node, And):
        return all(_matches_nothing_present(child) for child in node.children)
    if isinstance(node, Or):
        return any(_matches_nothing_present(child) for child in node.children)
    return False  # a word, prefix or phrase: absent from a question with no words


def parse_or_none(query: str) -> Node | None:
    """The tree of `query`, or None where it is refused."""
    try:
        return parse(query)
    except QueryError:
        return None


def _fields_prefix(fields: tuple[str, ...]) -> str:
    return "" if fields == DEFAULT_FIELDS else f"{fields[0]}:"


def _leaf_text(node: Term | Prefix | Phrase, fields: tuple[str, ...]) -> str:
    prefix = _fields_prefix(fields)
    if isinstance(node, Term):
        return prefix + node.word
    if isinstance(node, Prefix):
        return f"{prefix}{node.prefix}*"
    return f'{prefix}"{" ".join(node.words)}"'


def _canonical_leaf(node: Term | Prefix | Phrase) -> str:
    if node.fields == DEFAULT_FIELDS or len(node.fields) == 1:
        return _leaf_text(node, node.fields)
    # No query text gives other field sets, but a hand-built node may have one:
    # write it as the alternatives it means.
    alternatives = [_leaf_text(node, (field,)) for field in node.fields]
    return "(" + " OR ".join(alternatives) + ")"


def canonical(node: Node) -> str:
    """The query text for `node` in one standard spelling.

    Operators are explicit capitals, words lower case, phrases in straight
    quotes, fields written on each word as `field:`, and brackets only where the
    tree needs them; so `parse(canonical(parse(q))) == parse(q)` (with
    `max_length=None` where the text comes out longer than the limit).
    """
    if isinstance(node, Or):
        return " OR ".join(canonical(child) for child in node.children)
    if isinstance(node, And):
        return " AND ".join(
            f"({canonical(child)})" if isinstance(child, Or) else canonical(child) for child in node.children
        )
    if isinstance(node, Not):
        depth = 0
        while isinstance(node, Not):
            node = node.child
            depth += 1
        inner = canonical(node)
        if isinstance(node, And | Or):
            inner = f"({inner})"
        return "NOT " * depth + inner
    return _canonical_leaf(node)


# The pieces of canonical text: brackets, operators in capitals, and leaves (a field on each, a phrase in
# straight quotes, a prefix ending in *). Words in it are already normalised.
_CANONICAL_PIECE = re.compile(r'\(|\)|(?:[a-z]+:)?(?:"[^"]*"|[^\s()"]+)')
_CANONICAL_LEAF = re.compile(r'(?:([a-z]+):)?(?:"([^"]*)"|([^\s()"]+))')
_FIELD_SET = {name: (name,) for name in QUERY_FIELDS}


def parse_canonical(text: str) -> Node:
    """The tree of `text` written by `canonical`, read by a shorter road than `parse`: such text was
    checked when it was saved (it has words, it cannot match an empty question), its words are already
    normalised and its operators explicit. What does not read as canonical text goes the long road, so
    the tree is always the one `parse(text, max_length=None)` gives."""
    try:
        return _read_canonical(text)
    except _NotCanonical:
        return parse(text, max_length=None)


class _NotCanonical(Exception):
    pass


def _read_canonical(text: str) -> Node:
    # Nothing but pieces and single spaces: checked in one pass of the regex engine, not piece by piece.
    if _CANONICAL_PIECE.sub("", text).strip(" ") or "  " in text:
        raise _NotCanonical
    # One loop with a stack for brackets rather than a call per rule of the grammar: the percolator reads
    # every saved search through here when it starts. A run of NOTs is counted, never recursed into.
    stack: list[tuple[list[Node], list[Node], int]] = []
    alternatives: list[Node] = []  # the ORed parts of the innermost open bracket
    conjuncts: list[Node] = []  # the ANDed parts of its current alternative
    nots = 0
    operand = True  # an operand comes next, else an operator or a closing bracket
    terms = 0
    for piece in _CANONICAL_PIECE.findall(text):
        if operand:
            if piece == "NOT":
                nots += 1
                continue
            if piece == "(":
                if len(stack) == MAX_DEPTH:
                    raise _NotCanonical
                stack.append((alternatives, conjuncts, nots))
                alternatives, conjuncts, nots = [], [], 0
                continue
            if piece in _SYMBOLS:
                raise _NotCanonical
            node = _canonical_leaf_node(piece)
            terms += 1
        elif piece == "AND":
            operand = True
            continue
        elif piece == "OR":
            alternatives.append(and_(conjuncts))
            conjuncts = []
            operand = True
            continue
        elif piece == ")" and stack:
            alternatives.append(and_(conjuncts))
            node = or_(alternatives)
            alternatives, conjuncts, nots = stack.pop()
        else:
            raise _NotCanonical
        for _ in range(nots):
            node = Not(node)
        nots = 0
        conjuncts.append(node)
        operand = False
    if operand or stack or terms > MAX_TERMS:
        # The long road says what is wrong (limits may have changed since the search was saved).
        raise _NotCanonical
    alternatives.append(and_(conjuncts))
    return or_(alternatives)


_SYMBOLS = frozenset({"(", ")", *_OPERATORS})


# A canonical leaf spells out its field and quotes ("constituency:" is the longest field name).
@short_text_cache(maxsize=1 << 17, longest=LONGEST_CACHED + 16)
def _canonical_leaf_node(piece: str) -> Node:
    # Leaves are immutable, and saved searches share most of theirs: each is built once.
    field, phrase, word = _CANONICAL_LEAF.fullmatch(piece).groups()  # type: ignore[union-attr]
    fields = _FIELD_SET.get(field) if field else DEFAULT_FIELDS
    if fields is None:
        raise _NotCanonical
    try:
        if phrase is not None:
            return Phrase(fields, tuple(phrase.split(" ")))
        assert word is not None
        if word.endswith("*"):
            return Prefix(fields, word[:-1])
        return Term(fields, word)
    except ValueError:
        # Not one normalised word (the leaf checks its words): not text `canonical` wrote.
        raise _NotCanonical from None
