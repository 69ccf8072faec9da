"""The percolator against Xapian and tantivy on the same saved searches and the same batch of questions.

Each engine answers "which of the M questions does each distinct saved search match":

- the percolator (`questions.search.percolate.QueryIndex`): the searches are filed once, with the rarity
  read from a sample of 2,000 earlier questions as the service does, and the batch is matched in one call;
- Xapian: the batch is indexed in an in-memory database (DB_BACKEND_INMEMORY), one term prefix per field of
  the query language and word positions for phrases, and each search, translated into a `xapian.Query`, is
  run with an Enquire for every match (boolean weighting, check-at-least M);
- tantivy: the batch is indexed in RAM, one text field per query-language field with the whitespace
  tokenizer over the already-normalised text and positions indexed, and each translated search is run
  with `searcher.search(query, limit=M)`.

Searches and questions are made exactly as bench/match.py makes them (same corpus, same seed, same order of
draws), without a database. The three answers must be identical for every distinct search; any difference
is listed and the exit status is 1. Each engine builds and matches three times; the table gives the median
and range of the wall-clock time of each step. For Xapian and tantivy "index questions" is a per-batch cost
and "translate searches" could be done once, like the percolator's filing.

    .venv/bin/pip install -r bench/requirements-peers.txt
    .venv/bin/python bench/peers.py --searches 1000000 --questions 1000

Wildcards are expanded by the engines themselves: Xapian's OP_WILDCARD over the field's terms, tantivy's
RegexQuery `prefix.*` over the field's term dictionary.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RARITY_SAMPLE = 2000
RUNS = 3


# --- the searches and questions ------------------------------------------------------------


def fields_of(question: dict) -> dict[str, str]:
    """The raw text of each query-language field, as `Question.search_fields` gives it."""
    return {
        "heading": question["heading"], "question": question["question_text"], "answer": question["answer_text"],
        "member": question["asking_member_name"], "party": question["asking_member_party"],
        "constituency": question["asking_member_constituency"], "department": question["answering_body_name"],
        "minister": question["answering_member_name"], "house": question["house"], "uin": question["uin"],
    }


def generate(n: int, m: int, tail_words: int, seed: int):
    """(rarity sample, subscriptions' canonical searches, canonical -> tree, batch) as bench/match.py makes them.

    The draws are made in match.py's order, including those it spends on each subscription's frequency
    and alert kind, so that the searches and the batch are the very ones it stores.
    """
    from bench.match import Corpus
    from questions.search import QueryError, canonical, document, parse

    rng = random.Random(seed)
    corpus = Corpus(tail_words, rng)
    sample = [document(fields_of(corpus.question(number))) for number in range(RARITY_SAMPLE)]
    canonical_of: dict[str, str] = {}
    trees: dict[str, object] = {}
    held_by_subscriptions: list[str] = []
    held: set[str] = set()
    while len(held_by_subscriptions) < n:
        if len(held_by_subscriptions) % 3 == 0:
            held = set()
        text = corpus.search()
        found = canonical_of.get(text)
        if found is None:
            try:
                node = parse(text)
            except QueryError:
                continue
            found = canonical_of[text] = canonical(node)
            trees.setdefault(found, node)
        if found in held:
            continue
        held.add(found)
        corpus.rng.random()
        corpus.rng.randrange(4)
        held_by_subscriptions.append(found)
    batch = [document(fields_of(corpus.question(number))) for number in range(RARITY_SAMPLE, RARITY_SAMPLE + m)]
    return sample, held_by_subscriptions, trees, batch


# --- the percolator --------------------------------------------------------------------------


def percolator_build(trees: dict, sample: Sequence[dict]):
    from questions.search.percolate import QueryIndex, Rarity

    index = QueryIndex(Rarity(sample))
    for text, node in trees.items():
        index.add(text, node)
    return index


def percolator_masks(found: dict[str, int], texts: Sequence[str]) -> list[int]:
    return [found.get(text, 0) for text in texts]


# --- Xapian ------------------------------------------------------------------------------------

def xapian_prefix(field: str) -> str:
    # The colon keeps one field's terms from starting with another field's prefix, so that a wildcard over
    # "XQUESTION:" sees question words only.
    return f"X{field.upper()}:"


def xapian_index(batch: Sequence[dict]):
    import xapian

    from questions.search import FIELDS

    # What `inmemory_open()` was; these bindings only have the flag.
    db = xapian.WritableDatabase("", xapian.DB_BACKEND_INMEMORY)
    for doc in batch:
        entry = xapian.Document()
        for field in FIELDS:
            prefix = xapian_prefix(field)
            for position, word in enumerate(doc[field].split(), 1):
                entry.add_posting(prefix + word, position)
        db.add_document(entry)
    return db


def xapian_query(node):
    import xapian

    from questions.search import And, Not, Or, Phrase, Prefix, Term

    Q = xapian.Query

    def any_of(queries: list) -> object:
        return queries[0] if len(queries) == 1 else Q(Q.OP_OR, queries)

    if isinstance(node, Term):
        return any_of([Q(xapian_prefix(field) + node.word) for field in node.fields])
    if isinstance(node, Prefix):
        return any_of([Q(Q.OP_WILDCARD, xapian_prefix(field) + node.prefix) for field in node.fields])
    if isinstance(node, Phrase):
        return any_of([Q(Q.OP_PHRASE, [xapian_prefix(field) + word for word in node.words], len(node.words))
                       for field in node.fields])
    if isinstance(node, Not):
        return Q(Q.OP_AND_NOT, Q.MatchAll, xapian_query(node.child))
    if isinstance(node, Or):
        return Q(Q.OP_OR, [xapian_query(child) for child in node.children])
    assert isinstance(node, And)
    # AND_NOT of the wanted by the OR of the unwanted is how Xapian's own parser reads `a -b -c`.
    wanted = [xapian_query(child) for child in node.children if not isinstance(child, Not)]
    unwanted = [xapian_query(child.child) for child in node.children if isinstance(child, Not)]
    query = Q.MatchAll if not wanted else wanted[0] if len(wanted) == 1 else Q(Q.OP_AND, wanted)
    return Q(Q.OP_AND_NOT, query, any_of(unwanted)) if unwanted else query


def xapian_match(db, queries: Sequence, m: int) -> list[list[int]]:
    import xapian

    enquire = xapian.Enquire(db)
    enquire.set_weighting_scheme(xapian.BoolWeight())
    enquire.set_docid_order(xapian.Enquire.ASCENDING)
    found = []
    for query in queries:
        enquire.set_query(query)
        mset = enquire.get_mset(0, m, m)
        found.append([item.docid for item in mset])
    return found


def xapian_masks(found: list[list[int]]) -> list[int]:
    masks = []
    for docids in found:
        mask = 0
        for docid in docids:
            mask |= 1 << (docid - 1)
        masks.append(mask)
    return masks


# --- tantivy -----------------------------------------------------------------------------------


def tantivy_index(batch: Sequence[dict]):
    import tantivy

    from questions.search import FIELDS

    builder = tantivy.SchemaBuilder()
    for field in FIELDS:
        builder.add_text_field(field, tokenizer_name="whitespace", index_option="position")
    # Read back only when checking, to map doc addresses to positions in the batch.
    builder.add_unsigned_field("position", stored=True)
    schema = builder.build()
    index = tantivy.Index(schema)
    writer = index.writer(heap_size=50_000_000, num_threads=1)
    for position, doc in enumerate(batch):
        entry = {field: doc[field] for field in FIELDS}
        entry["position"] = position
        writer.add_document(tantivy.Document(**entry))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    return index


def tantivy_query(node, schema):
    from tantivy import Occur, Query

    from questions.search import And, Not, Or, Phrase, Prefix, Term

    def any_of(queries: list) -> object:
        return queries[0] if len(queries) == 1 else Query.boolean_query([(Occur.Should, q) for q in queries])

    if isinstance(node, Term):
        return any_of([Query.term_query(schema, field, node.word, index_option="basic") for field in node.fields])
    if isinstance(node, Prefix):
        # Words are letters and digits only, so the prefix needs no escaping; the regex matches whole terms.
        return any_of([Query.regex_query(schema, field, node.prefix + ".*") for field in node.fields])
    if isinstance(node, Phrase):
        return any_of([Query.phrase_query(schema, field, list(node.words)) for field in node.fields])
    if isinstance(node, Not):
        # A boolean query of nothing but MustNot clauses matches nothing in tantivy.
        inner = tantivy_query(node.child, schema)
        return Query.boolean_query([(Occur.Must, Query.all_query()), (Occur.MustNot, inner)])
    if isinstance(node, Or):
        return Query.boolean_query([(Occur.Should, tantivy_query(child, schema)) for child in node.children])
    assert isinstance(node, And)
    clauses = [(Occur.MustNot, tantivy_query(child.child, schema)) if isinstance(child, Not)
               else (Occur.Must, tantivy_query(child, schema)) for child in node.children]
    if all(occur == Occur.MustNot for occur, _ in clauses):
        clauses.append((Occur.Must, Query.all_query()))
    return Query.boolean_query(clauses)


def tantivy_match(index, queries: Sequence, m: int) -> list[list]:
    searcher = index.searcher()
    return [searcher.search(query, limit=m, count=False).hits for query in queries]


def tantivy_masks(index, found: list[list]) -> list[int]:
    from tantivy import Query

    searcher = index.searcher()
    hits = searcher.search(Query.all_query(), limit=max(1, searcher.num_docs), count=False).hits
    position = {(address.segment_ord, address.doc): searcher.doc(address)["position"][0] for _, address in hits}
    masks = []
    for found_hits in found:
        mask = 0
        for _, address in found_hits:
            mask |= 1 << position[(address.segment_ord, address.doc)]
        masks.append(mask)
    return masks


# --- measuring -------------------------------------------------------------------------------


def timed(step: Callable[[], object]) -> tuple[object, float]:
    gc.collect()
    started = time.perf_counter()
    result = step()
    return result, time.perf_counter() - started


def iter_bits(mask: int) -> list[int]:
    from questions.search.percolate import iter_bits

    return list(iter_bits(mask))


def compare(name: str, texts: Sequence[str], expected: Sequence[int], got: Sequence[int], show: int) -> int:
    different = [i for i, (want, have) in enumerate(zip(expected, got, strict=True)) if want != have]
    for i in different[:show]:
        missing = list(iter_bits(expected[i] & ~got[i]))
        extra = list(iter_bits(got[i] & ~expected[i]))
        print(f"  {name} differs on {texts[i]!r}: misses questions {missing[:10]}, adds {extra[:10]}")
    return len(different)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", type=int, default=100_000, help="saved searches (default 100,000)")
    parser.add_argument("--questions", type=int, default=1000, help="questions in the batch (default 1,000)")
    parser.add_argument("--tail-words", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--show", type=int, default=5, help="differences listed per engine (default 5)")
    args = parser.parse_args()
    import tantivy
    import xapian

    m = args.questions
    started = time.perf_counter()
    sample, held, trees, batch = generate(args.searches, m, args.tail_words, args.seed)
    texts = list(trees)
    nodes = [trees[text] for text in texts]
    print(f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; Xapian {xapian.version_string()}, "
          f"tantivy {metadata.version('tantivy')} ({tantivy.__version__})", flush=True)
    print(f"generated {len(held):,} searches ({len(texts):,} distinct) and {m:,} questions "
          f"in {time.perf_counter() - started:.1f}s", flush=True)

    times: dict[tuple[str, str], list[float]] = {}
    different = {"xapian": 0, "tantivy": 0}
    expected: list[int] = []
    for run in range(RUNS):
        index, seconds = timed(lambda: percolator_build(trees, sample))
        times.setdefault(("percolator", "file searches"), []).append(seconds)
        found, seconds = timed(lambda index=index: index.match(batch))
        times.setdefault(("percolator", "match batch"), []).append(seconds)
        masks = percolator_masks(found, texts)
        if run == 0:
            expected = masks
        elif masks != expected:
            raise SystemExit("the percolator gave different answers on different runs")
        del index, found, masks

        db, seconds = timed(lambda: xapian_index(batch))
        times.setdefault(("xapian", "index questions"), []).append(seconds)
        queries, seconds = timed(lambda: [xapian_query(node) for node in nodes])
        times.setdefault(("xapian", "translate searches"), []).append(seconds)
        found, seconds = timed(lambda db=db, queries=queries: xapian_match(db, queries, m))
        times.setdefault(("xapian", "match batch"), []).append(seconds)
        different["xapian"] = max(different["xapian"], compare("xapian", texts, expected, xapian_masks(found),
                                                                args.show if run == 0 else 0))
        del db, queries, found

        index, seconds = timed(lambda: tantivy_index(batch))
        times.setdefault(("tantivy", "index questions"), []).append(seconds)
        schema = index.schema
        queries, seconds = timed(lambda schema=schema: [tantivy_query(node, schema) for node in nodes])
        times.setdefault(("tantivy", "translate searches"), []).append(seconds)
        found, seconds = timed(lambda index=index, queries=queries: tantivy_match(index, queries, m))
        times.setdefault(("tantivy", "match batch"), []).append(seconds)
        different["tantivy"] = max(different["tantivy"], compare("tantivy", texts, expected,
                                                                  tantivy_masks(index, found),
                                                                  args.show if run == 0 else 0))
        del index, queries, found
        print(f"run {run + 1} of {RUNS} done", flush=True)

    count = {text: 0 for text in texts}
    for text in held:
        count[text] += 1
    matched = sum(mask.bit_count() for mask in expected)
    delivered = sum(mask.bit_count() * count[text] for text, mask in zip(texts, expected, strict=True))
    print(f"\n{len(held):,} searches, {len(texts):,} distinct, {m:,} questions; "
          f"{matched:,} (distinct search, question) matches, {delivered:,} (search, question) matches; "
          f"{sum(1 for mask in expected if mask):,} distinct searches match something")
    print(f"{'engine':<11} {'step':<19} {'median s':>9} {'min s':>9} {'max s':>9}")
    for (engine, step), seconds in times.items():
        print(f"{engine:<11} {step:<19} {statistics.median(seconds):>9.3f} {min(seconds):>9.3f} {max(seconds):>9.3f}")
    ours = statistics.median(times[("percolator", "match batch")])
    for engine in ("xapian", "tantivy"):
        match = statistics.median(times[(engine, "match batch")])
        per_batch = match + statistics.median(times[(engine, "index questions")])
        print(f"{engine}: match {match / ours:.1f}x the percolator's; index + match {per_batch / ours:.1f}x")
    for engine, count_different in different.items():
        if count_different:
            print(f"{engine}: {count_different:,} of {len(texts):,} distinct searches differ from the percolator")
        else:
            print(f"{engine}: identical to the percolator on every distinct search")
    return 1 if any(different.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
