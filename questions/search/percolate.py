"""The percolator's index of saved searches, matched against a batch of questions at a time.

Plain Python over the query trees of this package: it knows nothing of the database, and `alerts.percolator`
keeps it in step with the saved searches stored there.

Saved searches are indexed the way Lucene Monitor and Elasticsearch's percolator index them: each distinct
query is filed under a few *anchor* keys taken from its tree, chosen so that a question can only match the
query if it holds at least one of them:

- a word in any of its forms in some fields: the key (fields, its base form), looked up among the base forms
  of the question's words;
- a phrase (a quoted word is a phrase of one word): its rarest word, in its fields, looked up among the words
  as written (every word of a matching phrase is in the question);
- a wildcard `prefix*`: the first three letters of the prefix, in its fields (the shortest prefix has three);
- AND: the anchors of its rarest child that has any; OR: the anchors of every child;
- NOT: none; `NOT (a OR b)` is read as `NOT a AND NOT b` and `NOT (a AND b)` as `NOT a OR NOT b`, so the
  tree is anchored through its negations.

"Fields" is either the default group of fields (section 2 of docs/query-language.md), which has keys of its own, or one
named field; each in two spellings, the words as written and their base forms.
A query without anchors (one that only says what must not be there) cannot come from the parser, which
refuses queries that match a question without words; a hand-built one is kept on an "always check" list.

A batch of questions is indexed once: every key it holds maps to a bitmask over the batch (bit i for the
i-th question). The candidates are the queries filed under those keys; each candidate is evaluated once for
the whole batch as bitmask operations (AND is &, OR is |, NOT is ~) over the masks of its words, wildcards
and phrases, each worked out once per batch: a word is looked up, a wildcard's bucket scanned, a phrase
looked up as pairs of adjacent words of one field, and one of three words or more then confirmed by the
substring test the evaluator makes. So the result is exactly `questions.search.matches` for every (query,
question), at the cost of one evaluation per candidate query per batch instead of one per query per
question.

Rarity decides which child of an AND anchors it. It is the share of a sample of recent questions that hold
the key (a word in those fields, or a three-letter wildcard bucket), smoothed by a guess from the field and
the word's length so that words never seen sort as rarer than seen ones, and longer before shorter. The
rarity is fixed for the life of an index, so a query's anchors never change under it.
"""

from __future__ import annotations

import gc
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import NamedTuple, TypeAlias

from .ast import And, Leaf, Node, Not, Or, Phrase, Prefix, Term, leaves
from .evaluate import keys
from .parser import parse_canonical
from .words import DEFAULT_FIELDS, DUE, FIELDS, base, base_key

Document = Mapping[str, str]
# The document keys a key of the index looks in: the default group of fields, or one field; as written or in
# base forms (`evaluate.keys`).
Spec: TypeAlias = tuple[str, ...]
WORD, BUCKET = 0, 1
Anchor: TypeAlias = tuple[int, Spec, str]
BUCKET_LENGTH = 3
# What a compiled query is: a leaf id (the query is one word, wildcard or phrase) or a function of the
# batch's leaf lookup returning the query's bitmask (possibly with bits set beyond the batch, from NOT).
Bits = Callable[[int], int]
Program: TypeAlias = "int | Callable[[Bits], int]"

# A guess at the share of questions holding a word in a field, before looking at any: the house and party
# are shared by many questions, names and UINs by few. The default group's is its own.
_FIELD_SHARE: dict[str | None, float] = {
    None: 0.1, "heading": 0.03, "question": 0.08, "answer": 0.08, "member": 0.005, "party": 0.3,
    "constituency": 0.005, "department": 0.05, "minister": 0.01, "house": 0.5, "uin": 0.0001,
}
_DUE_SHARE = 0.5
_DUE_SPECS = {(DUE,), (base_key(DUE),)}
# Every spec, each with its guess.
_SHARES: dict[Spec, float] = {
    **{tuple(spelling(field) for field in DEFAULT_FIELDS): _FIELD_SHARE[None] for spelling in (str, base_key)},
    **{(spelling(field),): _FIELD_SHARE[field] for field in FIELDS for spelling in (str, base_key)},
}


