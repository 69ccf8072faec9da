"""Turning a search into an alert, and everything a subscriber can do with their alerts afterwards."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from alerts.delivery import ALERT_KINDS, queue_delivery, render_again
from alerts.emails import NEW_EMAIL, OLD_EMAIL, confirmation_request
from alerts.models import Delivery, Subscriber, Subscription
from alerts.retention import forget_erased, suppressed_reason_of
from alerts.tokens import Link
from alerts.volume import Volume, estimate_now_or_later
from questions.models import Question
from questions.search import canonical, parse, parse_or_none
from questions.search.hints import comma_hint
from questions.searching import CappedPaginator, Filters, matching
from questions.templatetags.questions_tags import field_query

log = logging.getLogger(__name__)

PREVIEW_DAYS = 30
PREVIEW_SIZE = 10
# Counting every match in the archive costs a scan; past the search page's own cap, the preview says "more than"
# as that page does.
ARCHIVE_COUNT_CAP = CappedPaginator.cap
NEVER_EMAIL = Subscriber.NEVER_EMAIL


class DuplicateSearch(Exception):
    """The subscriber already has an alert for this search."""


class TooMany(Exception):
    """The subscriber already has as many alerts as an address may have."""


@dataclass(frozen=True)
class Preview:
    questions: list[Question]
    total: int
    per_week: float
    hint: str
    # Only looked for when the last 30 days matched nothing, so that an empty preview can say whether
    # the search is wrong or the subject merely quiet.
    archive_total: int | None = None
    latest: dt.date | None = None
    # Questions, answers and emails a week over the archive's last year, and whether the search is too broad;
    # or still being worked out by a worker, for a search common enough to take seconds.
    volume: Volume | None = None
    volume_pending: bool = False

    @property
    def archive_capped(self) -> bool:
        return (self.archive_total or 0) > ARCHIVE_COUNT_CAP


def _volume(node, today: dt.date) -> tuple[Volume | None, bool]:
    """The volume estimate and whether it is still being worked out."""
    found = estimate_now_or_later(node, today)
    return found, found is None


def preview(query: str, today: dt.date | None = None) -> Preview:
    """What the search matched in the last 30 days, as the alert would have sent it, and how much it would
    send in a week (see alerts.volume). Raises QueryError."""
    today = today or timezone.localdate()
    node = parse(query)
    recent = matching(node, Filters(tabled_from=today - dt.timedelta(days=PREVIEW_DAYS)))
    total = recent.count()
    archive_total = latest = None
    if not total:
        everything = matching(node)
        archive_total = everything.order_by()[:ARCHIVE_COUNT_CAP + 1].count()
        if archive_total:
            # PostgreSQL sorts a missing date first when newest-first.
            latest = everything.filter(date_tabled__isnull=False).values_list("date_tabled", flat=True).first()
    return Preview(list(recent[:PREVIEW_SIZE]), total, round(total * 7 / PREVIEW_DAYS, 1), comma_hint(query),
                   archive_total, latest, *_volume(node, today))


def confirmed_alerts(subscriber: Subscriber):
    """The alerts the address's owner said yes to, from the inbox or the manage page. Anyone can sign any
    address up, so what is still unconfirmed is a stranger's request until then: it is not the owner's."""
    return subscriber.subscriptions.filter(confirmed_at__isnull=False)


def _room(subscriber: Subscriber) -> int:
    # A follow that ended itself is history: it does not stand in the way of a new alert.
    taken = confirmed_alerts(subscriber).filter(retired_at__isnull=True).count()
    return settings.MAX_SUBSCRIPTIONS_PER_ADDRESS - taken


def _at_cap(subscriber: Subscriber) -> bool:
    return _room(subscriber) <= 0


def _make_room_for_a_request(subscriber: Subscriber) -> None:
    """Unconfirmed requests are bounded by the same cap, the oldest giving way to a new one: a stranger's
    flood of signups can neither pile up on an address nor keep its owner from asking for an alert."""
    stale = (subscriber.subscriptions.filter(confirmed_at__isnull=True).order_by("-created_at", "-pk")
             .values_list("pk", flat=True)[settings.MAX_SUBSCRIPTIONS_PER_ADDRESS - 1:])
    Subscription.objects.filter(pk__in=list(stale)).delete()


def subscriber_for(email: str) -> Subscriber:
    """The subscriber of this address, created if new (suppressed at once if it was erased after a bounce
    or complaint)."""
    email = email.strip()
    existing = Subscriber.objects.filter(email__iexact=email).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            subscriber = Subscriber.objects.create(email=email)
    except IntegrityError:
        return Subscriber.objects.get(email__iexact=email)
    # An address erased after it left: one that bounced or complained stays stopped; one that only
    # unsubscribed starts afresh, and its digest has no more reason to be kept.
    erased = suppressed_reason_of(email)
    if erased in NEVER_EMAIL:
        subscriber.suppress(erased)
    elif erased:
        forget_erased(email)
    return subscriber


def _queue(subscriber: Subscriber, kind: str, **payload) -> Delivery:
    return queue_delivery(subscriber, kind, payload)


def sign_up(email: str, query: str, *, frequency: str, alert_on: str, label: str = "") -> None:
    """Record an unconfirmed alert and email its confirmation link.

    The caller shows the same page whatever happens here, so that nobody can learn from it whether an
    address is known: every outcome for a known address is told by email, or not at all.
    """
    text = canonical(parse(query))
    _ask_to_confirm(email, {"question": None, "canonical_query": text},
                    {"query": query.strip(), "label": label.strip(), "frequency": frequency, "alert_on": alert_on})


def follow(email: str, question_id: int) -> None:
    """Record an unconfirmed follow of one question ("email me when this is answered") and email its
    confirmation link; as with `sign_up`, the caller's page is the same whatever happens."""
    # The canary's questions are nobody's to follow.
    question = Question.objects.public().filter(pk=question_id).first()
    if question is None or question.is_settled:
        # Gone, or settled since the form was sent: there is nothing left to follow.
        log.info("follow ignored", extra={"question": question_id, "reason": "gone or settled"})
        return
    name = question.title
    _ask_to_confirm(email, {"question": question}, {"label": name[:100], "frequency": Subscription.Frequency.IMMEDIATE,
                                                    "alert_on": Subscription.AlertOn.BOTH})


