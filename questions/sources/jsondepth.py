"""JSON from sources we do not control, read so that one record nested absurdly deep costs that record alone.

Python's decoder and every walk of what it returns (comparing pages, hashing list items, printing a
record in a message) recurse once per level, and fail at about a thousand levels, wherever the stack
happens to be. Here no array or object deeper than MAX_DEPTH survives decoding: each is replaced by
TOO_DEEP, so a page still decodes, and the record holding one is refused by name (`nested_too_deeply`).
"""

from __future__ import annotations

import json
import re
import secrets
from typing import Any

# The API's records nest five levels at most (page, results, item, value, member).
MAX_DEPTH = 32


class _TooDeep:
    def __repr__(self) -> str:
        return "<nested too deeply>"


TOO_DEEP = _TooDeep()
# A string (skipped whole, so brackets inside it count for nothing) or a bracket.
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def loads(text: str) -> Any:
    """The document, each array or object deeper than MAX_DEPTH replaced by TOO_DEEP; ValueError as json.loads."""
    placeholder = None
    try:
        value = json.loads(text)
    except RecursionError:
        placeholder = f"too-deep-{secrets.token_hex(16)}"
        value = json.loads(_cut(text, json.dumps(placeholder)))
    return _prune(value, placeholder)


def _cut(text: str, replacement: str) -> str:
    """The text with each array or object that opens deeper than MAX_DEPTH replaced, without decoding it."""
    parts, depth, start, kept = [], 0, None, 0
    for token in _TOKENS.finditer(text):
        bracket = token.group()
        if bracket in "[{":
            depth += 1
            if depth == MAX_DEPTH + 1:
                start = token.start()
        elif bracket in "]}":
            if depth == MAX_DEPTH + 1 and start is not None:
                parts += [text[kept:start], replacement]
                kept, start = token.end(), None
            depth -= 1
    if start is not None:  # never closed: the containers around it are not either, so the decoder refuses it
        parts += [text[kept:start], replacement]
        kept = len(text)
    parts.append(text[kept:])
    return "".join(parts)


def _prune(value: Any, placeholder: str | None) -> Any:
    if not isinstance(value, list | dict):
        return value
    # A stack, not recursion: the value may be nested as deep as the decoder allowed.
    stack = [(value, 1)]
    while stack:
        container, depth = stack.pop()
        keys = range(len(container)) if isinstance(container, list) else list(container)
        for key in keys:
            child = container[key]
            if isinstance(child, list | dict):
                if depth >= MAX_DEPTH:
                    container[key] = TOO_DEEP
                else:
                    stack.append((child, depth + 1))
            elif placeholder is not None and child == placeholder:
                container[key] = TOO_DEEP
    return value


def nested_too_deeply(value: Any) -> bool:
    """Whether the decoded value holds anything `loads` replaced by TOO_DEEP."""
    stack = [value]
    while stack:
        item = stack.pop()
        if item is TOO_DEEP:
            return True
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return False