def shard_of(canonical_query: str, shards: int) -> int:
    """The shard a saved search belongs to: the same on every machine and every run."""
    return zlib.crc32(canonical_query.encode()) % shards if shards > 1 else 0


# Builds that leave fewer new objects than this are left to the collector: walking them costs little.
FREEZE_OBJECTS = 100_000


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cycle collector paused while an index is built, and then, after a large build, everything the
    process holds kept out of its sight.

    Building makes millions of objects that are never garbage: the collector would walk them again and again
    as they pile up, and once more, all of them, at its first collection after the build (about a second at a
    million saved searches). So after a build of more than FREEZE_OBJECTS objects every object of the process
    is frozen (`gc.freeze`): later collections leave them alone, and each is still freed by reference counting
    when nothing refers to it. The index holds no reference cycles. The garbage is collected first, so that
    none is frozen with it, and nothing is frozen when the build fails (its traceback would be).
    """
    global _paused, _collecting
    # Builds in several threads at once share one collector: the first to start pauses it and the last to
    # finish lets it run again, as it was before the first.
    with _pausing:
        if _paused == 0:
            _collecting = gc.isenabled()
            gc.collect()
            gc.disable()
        _paused += 1
    try:
        yield
        if gc.get_count()[0] > FREEZE_OBJECTS:
            gc.freeze()
    finally:
        with _pausing:
            _paused -= 1
            if _paused == 0 and _collecting:
                gc.enable()


_pausing = threading.Lock()
_paused = 0
_collecting = False


def specs(leaf: Leaf) -> tuple[Spec, ...]:
    """The specs whose keys a leaf is looked up under: the default group as one, other fields one by one."""
    found = keys(leaf)
    return (found,) if leaf.fields == DEFAULT_FIELDS else tuple((key,) for key in found)


def iter_bits(mask: int) -> Iterator[int]:
    """The positions of the set bits of a non-negative mask, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _words_of(doc: Document, spec: Spec) -> set[str]:
    found = set(doc[spec[0]].split())
    for key in spec[1:]:
        found.update(doc[key].split())
    return found


class Rarity:
    """The estimated share of questions that hold a key; the smaller, the better an anchor."""

    def __init__(self, documents: Iterable[Document] = ()) -> None:
        self.documents = 0
        self.words: dict[Spec, Counter[str]] = {spec: Counter() for spec in _SHARES}
        self.buckets: dict[Spec, Counter[str]] = {spec: Counter() for spec in _SHARES}
        for doc in documents:
            self.documents += 1
            for spec in _SHARES:
                found = _words_of(doc, spec)
                self.words[spec].update(found)
                self.buckets[spec].update({word[:BUCKET_LENGTH] for word in found if len(word) >= BUCKET_LENGTH})

    def word(self, spec: Spec, word: str) -> float:
        if spec in _DUE_SPECS:
            # Worked out when a question is matched, never stored: no sample counts it, and a third of
            # questions are named-day ones. Any word of the query is a better anchor.
            return _DUE_SHARE
        guess = _SHARES.get(spec, 0.1) * min(1.0, 3 / len(word))
        return (self.words.get(spec, _NONE)[word] + guess) / (self.documents + 1)

    def bucket(self, spec: Spec, key: str) -> float:
        guess = min(1.0, 3 * _SHARES.get(spec, 0.1))
        return (self.buckets.get(spec, _NONE)[key] + guess) / (self.documents + 1)


_NONE: Counter[str] = Counter()