def _ask_to_confirm(email: str, key: dict, fields: dict) -> None:
    """Email a confirmation for the subscription `key` names, creating it with `fields` if it is new."""
    with transaction.atomic():
        subscriber = subscriber_for(email)
        if subscriber.suppressed_reason in NEVER_EMAIL:
            log.info("signup ignored", extra={"subscriber": subscriber.pk,
                                              "reason": f"suppressed:{subscriber.suppressed_reason}"})
            return
        existing = subscriber.subscriptions.filter(**key).first()
        coming_back = subscriber.suppressed_reason == Subscriber.Suppression.UNSUBSCRIBED
        if existing and existing.confirmed_at and not coming_back:
            _queue(subscriber, Delivery.Kind.MANAGE_LINK, duplicate=existing.pk)
            return
        if existing and not existing.confirmed_at:
            # Asked again before confirming: the latest choices are the ones the link will confirm.
            for name in ("frequency", "alert_on", "label"):
                setattr(existing, name, fields[name])
            existing.save(update_fields=["frequency", "alert_on", "label", "updated_at"])
        if existing is None:
            if _at_cap(subscriber):
                _queue(subscriber, Delivery.Kind.MANAGE_LINK, too_many=settings.MAX_SUBSCRIPTIONS_PER_ADDRESS)
                return
            _make_room_for_a_request(subscriber)
            existing = Subscription.objects.create(subscriber=subscriber, **key, **fields)
        _queue(subscriber, Delivery.Kind.CONFIRMATION, subscriptions=[existing.pk],
               requests=[confirmation_request(existing)])


