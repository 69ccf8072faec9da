"""What a correction changed in an answer: the words removed and added, with a little of what stayed around
each change, cut to what an email shows."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Literal

# The unchanged words shown on each side of a change, so a reader can find it in the answer.
CONTEXT_WORDS = 8
# The most characters of the answers an email shows of their changes, as of any text in it.
SHOWN_MAX = 1_500
# The most characters of one run of removed or added words shown: an answer rewritten whole shows some of
# what went and some of what came.
CHANGE_MAX = SHOWN_MAX // 3
# The most runs of removed or added words shown: each is marked up, and words changed one in two would
# otherwise make the markup many times the words.
CHANGES_MAX = 40
# The most words of each answer compared, past what the two share at each end. A correction changes a
# figure or a sentence: this bounds the comparison's work for an answer rewritten whole, of which an email
# shows the start.
COMPARED_MAX = 1_000


@dataclass(frozen=True)
class Part:
    kind: Literal["same", "removed", "added", "gap"]  # "gap": unchanged words left out
    text: str = ""


@dataclass
class Changes:
    parts: list[Part] = field(default_factory=list)
    # More changed than is shown: the reader is sent to the whole answer.
    cut: bool = False

    def __bool__(self) -> bool:
        return any(part.kind in ("removed", "added") for part in self.parts)


def _shared_ends(before: list[str], after: list[str]) -> tuple[int, int]:
    """How many words the two start with alike, and how many they end with alike after that."""
    start = 0
    while start < min(len(before), len(after)) and before[start] == after[start]:
        start += 1
    end = 0
    while end < min(len(before), len(after)) - start and before[-1 - end] == after[-1 - end]:
        end += 1
    return start, end


def answer_changes(before: str, after: str) -> Changes:
    """The changes from `before` to `after`, word by word (a change of spacing or line breaks alone is none),
    with CONTEXT_WORDS of unchanged words around each and at most SHOWN_MAX characters of words in all."""
    old, new = before.split(), after.split()
    start, end = _shared_ends(old, new)
    old_middle, new_middle = old[start:len(old) - end], new[start:len(new) - end]
    compared_all = len(old_middle) <= COMPARED_MAX and len(new_middle) <= COMPARED_MAX
    old_middle, new_middle = old_middle[:COMPARED_MAX], new_middle[:COMPARED_MAX]
    runs: list[tuple[str, list[str]]] = [("same", old[:start])]
    # Python's heuristic for long sequences (words in more than 1% of a long answer only extend matches) keeps
    # the work near linear: without it, an answer of repeated figures took seconds. Answers under 200 words
    # are compared exactly.
    matcher = difflib.SequenceMatcher(None, old_middle, new_middle, autojunk=True)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            runs.append(("same", old_middle[i1:i2]))
            continue
        if i2 > i1:
            runs.append(("removed", old_middle[i1:i2]))
        if j2 > j1:
            runs.append(("added", new_middle[j1:j2]))
    runs.append(("same", new[len(new) - end:] if compared_all else []))
    return _shown(runs, cut=not compared_all)


def _shown(runs: list[tuple[str, list[str]]], cut: bool) -> Changes:
    changes, room = Changes(cut=cut), SHOWN_MAX

    def add(kind: str, words: list[str]) -> bool:
        """Show the words, or as many as fit: False when nothing more fits."""
        nonlocal room
        text = " ".join(words)
        limit = room if kind == "same" else min(room, CHANGE_MAX)
        fits = len(text) <= limit
        if not fits:
            # At a space if there is one; a single word longer than the room (an address, say) is cut inside.
            text = text[:limit + 1].rsplit(" ", 1)[0] if " " in text[:limit + 1] else (
                text[:limit - 1] + "…" if limit > 1 else "")
            changes.cut = changes.cut or kind != "same" or any(k != "same" for k, w in runs[index + 1:] if w)
        if text:
            changes.parts.append(Part(kind, text))  # type: ignore[arg-type]
        if not fits:
            changes.parts.append(Part("gap"))
        room -= len(text)
        return fits or (kind != "same" and room > 0)

    last, shown = len(runs) - 1, 0
    for index, (kind, words) in enumerate(runs):
        if not words:
            continue
        if kind != "same":
            if shown == CHANGES_MAX:
                changes.cut = True
                changes.parts.append(Part("gap"))
                break
            shown += 1
            if not add(kind, words):
                break
            continue
        # Unchanged words: the end of them before a change, the start of them after one, and a gap between.
        head = words[:CONTEXT_WORDS] if index > 0 else []
        tail = words[-CONTEXT_WORDS:] if index < last else []
        if len(head) + len(tail) >= len(words):
            if not add("same", words):
                break
            continue
        if head and not add("same", head):
            break
        changes.parts.append(Part("gap"))
        if tail and not add("same", tail):
            break
    return changes