class Batch:
    """A batch of questions as key -> bitmask, built per field group on first use."""

    def __init__(self, documents: Sequence[Document]) -> None:
        self.documents = documents
        self.all = (1 << len(documents)) - 1
        self._words: dict[Spec, dict[str, int]] = {}
        self._buckets: dict[Spec, dict[str, list[tuple[str, int]]]] = {}
        self._pairs: dict[Spec, dict[str, int]] = {}

    def words(self, spec: Spec) -> dict[str, int]:
        found = self._words.get(spec)
        if found is None:
            found = {}
            get = found.get
            for position, doc in enumerate(self.documents):
                bit = 1 << position
                for word in _words_of(doc, spec):
                    found[word] = get(word, 0) | bit
            self._words[spec] = found
        return found

    def buckets(self, spec: Spec) -> dict[str, list[tuple[str, int]]]:
        found = self._buckets.get(spec)
        if found is None:
            found = {}
            for word, mask in self.words(spec).items():
                if len(word) >= BUCKET_LENGTH:
                    found.setdefault(word[:BUCKET_LENGTH], []).append((word, mask))
            self._buckets[spec] = found
        return found

    def pairs(self, spec: Spec) -> dict[str, int]:
        """Two adjacent words of one field ("a b") -> the questions that have them so."""
        found = self._pairs.get(spec)
        if found is None:
            found = {}
            get = found.get
            for position, doc in enumerate(self.documents):
                bit = 1 << position
                seen: set[str] = set()
                for key in spec:
                    sequence = doc[key].split()
                    seen.update(map(" ".join, zip(sequence, sequence[1:], strict=False)))
                for pair in seen:
                    found[pair] = get(pair, 0) | bit
            self._pairs[spec] = found
        return found

    def leaf(self, leaf: Leaf) -> int:
        """The questions of the batch that hold the word, wildcard or phrase."""
        mask = 0
        if isinstance(leaf, Term):
            for spec in specs(leaf):
                mask |= self.words(spec).get(base(leaf.word), 0)
            return mask
        if isinstance(leaf, Prefix):
            for spec in specs(leaf):
                for word, word_mask in self.buckets(spec).get(leaf.prefix[:BUCKET_LENGTH], ()):
                    if word.startswith(leaf.prefix):
                        mask |= word_mask
            return mask
        if len(leaf.words) == 1:
            for spec in specs(leaf):
                mask |= self.words(spec).get(leaf.words[0], 0)
            return mask
        text = " " + " ".join(leaf.words) + " "
        for spec in specs(leaf):
            # A two-word phrase is one pair of adjacent words; a longer one can only be where all its pairs
            # are, and the text of those questions alone is searched.
            present = self.pairs(spec)
            having = self.all
            for pair in zip(leaf.words, leaf.words[1:], strict=False):
                having &= present.get(" ".join(pair), 0)
                if not having:
                    break
            if len(leaf.words) == 2 or not having:
                mask |= having
                continue
            for position in iter_bits(having):
                doc = self.documents[position]
                for key in spec:
                    if text in doc[key]:
                        mask |= 1 << position
                        break
        return mask


class _Anchoring(NamedTuple):
    cost: float
    anchors: tuple[Anchor, ...]


