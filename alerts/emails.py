"""Composing each kind of email from its templates: subject, text and HTML parts, headers."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.safestring import mark_safe

from alerts import tokens
from alerts.changes import Changes, answer_changes
from alerts.models import Delivery, Subscriber, Subscription
from alerts.readable import readable
from questions.models import Question
from questions.search import Node, parse_canonical


@functools.cache
def _around_token(name: str) -> tuple[str, str]:
    # Every link of a kind is the same path around a URL-safe token: worked out once, not per email.
    before, _, after = reverse(name, args=["TOKEN"]).partition("TOKEN")
    return before, after


@functools.cache
def _search_path() -> str:
    return reverse("search")


def _link(name: str, token: str) -> str:
    before, after = _around_token(name)
    return settings.SITE_URL + before + token + after


def manage_url(subscriber: Subscriber) -> str:
    return _link("alerts:manage", tokens.make(subscriber, tokens.MANAGE))


def unsubscribe_url(subscriber: Subscriber, subscription: Subscription | None = None) -> str:
    data = {"sub": subscription.pk} if subscription else {}
    return _link("alerts:unsubscribe", tokens.make(subscriber, tokens.UNSUBSCRIBE, **data))


def _one_line(text: str) -> str:
    """Header text from what people typed: line breaks and other control characters become spaces,
    format characters (such as a right-to-left override) go, and runs of space fold to one."""
    kept = []
    for c in text:
        category = unicodedata.category(c)
        if category != "Cf":
            kept.append(" " if category[0] in "CZ" else c)
    return " ".join("".join(kept).split())


# Where a stranger's words are repeated to an address that has not said yes: short enough to read at a glance.
DEFANGED_MAX = 120
# A scheme that mail clients make into a link, and the dots (ASCII, ideographic) and "@" that join the parts
# of a host or an address; look-alikes of these (full-width, small, one-dot leader) are read as them first.
_SCHEME = re.compile(r"(?i)\b(h)tt(ps?)\b|\b(f)t(p)\b|\b(mailto|tel|sms|callto):")
_JOINER = re.compile(r"(?<=\w)([.\u3002@])(?=\w)")


def _unlinked_scheme(found: re.Match) -> str:
    if found[1]:
        return f"{found[1]}xx{found[2]}"
    return f"{found[3]}x{found[4]}" if found[3] else f"{found[5]}[:]"


def defanged(text: str, limit: int = DEFANGED_MAX) -> str:
    """A stranger's words (a search, a name) fit to repeat in an email to an address that has not confirmed
    it wants anything from us: on one line, without invisible or direction-changing characters, cut short,
    and with anything a mail client would make into a link broken up ("hxxps://example[.]org"), so that
    nobody can use our emails to carry their message or their link to someone else's inbox."""
    text = _SCHEME.sub(_unlinked_scheme, _one_line(unicodedata.normalize("NFKC", text)))
    return cut(_JOINER.sub(r"[\1]", text), limit)


def cut(text: str, limit: int) -> str:
    """The text, or as much as fits in `limit` characters with "…" after it."""
    return text if len(text) <= limit else text[:limit - 1].rstrip() + "…"


def _message(delivery: Delivery, template: str, context: dict, subject: str, headers: dict | None = None,
             to: str = ""):
    subject = _one_line(subject)
    context = {"subscriber": delivery.subscriber, "site_url": settings.SITE_URL, "subject": subject, **context}
    message = EmailMultiAlternatives(
        subject=subject,
        body=render_to_string(f"alerts/email/{template}.txt", context),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=[to or delivery.subscriber.email],
        headers={"Auto-Submitted": "auto-generated", **(headers or {})},
    )
    message.attach_alternative(render_to_string(f"alerts/email/{template}.html", context), "text/html")
    return message


def store(delivery: Delivery, message: EmailMultiAlternatives) -> None:
    """Keep the email on its row as it will be sent: every try sends these same bytes."""
    delivery.subject = message.subject[:300]
    delivery.from_email, delivery.to_email = message.from_email, message.to[0]
    delivery.headers = dict(message.extra_headers)
    delivery.body_text = message.body
    delivery.body_html = next((content for content, mimetype in message.alternatives if mimetype == "text/html"), "")
    delivery.rendered_at = timezone.now()


