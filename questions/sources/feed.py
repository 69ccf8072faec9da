"""Any RSS or Atom feed, such as a TheyWorkForYou search feed: each entry is a question."""

from __future__ import annotations

import datetime as dt
import io

import feedparser

from questions import html
from questions.models import Source
from questions.records import QuestionRecord, RecordError, check, text
from questions.sources import Batch
from questions.sources.http import FetchError, PoliteClient


def _date(entry) -> dt.date | None:
    # Asked for only when present: feedparser warns when it stands one in for the other.
    parsed = next((entry[key] for key in ("published_parsed", "updated_parsed") if key in entry and entry[key]), None)
    return dt.date(*parsed[:3]) if parsed else None


def record_from_entry(entry, id_prefix: str = "") -> QuestionRecord:
    guid = text(entry.get("id") or entry.get("link"))
    if not guid:
        raise RecordError("the entry has neither a guid nor a link")
    return check(QuestionRecord(
        external_id=id_prefix + guid,
        heading=text(entry.get("title")),
        question_text=html.to_text(text(entry.get("summary"))),
        date_tabled=_date(entry),
        url=_web_link(text(entry.get("link"))),
    ))


def _web_link(url: str) -> str:
    # Shown as a link on pages and in emails: nothing but the web's own schemes.
    return url if url.lower().startswith(("https://", "http://")) else ""


def fetch(source: Source, client: PoliteClient) -> Batch:
    headers = {}
    if source.etag:
        headers["If-None-Match"] = source.etag
    if source.last_modified:
        headers["If-Modified-Since"] = source.last_modified
    response = client.get(source.url, headers=headers)
    if response.status == 304:
        return Batch(not_modified=True, etag=source.etag, last_modified=source.last_modified, requests=1)
    if response.status != 200:
        raise FetchError(f"{source.url}: HTTP {response.status}")
    batch = parse_feed(response.body, response.headers, source.url, id_prefix=feed_id_prefix(source))
    batch.etag, batch.last_modified = response.headers.get("etag", ""), response.headers.get("last-modified", "")
    batch.requests = 1
    return batch


def feed_id_prefix(source: Source) -> str:
    """A feed's guids are its own: prefixed with the source, no item can take the id of an API question
    (`<guid>9101</guid>`) or of another feed's item."""
    return f"feed:{source.pk}:"


def parse_feed(body: bytes, headers: dict[str, str], url: str, id_prefix: str = "") -> Batch:
    """The records of a feed document; raises FetchError when nothing at all could be read."""
    # A stream, never bytes: feedparser reads a string that looks like a path or URL as one.
    try:
        parsed = feedparser.parse(io.BytesIO(body), response_headers=headers)
    except Exception as exc:  # noqa: BLE001 - whatever the document does to the parser, it is the source's fault
        raise FetchError(f"{url}: malformed feed ({type(exc).__name__}: {exc})") from exc
    batch = Batch()
    if parsed.bozo:
        # feedparser keeps what it could read of a malformed feed: land that, and say what was wrong.
        batch.error = f"{url}: malformed feed ({parsed.bozo_exception})"
        if not parsed.entries:
            raise FetchError(batch.error)
    for position, entry in enumerate(parsed.entries, start=1):
        try:
            batch.records.append(record_from_entry(entry, id_prefix))
        except RecordError as exc:
            batch.problems.append((text(entry.get("title")) or f"entry {position}", str(exc)))
    return batch