class QueryIndex:
    """Distinct saved-search trees filed under their anchors, matched a batch of questions at a time.

    Queries are added by their canonical text, once per saved search that uses them; a query stays until
    it has been discarded as often as it was added. Nothing here touches the database.
    """

    def __init__(self, rarity: Rarity | None = None) -> None:
        self.rarity = rarity or Rarity()
        self._ids: dict[str, int] = {}
        self._texts: list[str | None] = []
        self._programs: list[Program | None] = []
        self._refs: list[int] = []
        self._free: list[int] = []
        self._postings: dict[tuple[int, Spec], dict[str, set[int]]] = {}
        self._always: set[int] = set()
        self._leaf_ids: dict[Leaf, int] = {}
        self._leaves: list[Leaf | None] = []
        self._leaf_refs: list[int] = []
        self._leaf_anchorings: list[_Anchoring | None] = []
        self._free_leaves: list[int] = []

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, text: object) -> bool:
        return text in self._ids

    def query_id(self, text: str) -> int | None:
        return self._ids.get(text)

    def text(self, query_id: int) -> str:
        text = self._texts[query_id]
        assert text is not None, f"query {query_id} was removed"
        return text

    def references(self, text: str) -> int:
        query_id = self._ids.get(text)
        return 0 if query_id is None else self._refs[query_id]

    # --- anchors ------------------------------------------------------------------

    def anchors(self, node: Node) -> tuple[Anchor, ...] | None:
        """The keys one of which a question must hold to match `node`; None when no such keys exist."""
        found = self._anchorings(node)[0]
        return None if found is None else found.anchors

    def _anchorings(self, node: Node) -> tuple[_Anchoring | None, _Anchoring | None]:
        """The anchors of `node` when it holds and when it fails, with their estimated costs."""
        if isinstance(node, Not):
            holds, fails = self._anchorings(node.child)
            return fails, holds
        if isinstance(node, Term | Prefix | Phrase):
            return self._leaf_anchoring(node), None
        return _combine(isinstance(node, And), [self._anchorings(child) for child in node.children])

    def _leaf_anchoring(self, leaf: Leaf) -> _Anchoring:
        anchors: list[Anchor] = []
        cost = 0.0
        for spec in specs(leaf):
            if isinstance(leaf, Term):
                anchors.append((WORD, spec, base(leaf.word)))
                cost += self.rarity.word(spec, base(leaf.word))
            elif isinstance(leaf, Prefix):
                anchors.append((BUCKET, spec, leaf.prefix[:BUCKET_LENGTH]))
                cost += self.rarity.bucket(spec, leaf.prefix[:BUCKET_LENGTH])
            else:
                rarest = min(leaf.words, key=lambda word, spec=spec: (self.rarity.word(spec, word), -len(word)))
                anchors.append((WORD, spec, rarest))
                cost += self.rarity.word(spec, rarest)
        return _Anchoring(min(cost, 1.0), tuple(anchors))

    # --- adding and removing ------------------------------------------------------

    def texts(self) -> list[str]:
        return list(self._ids)

    def add(self, text: str, node: Node | None = None) -> int:
        """File the canonical query `text` (once more); raises QueryError if it does not parse.

        `node` is its tree where the caller has it already, or a tree the parser would refuse. Without
        one, `text` is trusted as a saved search's canonical text, checked when it was saved
        (`parse_canonical`).
        """
        query_id = self._ids.get(text)
        if query_id is not None:
            self._refs[query_id] += 1
            return query_id
        if node is None:
            node = parse_canonical(text)
        if self._free:
            query_id = self._free.pop()
        else:
            query_id = len(self._texts)
            self._texts.append(None)
            self._programs.append(None)
            self._refs.append(0)
        found, _, program = self._file(node)
        self._texts[query_id] = text
        self._programs[query_id] = program
        self._refs[query_id] = 1
        self._ids[text] = query_id
        if found is None:
            self._always.add(query_id)
        else:
            postings = self._postings
            for kind, spec, key in found.anchors:
                keyed = postings.get((kind, spec))
                if keyed is None:
                    keyed = postings[(kind, spec)] = {}
                filed = keyed.get(key)
                if filed is None:
                    keyed[key] = {query_id}
                else:
                    filed.add(query_id)
        return query_id

    def _file(self, node: Node) -> tuple[_Anchoring | None, _Anchoring | None, Program]:
        """`_anchorings(node)` and the program of `node`, in one walk of the tree that holds each of its
        leaves once more (`discard` releases them the same way)."""
        kind = node.__class__
        if kind is Not:
            holds, fails, inner = self._file(node.child)  # type: ignore[union-attr]
            return fails, holds, _negation(inner)
        if kind is And or kind is Or:
            parts = [self._file(child) for child in node.children]  # type: ignore[union-attr]
            holds, fails = _combine(kind is And, parts)
            if kind is And:
                # Rarest child first, so that the AND empties soonest; negations, which have no anchors, last.
                parts.sort(key=_cost)
                return holds, fails, _conjunction(tuple(part[2] for part in parts))
            return holds, fails, _disjunction(tuple(part[2] for part in parts))
        leaf_id = self._hold_leaf(node)  # type: ignore[arg-type]
        return self._leaf_anchorings[leaf_id], None, leaf_id

    def discard(self, text: str, node: Node | None = None) -> None:
        """Undo one `add` of `text` (with the same `node`); the query goes when no saved search uses it."""
        query_id = self._ids.get(text)
        if query_id is None:
            return
        self._refs[query_id] -= 1
        if self._refs[query_id] > 0:
            return
        if node is None:
            # Parsing again gives the same tree, so the same leaves and anchors as when it was added.
            node = parse_canonical(text)
        anchors = self.anchors(node)
        if anchors is None:
            self._always.discard(query_id)
        else:
            for kind, spec, key in anchors:
                postings = self._postings[(kind, spec)]
                postings[key].discard(query_id)
                if not postings[key]:
                    del postings[key]
        for leaf in leaves(node):
            self._release_leaf(leaf)
        del self._ids[text]
        self._texts[query_id] = None
        self._programs[query_id] = None
        self._refs[query_id] = 0
        self._free.append(query_id)

    def _hold_leaf(self, leaf: Leaf) -> int:
        """The id of `leaf`, counting one more place in a query that holds it."""
        leaf_id = self._leaf_ids.get(leaf)
        if leaf_id is None:
            if self._free_leaves:
                leaf_id = self._free_leaves.pop()
                self._leaves[leaf_id] = leaf
                self._leaf_anchorings[leaf_id] = self._leaf_anchoring(leaf)
            else:
                leaf_id = len(self._leaves)
                self._leaves.append(leaf)
                self._leaf_anchorings.append(self._leaf_anchoring(leaf))
                self._leaf_refs.append(0)
            self._leaf_ids[leaf] = leaf_id
        self._leaf_refs[leaf_id] += 1
        return leaf_id

    def _release_leaf(self, leaf: Leaf) -> None:
        leaf_id = self._leaf_ids[leaf]
        self._leaf_refs[leaf_id] -= 1
        if self._leaf_refs[leaf_id] == 0:
            del self._leaf_ids[leaf]
            self._leaves[leaf_id] = None
            self._leaf_anchorings[leaf_id] = None
            self._free_leaves.append(leaf_id)

    # --- matching -----------------------------------------------------------------

    def candidates(self, batch: Batch) -> set[int]:
        """The queries filed under a key that some question of the batch holds."""
        found = set(self._always)
        for (kind, spec), postings in self._postings.items():
            present: Mapping[str, object] = batch.words(spec) if kind == WORD else batch.buckets(spec)
            if len(present) < len(postings):
                for key in present:
                    queries = postings.get(key)
                    if queries:
                        found.update(queries)
            else:
                for key, queries in postings.items():
                    if key in present:
                        found.update(queries)
        return found

    def match_ids(self, documents: Sequence[Document]) -> dict[int, int]:
        """Query id -> bitmask of the documents (bit i for documents[i]) it matches, for matching queries."""
        if not documents:
            return {}
        batch = Batch(documents)
        leaves = self._leaves
        memo: dict[int, int] = {}

        def bits(leaf_id: int) -> int:
            mask = memo.get(leaf_id)
            if mask is None:
                mask = memo[leaf_id] = batch.leaf(leaves[leaf_id])  # type: ignore[arg-type]
            return mask

        programs = self._programs
        everything = batch.all
        found: dict[int, int] = {}
        for query_id in self.candidates(batch):
            program = programs[query_id]
            mask = bits(program) if program.__class__ is int else program(bits)  # type: ignore[operator,misc,arg-type]
            if mask:
                mask &= everything
                if mask:
                    found[query_id] = mask
        return found

    def match(self, documents: Sequence[Document]) -> dict[str, int]:
        """Canonical query -> bitmask of the documents it matches, for the queries that match any."""
        return {self.text(query_id): mask for query_id, mask in self.match_ids(documents).items()}

    def candidate_pairs(self, documents: Sequence[Document]) -> int:
        """How many (query, document) pairs hold an anchor of the query: the work a per-question
        percolator would verify."""
        batch = Batch(documents)
        anchored: dict[int, int] = {}
        for (kind, spec), postings in self._postings.items():
            if kind == WORD:
                present = batch.words(spec)
                keyed = ((key, present[key]) for key in postings.keys() & present.keys())
            else:
                buckets = batch.buckets(spec)
                keyed = ((key, _or(mask for _, mask in buckets[key])) for key in postings.keys() & buckets.keys())
            for key, mask in keyed:
                for query_id in postings[key]:
                    anchored[query_id] = anchored.get(query_id, 0) | mask
        return sum(mask.bit_count() for mask in anchored.values()) + len(self._always) * len(documents)