def _asked_again(subscriber: Subscriber, request: dict) -> Subscription | None:
    """The alert a confirmation link asked for, whose request has gone since: the alert of the same search
    (or follow) if the address has one now, else the request made again, taking its place among the
    requests as a new one does. None when its question has left the archive, or its search is no longer
    one the language accepts."""
    if request["question"] is not None:
        question = Question.objects.filter(pk=request["question"]).first()
        if question is None:
            return None
        key = {"question": question}
    else:
        node = parse_or_none(request["query"])
        if node is None:
            return None
        key = {"question": None, "canonical_query": canonical(node)}
    existing = subscriber.subscriptions.filter(**key).first()
    if existing:
        return existing
    _make_room_for_a_request(subscriber)
    return Subscription.objects.create(subscriber=subscriber, **key, **{
        name: request[name] for name in ("query", "label", "frequency", "alert_on")})


def confirm(link: Link) -> list[int] | None:
    """Confirm the subscriber and those of the alerts the link was sent for that are still unconfirmed;
    the ids of the alerts it was for. A request for one of them that a stranger's requests for the address
    pushed out meanwhile is made again from the link, so that its owner still gets the alert.

    None, changing nothing, when the address unsubscribed from everything after the link was asked for:
    an old link must not undo that. A link asked for after unsubscribing (coming back) lifts it, and
    turns back on the alerts it names, which the unsubscribe had paused."""
    subscriber = link.subscriber
    asked_at = dt.datetime.fromtimestamp(float(link.data.get("t", 0)), tz=dt.UTC)
    now = timezone.now()
    with transaction.atomic():
        subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
        if subscriber.suppressed_reason in NEVER_EMAIL:
            return None
        unsubscribed = subscriber.suppressed_reason == Subscriber.Suppression.UNSUBSCRIBED
        if unsubscribed and (subscriber.suppressed_at or now) >= asked_at:
            return None
        ids = link.data.get("subscriptions", [])
        held = set(subscriber.subscriptions.filter(pk__in=ids).values_list("pk", flat=True))
        again = [_asked_again(subscriber, r) for r in link.data.get("requests", []) if r["id"] not in held]
        named = subscriber.subscriptions.filter(pk__in=[*held, *(s.pk for s in again if s)])
        if unsubscribed:
            subscriber.suppressed_at, subscriber.suppressed_reason = None, ""
            named.filter(paused=True).update(paused=False, resumed_at=now, updated_at=now)
        subscriber.confirmed_at = subscriber.confirmed_at or now
        subscriber.save(update_fields=["confirmed_at", "suppressed_at", "suppressed_reason"])
        # Up to the cap: what does not fit stays unconfirmed, and the page says so.
        waiting = list(named.filter(confirmed_at__isnull=True).order_by("pk").values_list("pk", flat=True))
        Subscription.objects.filter(pk__in=waiting[:max(_room(subscriber), 0)]).update(confirmed_at=now,
                                                                                        updated_at=now)
    return list(named.values_list("pk", flat=True))


def request_manage_link(email: str) -> None:
    """Email a link to the manage page if the address has alerts; otherwise nothing. The page says the same."""
    subscriber = Subscriber.objects.filter(email__iexact=email.strip()).first()
    if subscriber and subscriber.suppressed_reason not in NEVER_EMAIL and subscriber.subscriptions.exists():
        _queue(subscriber, Delivery.Kind.MANAGE_LINK)


