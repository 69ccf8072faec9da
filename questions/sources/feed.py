"""Any RSS or Atom feed, such as a TheyWorkForYou search feed: each entry is a question."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from dataclasses import replace

import feedparser

from questions import html
from questions.models import Question, Source
from questions.records import MAX_LENGTHS, QuestionRecord, RecordError, check, text
from questions.sources import Batch
from questions.sources.feed_encoding import Decoded, as_utf8
from questions.sources.http import FetchError, PoliteClient

ID_LENGTH = MAX_LENGTHS["external_id"]
# What feedparser warns of that loses no entry: a feed sent as text/plain, or in another encoding than it says.
HARMLESS = tuple(f"({kind.__name__}" for kind in (feedparser.NonXMLContentType, feedparser.CharacterEncodingOverride))


def _date(entry) -> dt.date | None:
    # Asked for only when present: feedparser warns when it stands one in for the other.
    parsed = next((entry[key] for key in ("published_parsed", "updated_parsed") if key in entry and entry[key]), None)
    if not parsed:
        return None
    try:
        return dt.date(*parsed[:3])
    except (ValueError, OverflowError, TypeError):
        # A date no calendar has (year 0, or past 9999 once its zone is applied) is no date; the entry lands.
        return None


def record_from_entry(entry) -> QuestionRecord:
    """The entry as a record whose id is its guid (the feed's own; `fetch` makes it the source's)."""
    guid = text(entry.get("id") or entry.get("link"))
    if not guid:
        raise RecordError("the entry has neither a guid nor a link")
    return check(QuestionRecord(
        external_id=guid,
        heading=text(entry.get("title")),
        question_text=html.to_text(text(entry.get("summary"))),
        date_tabled=_date(entry),
        url=text(entry.get("link")),  # check() keeps only a web address
    ))


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
    batch = parse_feed(response.body, response.headers, source.url)
    batch.records = _own(source, batch.records)
    if not batch.warning or batch.warning_kind.endswith(HARMLESS):
        # A malformed feed may have lost entries it would send again unchanged: the next poll reads it whole.
        batch.etag, batch.last_modified = response.headers.get("etag", ""), response.headers.get("last-modified", "")
    batch.requests = 1
    return batch


def feed_question_id(source_id: int, guid: str) -> str:
    """A feed's guids are its own: under this id no item can take the id of an API question (a guid of
    `9101`) or of another feed's item."""
    prefix = f"feed:{source_id}:"
    if len(prefix) + len(guid) <= ID_LENGTH:
        return prefix + guid
    return prefix + "sha256:" + hashlib.sha256(guid.encode()).hexdigest()


def _own(source: Source, records: list[QuestionRecord]) -> list[QuestionRecord]:
    """The records under this source's ids, less those another feed brought first (feeds on overlapping
    searches share items): each question is stored, and alerted, once."""
    others = list(Source.objects.filter(kind=Source.Kind.FEED).exclude(pk=source.pk).values_list("pk", flat=True))
    elsewhere = {feed_question_id(pk, r.external_id): r.external_id for pk in others for r in records}
    known = {elsewhere[i] for i in Question.objects.filter(external_id__in=list(elsewhere))
             .values_list("external_id", flat=True)}
    return [replace(r, external_id=feed_question_id(source.pk, r.external_id)) for r in records
            if r.external_id not in known]


def parse_feed(body: bytes, headers: dict[str, str], url: str) -> Batch:
    """The records of a feed document; raises FetchError when nothing at all could be read."""
    decoded = as_utf8(body, headers)
    # A stream, never bytes: feedparser reads a string that looks like a path or URL as one.
    try:
        parsed = feedparser.parse(io.BytesIO(decoded.body), response_headers=decoded.headers)
    except Exception as exc:  # noqa: BLE001 - whatever the document does to the parser, it is the source's fault
        raise FetchError(f"{url}: malformed feed ({type(exc).__name__}: {decoded.plain(str(exc))})") from exc
    batch = Batch()
    if parsed.bozo:
        kind = f"{url}: malformed feed ({type(parsed.bozo_exception).__name__}"
        message = f"{kind}: {decoded.plain(str(parsed.bozo_exception))})"
        if not parsed.entries:
            raise FetchError(message)
        batch.warning_kind = kind
        # feedparser keeps what it could read of a malformed feed: that lands, and the source is not failing.
        batch.warning = message + "; the entries that could be read were stored"
    for position, entry in enumerate(parsed.entries, start=1):
        name = decoded.plain(text(entry.get("title"))) or f"entry {position}"
        try:
            record = record_from_entry(entry)
        except RecordError as exc:
            batch.problem(name, decoded.plain(str(exc)), cause=exc.cause)
            continue
        except Exception as exc:  # noqa: BLE001 - whatever one entry does costs that entry, never the feed
            kind = type(exc).__name__
            batch.problem(name, f"the entry cannot be read ({kind}: {decoded.plain(str(exc))})",
                          cause=f"the entry cannot be read ({kind})")
            continue
        record, repairs, faults = _repaired(record, decoded)
        batch.records.append(record)
        if repairs:
            # Stored all the same: a repaired entry is no item skipped.
            batch.problem(record.external_id, repairs, cause=f"repaired: {faults}", skipped=False)
    return batch


FIELDS = {"external_id": "guid", "heading": "title", "question_text": "description", "url": "link"}


def _repaired(record: QuestionRecord, decoded: Decoded) -> tuple[QuestionRecord, str, str]:
    """The record with each fault the document held in it made U+FFFD, what was repaired where (the guid
    above all: the entry is stored under the repaired one), and the kinds of fault alone."""
    changes, where = {}, {}
    for field, label in FIELDS.items():
        value, faults = decoded.restore(getattr(record, field))
        if faults:
            changes[field] = value
            for fault in faults:
                where.setdefault(fault, []).append(label)
    said = "; ".join(f"{fault} in its {', '.join(labels)}: replaced with U+FFFD" for fault, labels in where.items())
    stored = "under the repaired guid" if "external_id" in changes else ""
    return replace(record, **changes), said and f"{said}; the entry was stored {stored}".rstrip(), ", ".join(where)
