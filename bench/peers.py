"""The percolator against Xapian and tantivy, each with its English stemmer, on the same saved searches and the
same batch of questions.

Each engine answers "which of the M questions does each distinct saved search match". Every engine reads the
questions' words as the query language cuts them (`normalise`: folded, split at anything not a letter or a digit,
the text the service stores for each field), so that they differ only in how they match words:

- the percolator (`questions.search.percolate.QueryIndex`): the searches are filed once, with the rarity read
  from a sample of 2,000 earlier questions as the service does, and the batch is matched in one call;
- Xapian, in an in-memory database (DB_BACKEND_INMEMORY: a glass database in the page cache matched these
  searches about half as fast). The questions are indexed by a `TermGenerator` with
  `Stem("english")` (its default strategy indexes each word as written, with its position, and its stem), and
  each search is read by a `QueryParser` with the same stemmer and STEM_SOME (plain words stemmed; quoted
  words, phrases and wildcards as written), AND as the default operator, and every field of the query
  language a prefix. Each is run with an Enquire (boolean weighting, documents in id order). Two drivers:
  - *per field*: the fields the query language looks in by default are six prefixes, so that a word is an
    OR of six terms; every match is read with check-at-least M, item by item, as in the first version of
    this bench;
  - *lean*: those six fields are also indexed together without a prefix (100 positions apart, so that no
    phrase runs from one into the next), which is what an unfielded word looks in: one term, not six; the
    MSet is asked for without check-at-least, and read with `get_docid`.
- tantivy, in RAM: two text fields per query-language field, with positions: one with the `en_stem` tokenizer
  (lower case, then the English Snowball stemmer) for plain words, one with the `default` tokenizer (lower
  case only) for quoted words, phrases and wildcards, which match words as written. Each search is read by
  `Index.parse_query` (conjunction by default, regular expressions allowed, for wildcards) and run with
  `searcher.search(query, M, count=False, order_by_field="position")`, ordered by a fast field holding the
  question's place in the batch, which spares the scoring and gives the ids without reading any document.
  Two drivers: *per field* (six default fields) and *lean* (one more pair of fields, `all`, holding the six as
  values of one field: tantivy leaves a gap between values, so phrases do not cross them).

Each saved search is given to the engines as query text in their own syntax, written from our parse of it:
words stay words (stemmed by the engine), quoted words and phrases are quoted, `field:` is the engine's field,
a wildcard `p*` is Xapian's `p*` and tantivy's `field:/p.*/` on each field, `NOT` is Xapian's `AND NOT` and
tantivy's `-`.

Plain words are matched differently, and are not meant to match the same questions: a stemmer is not a
lemmatiser (Snowball gives `polic` for `police`, `policing` and `polices`, and `univers` for `university` and
`universe`; it cannot know that `midwives` is a form of `midwife`). The script prints, for each driver, how many
distinct searches match exactly the questions the percolator matches, and how many (search, question) pairs
each has that the other has not; then the same over the searches made only of quoted words, phrases and
wildcards, where the languages agree and so should the answers.

Each driver runs `--runs` times (default 3); the table gives the median and range of each step, and the load
average before and after. Two figures are given for matching, over all the distinct searches, one search at a
time, as a percolator built on a peer would run:

- "engine alone": the engine's matching with the answers left where the engine put them (Xapian's `get_mset`,
  tantivy's `search` without reading its hits). For the percolator, `QueryIndex.match_ids`: its answers are
  Python's from the start, as a bitmask of the batch per query id;
- "answers in Python": every match handed to Python in the shape the percolator's `match` gives, a bitmask of
  the batch per search, keyed by the search's text. For the percolator, `QueryIndex.match`.

"Read searches" (parsing every distinct search into the engine's query) could be done once, like the
percolator's filing; "index questions" is a cost of every batch.

    .venv/bin/pip install -r bench/requirements-peers.txt
    .venv/bin/python bench/peers.py --searches 1000000 --questions 1000

Searches and questions are made exactly as bench/match.py makes them (same corpus, same seed, same order of
draws), without a database.
"""