def update_subscription(subscription: Subscription, *, query: str, label: str, frequency: str,
                        alert_on: str) -> None:
    """Change an alert; raises QueryError for a refused query and DuplicateSearch for one already saved."""
    text = canonical(parse(query))
    others = subscription.subscriber.subscriptions.searches().exclude(pk=subscription.pk)
    if others.filter(canonical_query=text).exists():
        raise DuplicateSearch()
    subscription.query, subscription.canonical_query = query.strip(), text
    subscription.label, subscription.frequency, subscription.alert_on = label.strip(), frequency, alert_on
    subscription.save()


def ask_to_turn_back_on(subscription: Subscription) -> bool:
    """Email a new confirmation for one alert of an address that unsubscribed from everything.

    Confirming it is what turns the alert back on: the address owner says yes from their inbox, as when
    signing up, so that a forwarded manage link cannot restart mail on its own. False, sending nothing,
    when the address must never be emailed."""
    subscriber = subscription.subscriber
    if subscriber.suppressed_reason in NEVER_EMAIL:
        return False
    _queue(subscriber, Delivery.Kind.CONFIRMATION, subscriptions=[subscription.pk])
    return True


def _add(subscriber: Subscriber, query: str, *, label: str, frequency: str, alert_on: str, paused: bool,
         confirmed: bool, question_id: int | None = None) -> Subscription:
    """A new alert for the subscriber (a follow of the question, with `question_id`), inside the caller's
    transaction. Raises DuplicateSearch for a search already saved or a question already followed,
    TooMany at the cap, and Question.DoesNotExist for a question no longer in the archive."""
    if question_id is not None:
        key = {"question": Question.objects.get(pk=question_id)}
        query, text = "", ""
    else:
        text = canonical(parse(query))
        key = {"question": None, "canonical_query": text}
    if subscriber.subscriptions.filter(**key).exists():
        raise DuplicateSearch()
    if _at_cap(subscriber):
        raise TooMany()
    try:
        with transaction.atomic():
            return Subscription.objects.create(
                subscriber=subscriber, question=key["question"], query=query.strip(), canonical_query=text,
                label=label.strip(), frequency=frequency, alert_on=alert_on, paused=paused,
                confirmed_at=timezone.now() if confirmed else None,
            )
    except IntegrityError:
        raise DuplicateSearch() from None


def restore(subscriber: Subscriber, *, query: str, label: str, frequency: str, alert_on: str,
            paused: bool = False, confirmed: bool = False, question_id: int | None = None) -> Subscription:
    """Put back an alert deleted moments ago, confirmed as it was. Raises DuplicateSearch when the
    search has been saved (or the question followed) again meanwhile, TooMany when the address is at its
    cap, and Question.DoesNotExist when a followed question has gone."""
    with transaction.atomic():
        return _add(subscriber, query, label=label, frequency=frequency, alert_on=alert_on, paused=paused,
                    confirmed=confirmed, question_id=question_id)


