"""The official Written Questions API: list pages for what changed, detail records for the full text."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from django.conf import settings

from questions.models import Question, Source
from questions.records import (
    QuestionRecord,
    RecordError,
    answer_fields,
    check,
    optional_int,
    parse_date,
    text,
)
from questions.sources import Batch
from questions.sources.http import FetchError, OutOfTime, PoliteClient
from questions.sources.jsondepth import loads, unreadable

LIST_PATH = "/api/writtenquestions/questions"
# A question changes in the API when it is tabled, answered or corrected; each has its own date filter.
DATE_FILTERS = ("tabled", "answered", "corrected")


def _member(value: dict[str, Any], key: str) -> dict[str, Any]:
    member = value.get(key)
    return member if isinstance(member, dict) else {}


def _list(value: Any) -> list:
    # A list the API left out or sent as something else is empty; it is no reason to lose the question.
    return value if isinstance(value, list) else []


def record_from_api(value: Any, list_signature: str = "") -> QuestionRecord:
    """One API question (list item or detail record, with or without members expanded)."""
    if isinstance(value, dict) and isinstance(value.get("value"), dict):
        value = value["value"]
    if not isinstance(value, dict):
        raise RecordError("the record is not a JSON object")
    if reason := unreadable(value):
        raise RecordError(reason)
    api_id = optional_int(value.get("id"), "id")
    if api_id is None:
        raise RecordError("the record has no id")
    asking, answering = _member(value, "askingMember"), _member(value, "answeringMember")
    attachments = [
        {"title": text(a.get("title") or a.get("fileName")), "url": text(a.get("url"))}
        for a in _list(value.get("attachments")) if isinstance(a, dict)
    ]
    return check(QuestionRecord(
        external_id=str(api_id),
        uin=text(value.get("uin")),
        house=text(value.get("house")),
        heading=text(value.get("heading")),
        question_text=text(value.get("questionText")),
        **answer_fields(text(value.get("answerText"))),
        date_tabled=parse_date(value.get("dateTabled"), "dateTabled"),
        date_for_answer=parse_date(value.get("dateForAnswer"), "dateForAnswer"),
        date_answered=parse_date(value.get("dateAnswered"), "dateAnswered"),
        date_holding_answer=parse_date(value.get("dateHoldingAnswer"), "dateHoldingAnswer"),
        date_answer_corrected=parse_date(value.get("dateAnswerCorrected"), "dateAnswerCorrected"),
        is_named_day=bool(value.get("isNamedDay")),
        is_withdrawn=bool(value.get("isWithdrawn")),
        answer_is_holding=bool(value.get("answerIsHolding")),
        answer_is_correction=bool(value.get("answerIsCorrection")),
        grouped_uins=[text(u) for u in _list(value.get("groupedQuestions")) if isinstance(u, str | int)],
        attachments=attachments,
        asking_member_id=optional_int(value.get("askingMemberId"), "askingMemberId"),
        asking_member_name=text(asking.get("name")),
        asking_member_party=text(asking.get("party")),
        asking_member_constituency=text(asking.get("memberFrom")),
        answering_body_id=optional_int(value.get("answeringBodyId"), "answeringBodyId"),
        answering_body_name=text(value.get("answeringBodyName")),
        answering_member_id=optional_int(value.get("answeringMemberId"), "answeringMemberId"),
        answering_member_name=text(answering.get("name")),
        list_signature=list_signature,
    ))


def list_signature(value: dict[str, Any]) -> str:
    """What a list item says of a question; when it has not changed, the stored detail is still right."""
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _json(response_text: str, url: str) -> Any:
    try:
        return loads(response_text)
    except ValueError as exc:
        raise FetchError(f"{url}: the response is not valid JSON ({exc})", "the response is not valid JSON") from None


def _list_items(client: PoliteClient, base: str, day: dt.date, date_filter: str, batch: Batch):
    """Every item for one day and one date filter; one day at a time because deep paging fails on the API."""
    url = base + LIST_PATH
    size = settings.PARLIAMENT_API_PAGE_SIZE
    skip, previous = 0, None
    for _ in range(settings.PARLIAMENT_API_MAX_PAGES):
        params = {
            f"{date_filter}WhenFrom": day.isoformat(), f"{date_filter}WhenTo": day.isoformat(),
            "expandMember": "true", "includeWithdrawn": "true", "skip": skip, "take": size,
        }
        response = client.get(url, params=params)
        if response.status != 200:
            raise FetchError(f"{url}: HTTP {response.status} for {date_filter} on {day}")
        page = _json(response.text(), url)
        results = page.get("results") if isinstance(page, dict) else None
        if not isinstance(results, list):
            raise FetchError(f"{url}: the response has no list of results")
        # An API that ignores `skip` sends the same page again: that ends the listing, whatever
        # totalResults says.
        if results and results == previous:
            batch.problem("", f"the API sent the same page again for {date_filter} on {day} (skip={skip}); "
                              "the listing of that day stopped there", cause="the same page again",
                          name=f"{date_filter} on {day}", skipped=False)
            return
        previous = results
        yield from results
        skip += len(results)
        total = page.get("totalResults")
        if not results or not isinstance(total, int) or skip >= total:
            return
    batch.problem("", f"more than {settings.PARLIAMENT_API_MAX_PAGES} pages for {date_filter} on {day}: "
                      "the listing of that day stopped there", cause="more than the most pages",
                  name=f"{date_filter} on {day}", skipped=False)


def _list_day(client: PoliteClient, base: str, day: dt.date, batch: Batch) -> dict[int, str]:
    """The list signature of every question the API lists as tabled, answered or corrected on the day."""
    listed: dict[int, str] = {}
    for date_filter in DATE_FILTERS:
        for item in _list_items(client, base, day, date_filter, batch):
            value = item.get("value") if isinstance(item, dict) else None
            api_id = value.get("id") if isinstance(value, dict) else None
            if not isinstance(api_id, int):
                batch.problem("", f"a list item has no numeric id: {str(item)[:200]}", cause="a list item without id")
                continue
            listed[api_id] = list_signature(value)
    return listed


def _detail(client: PoliteClient, base: str, api_id: int) -> Any:
    url = f"{base}{LIST_PATH}/{api_id}"
    response = client.get(url, params={"expandMember": "true"})
    if response.status != 200:
        raise FetchError(f"{url}: HTTP {response.status}", f"HTTP {response.status}")
    return _json(response.text(), url)


def fetch(source: Source, client: PoliteClient, today: dt.date) -> Batch:
    """The questions of every day from the cursor to today, a day at a time: the cursor moves to the last
    day read in full, so a poll that runs out of time still moves on, and the next goes on from there."""
    batch = Batch()
    base = source.url.rstrip("/")
    day = source.cursor or today - dt.timedelta(days=settings.PARLIAMENT_API_FIRST_POLL_DAYS)
    day -= dt.timedelta(days=settings.PARLIAMENT_API_OVERLAP_DAYS)
    tried: set[int] = set()  # a question listed on several days (tabled, then answered) is read once
    while day <= today and not batch.error:
        try:
            listed = _list_day(client, base, day, batch)
        except FetchError as exc:
            batch.error = str(exc)
            break
        known = dict(Question.objects.filter(external_id__in=[str(i) for i in listed])
                     .values_list("external_id", "list_signature"))
        for api_id, signature in listed.items():
            if known.get(str(api_id)) == signature or api_id in tried:
                continue
            tried.add(api_id)
            try:
                batch.records.append(record_from_api(_detail(client, base, api_id), signature))
            except OutOfTime as exc:
                batch.error = str(exc)
                break
            except FetchError as exc:
                batch.problem(str(api_id), str(exc), cause=f"detail record: {exc.cause}")
            except RecordError as exc:
                batch.problem(str(api_id), str(exc), cause=f"record: {exc.cause}")
        if not batch.error:
            batch.cursor = day
        day += dt.timedelta(days=1)
    batch.requests = client.requests_made
    return batch
