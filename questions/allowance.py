"""How much costly searching one client may do in a minute.

A budget (`questions.budget`) bounds one request, not a client that sends them one after another. Here each
client is charged the time its searches took beyond what an ordinary search costs, over a fixed window, and
refused more searches once it has spent its allowance: a few clients repeating the costliest query they can
write cannot take the database from everyone else, while a person searching as people do is never charged.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache

from questions import budget
from questions.searching import CACHE_ERRORS

# The windows the allowance is counted in, and what a search took (tests move both).
wall_clock = time.time
clock = time.monotonic


class TooManySearches(Exception):
    """The client has spent its allowance of costly searches for now."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"try again in {retry_after} s")
        self.retry_after = retry_after


def _allowance_key(client: str, window: int) -> str:
    return f"search-allowance:{window}:{client}"


@contextmanager
def metered(client: str) -> Iterator[None]:
    """Refuse with TooManySearches when `client` has spent its allowance in this window; otherwise run the
    block and charge the client for the time it took beyond SEARCH_FREE_SECONDS. With the cache down,
    nothing is counted: the budget still bounds each request."""
    window_seconds = settings.SEARCH_ALLOWANCE_WINDOW_SECONDS
    now = wall_clock()
    window = int(now // window_seconds)
    key = _allowance_key(client, window)
    try:
        spent = cache.get(key) or 0
    except CACHE_ERRORS:
        spent = 0
    if spent >= settings.SEARCH_ALLOWANCE_SECONDS * 1000:
        raise TooManySearches(max(1, math.ceil((window + 1) * window_seconds - now)))
    started = clock()
    try:
        yield
    finally:
        cost = round((clock() - started - settings.SEARCH_FREE_SECONDS) * 1000)
        if cost > 0:
            with contextlib.suppress(*CACHE_ERRORS, ValueError):
                cache.add(key, 0, window_seconds + 1)
                cache.incr(key, cost)


@contextmanager
def public_search(client: str) -> Iterator[None]:
    """Where every public search, count, preview and estimate runs: within the client's allowance and the
    request's budget."""
    with metered(client), budget.budget():
        yield


def refusal(error: budget.TooCostly | TooManySearches) -> str:
    """What the page says instead of the search's results."""
    if isinstance(error, TooManySearches):
        return (f"You have run many long searches in the last minute. Please try again in {error.retry_after} "
                "seconds; shorter searches, with fewer words, are quicker.")
    return error.message