def _or(masks: Iterable[int]) -> int:
    total = 0
    for mask in masks:
        total |= mask
    return total


def _cost(part: tuple[_Anchoring | None, _Anchoring | None, Program]) -> float:
    return 2.0 if part[0] is None else part[0].cost


def _combine(
    every: bool, parts: Sequence[tuple]
) -> tuple[_Anchoring | None, _Anchoring | None]:
    """The anchorings (when it holds, when it fails) of an AND (`every`) or OR of parts with theirs.

    An AND holds when every part does, so any part's anchors will do and the cheapest is taken; it fails
    when some part fails, so the anchors of every part's failing are needed. An OR is the other way round.
    """
    if every:
        return _cheapest(parts, 0), _union(parts, 1)
    return _union(parts, 0), _cheapest(parts, 1)


def _cheapest(parts: Sequence[tuple], which: int) -> _Anchoring | None:
    best: _Anchoring | None = None
    for part in parts:
        found = part[which]
        if found is not None and (best is None or (found.cost, len(found.anchors)) < (best.cost, len(best.anchors))):
            best = found
    return best


def _union(parts: Sequence[tuple], which: int) -> _Anchoring | None:
    anchors: list[Anchor] = []
    cost = 0.0
    for part in parts:
        found = part[which]
        if found is None:
            return None
        anchors += found.anchors
        cost += found.cost
    return _Anchoring(min(cost, 1.0), tuple(dict.fromkeys(anchors)))