from __future__ import annotations

import argparse
import gc
import operator
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
# Positions between two fields indexed together, so that no phrase spans them.
FIELD_GAP = 100
# tantivy's field of the words as written, beside each field of stems.
EXACT = "_exact"
DRIVERS = ("xapian per field", "xapian lean", "tantivy per field", "tantivy lean")
BIT = (1).__lshift__
FIRST = operator.itemgetter(0)
ENGINE, ANSWERS = "engine alone", "answers in Python"


# --- the searches and questions ------------------------------------------------------------


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()


def our_document(record: dict) -> dict:
    """The question as the percolator sees it: what a stored question's `search_document` gives."""
    from questions.models import Question

    question = Question(**record)
    question.refresh_search_text()
    return question.search_document()


def generate(n: int, m: int, seed: int, sample_file: str | None = None):
    """(rarity sample, subscriptions' canonical searches, canonical -> tree, batch records) as match.py makes them.

    The draws are made in match.py's order, including those it spends on each subscription's frequency
    and alert kind, so that the searches and the batch are the very ones it stores.
    """
    from bench.match import Corpus
    from questions.search import QueryError, canonical, parse

    rng = random.Random(seed)
    corpus = Corpus(rng=rng, sample=sample_file)
    sample = [our_document(corpus.question(number)) for number in range(RARITY_SAMPLE)]
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
    batch = [corpus.question(number) for number in range(RARITY_SAMPLE, RARITY_SAMPLE + m)]
    return sample, held_by_subscriptions, trees, batch


# --- writing a search in an engine's syntax -----------------------------------------------------


class Writer:
    """Query text in an engine's syntax from our parse of a saved search."""

    def __init__(self, default_fields: tuple[str, ...], default_name: str | None, engine: str) -> None:
        # Words in exactly the default fields are written without a field (the parser's default); with
        # `default_name`, tantivy's wildcards over them go to that one field.
        self.default_fields = default_fields
        self.default_name = default_name
        self.engine = engine

    def fielded(self, fields: tuple[str, ...], atom: str, exact: bool = False) -> str:
        if exact and self.engine == "tantivy":
            # Words as written are in fields of their own (Xapian holds both kinds of term in one field).
            if fields == self.default_fields and self.default_name:
                return f"{self.default_name}{EXACT}:{atom}"
            fields = tuple(field + EXACT for field in fields)
        elif fields == self.default_fields:
            return atom
        if len(fields) == 1:
            return f"{fields[0]}:{atom}"
        return "(" + " OR ".join(f"{field}:{atom}" for field in fields) + ")"

    def write(self, node) -> str:
        from questions.search import And, Not, Or, Phrase, Prefix, Term

        if isinstance(node, Term):
            return self.fielded(node.fields, node.word)
        if isinstance(node, Phrase):
            # Quoted: one word or several, as written.
            return self.fielded(node.fields, '"' + " ".join(node.words) + '"', exact=True)
        if isinstance(node, Prefix):
            if self.engine == "xapian":
                return self.fielded(node.fields, f"{node.prefix}*")
            # tantivy's parser has no wildcard: a regular expression over one field's terms is the nearest.
            fields = ((self.default_name,) if node.fields == self.default_fields and self.default_name
                      else node.fields)
            return "(" + " OR ".join(f"{field}{EXACT}:/{node.prefix}.*/" for field in fields) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.write(child) for child in node.children) + ")"
        if isinstance(node, Not):
            return ("NOT " if self.engine == "xapian" else "-") + self.group(node.child)
        assert isinstance(node, And)
        wanted = [self.group(child) for child in node.children if not isinstance(child, Not)]
        unwanted = [self.group(child.child) for child in node.children if isinstance(child, Not)]
        if self.engine == "xapian":
            # Xapian's NOT is "AND NOT" between two queries; its pure NOT (FLAG_PURE_NOT) starts a query.
            text = " AND ".join(wanted) if wanted else ""
            for part in unwanted:
                text = f"{text} AND NOT {part}" if text else f"NOT {part}"
            return f"({text})"
        return "(" + " ".join([f"+{part}" for part in wanted] + [f"-{part}" for part in unwanted]) + ")"

    def group(self, node) -> str:
        return self.write(node)