def as_message(delivery: Delivery) -> EmailMultiAlternatives:
    """The stored email of a delivery, ready for the ESP; nothing is rendered."""
    message = EmailMultiAlternatives(subject=delivery.subject, body=delivery.body_text, from_email=delivery.from_email,
                                     to=[delivery.to_email], headers=delivery.headers)
    if delivery.body_html:
        message.attach_alternative(delivery.body_html, "text/html")
    # Anymail passes these to the ESP, so its events can be traced back to the row.
    message.metadata = {"delivery_id": str(delivery.pk)}
    message.tags = [delivery.kind]
    return message


def _shown(subscription: Subscription) -> Subscription:
    # Confirmation and link emails go to any address typed into a form: they repeat its words defanged.
    subscription.shown_query, subscription.shown_label = defanged(subscription.query), defanged(subscription.label)
    return subscription


def confirmation_request(subscription: Subscription) -> dict:
    """What a confirmation link carries of an alert it asks for (signed, like the rest of the link): enough
    to ask for it again should the request be gone when its owner clicks, pushed out by requests a
    stranger made for the same address meanwhile."""
    return {"id": subscription.pk, "question": subscription.question_id, "query": subscription.query,
            "label": subscription.label, "frequency": subscription.frequency, "alert_on": subscription.alert_on}


def asked_for(subscriber: Subscriber, data: dict) -> list[Subscription]:
    """The alerts a confirmation asks for (`data`: its email's payload or its link's): those still held, and
    for each request gone since, one made again from what the link carries, not saved."""
    ids = data.get("subscriptions", [])
    held = {s.pk: s for s in subscriber.subscriptions.filter(pk__in=ids).select_related("question")}
    again = {r["id"]: Subscription(subscriber=subscriber, question_id=r["question"], query=r["query"],
                                   label=r["label"], frequency=r["frequency"], alert_on=r["alert_on"])
             for r in data.get("requests", []) if r["id"] not in held}
    return [held.get(pk) or again[pk] for pk in ids if pk in held or pk in again]


def _confirmation(delivery: Delivery, hits: list[Hit]) -> EmailMultiAlternatives:
    subscriber = delivery.subscriber
    ids = delivery.payload.get("subscriptions", [])
    subscriptions = [_shown(s) for s in asked_for(subscriber, delivery.payload)]
    # When it was asked for: a link asked for before an unsubscribe must not undo it.
    asked = delivery.created_at.timestamp()
    link = _link("alerts:confirm", tokens.make(subscriber, tokens.CONFIRM, subscriptions=ids, t=asked,
                                               requests=delivery.payload.get("requests", [])))
    # No text a stranger typed in the subject: anyone can have a confirmation sent to any address.
    count = f"{len(subscriptions)} alerts" if len(subscriptions) > 1 else "your alert"
    return _message(delivery, "confirmation", {"subscriptions": subscriptions, "confirm_url": link},
                    f"Confirm {count} for written questions")


def _manage_link(delivery: Delivery, hits: list[Hit]) -> EmailMultiAlternatives:
    subscriber = delivery.subscriber
    duplicate = subscriber.subscriptions.filter(pk=delivery.payload.get("duplicate") or 0).first()
    if duplicate:
        _shown(duplicate)
    context = {"manage_url": manage_url(subscriber), "duplicate": duplicate,
               "too_many": delivery.payload.get("too_many")}
    return _message(delivery, "manage_link", context, "Your written question alerts")


COMPOSERS = {
    Delivery.Kind.CONFIRMATION: _confirmation,
    Delivery.Kind.MANAGE_LINK: _manage_link,
}


class Hit(NamedTuple):
    """One match of an alert email: which alert, which question, and what happened to it."""

    subscription: Subscription
    question: Question
    kind: str  # the event: tabled, holding (a holding answer), overdue, answered, corrected or withdrawn
    # For a correction, the answer it replaced ("" where that was not kept).
    answer_before: str = ""


def compose(delivery: Delivery, hits: list[Hit]) -> EmailMultiAlternatives:
    """The email of a delivery, from the matches it carries (none for confirmation and link emails)."""
    if NEW_EMAIL in delivery.payload:
        return _address_change(delivery)
    return COMPOSERS[delivery.kind](delivery, hits)


