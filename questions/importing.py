"""Reading files of questions: API list pages, API detail records, normalised records, or the API's records as
republished in bulk; any of them gzipped."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from questions.records import QuestionRecord, RecordError, from_normalised, from_republished, text, unstorable
from questions.sources.jsondepth import loads, unreadable
from questions.sources.parliament import record_from_api

BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
# Compressed bytes inflated at a time: a corrupt stretch costs what one chunk held, a few lines at most.
GZIP_CHUNK = 1 << 12
# The most a gzipped file may inflate to: far beyond any real archive (the bundled sample is 30 MB), and short
# of what would exhaust the memory of the machine importing it.
GUNZIPPED_LIMIT = 1 << 31
REPAIRED = "characters that cannot be stored (lone surrogates, noncharacters, control characters) were removed"


class NotJSON(RecordError):
    """A line that is not JSON: its message is a predicate, "is not valid JSON: ...", for the line's number."""


@dataclass
class Reading:
    """What a file holds: the records to store, and (where, reason) for each item refused or repaired."""

    records: list[QuestionRecord] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    repaired: list[tuple[str, str]] = field(default_factory=list)


def _items(data: Any) -> Iterator[Any]:
    if isinstance(data, list):
        for item in data:
            yield from _items(item)
    elif isinstance(data, dict) and isinstance(data.get("results"), list):
        yield from data["results"]
    else:
        yield data


def _is_api_record(item: Any) -> bool:
    return isinstance(item, dict) and ("value" in item or "questionText" in item)


def _is_republished(item: Any) -> bool:
    return isinstance(item, dict) and "api_id" in item


def _ident(item: Any) -> str:
    if isinstance(item, dict) and isinstance(item.get("value"), dict):
        item = item["value"]
    ident = item.get("api_id" if _is_republished(item) else "id") if isinstance(item, dict) else None
    if not isinstance(ident, str | int) or isinstance(ident, bool):
        return ""
    return " ".join(text(ident).split())[:100]


def _decode(line: bytes) -> tuple[str, str]:
    """The line as text, and what was wrong with its bytes: one bad byte costs one character, not the file."""
    try:
        return line.decode("utf-8"), ""
    except UnicodeDecodeError as exc:
        first = exc
    # One pass, however many bad bytes: each run of them becomes one U+FFFD.
    text_ = line.decode("utf-8", errors="replace")
    count = text_.count("\ufffd") - line.count("\ufffd".encode())
    what = (f"byte 0x{line[first.start]:02x} at column {first.start + 1} is" if count == 1 else
            f"{count} runs of bytes, the first 0x{line[first.start]:02x} at column {first.start + 1}, are")
    return text_, f"{what} not UTF-8 and replaced with U+FFFD"


def _record(item: Any) -> QuestionRecord:
    if isinstance(item, RecordError):
        raise item
    if reason := unreadable(item):
        raise RecordError(reason)
    try:
        if _is_api_record(item):
            return record_from_api(item)
        return from_republished(item) if _is_republished(item) else from_normalised(item)
    except RecordError:
        raise
    except (RecursionError, ValueError, TypeError) as exc:
        raise RecordError(f"the record cannot be read ({type(exc).__name__}: {exc})") from None


def _gunzip(raw: bytes) -> tuple[bytes, str]:
    """The bytes a gzip file holds (every member of it), and what was wrong with it: a file cut short or
    corrupt part-way keeps what came before, to be read line by line like any other file."""
    found: list[bytes] = []
    size = 0
    # Members are read from a position in the file, never from a copy of what is left: a file of many small
    # members would otherwise be copied once per member.
    view, offset = memoryview(raw), 0
    while offset < len(raw):
        stream = zlib.decompressobj(zlib.MAX_WBITS | 16)
        try:
            # A chunk at a time, so that what came before a corrupt stretch is kept.
            for start in range(offset, len(raw), GZIP_CHUNK):
                found.append(stream.decompress(view[start:start + GZIP_CHUNK]))
                size += len(found[-1])
                if size > GUNZIPPED_LIMIT:
                    return b"".join(found), f"it inflates to more than {GUNZIPPED_LIMIT:,} bytes"
                if stream.eof:
                    break
        except zlib.error as exc:
            return b"".join(found), f"its gzip data is corrupt ({exc})"
        if not stream.eof:
            return b"".join(found + [stream.flush()]), "its gzip data ends before its end"
        # The next member starts where this one ended, part-way through the chunk that held its end.
        offset = min(start + GZIP_CHUNK, len(raw)) - len(stream.unused_data)
    return b"".join(found), ""


def read_records(path: Path) -> Reading:
    """Every record of a JSON document or a JSONL file, gzipped or not; one bad line or record never loses the
    others."""
    raw, broken = path.read_bytes(), ""
    if raw.startswith(GZIP_MAGIC):
        raw, broken = _gunzip(raw)
    if raw.startswith(BOM):
        raw = raw[len(BOM):]
    lines = [_decode(line) for line in raw.split(b"\n")]
    reading = Reading()
    try:
        # Nesting too deep to decode costs the record that holds it, not the document.
        document = loads("\n".join(line for line, _ in lines))
    except (ValueError, RecursionError):
        entries = _lines(lines)
    else:
        # One document: a record cannot be traced to a line, so bad bytes are reported by line alone.
        reading.repaired.extend((f"line {number}", bad) for number, (_, bad) in enumerate(lines, start=1) if bad)
        entries = [(f"record {position}", item, "") for position, item in enumerate(_flatten(document), start=1)]
    for where, item, bad in entries:
        ident = _ident(item)
        where = where + (f" (id {ident})" if ident else "")
        if bad:
            reading.repaired.append((where, bad))
        try:
            reading.records.append(_record(item))
        except NotJSON as exc:
            reading.refused.append(("", f"{where} {exc}"))
            continue
        except RecordError as exc:
            reading.refused.append((where, str(exc)))
            continue
        try:
            repaired = unstorable(item)
        except RecursionError:  # nested too deeply to look through; what was stored is clean all the same
            repaired = False
        if repaired:
            reading.repaired.append((where, REPAIRED))
    if broken:
        reading.refused.append(("what follows", broken))
    return reading


def _flatten(document: Any) -> list[Any]:
    try:
        return list(_items(document))
    except RecursionError:
        return [RecordError("the lists in it are nested too deeply")]


def _lines(lines: list[tuple[str, str]]) -> list[tuple[str, Any, str]]:
    """(where, item, what was wrong with the line's bytes) for each item of each line of a JSONL file."""
    entries = []
    for number, (line, bad) in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            items = _flatten(loads(line))
        except (ValueError, RecursionError) as exc:
            items = [NotJSON(f"is not valid JSON: {exc}")]
        if len(items) == 1:
            entries.append((where, items[0], bad))
        else:
            entries.extend((f"{where}, record {position}", item, bad if position == 1 else "")
                           for position, item in enumerate(items, start=1))
    return entries