# --- the percolator --------------------------------------------------------------------------


def percolator_build(trees: dict, sample: Sequence[dict]):
    from questions.search.percolate import QueryIndex, Rarity

    index = QueryIndex(Rarity(sample))
    for text, node in trees.items():
        index.add(text, node)
    return index


# --- Xapian ------------------------------------------------------------------------------------


def xapian_prefix(field: str) -> str:
    return f"X{field.upper()}"


def xapian_index(batch: Sequence[dict], lean: bool):
    import xapian

    from questions.search import DEFAULT_FIELDS, FIELDS

    db = xapian.WritableDatabase("", xapian.DB_BACKEND_INMEMORY)
    generator = xapian.TermGenerator()
    generator.set_stemmer(xapian.Stem("english"))
    for fields in batch:
        document = xapian.Document()
        generator.set_document(document)
        for field in FIELDS:
            generator.index_text(fields[field] or "", 1, xapian_prefix(field))
            generator.increase_termpos(FIELD_GAP)
        if lean:
            for field in DEFAULT_FIELDS:
                generator.index_text(fields[field] or "")
                generator.increase_termpos(FIELD_GAP)
        db.add_document(document)
    return db


def xapian_parser(lean: bool):
    import xapian

    from questions.search import DEFAULT_FIELDS, FIELDS

    parser = xapian.QueryParser()
    parser.set_stemmer(xapian.Stem("english"))
    parser.set_stemming_strategy(xapian.QueryParser.STEM_SOME)
    parser.set_default_op(xapian.Query.OP_AND)
    for field in FIELDS:
        parser.add_prefix(field, xapian_prefix(field))
    if not lean:
        for field in DEFAULT_FIELDS:
            parser.add_prefix("", xapian_prefix(field))
    flags = (parser.FLAG_BOOLEAN | parser.FLAG_PHRASE | parser.FLAG_LOVEHATE | parser.FLAG_WILDCARD
             | parser.FLAG_PURE_NOT)
    return parser, flags


def xapian_queries(nodes: Sequence, lean: bool) -> list:
    from questions.search import DEFAULT_FIELDS

    parser, flags = xapian_parser(lean)
    writer = Writer(DEFAULT_FIELDS, None, "xapian")
    return [parser.parse_query(writer.write(node), flags) for node in nodes]


def xapian_enquire(db):
    import xapian

    enquire = xapian.Enquire(db)
    enquire.set_weighting_scheme(xapian.BoolWeight())
    enquire.set_docid_order(xapian.Enquire.ASCENDING)
    return enquire


def xapian_engine(db, queries: Sequence, m: int, lean: bool) -> None:
    enquire = xapian_enquire(db)
    for query in queries:
        enquire.set_query(query)
        if lean:
            enquire.get_mset(0, m)
        else:
            enquire.get_mset(0, m, m)


def xapian_answers(db, texts: Sequence[str], queries: Sequence, m: int, lean: bool) -> dict[str, int]:
    enquire = xapian_enquire(db)
    found = {}
    for text, query in zip(texts, queries, strict=True):
        enquire.set_query(query)
        if lean:
            mset = enquire.get_mset(0, m)
            # Ids are distinct, so their powers of two add up to the mask; the loop stays in C. Xapian counts
            # documents from 1, the batch from 0.
            mask = sum(map(BIT, map(mset.get_docid, range(mset.size())))) >> 1
        else:
            mask = sum(1 << item.docid for item in enquire.get_mset(0, m, m)) >> 1
        if mask:
            found[text] = mask
    return found


# --- tantivy -----------------------------------------------------------------------------------


