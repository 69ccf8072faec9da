"""Hypothesis strategies: queries drawn from the grammar, and questions to match them against.

A query is first drawn as a description (nested tuples following the grammar),
then written out as text with randomly chosen spellings: capitals, quote marks,
`-` or `NOT`, implicit or explicit AND, spacing, redundant brackets and dropped
punctuation.  Writing one description twice gives two queries that mean the
same syntactically.
"""

from __future__ import annotations

from hypothesis import strategies as st

from questions.search import DUE_WORDS, FIELDS

# Words as a person might type them: capitals, accents, inner punctuation (which
# makes a phrase), digits, and the lower-case operator names that are words.
VOCABULARY = [
    "police",
    "Police",
    "POLICING",
    "crime",
    "café",
    "Cafe",
    "naïve",
    "Straße",
    "strasse",
    "ﬁle",
    "AI",
    "ai",
    "AI-enabled",
    "Children's",
    "£1.5bn",
    "10",
    "HL1234",
    "facial",
    "recognition",
    "home",
    "office",
    "lewis",
    "Lewis",
    "johnson",
    "labour",
    "lords",
    "and",
    "or",
    "not",
    "the",
    "x",
    "Police:",
    "foo:bar",
    "日本",
    "Ελλάδα",
    # Word forms (section 1): families that share a base form, and neighbours that must not.
    "prison",
    "Prisons",
    "policy",
    "policies",
    "polices",
    "child",
    "children",
    "women",
    "woman",
    "fund",
    "funds",
    "funded",
    "funding",
    "intelligence",
    "intelligences",
    "governance",
    "government",
    "new",
    "news",
    "Commons",
    "common",
]
WILDCARD_STEMS = ["polic", "Polic", "café", "recog", "joh", "lab", "comm", "HL1", "ελλ", "日本語"]
QUOTES = ['"', "“", "”", "„"]
NOISE = ["&", "-", "*", "***", '""', "“”", "&&", "—"]
OPERATOR_WORDS = {"and", "or", "not"}

words_st = st.one_of(
    st.sampled_from(VOCABULARY),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzéüøß0123456789", min_size=1, max_size=6),
)
fields_st = st.sampled_from(FIELDS)


def descriptions(max_leaves: int = 12) -> st.SearchStrategy:
    """Descriptions of queries: ("word", w), ("wild", w), ("phrase", ws), ("field", f, value),
    ("not", x), ("and", xs), ("or", xs), ("group", x).

    Negations are placed so that most queries still ask for something to be
    present: a query that would match a question with no words is refused, and
    too many refusals would leave little to test.
    """
    text_leaf = st.one_of(
        words_st.map(lambda w: ("word", w)),
        st.sampled_from(WILDCARD_STEMS).map(lambda w: ("wild", w)),
        st.lists(words_st, min_size=1, max_size=4).map(lambda ws: ("phrase", tuple(ws))),
    )
    # The due field (section 8) with one of its words: a field itself, so another field's value only in brackets.
    leaf = st.one_of(text_leaf, st.sampled_from(DUE_WORDS).map(lambda w: ("due", w)))

    def extend(inner: st.SearchStrategy) -> st.SearchStrategy:
        group = inner.map(lambda x: ("group", x))
        unary = st.one_of(leaf, group, st.tuples(st.just("field"), fields_st, st.one_of(text_leaf, group)))
        negated = unary.map(lambda x: ("not", x))
        conjunction = st.tuples(unary, st.lists(st.one_of(unary, negated), min_size=1, max_size=3), st.integers(0, 3))
        return st.one_of(
            unary,
            negated.map(lambda x: ("not", x)),
            conjunction.map(lambda parts: ("and", (*parts[1][: parts[2]], parts[0], *parts[1][parts[2] :]))),
            st.lists(inner, min_size=2, max_size=4).map(lambda xs: ("or", tuple(xs))),
            # NOT (x OR NOT y) is false for a question without words, so it is allowed.
            st.tuples(unary, inner).map(lambda xy: ("not", ("group", ("or", (xy[1], ("not", xy[0])))))),
        )

    return st.recursive(leaf, extend, max_leaves=max_leaves)


_CASES = st.integers(0, 3)
_AND = st.sampled_from([" ", "  ", " AND ", "  AND\t", " & ", " - ", " *** ", ' "" ', "\t"])
_PHRASE_GAPS = st.sampled_from([" ", "  ", " - ", ", "])
_QUOTE_MARKS = st.sampled_from(QUOTES)
_GROUP_GAPS = st.sampled_from(["", " "])
_FIELD_GAPS = st.sampled_from(["", " ", "  "])
_NOT = st.sampled_from(["-", "NOT ", "NOT  "])
_BEFORE = st.sampled_from(["", " ", "& "])
_AFTER = st.sampled_from(["", " ", " &", " -"])


