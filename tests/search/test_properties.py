"""Properties that hold for every query: canonical text, robustness, and agreement of the evaluators."""

from __future__ import annotations

import html

from django.contrib.postgres.fields.array import ArrayContains
from django.db.models import Q
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from questions.search import (
    And,
    Node,
    Not,
    Or,
    Phrase,
    Prefix,
    QueryError,
    Term,
    base,
    canonical,
    compile_matcher,
    document,
    highlight,
    leaves,
    matches,
    parse,
    parse_canonical,
    words,
)
from questions.search.parser import (
    _BRACKETS,
    QUOTES,
    Kind,
    Piece,
    Value,
    _at,
    _piece_words,
    _run_piece,
    _starts_piece,
    parse_in_full,
    pieces,
)
from questions.search.sql import to_q

from .strategies import queries, query_pairs, records, syntax_soup, syntax_words

PROPERTY = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def parsed(query: str) -> Node:
    try:
        return parse(query)
    except QueryError:
        assume(False)
        raise


# --- canonical text --------------------------------------------------------------


@PROPERTY
@given(queries())
@example("police -palantir")
@example('department:(Justice OR "Home Office")')
def test_canonical_reads_back_as_the_same_tree(query):
    node = parsed(query)
    text = canonical(node)
    assert parse(text, max_length=None) == node
    if len(text) <= 1000:
        assert parse(text) == node
    assert canonical(parse(text, max_length=None)) == text
    # The saved search's short road gives the very same tree.
    assert parse_canonical(text) == node


@PROPERTY
@given(st.one_of(st.text(), syntax_soup, syntax_words, queries()))
@example("NOT police")
@example("police AND")
@example("Police")
@example("heading:polic* OR member:\"clive lewis\"")
@example("NOT (police OR prison) AND NOT NOT court OR probation")
@example("(police OR prison")
@example("police OR prison)")
@example("((police)) AND (prison)")
@example("police (prison)")
@example("(" * 10 + "police OR prison" + ")" * 10)
@example("(" * 11 + "police OR prison" + ")" * 11)
@example(" AND ".join(["police"] * 64) + " AND prison")
def test_the_short_road_reads_any_text_as_the_long_road_does(query):
    # Text in canonical form reads the short road (in `parse` and `parse_canonical`); the rest, and every
    # refusal, is the long road's. Either way the tree and the refusal are the long road's. The one
    # difference, by design: `parse_canonical` trusts that canonical text which would match an empty
    # question was refused when it was saved, so it does not check again.
    def outcome(read):
        try:
            return read(query)
        except QueryError as refused:
            return refused.message

    long_road = outcome(parse_in_full)
    empty_refusal = "This search would match even a question with no words at all"
    if isinstance(long_road, str) or not compile_matcher(long_road)(document({})):
        assert outcome(lambda text: parse(text, max_length=None)) == long_road
        assert outcome(parse_canonical) == long_road
    else:
        assert outcome(lambda text: parse(text, max_length=None)).startswith(empty_refusal)
        assert outcome(parse_canonical) in (long_road, outcome(lambda text: parse(text, max_length=None)))



@PROPERTY
@given(st.one_of(st.text(), syntax_soup, syntax_words, queries()))
@example('-"mental health" -(a OR b) -) - x-y --z -')
@example('police "open')
@example("a\u00a0b\u2003-c\u3000(d)")
@example("\u201cmental health\u201d OR \u201ehealth\"")
def test_pieces_agree_with_reading_a_character_at_a_time(query):
    def outcome(read):
        try:
            return read(query)
        except QueryError as refused:
            return refused.message, refused.position

    assert outcome(pieces) == outcome(pieces_a_character_at_a_time)



def pieces_a_character_at_a_time(query: str) -> list[Piece]:
    """The query language's reading of text into pieces, written as its contract states it: one character
    at a time. `pieces` must agree with it on any text."""
    found: list[Piece] = []
    index = 0
    end = len(query)
    while index < end:
        char = query[index]
        if char.isspace():
            index += 1
        elif char in QUOTES:
            close = next((i for i in range(index + 1, end) if query[i] in QUOTES), None)
            if close is None:
                raise QueryError(f"The quote you opened at {_at(index)} is never closed.", index)
            inside = _piece_words(query[index + 1 : close])
            if inside:
                found.append(Piece(Kind.VALUE, index, query[index : close + 1], value=Value(Phrase, tuple(inside))))
            index = close + 1
        elif char == "(":
            found.append(Piece(Kind.OPEN, index, char))
            index += 1
        elif char == ")":
            found.append(Piece(Kind.CLOSE, index, char))
            index += 1
        elif (
            char == "-"
            and _starts_piece(query, index)
            and index + 1 < end
            and not query[index + 1].isspace()
            # "-)" is read as a dropped "-" rather than a NOT left with nothing,
            # just as "-" before a space or at the end is.
            and query[index + 1] != ")"
        ):
            found.append(Piece(Kind.NOT, index, char))
            index += 1
        else:
            stop = index
            while stop < end and not (query[stop].isspace() or query[stop] in QUOTES or query[stop] in _BRACKETS):
                stop += 1
            piece = _run_piece(query[index:stop], index)
            if piece is not None:
                found.append(piece)
            index = stop
    return found