# Programs are closures over leaf ids, or a leaf id alone: evaluating one is a few bitmask operations.


def _negation(inner: Program) -> Program:
    if inner.__class__ is int:

        def not_leaf(bits: Bits, leaf: int = inner) -> int:  # type: ignore[assignment]
            return ~bits(leaf)

        return not_leaf

    def negated(bits: Bits, inner: Callable[[Bits], int] = inner) -> int:  # type: ignore[assignment]
        return ~inner(bits)

    return negated


def _conjunction(parts: tuple[Program, ...]) -> Program:
    """AND of the parts, in their order, stopping at the first that leaves nothing."""
    if all(part.__class__ is int for part in parts):
        first, rest = parts[0], parts[1:]

        def all_of(bits: Bits) -> int:
            mask = bits(first)  # type: ignore[arg-type]
            for part in rest:
                if not mask:
                    return 0
                mask &= bits(part)  # type: ignore[arg-type]
            return mask

        return all_of

    def every(bits: Bits) -> int:
        mask = -1
        for part in parts:
            mask &= bits(part) if part.__class__ is int else part(bits)  # type: ignore[arg-type,operator]
            if not mask:
                return 0
        return mask

    return every


def _disjunction(parts: tuple[Program, ...]) -> Program:
    if all(part.__class__ is int for part in parts):
        first, rest = parts[0], parts[1:]

        def any_of(bits: Bits) -> int:
            mask = bits(first)  # type: ignore[arg-type]
            for part in rest:
                mask |= bits(part)  # type: ignore[arg-type]
            return mask

        return any_of

    def some(bits: Bits) -> int:
        mask = 0
        for part in parts:
            mask |= bits(part) if part.__class__ is int else part(bits)  # type: ignore[arg-type,operator]
        return mask

    return some
