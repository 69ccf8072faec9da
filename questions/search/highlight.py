"""Marking the words of a text that a query looked for, as HTML."""

from __future__ import annotations

import html
from functools import lru_cache

from .ast import And, Node, Not, Or, Phrase, Prefix, Term
from .memo import short_text_cache
from .words import DUE, WORD_RE, base, fold

# Texts repeat a small alphabet, and emails highlight the same texts over and over.
_fold_char = lru_cache(maxsize=65536)(fold)


def _word_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, word) for each word of `text`, with offsets into the original text.

    Each character is folded on its own, which gives the same words as folding
    the whole text (decomposition and case folding work character by character,
    and the marks whose order decomposition could change are dropped), and
    keeps track of which original character every folded one came from.
    """
    if text.isascii():
        folded = text.lower()
        origin = list(range(len(text)))
    else:
        parts: list[str] = []
        origin = []
        for index, char in enumerate(text):
            piece = _fold_char(char)
            parts.append(piece)
            origin.extend([index] * len(piece))
        folded = "".join(parts)
    spans = []
    for match in WORD_RE.finditer(folded):
        start = origin[match.start()]
        end = origin[match.end() - 1] + 1
        # Combining marks fold to nothing: keep them with the letter they sit on.
        while end < len(text) and not _fold_char(text[end]):
            end += 1
        spans.append((start, end, match.group()))
    return spans


def _positive_leaves(node: Node, field: str | None) -> list[Term | Prefix | Phrase]:
    """The leaves whose presence helps the query match: those under an even number of NOTs."""
    found: list[Term | Prefix | Phrase] = []
    stack: list[tuple[Node, bool]] = [(node, True)]
    while stack:
        current, positive = stack.pop()
        if isinstance(current, Not):
            stack.append((current.child, not positive))
        elif isinstance(current, And | Or):
            stack.extend((child, positive) for child in current.children)
        # The due field's words are a state of the question, not words of its text: nothing to mark.
        elif positive and (field in current.fields if field is not None else DUE not in current.fields):
            found.append(current)
    return found


# Highlighting repeats for the same results of a popular search; a long answer is marked afresh each time.
@short_text_cache(maxsize=1024, longest=2000)
def highlight(text: str, node: Node, field: str | None = None) -> str:
    """`text` HTML-escaped, with what the query looks for wrapped in `<mark>`.

    A word is marked when a word or wildcard of the query that is not negated
    matches it (a word typed without quotes marks each of its forms: `prison`
    for `prisons`); a phrase is marked where all its words occur in order.  With
    `field`, only the parts of the query that look in that field count, so the
    heading is not marked for `member:lewis`.  The result is safe to mark safe.
    """
    leaves = _positive_leaves(node, field)
    if not leaves:
        return html.escape(text)
    spans = _word_spans(text)
    found = [span[2] for span in spans]
    terms = {base(leaf.word) for leaf in leaves if isinstance(leaf, Term)}
    prefixes = tuple({leaf.prefix for leaf in leaves if isinstance(leaf, Prefix)})
    phrases = {leaf.words for leaf in leaves if isinstance(leaf, Phrase)}

    marked: list[tuple[int, int]] = []
    for start, end, word in spans:
        if (terms and base(word) in terms) or (prefixes and word.startswith(prefixes)):
            marked.append((start, end))
    for phrase in phrases:
        size = len(phrase)
        for index in range(len(found) - size + 1):
            if tuple(found[index : index + size]) == phrase:
                marked.append((spans[index][0], spans[index + size - 1][1]))

    marked.sort()
    merged: list[list[int]] = []
    for start, end in marked:
        if merged and start < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])

    out: list[str] = []
    done = 0
    for start, end in merged:
        out.append(html.escape(text[done:start]))
        out.append("<mark>" + html.escape(text[start:end]) + "</mark>")
        done = end
    out.append(html.escape(text[done:]))
    return "".join(out)