def outcome(query: str) -> Node | QueryError:
    try:
        return parse(query)
    except QueryError as refused:
        return refused


@PROPERTY
@given(query_pairs())
def test_spellings_of_one_query_have_one_canonical_text(pair):
    first, second = (outcome(query) for query in pair)
    if not isinstance(first, QueryError) and not isinstance(second, QueryError):
        assert first == second
        assert canonical(first) == canonical(second)
        return
    # Only the length and the depth of brackets depend on the spelling.
    spelling = ("The search is ", "The bracket at ")
    refusals = [result for result in (first, second) if isinstance(result, QueryError)]
    if len(refusals) == 1:
        assert refusals[0].message.startswith(spelling)
    elif not any(refusal.message.startswith(spelling) for refusal in refusals) and first.position is None:
        assert first.message == second.message


# --- robustness ------------------------------------------------------------------


@PROPERTY
@given(st.one_of(st.text(), syntax_soup, syntax_words, queries()))
@example("\ud800 police \udfff")
@example("(" * 600 + ")" * 400)
@example("NOT " * 250)
@example("member:" * 100)
def test_any_text_gives_a_tree_or_a_refusal(query):
    try:
        node = parse(query)
    except QueryError as refused:
        assert refused.message
        assert refused.position is None or 0 <= refused.position < len(query)
        assert f"character {refused.position + 1}" in refused.message if refused.position is not None else True
        return
    assert isinstance(node, Term | Prefix | Phrase | Not | And | Or)
    assert not matches(node, document({}))


# --- evaluation ------------------------------------------------------------------


def naive(node: Node, record: dict[str, list[str]]) -> bool:
    """Section 4 read literally, over lists of words."""
    if isinstance(node, Term):
        return any(base(word) == base(node.word) for field in node.fields for word in record[field])
    if isinstance(node, Prefix):
        return any(word.startswith(node.prefix) for field in node.fields for word in record[field])
    if isinstance(node, Phrase):
        size = len(node.words)
        return any(
            tuple(record[field][i : i + size]) == node.words
            for field in node.fields
            for i in range(len(record[field]) - size + 1)
        )
    if isinstance(node, Not):
        return not naive(node.child, record)
    if isinstance(node, And):
        return all(naive(child, record) for child in node.children)
    return any(naive(child, record) for child in node.children)


def run_q(q: Q, doc: dict[str, str]) -> bool:
    """What a database does with the Q over rows holding `doc` in `norm_<field>` and `base_<field>` columns."""
    results = []
    for child in q.children:
        if isinstance(child, Q):
            results.append(run_q(child, doc))
            continue
        if isinstance(child, ArrayContains):
            # The words of the default fields as PostgreSQL splits them: every column's text, joined, cut at
            # each space.
            columns = [expression.name.removeprefix("norm_") for expression in child.lhs.source_expressions]
            found = {word[:255] for word in "".join(doc[column] for column in columns).split(" ")}
            results.append({value.value for value in child.rhs.source_expressions} <= found)
            continue
        lookup, value = child
        column, operation = lookup.split("__")
        assert operation == "contains"
        assert column.startswith(("norm_", "base_"))
        results.append(value in doc[column.removeprefix("norm_")])
    result = all(results) if q.connector == Q.AND else any(results)
    return not result if q.negated else result


@PROPERTY
@given(queries(), records(due=True))
def test_evaluators_agree(query, record):
    node = parsed(query)
    doc = document(record)
    expected = naive(node, {field: words(text or "") for field, text in record.items()})
    assert matches(node, doc) is expected
    assert compile_matcher(node)(doc) is expected
    # The due field is a condition on dates and answers in SQL, not on words (tests/test_due_field.py).
    if not any(leaf.fields == ("due",) for leaf in leaves(node)):
        assert run_q(to_q(node), doc) is expected


@PROPERTY
@given(queries(), records())
def test_highlighting_never_breaks_the_text(query, record):
    node = parsed(query)
    text = record["answer"] or ""
    out = highlight(text, node)
    assert html.unescape(out.replace("<mark>", "").replace("</mark>", "")) == text
    assert "<" not in out.replace("<mark>", "").replace("</mark>", "")
    assert out.count("<mark>") == out.count("</mark>")


@PROPERTY
@given(queries(), queries())
def test_the_empty_question_check_agrees_with_the_evaluator(first, second):
    # parse refuses a search that would match a question with no words; it decides without the evaluator,
    # which must agree on every shape: negations, and mixtures of them.
    from questions.search.parser import _matches_nothing_present

    a, b = parsed(first), parsed(second)
    empty = document({})
    for node in (a, Not(a), Not(Not(a)), And((Not(a), b)), Or((Not(a), b)), And((Not(a), Not(b))),
                 Or((Not(a), Not(b))), Not(And((a, Not(b))))):
        assert _matches_nothing_present(node) == compile_matcher(node)(empty)