@dataclass
class Item:
    question: Question
    kind: str  # the latest event: see `Hit.kind`
    answer_before: str = ""  # see `Hit.answer_before`, when the latest event is a correction
    html: str = ""
    text: str = ""
    # The names of the email's other alerts that matched this question too: it is listed only once.
    also: list[str] = field(default_factory=list)


# A question is shown the same way to everyone whose search has the same words, and one run sends
# the same few questions to many people: each is rendered once per run, not once per email.
_rendered: dict[tuple, tuple[str, str]] = {}
RENDERED_MAX = 20_000


def _kept(store: dict, most: int, key: tuple, make: Callable[[], Any]) -> Any:
    found = store.get(key)
    if found is None:
        if len(store) >= most:
            store.clear()
        found = store[key] = make()
    return found


def _cached(key: tuple, template: str, context: dict) -> str:
    return _kept(_rendered, RENDERED_MAX, key, lambda: render_to_string(template, context))


def _digest(text: str) -> bytes:
    # What stands for an answer in a cache's key: the answers themselves run to 200,000 characters.
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def _day(date: dt.date) -> str:
    return date_format(date, "l jS F Y")


def question_dates(question: Question, due: bool = True) -> list[str]:
    """The days a reader needs to place a question: tabled, answered (a holding answer too) and corrected,
    and (unless `due` is false) the day an answer is due while it has none."""
    told = [f"Tabled {_day(question.date_tabled)}"] if question.date_tabled else []
    holding = question.date_holding_answer or (question.date_answered if question.answer_is_holding else None)
    if holding:
        told.append(f"Holding answer {_day(holding)}")
    if question.date_answered and not question.answer_is_holding:
        told.append(f"Answered {_day(question.date_answered)}")
    if question.date_answer_corrected:
        told.append(f"Corrected {_day(question.date_answer_corrected)}")
    if due and question.date_due and not question.is_settled:
        # A named day is one the member chose: the department is bound to answer on it. Any other question is
        # due within a working week (questions.due), which the question's page and the help page explain.
        if question.is_named_day:
            told.append(f"Due for answer on {_day(question.date_due)} (a named day)")
        else:
            told.append(f"Due for answer by {_day(question.date_due)}")
    return told


_changes: dict[tuple, Changes] = {}
CHANGES_MAX = 256


def _render(item: Item, node: Node, query: str) -> None:
    question = item.question
    # The text part marks nothing, so it is the same whatever the search: one per question, not per search.
    before = _digest(item.answer_before) if item.answer_before else b""
    key = (question.pk, question.updated_at, item.kind, before, settings.SITE_URL)
    # Worked out once per correction, however many emails tell of it.
    changes = _kept(_changes, CHANGES_MAX, key[:4], lambda: answer_changes(item.answer_before, question.answer_text)
                    ) if item.answer_before else None
    # An overdue question's label names the day it was due: the date for answer beside it would be a second one.
    context = {"question": question, "label": kind_label(item.kind, question), "node": node,
               "site_url": settings.SITE_URL, "dates": question_dates(question, due=item.kind != "overdue"),
               "changes": changes}
    item.html = mark_safe(_cached((*key, query), "alerts/email/_item.html", context))
    item.text = _cached(key, "alerts/email/_item.txt", context)


@functools.lru_cache(maxsize=20_000)
def _node(canonical_query: str) -> Node:
    # The canonical form: always valid, whatever became of the text as typed.
    return parse_canonical(canonical_query)


@dataclass
class Section:
    subscription: Subscription
    node: Node | None  # None for a followed question: nothing to highlight
    items: list[Item]
    more: int
    unsubscribe_url: str
    search_url: str


# In the order things happen to a question: what an email tells of it is the last of its events.
KIND_LABELS = {"tabled": "New question", "holding": "Holding answer", "overdue": "Overdue", "answered": "Answered",
               "corrected": "Answer corrected", "withdrawn": "Withdrawn"}
KIND_ORDER = {kind: order for order, kind in enumerate(KIND_LABELS)}


