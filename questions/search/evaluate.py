"""Whether a question matches a query tree (section 4 of docs/query-language.md).

Documents are the output of `words.document()`: each field's words joined by
single spaces with a space at each end, as written and (under `base_key(field)`)
in their base forms, so every test is one substring search.
A tree is compiled once into nested closures; the percolator should hold on to
`compile_matcher(node)` for each saved search, while `matches` keeps a small
cache for callers that do not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .ast import And, Node, Not, Or, Phrase, Prefix, Term
from .words import base, base_key

Document = Mapping[str, str]
Matcher = Callable[[Document], bool]


def needle(node: Term | Prefix | Phrase) -> str:
    """The substring of a document's text (under `keys(node)`) that shows the leaf is there."""
    if isinstance(node, Term):
        return f" {base(node.word)} "
    if isinstance(node, Prefix):
        return f" {node.prefix}"
    return " " + " ".join(node.words) + " "


def keys(node: Term | Prefix | Phrase) -> tuple[str, ...]:
    """The document keys the leaf looks in: a word in any form looks at base forms, the rest at the words as
    written."""
    if isinstance(node, Term):
        return tuple(map(base_key, node.fields))
    return node.fields


def _leaf_matcher(text: str, fields: tuple[str, ...]) -> Matcher:
    # Unrolled for the usual one field: this runs for every question against every saved search.
    if len(fields) == 1:
        (only,) = fields

        def one(doc: Document) -> bool:
            return text in doc[only]

        return one
    def any_field(doc: Document) -> bool:
        return any(text in doc[field] for field in fields)

    return any_field


def compile_matcher(node: Node) -> Matcher:
    """A function of a document that is true when the document matches `node`."""
    if isinstance(node, Term | Prefix | Phrase):
        return _leaf_matcher(needle(node), keys(node))
    if isinstance(node, Not):
        # NOT NOT x is x: stripping pairs keeps long chains of NOTs flat.
        negate = False
        while isinstance(node, Not):
            node = node.child
            negate = not negate
        inner = compile_matcher(node)
        if not negate:
            return inner

        def negated(doc: Document) -> bool:
            return not inner(doc)

        return negated
    parts = tuple(compile_matcher(child) for child in node.children)
    # Plain loops rather than all()/any() over a generator: about twice as fast
    # here, and this is the inner loop of the percolator.
    if isinstance(node, And):
        if len(parts) == 2:
            left, right = parts

            def both(doc: Document) -> bool:
                return left(doc) and right(doc)

            return both

        def every(doc: Document) -> bool:
            for part in parts:  # noqa: SIM110
                if not part(doc):
                    return False
            return True

        return every
    assert isinstance(node, Or)
    if len(parts) == 2:
        left, right = parts

        def either(doc: Document) -> bool:
            return left(doc) or right(doc)

        return either

    def some(doc: Document) -> bool:
        for part in parts:  # noqa: SIM110
            if part(doc):
                return True
        return False

    return some


_CACHE_SIZE = 4096
# Keyed by id() to avoid hashing the whole tree on every call; the node is kept
# in the entry so its id cannot be reused while the entry exists.
_compiled: dict[int, tuple[Node, Matcher]] = {}


def matches(node: Node, doc: Document) -> bool:
    """True when the document (from `words.document()`) matches the query tree."""
    entry = _compiled.get(id(node))
    if entry is None or entry[0] is not node:
        if len(_compiled) >= _CACHE_SIZE:
            _compiled.clear()
        entry = (node, compile_matcher(node))
        _compiled[id(node)] = entry
    return entry[1](doc)
