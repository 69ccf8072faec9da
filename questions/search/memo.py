"""Caches that stay small however the site is used.

An lru_cache bounded by its number of entries is bounded in size only while each entry is small: a stranger
sending thousand-character words to the search page would fill one with megabytes. So only calls whose text
is short enough to be a real word, piece or phrase are cached; longer ones are worked out each time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Longer than the words people search for; far shorter than
# what a query may hold.
LONGEST_CACHED = 32


def short_text_cache(maxsize: int, longest: int = LONGEST_CACHED) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """functools.lru_cache(maxsize) for calls whose first argument is text of at most `longest` characters."""

    def decorate(function: Callable[..., T]) -> Callable[..., T]:
        cached = functools.lru_cache(maxsize=maxsize)(function)

        @functools.wraps(function)
        def call(text: str, *args, **kwargs) -> T:
            if len(text) > longest:
                return function(text, *args, **kwargs)
            return cached(text, *args, **kwargs)

        call.cache_info = cached.cache_info  # type: ignore[attr-defined]
        call.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        return call

    return decorate