class CannotAdd(Exception):
    """The address may not be given an alert from its manage page; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def add_confirmed(subscriber: Subscriber, *, query: str, label: str, frequency: str, alert_on: str) -> Subscription:
    """Add an alert from the manage page, already confirmed: the manage link was emailed to this address,
    so holding it proves the inbox as a confirmation link would, and no email is sent.

    Raises QueryError for a refused query, CannotAdd when the address is unconfirmed or stopped (an
    unsubscribed address comes back only by confirming from its inbox, as `sign_up` asks), DuplicateSearch
    for a search already saved and TooMany at the cap."""
    with transaction.atomic():
        # Locked so that two adds at once cannot both count themselves under the cap.
        subscriber = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
        if not subscriber.may_add_alerts:
            if subscriber.suppressed_at is None:
                raise CannotAdd("unconfirmed")
            raise CannotAdd("unsubscribed" if subscriber.suppressed_reason == Subscriber.Suppression.UNSUBSCRIBED
                            else "suppressed")
        return _add(subscriber, query, label=label, frequency=frequency, alert_on=alert_on, paused=False,
                    confirmed=True)


def set_paused(subscription: Subscription, paused: bool) -> None:
    subscription.paused = paused
    subscription.save(update_fields=["paused", "updated_at"])


def unsubscribe(subscriber: Subscriber, subscription_id: int | None = None) -> Subscription | None:
    """Stop one alert (deleting it), or every email to the subscriber. Takes effect at once."""
    if subscription_id is not None:
        subscription = subscriber.subscriptions.filter(pk=subscription_id).first()
        if subscription:
            subscription.delete()
        return subscription
    with transaction.atomic():
        subscriber.suppress(Subscriber.Suppression.UNSUBSCRIBED)
        # Paused too, so that coming back for one search does not silently restart the others.
        subscriber.subscriptions.update(paused=True, updated_at=timezone.now())
    return None


def revoke_links(subscriber: Subscriber) -> None:
    Subscriber.objects.filter(pk=subscriber.pk).update(token_version=subscriber.token_version + 1)
    subscriber.token_version += 1


def export_data(subscriber: Subscriber) -> dict:
    """Everything we hold about a subscriber, for "download my data"."""

    def stamp(value):
        return value.isoformat() if value else None

    return {
        "email": subscriber.email,
        "created_at": stamp(subscriber.created_at),
        "confirmed_at": stamp(subscriber.confirmed_at),
        "suppressed_at": stamp(subscriber.suppressed_at),
        "suppressed_reason": subscriber.suppressed_reason,
        "alerts": [
            {"query": s.query, "label": s.label, "frequency": s.frequency, "alert_on": s.alert_on,
             "follows_question": s.question.get_absolute_url() if s.question_id else None,
             "retired_at": stamp(s.retired_at),
             "paused": s.paused, "created_at": stamp(s.created_at), "confirmed_at": stamp(s.confirmed_at),
             "last_sent_at": stamp(s.last_sent_at)}
            for s in subscriber.subscriptions.select_related("question")
        ],
        "emails": [
            {"kind": d.kind, "subject": d.subject, "status": d.status, "created_at": stamp(d.created_at),
             "sent_at": stamp(d.sent_at)}
            for d in subscriber.deliveries.all()
        ],
    }


def set_email_grouping(subscriber: Subscriber, grouping: str) -> None:
    """One email for all the address's alerts, or one per alert. Raises ValueError for anything else."""
    if grouping not in Subscriber.Grouping.values:
        raise ValueError(f"not a choice of grouping: {grouping!r}")
    subscriber.email_grouping = grouping
    subscriber.save(update_fields=["email_grouping"])


# --- The ways to subscribe, from where a person stands ------------------------------------------------------


@dataclass(frozen=True)
class Way:
    """One way to get alerts: a search to sign up for (`query`), or one question to follow (`question`)."""

    kind: str  # "search", "member", "department" or "question"
    name: str  # what it is about, as a person reads it: the search, the member, the department, the heading
    query: str = ""
    question: Question | None = None


def member_query(name: str) -> str:
    """Everything a member asks or answers: the asking member's field and the answering minister's, for the
    phrase of their name; "" for a name that makes no search."""
    asked, answered = field_query("member", name), field_query("minister", name)
    # Each half within the limits does not make the whole so: a long name is offered only if signup takes it.
    query = f"{asked} OR {answered}" if asked and answered else ""
    return query if query and parse_or_none(query) is not None else ""


def department_query(name: str) -> str:
    return field_query("department", name)


def ways_to_subscribe(query: str = "", question: Question | None = None, member: str = "",
                      department: str = "") -> list[Way]:
    """Each way to get alerts that applies to where a person stands: the search they made, the question they
    read (its member, its minister, its department, itself), or a member or department they named. A search
    the language refuses, or a name that makes no search, offers nothing."""
    ways = []
    if query.strip() and parse_or_none(query) is not None:
        ways.append(Way("search", query.strip(), query.strip()))
    members = [member] if member.strip() else []
    departments = [department] if department.strip() else []
    if question is not None:
        members += [question.asking_member_name, question.answering_member_name]
        departments.append(question.answering_body_name)
    for name in dict.fromkeys(" ".join(m.split()) for m in members if m and m.strip()):
        if found := member_query(name):
            ways.append(Way("member", name, found))
    for name in dict.fromkeys(" ".join(d.split()) for d in departments if d and d.strip()):
        if found := department_query(name):
            ways.append(Way("department", name, found))
    if question is not None and not question.is_settled:
        ways.append(Way("question", question.title, question=question))
    return ways


