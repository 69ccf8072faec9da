"""JSON from sources we do not control, read so that one record nested absurdly deep costs that record alone.

Python's decoder and every walk of what it returns (comparing pages, hashing list items, printing a
record in a message) recurse once per level, and fail at about a thousand levels, wherever the stack
happens to be. Here no array or object deeper than MAX_DEPTH survives decoding: each is replaced by
TOO_DEEP, so a page still decodes, and the record holding one is refused by name (`unreadable`).
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


class _TooLong:
    def __repr__(self) -> str:
        return "<number too long>"


# Python refuses to read an integer of more than some thousands of digits (sys.get_int_max_str_digits), which
# would fail the whole document: such a number is read as TOO_LONG instead, and costs its record alone.
TOO_LONG = _TooLong()
# What the cut looks at: an escape (with the character it escapes, so an escaped quote ends nothing), a
# quote, or a bracket. Each is one or two characters, so the scan is linear whatever the text.
_TOKENS = re.compile(r'\\.|["\[\]{}]', re.DOTALL)


def _int(digits: str) -> Any:
    try:
        return int(digits)
    except ValueError:
        return TOO_LONG


def loads(text: str) -> Any:
    """The document, each array or object deeper than MAX_DEPTH replaced by TOO_DEEP and each integer longer
    than Python reads by TOO_LONG; ValueError as json.loads."""
    placeholder = None
    try:
        value = json.loads(text, parse_int=_int)
    except RecursionError:
        placeholder = f"too-deep-{secrets.token_hex(16)}"
        value = json.loads(_cut(text, json.dumps(placeholder)), parse_int=_int)
    return _prune(value, placeholder)


def _cut(text: str, replacement: str) -> str:
    """The text with each array or object that opens deeper than MAX_DEPTH replaced, without decoding it."""
    parts, depth, start, kept, in_string = [], 0, None, 0, False
    for token in _TOKENS.finditer(text):
        bracket = token.group()
        if bracket == '"':
            in_string = not in_string
        if in_string or len(bracket) > 1:
            continue
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


def unreadable(value: Any) -> str:
    """Why the decoded value cannot be used, if it holds anything `loads` replaced, else ""."""
    stack = [value]
    while stack:
        item = stack.pop()
        if item is TOO_DEEP:
            return f"the record is nested more than {MAX_DEPTH} levels deep"
        if item is TOO_LONG:
            return "the record holds a number of more digits than can be read"
        if isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return ""
