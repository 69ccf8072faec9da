"""A saved search in words, for where its syntax would get in the way: "asked by Clive Lewis" for
`member:"Clive Lewis"`. Read from the tree the one parser made, in the same order, so that it is predictable."""

from __future__ import annotations

import unicodedata

from questions.search import DEFAULT_FIELDS, DUE, QUERY_FIELDS, And, Node, Not, Or, Phrase, Prefix, Term, words
from questions.search.words import WORD_RE

# A word or phrase looked for in one field, in words.
IN_FIELD = {
    "heading": "{} in the heading",
    "question": "{} in the question",
    "answer": "{} in the answer",
    "member": "asked by {}",
    "party": "{} party",
    "constituency": "{} constituency",
    "department": "to {}",
    "minister": "answered by {}",
    "house": "in the {}",
    "uin": "UIN {}",
}
# The due field's words, which say a question's state rather than words it holds.
DUE_STATES = {"overdue": "overdue", "late": "answered late", "named": "on a named day"}
_OPERATORS = frozenset({"AND", "OR", "NOT"})


def _as_typed(query: str) -> dict[str, str]:
    """Each word of the search as its owner typed it first: the tree holds words folded (lower case, no
    accents), and "clive lewis" is not how anyone writes a name."""
    typed: dict[str, str] = {}
    query = unicodedata.normalize("NFC", query)
    for run in WORD_RE.finditer(query):
        found = words(run[0])
        # Operators and field names ("department:") are not the words looked for.
        syntax = run[0] in _OPERATORS or query.startswith(":", run.end()) and run[0].lower() in QUERY_FIELDS
        if len(found) == 1 and not syntax:
            typed.setdefault(found[0], run[0])
    return typed


def _leaf(node: Term | Prefix | Phrase, typed: dict[str, str]) -> str:
    if node.fields == (DUE,) and isinstance(node, Term):
        return DUE_STATES[node.word]
    if isinstance(node, Term):
        text = typed.get(node.word, node.word)
    elif isinstance(node, Prefix):
        # A word's start: "hous…" for `hous*`.
        text = typed.get(node.prefix, node.prefix) + "…"
    else:
        text = " ".join(typed.get(word, word) for word in node.words)
    if len(node.fields) == 1:
        return IN_FIELD[node.fields[0]].format(text)
    return text


def _plain(node: Node) -> bool:
    # Words looked for anywhere, or alternatives in brackets: a run of them reads as it was typed. A field or
    # a "not" is set apart with a comma.
    return isinstance(node, Or) or isinstance(node, Term | Prefix | Phrase) and node.fields == DEFAULT_FIELDS


def _words(node: Node, typed: dict[str, str]) -> str:
    if isinstance(node, Not):
        inner = _words(node.child, typed)
        return f"not ({inner})" if isinstance(node.child, And | Or) else f"not {inner}"
    if isinstance(node, Or):
        return " or ".join(f"({_words(child, typed)})" if isinstance(child, And) else _words(child, typed)
                           for child in node.children)
    if isinstance(node, And):
        parts = [f"({_words(child, typed)})" if isinstance(child, Or) else _words(child, typed)
                 for child in node.children]
        return (" " if all(map(_plain, node.children)) else ", ").join(parts)
    return _leaf(node, typed)


def readable(node: Node, query: str = "") -> str:
    """The search `node` in words: fields said in words, no quotes, operators in lower case and brackets only
    where the tree has them; its words spelt as in `query`, the text it was read from, where they are there."""
    return _words(node, _as_typed(query))