def tantivy_index(batch: Sequence[dict], lean: bool):
    import tantivy

    from questions.search import DEFAULT_FIELDS, FIELDS

    builder = tantivy.SchemaBuilder()
    names = [*FIELDS, "all"] if lean else FIELDS
    for field in names:
        builder.add_text_field(field, tokenizer_name="en_stem", index_option="position")
        builder.add_text_field(field + EXACT, tokenizer_name="default", index_option="position")
    builder.add_unsigned_field("position", fast=True, indexed=False)
    index = tantivy.Index(builder.build())
    writer = index.writer(heap_size=100_000_000, num_threads=1)
    for position, fields in enumerate(batch):
        document = tantivy.Document(**{name: fields[field] or "" for field in FIELDS
                                       for name in (field, field + EXACT)})
        if lean:
            for field in DEFAULT_FIELDS:
                document.add_text("all", fields[field] or "")
                document.add_text("all" + EXACT, fields[field] or "")
        document.add_unsigned("position", position)
        writer.add_document(document)
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    return index


# Searches tantivy refused to read, per driver: they are run as a query matching nothing.
UNREAD: dict[str, list[str]] = {}


def tantivy_queries(index, nodes: Sequence, lean: bool) -> list:
    from tantivy import Query

    from questions.search import DEFAULT_FIELDS

    defaults = ["all"] if lean else list(DEFAULT_FIELDS)
    writer = Writer(DEFAULT_FIELDS, "all" if lean else None, "tantivy")
    unread = UNREAD.setdefault("tantivy lean" if lean else "tantivy per field", [])
    unread.clear()
    queries = []
    for node in nodes:
        text = writer.write(node)
        try:
            queries.append(index.parse_query(text, defaults, conjunction_by_default=True, allow_regexes=True))
        except ValueError:
            # Its tokenizer left nothing to look for outside a NOT (a word of over 40 characters is dropped).
            unread.append(text)
            queries.append(Query.empty_query())
    return queries


def tantivy_engine(index, queries: Sequence, m: int) -> None:
    search = index.searcher().search
    for query in queries:
        search(query, m, count=False, order_by_field="position")


def tantivy_answers(index, texts: Sequence[str], queries: Sequence, m: int) -> dict[str, int]:
    search = index.searcher().search
    found = {}
    for text, query in zip(texts, queries, strict=True):
        # The key each hit is ordered by is the question's place in the batch.
        mask = sum(map(BIT, map(FIRST, search(query, m, count=False, order_by_field="position").hits)))
        if mask:
            found[text] = mask
    return found


# --- measuring -------------------------------------------------------------------------------


def timed(step: Callable[[], object]) -> tuple[object, float]:
    gc.collect()
    started = time.perf_counter()
    result = step()
    return result, time.perf_counter() - started


def agreement(expected: Sequence[int], got: Sequence[int]) -> tuple[int, int, int, int]:
    """(searches with the same answer, pairs in both, pairs only the percolator has, pairs only the other has)."""
    same = both = ours = theirs = 0
    for want, have in zip(expected, got, strict=True):
        same += want == have
        both += (want & have).bit_count()
        ours += (want & ~have).bit_count()
        theirs += (have & ~want).bit_count()
    return same, both, ours, theirs


def exact(node) -> bool:
    """Whether a search holds only quoted words, phrases and wildcards: words as written in both languages."""
    from questions.search import And, Not, Or, Phrase, Prefix

    if isinstance(node, (Phrase, Prefix)):
        return True
    if isinstance(node, Not):
        return exact(node.child)
    if isinstance(node, (And, Or)):
        return all(exact(child) for child in node.children)
    return False