def kind_label(kind: str, question: Question) -> str:
    """What happened to the question, as an email's heading and subject say it: an overdue one with the day
    it was due (`Question.overdue_label`)."""
    if kind == "overdue" and question.date_due:
        return question.overdue_label
    return KIND_LABELS[kind]


def _latest(hits: list[Hit]) -> dict[int, Hit]:
    """Each question's hit of what last happened to it: the one news an email tells of it."""
    latest: dict[int, Hit] = {}
    for hit in hits:
        if hit.question.pk not in latest or KIND_ORDER[hit.kind] > KIND_ORDER[latest[hit.question.pk].kind]:
            latest[hit.question.pk] = hit
    return latest


def _sections(delivery: Delivery, hits: list[Hit]) -> list[Section]:
    """The email's alerts, each with its questions newest first. A question matched by several alerts is
    listed once, under the first, naming the others; one both tabled and answered since the last email is
    listed once, as answered."""
    newest_first = sorted(hits, key=lambda h: (h.question.date_tabled or dt.date.min, h.question.pk), reverse=True)
    grouped: dict[int, tuple[Subscription, list[Item]]] = {}
    listed: dict[int, tuple[Item, Subscription]] = {}
    latest = _latest(hits)
    for subscription, question, *_ in sorted(newest_first, key=lambda h: h.subscription.pk):
        if question.pk not in listed:
            news = latest[question.pk]
            item = Item(question, news.kind, news.answer_before)
            listed[question.pk] = (item, subscription)
            grouped.setdefault(subscription.pk, (subscription, []))[1].append(item)
            continue
        item, owner = listed[question.pk]
        # A follow is named for what it is: its name is the heading listed just above.
        name = "the question you follow" if subscription.is_follow else subscription.name
        if subscription.pk != owner.pk and name not in item.also:
            item.also.append(name)
    room = settings.EMAIL_MAX_QUESTIONS
    sections = []
    for subscription, items in grouped.values():
        if subscription.is_follow:
            # What became of a followed question is always told: it takes no room from the searches.
            shown = items
        else:
            shown, room = items[:max(room, 0)], room - len(items)
        node = None if subscription.is_follow else _node(subscription.canonical_query)
        for item in shown:
            _render(item, node, subscription.query)
        sections.append(Section(
            subscription=subscription, node=node, items=shown,
            more=len(items) - len(shown), unsubscribe_url=unsubscribe_url(delivery.subscriber, subscription),
            search_url=settings.SITE_URL + _search_path() + "?" + urlencode({"q": subscription.query}),
        ))
    return sections


# What happened to the one question an email is about, and how many of each kind an email carries.
NEWS = {"tabled": "New question", "holding": "Holding answer", "overdue": "Not answered on time",
        "answered": "New answer", "corrected": "Answer corrected", "withdrawn": "Question withdrawn"}
COUNTED = {"tabled": ("new question", "new questions"), "holding": ("holding answer", "holding answers"),
           "overdue": ("question not answered on time", "questions not answered on time"),
           "answered": ("answer", "answers"), "corrected": ("corrected answer", "corrected answers"),
           "withdrawn": ("withdrawn question", "withdrawn questions")}
# How much of an alert's name and of a question's heading a subject carries, to stay readable in an inbox.
SUBJECT_NAME_MAX, SUBJECT_TITLE_MAX = 80, 120


def alert_name(subscription: Subscription) -> str:
    """What a subject calls an alert: the name its owner gave it, else its search in words."""
    if subscription.is_follow:
        return "the question you follow"
    return subscription.label or readable(_node(subscription.canonical_query), subscription.query)


