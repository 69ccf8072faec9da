"""A stranger cannot grow a web worker by searching: the parser and highlighter keep nothing of words and phrases
longer than people search for, and what they keep of others is bounded by their caches' number of entries (and
gunicorn recycles each web worker after a thousand requests)."""

from __future__ import annotations

import gc
import random
import string
import tracemalloc

from questions.search import highlight, parse


def hostile_queries(count: int) -> list[str]:
    rng = random.Random(5)

    def word(length: int) -> str:
        return "".join(rng.choices(string.ascii_lowercase, k=length))

    queries = []
    for n in range(count):
        if n % 3 == 0:
            queries.append(word(990))  # one long word
        elif n % 3 == 1:
            queries.append('"' + " ".join(word(50) for _ in range(19)) + '"')  # one long phrase
        else:
            queries.append(" OR ".join(word(50) for _ in range(16)))  # many long words
    return queries


def kept_after(queries: list[str], text) -> int:
    """The bytes still held after highlighting `text(query)` for each query, past the first thirty."""
    for query in queries[:30]:  # whatever is built once, on first use
        highlight(text(query), parse(query))
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for query in queries[30:]:
        highlight(text(query), parse(query))
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return kept


def test_parsing_and_highlighting_thousands_of_long_searches_keeps_little():
    answer = "The Government keeps prisons under review. " * 200
    kept = kept_after(hostile_queries(1500), lambda query: answer + query)
    assert kept < 1_000_000, f"{kept:,} bytes kept after 1,470 searches"


def test_highlighting_thousands_of_answers_keeps_at_most_a_few_megabytes():
    # Answers short enough to be kept, each one different: the highlighter keeps its last thousand.
    answer = "The Government keeps prisons under review. " * 30
    kept = kept_after([f"prison{n}" for n in range(3000)], lambda query: f"{answer} {query}")
    assert kept < 8_000_000, f"{kept:,} bytes kept after 2,970 answers"