def run_driver(name: str, batch: Sequence[dict], texts: Sequence[str], nodes: Sequence, m: int,
               times: dict) -> list[int]:
    engine, layout = name.split(" ", 1)
    lean = layout == "lean"
    if engine == "xapian":
        db, seconds = timed(lambda: xapian_index(batch, lean))
        times.setdefault((name, "index questions"), []).append(seconds)
        queries, seconds = timed(lambda: xapian_queries(nodes, lean))
        times.setdefault((name, "read searches"), []).append(seconds)
        _, seconds = timed(lambda: xapian_engine(db, queries, m, lean))
        times.setdefault((name, ENGINE), []).append(seconds)
        found, seconds = timed(lambda: xapian_answers(db, texts, queries, m, lean))
    else:
        db, seconds = timed(lambda: tantivy_index(batch, lean))
        times.setdefault((name, "index questions"), []).append(seconds)
        queries, seconds = timed(lambda: tantivy_queries(db, nodes, lean))
        times.setdefault((name, "read searches"), []).append(seconds)
        _, seconds = timed(lambda: tantivy_engine(db, queries, m))
        times.setdefault((name, ENGINE), []).append(seconds)
        found, seconds = timed(lambda: tantivy_answers(db, texts, queries, m))
    times.setdefault((name, ANSWERS), []).append(seconds)
    return [found.get(text, 0) for text in texts]


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}–{max(values):.3f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--searches", type=int, default=100_000, help="saved searches (default 100,000)")
    parser.add_argument("--questions", type=int, default=1000, help="questions in the batch (default 1,000)")
    parser.add_argument("--tail-words", type=int, default=0,
                        help="ignored: the words now come from the real sample (kept so that older commands run)")
    parser.add_argument("--sample-file", help="the real questions, JSON lines, gzipped (default: the project's "
                                              "fixture, or $BENCH_QUESTIONS_SAMPLE)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=3, help="runs of each engine (default 3)")
    parser.add_argument("--drivers", nargs="+", choices=DRIVERS, default=list(DRIVERS), metavar="DRIVER",
                        help=f"which peers to run (default all: {', '.join(repr(d) for d in DRIVERS)})")
    parser.add_argument("--show", type=int, default=5, help="differences listed per driver (default 5)")
    args = parser.parse_args()
    import tantivy
    import xapian

    setup_django()
    m = args.questions
    started = time.perf_counter()
    sample, held, trees, batch = generate(args.searches, m, args.seed, args.sample_file)
    texts = list(trees)
    nodes = [trees[text] for text in texts]
    documents = [our_document(record) for record in batch]
    load_before = os.getloadavg()
    print(f"machine: {platform.platform()}, {platform.machine()}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}; Xapian {xapian.version_string()}, "
          f"tantivy {metadata.version('tantivy')} ({tantivy.__version__})", flush=True)
    print(f"generated {len(held):,} searches ({len(texts):,} distinct) and {m:,} questions "
          f"in {time.perf_counter() - started:.1f}s", flush=True)

    times: dict[tuple[str, str], list[float]] = {}
    expected: list[int] = []
    answers: dict[str, list[int]] = {}
    for run in range(args.runs):
        index, seconds = timed(lambda: percolator_build(trees, sample))
        times.setdefault(("percolator", "file searches"), []).append(seconds)
        # Its own answer (query id -> bitmask) is already Python's; `match` names each search by its text, the
        # shape the peers' answers are given in.
        by_id, seconds = timed(lambda index=index: index.match_ids(documents))
        times.setdefault(("percolator", ENGINE), []).append(seconds)
        found, seconds = timed(lambda index=index: index.match(documents))
        times.setdefault(("percolator", ANSWERS), []).append(seconds)
        masks = [found.get(text, 0) for text in texts]
        if run == 0:
            expected = masks
        elif masks != expected:
            raise SystemExit("the percolator gave different answers on different runs")
        if sorted(by_id.values()) != sorted(found.values()):
            raise SystemExit("the percolator's two answers differ")
        del index, by_id, found, masks
        for name in args.drivers:
            masks = run_driver(name, documents, texts, nodes, m, times)
            if answers.setdefault(name, masks) != masks:
                raise SystemExit(f"{name} gave different answers on different runs")
            del masks
        print(f"run {run + 1} of {args.runs} done", flush=True)

    load_after = os.getloadavg()
    count = dict.fromkeys(texts, 0)
    for text in held:
        count[text] += 1
    matched = sum(mask.bit_count() for mask in expected)
    delivered = sum(mask.bit_count() * count[text] for text, mask in zip(texts, expected, strict=True))
    print(f"\n{len(held):,} searches, {len(texts):,} distinct, {m:,} questions; "
          f"{matched:,} (distinct search, question) matches, {delivered:,} (search, question) matches; "
          f"{sum(1 for mask in expected if mask):,} distinct searches match something")
    print(f"{'engine':<18} {'step':<21} {'median s (range) of ' + str(args.runs):>30}")
    for (engine, step), seconds in times.items():
        print(f"{engine:<18} {step:<21} {spread(seconds):>30}")
    print(f"load average (1, 5, 15 min): {' '.join(f'{x:.2f}' for x in load_before)} before the runs, "
          f"{' '.join(f'{x:.2f}' for x in load_after)} after")
    ours_alone = statistics.median(times[("percolator", ENGINE)])
    ours = statistics.median(times[("percolator", ANSWERS)])
    print()
    for name in args.drivers:
        alone = statistics.median(times[(name, ENGINE)])
        handed = statistics.median(times[(name, ANSWERS)])
        per_batch = handed + statistics.median(times[(name, "index questions")])
        print(f"{name}, as a multiple of the percolator's time: engine alone {alone / ours_alone:.1f}x, "
              f"answers in Python {handed / ours:.1f}x, index questions + answers {per_batch / ours:.1f}x")
    print()
    for name, texts_unread in UNREAD.items():
        if texts_unread:
            print(f"{name}: {len(texts_unread):,} searches could not be read, and match nothing: "
                  + ", ".join(map(repr, texts_unread[:args.show])))
    for name in args.drivers:
        same, both, only_ours, only_theirs = agreement(expected, answers[name])
        print(f"{name}: the same questions as the percolator for {same:,} of {len(texts):,} distinct searches "
              f"({same / len(texts):.1%}); pairs in both {both:,}, only the percolator's {only_ours:,}, "
              f"only {name}'s {only_theirs:,}")
        shown = 0
        for text, want, have in zip(texts, expected, answers[name], strict=True):
            if want != have and shown < args.show:
                shown += 1
                print(f"  {text!r}: percolator {want.bit_count()}, {name} {have.bit_count()}, "
                      f"in both {(want & have).bit_count()}")
    quoted = [position for position, node in enumerate(nodes) if exact(node)]
    for name in args.drivers:
        theirs = answers[name]
        same, both, only_ours, only_theirs = agreement([expected[i] for i in quoted], [theirs[i] for i in quoted])
        print(f"{name}, on the {len(quoted):,} distinct searches of quoted words, phrases and wildcards only: the same "
              f"questions for {same:,}; pairs in both {both:,}, only the percolator's {only_ours:,}, "
              f"only {name}'s {only_theirs:,}")
        shown = 0
        for position in quoted:
            want, have = expected[position], answers[name][position]
            if want != have and shown < args.show:
                shown += 1
                print(f"  {texts[position]!r}: percolator {want.bit_count()}, {name} {have.bit_count()}, "
                      f"in both {(want & have).bit_count()}")
    for engine in ("xapian", "tantivy"):
        pair = [name for name in args.drivers if name.startswith(engine)]
        if len(pair) == 2:
            same = answers[pair[0]] == answers[pair[1]]
            print(f"{engine}: the two drivers' answers are {'identical' if same else 'NOT identical'}")
    if "xapian lean" in answers and "tantivy lean" in answers:
        same, *_ = agreement(answers["xapian lean"], answers["tantivy lean"])
        print(f"xapian and tantivy: the same questions for {same:,} of {len(texts):,} distinct searches")
    return 0


if __name__ == "__main__":
    sys.exit(main())
