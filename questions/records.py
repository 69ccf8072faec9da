"""The one shape every source turns its items into before they are stored."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from questions import html


class RecordError(ValueError):
    """An item that cannot become a question; the message says why, for the source's log, and the cause what
    kind of fault it is, without the item's value: the items of one poll refused for one cause are said once."""

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause or message


@dataclass(frozen=True)
class QuestionRecord:
    external_id: str
    uin: str = ""
    house: str = ""
    heading: str = ""
    question_text: str = ""
    answer_html: str = ""
    answer_text: str = ""
    date_tabled: dt.date | None = None
    date_for_answer: dt.date | None = None
    date_answered: dt.date | None = None
    date_holding_answer: dt.date | None = None
    date_answer_corrected: dt.date | None = None
    is_named_day: bool = False
    is_withdrawn: bool = False
    answer_is_holding: bool = False
    answer_is_correction: bool = False
    grouped_uins: list[str] = field(default_factory=list)
    attachments: list[dict[str, str]] = field(default_factory=list)
    asking_member_id: int | None = None
    asking_member_name: str = ""
    asking_member_party: str = ""
    asking_member_constituency: str = ""
    answering_body_id: int | None = None
    answering_body_name: str = ""
    answering_member_id: int | None = None
    answering_member_name: str = ""
    answering_member_role: str = ""
    url: str = ""
    list_signature: str = ""
    # Whether a text was longer than TEXT_LIMITS and was cut: pages then send readers to the official record.
    text_cut: bool = False


# Lengths of the CharFields of Question, checked here so one long value cannot fail a whole batch.
MAX_LENGTHS = {
    "external_id": 500, "uin": 50, "house": 20, "asking_member_name": 200, "asking_member_party": 200,
    "asking_member_constituency": 200, "answering_body_name": 200, "answering_member_name": 200,
    "answering_member_role": 300, "url": 500, "list_signature": 64,
}

# The most of each text that is stored, in characters. Real questions run to a few thousand characters and
# the longest answers, tables and all, to some tens of thousands; a source sending more is cut here, so one
# record cannot swell the database, the pages or the emails.
TEXT_LIMITS = {"heading": 1_000, "question_text": 20_000, "answer_text": 200_000, "answer_html": 300_000}
# Grouped questions and attachments kept per question, and the longest attachment title and address kept.
MAX_ITEMS = 100
MAX_TITLE, MAX_ADDRESS = 500, 2_000
CUT_MARK = " …"


def parse_date(value: Any, name: str) -> dt.date | None:
    """The API sends '2024-01-05T00:00:00'; imports send '2024-01-05'. Anything else is refused by name."""
    if value in (None, ""):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if not isinstance(value, str):
        raise RecordError(f"{name} is not a date: {value!r}", f"{name} is not a date")
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        raise RecordError(f"{name} is not a date in the form YYYY-MM-DD: {value!r}", f"{name} is not a date") from None


def flag(value: Any, name: str) -> bool:
    """A yes/no field: true, false, or null (not said, so false). A string such as "false" is refused rather
    than read as true."""
    if value is None:
        return False
    if not isinstance(value, bool):
        raise RecordError(f"{name} is not true or false: {value!r}", f"{name} is not true or false")
    return value


def optional_int(value: Any, name: str) -> int | None:
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        raise RecordError(f"{name} is not a number: {value!r}", f"{name} is not a number") from None
    if not -(2**31) <= number < 2**31:
        raise RecordError(f"{name} is out of range: {value!r}", f"{name} is out of range")
    return number


# What a question cannot hold: PostgreSQL cannot encode lone surrogates (which valid JSON can escape) and
# refuses NUL, XML feeds and emails refuse other controls and noncharacters, and none of them mean anything
# here. Tab, newline and carriage return stay: they separate the words and paragraphs of a text.
UNSTORABLE_CHARACTERS = (
    r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"\\U{(plane << 16) | 0xFFFE:08x}\\U{(plane << 16) | 0xFFFF:08x}" for plane in range(17))
)
UNSTORABLE = re.compile(f"[{UNSTORABLE_CHARACTERS}]")


def clean(value: str) -> str:
    return UNSTORABLE.sub("", value)


def text(value: Any) -> str:
    return "" if value is None else clean(str(value)).strip()