def _alert_subject(delivery: Delivery, hits: list[Hit]) -> str:
    """What happened, and to which alert: each question counted once, as what last happened to it (as the
    email lists it), however many alerts it matched."""
    alerts = {hit.subscription.pk: hit.subscription for hit in hits}
    latest = _latest(hits)
    if len(latest) == 1 and all(s.is_follow for s in alerts.values()):
        # What became of the one question followed is the news itself.
        [hit] = latest.values()
        # An overdue question's label has a colon of its own.
        between = " – " if hit.kind == "overdue" else ": "
        return f"{kind_label(hit.kind, hit.question)}{between}“{cut(hit.question.title, SUBJECT_TITLE_MAX)}”"
    if len(alerts) == 1:
        target = f"‘{cut(alert_name(next(iter(alerts.values()))), SUBJECT_NAME_MAX)}’"
    else:
        target = f"{len(alerts)} of your alerts"
    if len(latest) == 1 and delivery.kind == Delivery.Kind.IMMEDIATE:
        [hit] = latest.values()
        return f"{NEWS[hit.kind]}: {cut(hit.question.title, SUBJECT_TITLE_MAX)} – {target}"
    counts = Counter(hit.kind for hit in latest.values())
    told = [f"{n} {COUNTED[kind][n != 1]}" for kind, n in sorted(counts.items(), key=lambda kv: KIND_ORDER[kv[0]])]
    listed = told[0] if len(told) == 1 else f"{', '.join(told[:-1])} and {told[-1]}"
    matched = f"{listed} {'matches' if len(latest) == 1 else 'match'} {target}"
    if delivery.kind == Delivery.Kind.IMMEDIATE:
        return matched
    return f"{digest_title(delivery)}: {matched}"


def digest_title(delivery: Delivery) -> str:
    """The digest and the days it covers: its run's period, or the days up to today for one made by hand."""
    run = delivery.run
    end = timezone.localtime(run.period_end).date() if run else timezone.localdate()
    if delivery.kind == Delivery.Kind.DAILY:
        return f"Daily digest, {end:%-d %B %Y}"
    if delivery.kind == Delivery.Kind.MONTHLY:
        start = timezone.localtime(run.period_start).date() if run else end.replace(day=1) - dt.timedelta(days=1)
        return f"Monthly digest, {start:%B %Y}"
    start = timezone.localtime(run.period_start).date() if run else end - dt.timedelta(days=7)
    return f"Weekly digest, {start:%-d %B} to {end:%-d %B %Y}"


def _alert(delivery: Delivery, hits: list[Hit]) -> EmailMultiAlternatives:
    sections = _sections(delivery, hits)
    if not sections:
        raise NothingToSend(f"delivery {delivery.pk} carries no matches")
    subject = _alert_subject(delivery, hits)
    everything = unsubscribe_url(delivery.subscriber)
    host = urlsplit(settings.SITE_URL).hostname or "localhost"
    headers = {
        "List-Unsubscribe": f"<{everything}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "List-Id": f"Written question alerts <alerts.{host}>",
    }
    context = {"sections": sections, "manage_url": manage_url(delivery.subscriber),
               "unsubscribe_all_url": everything, "delivery": delivery, "follow_days": settings.FOLLOW_WINDOW_DAYS}
    return _message(delivery, "alert", context, subject, headers)


class NothingToSend(Exception):
    """An alert delivery whose matches are gone (their alert was deleted): it is not sent."""


COMPOSERS.update({
    Delivery.Kind.IMMEDIATE: _alert,
    Delivery.Kind.DAILY: _alert,
    Delivery.Kind.WEEKLY: _alert,
    Delivery.Kind.MONTHLY: _alert,
})


# A change of address is asked for, and told of, by the kinds of email asked for just now: a confirmation, to
# the new address, with its link; and, once it is made, a note to the old address that carries no link.
NEW_EMAIL, OLD_EMAIL = "new_email", "old_email"


def hidden_address(email: str) -> str:
    """An address as told to the address it replaced: enough for its owner to know it, not to read it."""
    local, _, domain = email.rpartition("@")
    return f"{local[:1]}•••@{domain}" if local else email


def _address_change(delivery: Delivery) -> EmailMultiAlternatives:
    new_email = delivery.payload[NEW_EMAIL]
    if delivery.kind == Delivery.Kind.CONFIRMATION:
        link = _link("alerts:confirm-email", tokens.make(delivery.subscriber, tokens.NEW_EMAIL, to=new_email,
                                                         t=delivery.created_at.timestamp()))
        return _message(delivery, "change_email", {"confirm_url": link, "new_email": new_email},
                        "Confirm your new address for written question alerts", to=new_email)
    return _message(delivery, "email_changed", {"new_email": hidden_address(new_email),
                                                "changed_at": delivery.created_at},
                    "The address of your written question alerts has changed", to=delivery.payload[OLD_EMAIL])