def _case(draw, word: str) -> str:
    # Capitalising a lower-case operator name would make it an operator.
    if word.casefold() in OPERATOR_WORDS:
        return word
    return (word, word.upper(), word.lower(), word.title())[draw(_CASES)]


def _needs_group(description) -> bool:
    return description[0] in ("and", "or")


def render(draw, description) -> str:
    """One way of writing the query that `description` describes."""
    kind = description[0]
    if kind == "word":
        return _case(draw, description[1])
    if kind == "wild":
        return _case(draw, description[1]) + "*"
    if kind == "phrase":
        inside = draw(_PHRASE_GAPS).join(_case(draw, w) for w in description[1])
        return draw(_QUOTE_MARKS) + inside + draw(_QUOTE_MARKS)
    if kind == "due":
        name = ("due", "DUE", "Due", "due")[draw(_CASES)]
        return f"{name}:{draw(_FIELD_GAPS)}{_case(draw, description[1])}"
    if kind == "group":
        inner = render(draw, description[1])
        if draw(_GROUP_GAPS):
            inner = "(" + inner + ")"
        return "(" + draw(_GROUP_GAPS) + inner + draw(_GROUP_GAPS) + ")"
    if kind == "field":
        _, field, value = description
        name = (field, field.upper(), field.title(), field)[draw(_CASES)]
        return f"{name}:{draw(_FIELD_GAPS)}{render(draw, value)}"
    if kind == "not":
        child = description[1]
        inner = render(draw, child)
        if _needs_group(child):
            inner = "(" + inner + ")"
        # "-" must start a piece and is read as one NOT only: "--x" is NOT x.
        return ("NOT " if child[0] == "not" else draw(_NOT)) + inner
    if kind == "and":
        out = ""
        for index, child in enumerate(description[1]):
            text = render(draw, child)
            if _needs_group(child):
                text = "(" + text + ")"
            out += (draw(_AND) if index else "") + text
        return out
    if kind == "or":
        parts = []
        for child in description[1]:
            text = render(draw, child)
            parts.append("(" + text + ")" if child[0] == "or" else text)
        return " OR ".join(parts)
    raise AssertionError(kind)


# Built once: making a recursive strategy is far slower than drawing from it.
DESCRIPTIONS = descriptions()


@st.composite
def queries(draw) -> str:
    """Query text built from the grammar, with some noise around it."""
    return draw(_BEFORE) + render(draw, draw(DESCRIPTIONS)) + draw(_AFTER)


@st.composite
def query_pairs(draw) -> tuple[str, str]:
    """Two spellings of one description."""
    description = draw(DESCRIPTIONS)
    return render(draw, description), render(draw, description)


# Text made mostly of the characters that the syntax gives a meaning to.
SYNTAX_ALPHABET = '"“”„()-*: \t&ANDORNOTandornotmemberpartyhouseuinpoliceé\u0301ß½'
syntax_soup = st.text(alphabet=SYNTAX_ALPHABET, max_size=60)
syntax_words = st.lists(
    st.sampled_from(
        ["AND", "OR", "NOT", "-", "(", ")", '"', "“", "„", "”", "member:", "Member:", "polic*", "po*", "&", "police"]
        + VOCABULARY
    ),
    max_size=20,
).map(" ".join)

TEXT_WORDS = ["police", "Police", "policing", "crime", "café", "CAFE", "AI", "enabled", "facial", "recognition"]
TEXT_WORDS += ["home", "office", "Lewis", "johnson", "labour", "lords", "and", "the", "10", "hl1234", "Straße"]


_TEXT_VOCABULARY = st.sampled_from(TEXT_WORDS + VOCABULARY)
_TEXT_SEPARATORS = st.sampled_from([" ", ", ", "-", " (", ") ", "’"])


@st.composite
def records(draw, due: bool = False) -> dict[str, str | None]:
    """A question whose fields are short texts over a small vocabulary, so queries often match; with `due`, the
    words of its due field too, as a question's state gives them on the day it is matched."""
    record: dict[str, str | None] = {}
    for field in FIELDS:
        size = draw(st.integers(-1, 8))
        if size < 0:
            record[field] = None
            continue
        record[field] = "".join(draw(_TEXT_VOCABULARY) + draw(_TEXT_SEPARATORS) for _ in range(size))
    if due:
        record["due"] = " ".join(draw(st.lists(st.sampled_from(DUE_WORDS), unique=True)))
    return record
