"""Test data made as the site makes it: subscribers and their alerts, questions and their events, matches,
and the records a source brings. Plain functions: keyword arguments override any default."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import zlib
from itertools import count

from django.utils import timezone

from alerts import tokens, volume
from alerts.models import Match, Subscriber, Subscription
from questions.ingest import upsert
from questions.models import Question, QuestionEvent
from questions.records import QuestionRecord
from questions.search import canonical, matches, parse
from tests.conftest import FIXTURES, load_fixture
from tests.parliament_stub import member


def subscriber(email: str = "reader@example.com", confirmed: bool = True, *, created_at=None,
               **fields) -> Subscriber:
    """A subscriber made now (or at `created_at`), confirmed then unless `confirmed` is false."""
    moment = created_at or timezone.now()
    if created_at is not None:
        fields["created_at"] = created_at
    fields.setdefault("confirmed_at", moment if confirmed else None)
    return Subscriber.objects.create(email=email, **fields)


def owner(email: str, subscriber: Subscriber | None) -> Subscriber:
    """`subscriber`, or the one of `email`, made confirmed if there is none yet."""
    if subscriber is not None:
        return subscriber
    return Subscriber.objects.get_or_create(email=email, defaults={"confirmed_at": timezone.now()})[0]


def subscribe(email: str = "ada@example.org", query: str = '"facial recognition"', *,
              subscriber: Subscriber | None = None, **fields) -> Subscription:
    """A confirmed alert for a search (immediate, on new questions and answers: the model's defaults), of
    `subscriber` or of the address's subscriber; stored in canonical form as the signup form stores it."""
    values = {"canonical_query": canonical(parse(query)), "confirmed_at": timezone.now()} | fields
    return Subscription.objects.create(subscriber=owner(email, subscriber), query=query, **values)


def follow_question(email: str = "ada@example.org", question: Question | None = None, *,
                    subscriber: Subscriber | None = None, **fields) -> Subscription:
    """A confirmed alert following one question, labelled with its heading, as "Follow this question" makes it."""
    values = {"label": question.heading[:100], "confirmed_at": timezone.now()} | fields
    return Subscription.objects.create(subscriber=owner(email, subscriber), question=question, **values)


TODAY = timezone.localdate()


def stamp(day: dt.date) -> str:
    return f"{day.isoformat()}T00:00:00"


def real_record(api_id: int, *, answered: bool = True, **changes) -> dict:
    """The real detail record, re-dated to this week so the poller's window finds it."""
    value = copy.deepcopy(load_fixture("question_detail.json")["value"])
    value.update(
        id=api_id, uin=str(api_id % 100000), dateTabled=stamp(TODAY - dt.timedelta(days=2)),
        askingMember=member("Jane Example", "Labour", "Norwich South", 4253),
        answeringMember=member("Luke Hall", "Conservative", "Thornbury and Yate", 3985),
    )
    if answered:
        value["dateAnswered"] = stamp(TODAY - dt.timedelta(days=1))
    else:
        value.update(dateAnswered=None, answerText=None, answeringMemberId=None, answeringMember=None)
    value.update(changes)
    return value


HEADING = "Schools: Heating"
ANSWER = "We have given schools £50 million for new boilers this year."
CORRECTED = "We have given schools £45 million for new boilers this year."
HOLDING = "I will reply to the honourable member as soon as possible."


def record(external_id: str = "wq-1", **changes) -> QuestionRecord:
    """A question as a source brings it: tabled two days ago, not yet answered."""
    base = QuestionRecord(
        external_id=external_id, uin=str(zlib.crc32(external_id.encode()) % 90000 + 10000), house="Commons",
        heading=HEADING,
        question_text="To ask the Secretary of State for Education, what funding is available to replace school "
                      "boilers.",
        date_tabled=TODAY - dt.timedelta(days=2), date_for_answer=TODAY + dt.timedelta(days=5),
        asking_member_id=4253, asking_member_name="Jane Example", asking_member_party="Labour",
        asking_member_constituency="Norwich South", answering_body_id=60,
        answering_body_name="Department for Education",
    )
    return dataclasses.replace(base, **changes)


def answered(rec: QuestionRecord, text: str = ANSWER, **changes) -> QuestionRecord:
    return dataclasses.replace(rec, answer_text=text, answer_html=f"<p>{text}</p>", date_answered=TODAY,
                               answering_member_id=3985, answering_member_name="Luke Hall",
                               answering_member_role="Minister for Schools", **changes)


def holding(rec: QuestionRecord) -> QuestionRecord:
    return answered(rec, HOLDING, answer_is_holding=True, date_holding_answer=TODAY)


def corrected(rec: QuestionRecord, text: str = CORRECTED) -> QuestionRecord:
    return answered(rec, text, answer_is_correction=True, date_answer_corrected=TODAY)


def withdrawn(rec: QuestionRecord) -> QuestionRecord:
    return dataclasses.replace(rec, is_withdrawn=True)


def land(rec: QuestionRecord) -> Question:
    """Store the record as a poll would, with the events it makes."""
    upsert([rec])
    return Question.objects.get(external_id=rec.external_id)


def match_everything() -> int:
    """Matches as the matcher makes them: every wanted event of every subscription's query, once."""
    created = 0
    seen = set(pairs())
    for subscription in Subscription.objects.all():
        node = parse(subscription.query)
        events = [event for event in QuestionEvent.objects.select_related("question")
                  if subscription.wants(event.kind) and matches(node, event.question.search_document())
                  and (subscription.pk, event.pk) not in seen]
        if events:
            match(subscription, *events)
            created += len(events)
    return created


def match(subscription: Subscription, *events: QuestionEvent, **fields) -> Match:
    """A match of these events for the alert, as one matching run records it."""
    found = Match.of(subscription.pk, [event.pk for event in events], **fields)
    found.save()
    return found


def pairs(matches=None) -> list[tuple[int, int]]:
    """(alert id, event id) of each match recorded (in these rows), sorted: a pair recorded twice shows twice."""
    rows = (Match.objects.all() if matches is None else matches).values_list("subscription_id", "events")
    return sorted((alert, event) for alert, events in rows for event in events)


_numbers = count(1)


def question(**fields) -> Question:
    number = next(_numbers)
    defaults = {"external_id": f"health-{number}", "uin": f"HL{number}", "house": "Commons",
                "heading": f"Facial recognition: police number {number}", "date_tabled": timezone.localdate()}
    return Question.objects.create(**(defaults | fields))


def matched(subscription: Subscription, at: dt.datetime | None = None) -> Match:
    event = QuestionEvent.objects.create(question=question(), kind="tabled", key="tabled", matched_at=timezone.now())
    return match(subscription, event, created_at=at or timezone.now())


def subscribers_with_one_match_each(count: int) -> None:
    """`count` confirmed subscribers, each with an immediate alert that matched one question."""
    from django.core.management import call_command

    call_command("import_questions", str(FIXTURES / "seed_questions.json"), verbosity=0)
    event = QuestionEvent.objects.filter(question__in=Question.objects.all()).first()
    now = timezone.now()
    people = Subscriber.objects.bulk_create(Subscriber(email=f"reader{i}@example.org", confirmed_at=now)
                                            for i in range(count))
    alerts = Subscription.objects.bulk_create(
        Subscription(subscriber=p, query="police", canonical_query="police", confirmed_at=now) for p in people)
    Match.objects.bulk_create(Match.of(a.pk, [event.pk]) for a in alerts)


# Long ago on purpose: the archive stops growing, and the estimate must still count back from its newest day.
NEWEST = dt.date(2025, 6, 30)
FILLER = volume.MIN_ARCHIVE_FOR_SHARE


def ask(*, heading: str, text: str = "", tabled: dt.date | None = None, answered: dt.date | None = None,
        department: str = "Department for Environment, Food and Rural Affairs") -> Question:
    question = Question(heading=heading, question_text=text or f"To ask about {heading.lower()}.",
                        answer_text="An answer." if answered else "", date_tabled=tabled, date_answered=answered,
                        answering_body_name=department)
    question.refresh_search_text()
    return question


def store(questions: list[Question]) -> None:
    start = Question.objects.count()
    for number, question in enumerate(questions, start=start):
        question.external_id = f"v{number}"
    Question.objects.bulk_create(questions)


def filler(count: int = FILLER, days: int = 365, newest: dt.date = NEWEST) -> None:
    """Questions no test searches for, spread over `days` days back from `newest`, the first and the last day
    included, so that the archive has a size and a span."""
    store([ask(heading="Fisheries", text="To ask what steps are being taken on fishing quotas.",
               tabled=newest - dt.timedelta(days=round(number * (days - 1) / max(count - 1, 1))))
           for number in range(count)])


def confirmed(email: str = "ada@example.org") -> tuple[Subscriber, str]:
    """A confirmed subscriber and the path of their manage page."""
    person = subscriber(email)
    return person, f"/alerts/manage/{tokens.make(person, tokens.MANAGE)}/"


def unanswered() -> Question:
    question = ask(heading="Hedgehog crossings", tabled=NEWEST)
    question.external_id = "hedgehog-crossings"
    question.save()
    return question


def quiet_for(subscription: Subscription, days: int) -> None:
    old = timezone.now() - dt.timedelta(days=days)
    Subscription.objects.filter(pk=subscription.pk).update(created_at=old, updated_at=old)