# --- Changing the address -----------------------------------------------------------------------------------


def _never_emailed(email: str) -> bool:
    """Whether an address bounced, complained or was stopped by an operator: held or erased, it hears nothing."""
    held = Subscriber.objects.filter(email__iexact=email.strip()).values_list("suppressed_reason", flat=True).first()
    return held in NEVER_EMAIL or suppressed_reason_of(email) in NEVER_EMAIL


def request_email_change(subscriber_id: int, new_email: str, token_version: int) -> None:
    """Email `new_email` a link that moves the subscriber's alerts to it, once opened from that inbox.

    Nothing is sent when the subscriber has gone or signed out of its links since, when either address must
    never be emailed, or when it is the address already held; the page that asked said the same whatever
    happens here."""
    subscriber = Subscriber.objects.filter(pk=subscriber_id, token_version=token_version).first()
    if subscriber is None or subscriber.suppressed_reason in NEVER_EMAIL or _never_emailed(new_email):
        log.info("address change ignored", extra={"subscriber": subscriber_id})
        return
    if subscriber.email.lower() == new_email.strip().lower():
        return
    _queue(subscriber, Delivery.Kind.CONFIRMATION, **{NEW_EMAIL: new_email.strip()})


class CannotChange(Exception):
    """An address change that cannot be made; `reason` says why, and nothing was changed."""

    def __init__(self, reason: str, room: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.room = room


def _key(subscription: Subscription) -> tuple:
    return ("question", subscription.question_id) if subscription.question_id else ("search",
                                                                                      subscription.canonical_query)


# Why a waiting email that a change of address made pointless was not sent.
SUPERSEDED = Delivery.SUPERSEDED


def _waiting(subscriber: Subscriber) -> models.QuerySet[Delivery]:
    """The subscriber's emails still to send, locked. A row a sender holds right now is left to it: taking it
    back could send it twice."""
    return (Delivery.objects.select_for_update().select_related("subscriber")
            .filter(subscriber=subscriber, status=Delivery.Status.PENDING)
            .filter(models.Q(leased_until__isnull=True) | models.Q(leased_until__lt=timezone.now())))


def _drop_links(moving: Subscriber) -> None:
    """Drop the waiting emails of a subscriber whose alerts are moving, but for its alert emails: each of the
    others (a confirmation, a manage link, another change of address, a notice) was asked for the old address
    and the links as they were. Made again with the links of now, one would revive a link the change revoked,
    confirm a request the change dropped, or, after a merge, hand the other address's alerts to whoever asked."""
    _waiting(moving).exclude(kind__in=ALERT_KINDS).update(status=Delivery.Status.FAILED, error=SUPERSEDED)


def _readdress_pending(subscriber: Subscriber) -> None:
    """Make the subscriber's waiting alert emails again, for its address and links as they are now."""
    render_again(list(_waiting(subscriber).filter(kind__in=ALERT_KINDS)))


def _merge(moving: Subscriber, into: Subscriber, asked_at: dt.datetime) -> None:
    """Move `moving`'s confirmed alerts and its emails to `into`, the subscriber of the address it asked for,
    and delete `moving`. Its unconfirmed alerts were asked for the old address and go with it. An alert of the
    same search (or follow) that `into` has confirmed stays as it is; one `into` has not confirmed gives way."""
    if into.suppressed_reason == Subscriber.Suppression.UNSUBSCRIBED and (into.suppressed_at or asked_at) >= asked_at:
        # That address unsubscribed after the link was asked for: an older link must not undo it.
        raise CannotChange("unsubscribed")
    theirs = {_key(s): s for s in into.subscriptions.all()}
    coming = [s for s in confirmed_alerts(moving)
              if not (_key(s) in theirs and theirs[_key(s)].confirmed_at is not None)]
    room = _room(into)
    if sum(1 for s in coming if s.retired_at is None) > room:
        raise CannotChange("too_many", room=max(room, 0))
    into.subscriptions.filter(pk__in=[theirs[_key(s)].pk for s in coming if _key(s) in theirs]).delete()
    Subscription.objects.filter(pk__in=[s.pk for s in coming]).update(subscriber=into, updated_at=timezone.now())
    Delivery.objects.filter(subscriber=moving).update(subscriber=into)
    moving.delete()
    if into.suppressed_reason == Subscriber.Suppression.UNSUBSCRIBED:
        # Asked for from the inbox after it unsubscribed: it is coming back. Its own alerts stay paused, as
        # the unsubscribe left them; the alerts moving in keep the state they had.
        into.suppressed_at, into.suppressed_reason = None, ""
    into.confirmed_at = into.confirmed_at or timezone.now()
    into.save(update_fields=["confirmed_at", "suppressed_at", "suppressed_reason"])


def change_email(link: Link) -> Subscriber:
    """Move a subscriber's alerts to the address its change link was sent to, the link having been opened from
    that inbox; the subscriber that holds them now. Old links to the alerts stop working, and the old address
    is told.

    When the new address already has a subscriber, the alerts join its alerts (see `_merge`): its owner has
    just shown they hold that inbox, and the manage link that asked showed they held the old one. Raises
    CannotChange, changing nothing, when either address must never be emailed, when the new address
    unsubscribed after the link was asked for, or when the alerts together would be more than an address
    may have."""
    new_email = str(link.data.get("to", "")).strip()
    asked_at = dt.datetime.fromtimestamp(float(link.data.get("t", 0)), tz=dt.UTC)
    with transaction.atomic():
        other = Subscriber.objects.filter(email__iexact=new_email).exclude(pk=link.subscriber.pk).first()
        # Both locked, in the order of their ids, so that two changes crossing each other cannot deadlock.
        locked = {s.pk: s for s in Subscriber.objects.select_for_update().order_by("pk")
                  .filter(pk__in=[link.subscriber.pk, *([other.pk] if other else [])])}
        subscriber, other = locked.get(link.subscriber.pk), locked.get(other.pk) if other else None
        if subscriber is None or subscriber.token_version != link.data.get("v"):
            raise CannotChange("gone")
        if subscriber.suppressed_reason in NEVER_EMAIL or _never_emailed(new_email):
            raise CannotChange("suppressed")
        old_email = subscriber.email
        if old_email == new_email:
            raise CannotChange("done")
        _drop_links(subscriber)
        if other is not None:
            _merge(subscriber, other, asked_at)
            holder = other
        else:
            subscriber.subscriptions.filter(confirmed_at__isnull=True).delete()
            subscriber.email, subscriber.confirmed_at = new_email, subscriber.confirmed_at or timezone.now()
            subscriber.token_version += 1
            subscriber.email_changed_at = timezone.now()
            try:
                with transaction.atomic():
                    subscriber.save(update_fields=["email", "confirmed_at", "token_version", "email_changed_at"])
            except IntegrityError:
                # Someone signed the address up at this very moment: opening the link again merges.
                raise CannotChange("busy") from None
            holder = subscriber
        _readdress_pending(holder)
        _queue(holder, Delivery.Kind.MANAGE_LINK, **{NEW_EMAIL: holder.email, OLD_EMAIL: old_email})
    log.info("address changed", extra={"subscriber": holder.pk, "merged": other is not None})
    return holder
