"""How much costly searching one client, and the whole site, may do at once.

A budget (`questions.budget`) bounds one request, not a client that sends them one after another, nor ten
clients at once. So:

- each client is charged the time its searches took beyond what an ordinary search costs (all of it, for a
  search far larger than people write), over a fixed window, and refused more searches once it has spent its
  allowance: a person searching as people do is never charged;
- a heavy search (one that asks the database for many more substring tests than people's searches do, or that
  comes from a client that has spent a quarter of its allowance in this window) runs only in one of
  SEARCH_HEAVY_AT_ONCE lanes for the whole site, and is refused at once, without waiting, when every lane is
  taken. However many clients send the costliest searches they can write, they hold no more than those lanes
  of the database and of the web workers, and everyone else's searches go on as before.
"""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

from django.conf import settings
from django.core.cache import cache

from questions import budget
from questions.search import Node
from questions.search.sql import weight
from questions.searching import CACHE_ERRORS, cache_guard

# The windows the allowance is counted in, and what a search took (tests move both).
wall_clock = time.time
clock = time.monotonic


class TooManySearches(Exception):
    """The client has spent its allowance of costly searches for now."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"try again in {retry_after} s")
        self.retry_after = retry_after


class LanesBusy(TooManySearches):
    """Every lane for heavy searches is taken."""


def _allowance_key(client: str, window: int) -> str:
    return f"search-allowance:{window}:{client}"


@contextmanager
def metered(client: str, free: float, reserve: bool = False) -> Iterator[bool]:
    """Refuse with TooManySearches when `client` has spent its allowance in this window; otherwise run the
    block, which is told whether the client has spent a quarter of its allowance in this window (searches
    under way included), and
    charge the client for the time it took beyond `free` seconds. With `reserve`, the most it could cost is
    reserved before it runs, and the rest given back after, so that a client's large searches sent all at once
    each see the others. With the cache down, nothing is counted: the budget still bounds each request."""
    window_seconds = settings.SEARCH_ALLOWANCE_WINDOW_SECONDS
    now = wall_clock()
    window = int(now // window_seconds)
    key = _allowance_key(client, window)
    reserved = round(max(0.0, settings.SEARCH_BUDGET_SECONDS - free) * 1000) if reserve else 0
    try:
        with cache_guard():
            cache.add(key, 0, window_seconds + 1)
            spent = cache.incr(key, reserved) - reserved
    except (*CACHE_ERRORS, ValueError):
        spent = reserved = 0
    cost = 0
    try:
        if spent >= settings.SEARCH_ALLOWANCE_SECONDS * 1000:
            raise TooManySearches(max(1, math.ceil((window + 1) * window_seconds - now)))
        started: float | None = clock()
        try:
            # A quarter: a search or two that ran slow while the site was busy do not send a person to the lane.
            yield spent >= settings.SEARCH_ALLOWANCE_SECONDS * 1000 / 4
        except LanesBusy:
            started = None  # refused before any work: nothing to charge
            raise
        finally:
            if started is not None:
                cost = max(0, round((clock() - started - free) * 1000))
    finally:
        if cost != reserved:
            with contextlib.suppress(*CACHE_ERRORS, ValueError), cache_guard():
                cache.incr(key, cost - reserved)


@contextmanager
def heavy_lane() -> Iterator[None]:
    """Hold one of the site's SEARCH_HEAVY_AT_ONCE lanes for heavy searches, or raise LanesBusy at once. A lane
    is let go when the search ends, or a little after its budget should it not (a web worker killed)."""
    token = secrets.token_hex(8)
    hold = math.ceil(settings.SEARCH_BUDGET_SECONDS) + 5
    try:
        with cache_guard():
            key = next((key for key in (f"search-heavy-lane:{n}" for n in range(settings.SEARCH_HEAVY_AT_ONCE))
                        if cache.add(key, token, hold)), None)
    except CACHE_ERRORS:
        key = ""  # no cache to share lanes through: each request's budget still bounds it
    if key is None:
        raise LanesBusy(max(1, math.ceil(settings.SEARCH_BUDGET_SECONDS)))
    try:
        yield
    finally:
        if key:
            with contextlib.suppress(*CACHE_ERRORS), cache_guard():
                if cache.get(key) == token:
                    cache.delete(key)


@contextmanager
def public_search(client: str, node: Node | None) -> Iterator[None]:
    """Where every public search, count, preview and estimate of `node` runs: within the client's allowance,
    in a lane for heavy searches where it is one, and within the request's budget."""
    large = node is not None and weight(node) > settings.SEARCH_HEAVY_WEIGHT
    # A search far larger than people write is charged all its time, reserved before it runs: nobody needs many
    # of them a minute, nor several at once. Others are not reserved for, so that a feed reader may fetch a
    # dozen feeds at once: should they prove costly, the first round charges the client, and the rest of its
    # minute goes through the lane.
    with contextlib.ExitStack() as stack:
        charged = stack.enter_context(metered(client, free=0 if large else settings.SEARCH_FREE_SECONDS,
                                              reserve=large))
        stack.enter_context(heavy_lane() if large or charged else nullcontext())
        stack.enter_context(budget.budget())
        yield


def refusal(error: budget.TooCostly | TooManySearches) -> str:
    """What the page says instead of the search's results."""
    if isinstance(error, LanesBusy):
        return (f"Many long searches are running just now. Please try again in {error.retry_after} seconds; "
                "shorter searches, with fewer words, are run at once.")
    if isinstance(error, TooManySearches):
        return (f"You have run many long searches in the last minute. Please try again in {error.retry_after} "
                "seconds; shorter searches, with fewer words, are quicker.")
    return error.message