def cleaned(value: Any) -> Any:
    """The value with every string in it cleaned, however deep in lists and dicts."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, list):
        return [cleaned(item) for item in value]
    if isinstance(value, dict):
        return {cleaned(key): cleaned(item) for key, item in value.items()}
    return value


def unstorable(value: Any) -> bool:
    """Whether any string in the value, however deep, holds something `clean` would remove."""
    if isinstance(value, str):
        return UNSTORABLE.search(value) is not None
    if isinstance(value, list):
        return any(unstorable(item) for item in value)
    if isinstance(value, dict):
        return any(unstorable(key) or unstorable(item) for key, item in value.items())
    return False


def web_url(value: Any) -> str:
    """The address if it is on the web (http or https), else "": anything else in an href can run script."""
    url = value.strip() if isinstance(value, str) else ""
    if not url.lower().startswith(("http://", "https://")):
        return ""
    try:
        return url if urlsplit(url).netloc else ""
    except ValueError:
        return ""


def _attachments(attachments: list) -> list[dict[str, str]]:
    # An attachment whose address is not on the web (or is absurdly long) keeps its title: the title still
    # says what was attached.
    kept = []
    for attachment in attachments:
        if not isinstance(attachment, dict):
            continue
        url, title = web_url(attachment.get("url")), attachment.get("title")
        # Only a title and an address are kept: any other key, or a title that is not text, could be of any size.
        attachment = {"title": title if isinstance(title, str) else "", "url": url if len(url) <= MAX_ADDRESS else ""}
        if len(attachment["title"]) > MAX_TITLE:
            attachment["title"] = cut_text(attachment["title"], MAX_TITLE)
        if attachment["title"] or attachment["url"]:
            kept.append(attachment)
    return kept[:MAX_ITEMS]


def cut_text(value: str, limit: int) -> str:
    """The text cut to `limit` characters, at a word where there is one near the end, marked as cut."""
    room = limit - len(CUT_MARK)
    kept = value[:room]
    space = kept.rfind(" ", max(0, room - 200))
    return (kept[:space] if space > 0 else kept).rstrip() + CUT_MARK


def cut_html(value: str, limit: int) -> str:
    """Sanitised HTML cut to `limit` characters: sanitising again closes what the cut left open, which can
    make it longer, so the longest cut that fits is searched for, halving the range each time: a few dozen
    sanitisings at most, however the HTML is made."""
    mark = f"<p>{CUT_MARK.strip()}</p>"
    target = limit - len(mark)
    if target <= 0:
        return mark
    # The cut at the target nearly always fits once its open tags are closed: tried first.
    low, high, room, best = 0, min(target, len(value)), min(target, len(value)), ""
    while low < high:
        kept = html.sanitise(value[:room])
        if len(kept) <= target:
            low, best = room, kept
        else:
            high = room - 1
        room = (low + high + 1) // 2
    return best + mark


def _capped(record: QuestionRecord) -> QuestionRecord:
    changes: dict[str, Any] = {}
    for name, limit in TEXT_LIMITS.items():
        value = getattr(record, name)
        if len(value) > limit:
            changes[name] = (cut_html if name == "answer_html" else cut_text)(value, limit)
    if changes:
        changes["text_cut"] = True
    # A grouped question is named by its uin: anything longer than a uin is none, whatever its size.
    grouped = [uin for uin in record.grouped_uins if len(uin) <= MAX_LENGTHS["uin"]][:MAX_ITEMS]
    if grouped != record.grouped_uins:
        changes["grouped_uins"] = grouped
    return dataclasses.replace(record, **changes) if changes else record


def _clean_html(value: str) -> str:
    # Removing a character from sanitised HTML can make what the sanitiser let by as harmless dangerous
    # (href="ja&#1;vascript:..." becomes javascript:), so it is sanitised again until cleaning removes nothing;
    # each round removes a character, so this ends.
    while True:
        value = html.sanitise(value)
        if not unstorable(value):
            return value
        value = clean(value)


def check(record: QuestionRecord) -> QuestionRecord:
    """The record with every string cleaned, every address on the web and every text within TEXT_LIMITS, or
    RecordError if it cannot be stored."""
    changes = {}
    for name in (f.name for f in dataclasses.fields(record)):
        value = getattr(record, name)
        if unstorable(value):
            changes[name] = cleaned(value)
    if "answer_html" in changes:
        changes["answer_html"] = _clean_html(changes["answer_html"])
    url = web_url(changes.get("url", record.url))
    if url != record.url:
        changes["url"] = url
    attachments = _attachments(changes.get("attachments", record.attachments))
    if attachments != record.attachments:
        changes["attachments"] = attachments
    if changes:
        record = dataclasses.replace(record, **changes)
    if not record.external_id:
        raise RecordError("the record has no id")
    for name, limit in MAX_LENGTHS.items():
        if len(getattr(record, name)) > limit:
            raise RecordError(f"{name} is longer than {limit} characters")
    return _capped(record)


# Deeper than any real answer (tables in lists in quotes run to a dozen levels): the sanitiser's work grows
# with the square of the depth, so an answer nested deeper is refused before it is parsed.
MAX_TAG_DEPTH = 200
# Tags whose opening closes one of their own or that hold nothing: they never deepen a document.
_FLAT_TAGS = frozenset({"p", "li", "dt", "dd", "tr", "td", "th", "option", "area", "base", "br", "col", "embed",
                        "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"})
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*+)[^<>]*+>")


def tag_depth_over(raw: str, limit: int) -> bool:
    """Whether the HTML opens more than `limit` tags inside one another, found in one pass without parsing."""
    depth = 0
    for tag in _TAG.finditer(raw):
        if tag[2].lower() in _FLAT_TAGS or tag[0].endswith("/>"):
            continue
        depth = max(0, depth - 1) if tag[1] else depth + 1
        if depth > limit:
            return True
    return False


def answer_fields(raw_answer: str) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    # Twice what is kept is enough for sanitising to drop tags and still leave a full answer; the rest is
    # never parsed.
    room = 2 * TEXT_LIMITS["answer_html"]
    if len(raw_answer) > room:
        raw_answer, fields["text_cut"] = raw_answer[:room], True
    if tag_depth_over(raw_answer, MAX_TAG_DEPTH):
        raise RecordError(f"the answer nests HTML tags more than {MAX_TAG_DEPTH} levels deep")
    return fields | {"answer_html": html.sanitise(raw_answer), "answer_text": html.to_text(raw_answer)}


def plain_answer_fields(answer: Any) -> dict[str, str]:
    plain = text(answer)
    return {"answer_html": html.from_text(plain), "answer_text": plain}


def from_normalised(item: dict[str, Any]) -> QuestionRecord:
    """A record with the fields of section 2 of docs/query-language.md plus id and dates, as in the bundled sample."""
    if not isinstance(item, dict):
        raise RecordError("the record is not a JSON object")
    record = QuestionRecord(
        external_id=text(item.get("id")),
        uin=text(item.get("uin")),
        house=text(item.get("house")),
        heading=text(item.get("heading")),
        question_text=text(item.get("question")),
        **(answer_fields(text(item["answer_html"])) if item.get("answer_html")
           else plain_answer_fields(item.get("answer"))),
        date_tabled=parse_date(item.get("date_tabled"), "date_tabled"),
        date_answered=parse_date(item.get("date_answered"), "date_answered"),
        asking_member_name=text(item.get("member")),
        asking_member_party=text(item.get("party")),
        asking_member_constituency=text(item.get("constituency")),
        answering_body_name=text(item.get("department")),
        answering_member_name=text(item.get("minister")),
        answering_member_role=text(item.get("minister_role")),
        url=text(item.get("url")),
    )
    return check(record)


def _api_id(value: Any) -> int:
    # A float, a bool or "1_000" would be read as another question's id, and overwrite it.
    if isinstance(value, int) and not isinstance(value, bool) or isinstance(value, str) and value.isascii() \
            and value.isdigit():
        number = int(value)
        if 0 < number < 2**31:
            return number
    if value in (None, ""):
        raise RecordError("the record has no id")
    raise RecordError(f"api_id is not a positive whole number: {value!r}", "api_id is not a positive whole number")


def _text(item: dict[str, Any], name: str) -> str:
    value = item.get(name)
    if value is not None and not isinstance(value, str):
        raise RecordError(f"{name} is not text: {str(value)[:80]!r}", f"{name} is not text")
    return text(value)


def from_republished(item: dict[str, Any]) -> QuestionRecord:
    """A record of the Written Questions API as republished in bulk, one JSON object a line, as in the bundled
    written_questions_sample.jsonl.gz: its own field names, plain-text answers with a paragraph a line. Its
    id is the API's, so a question imported from it is the one the API poller later updates."""
    if not isinstance(item, dict):
        raise RecordError("the record is not a JSON object")
    api_id = _api_id(item.get("api_id"))
    answer = _text(item, "answer")
    record = QuestionRecord(
        external_id=str(api_id),
        uin=_text(item, "uin"),
        house=_text(item, "house"),
        heading=_text(item, "heading"),
        question_text=_text(item, "question"),
        answer_text=answer,
        answer_html=html.from_text("\n\n".join(answer.splitlines())),
        date_tabled=parse_date(item.get("date_tabled"), "date_tabled"),
        date_for_answer=parse_date(item.get("date_for_answer"), "date_for_answer"),
        date_answered=parse_date(item.get("date_answered"), "date_answered"),
        date_holding_answer=parse_date(item.get("date_holding_answer"), "date_holding_answer"),
        is_named_day=flag(item.get("is_named_day"), "is_named_day"),
        is_withdrawn=flag(item.get("is_withdrawn"), "is_withdrawn"),
        answer_is_holding=flag(item.get("answer_is_holding"), "answer_is_holding"),
        asking_member_id=optional_int(item.get("asking_member_id"), "asking_member_id"),
        asking_member_name=_text(item, "asking_member"),
        answering_body_name=_text(item, "department"),
        answering_member_id=optional_int(item.get("answering_member_id"), "answering_member_id"),
        answering_member_name=_text(item, "answering_member"),
        url=_text(item, "url"),
        # The API's list cuts texts at 255 characters; where no full text was found, the page sends readers to
        # the official record, as it does for a text cut here.
        text_cut=flag(item.get("question_truncated"), "question_truncated")
        or flag(item.get("answer_truncated"), "answer_truncated"),
    )
    return check(record)
