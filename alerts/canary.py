"""The end-to-end canary, and whether alerts are reaching inboxes at all.

With CANARY_EMAIL set (a mailbox the operator owns, or the ESP's test sink), beat starts a probe every
CANARY_INTERVAL_MINUTES: a question is stored and then answered through the same upsert the poller
uses, with the canary address following it, so the answer's event goes through matching, the delivery
queue and the ESP like any other. The probe passes when that email is sent (or, with
CANARY_WAIT_FOR_DELIVERED, reported delivered by the ESP's webhook) within CANARY_MAX_SECONDS of the
question being stored. Its questions are never shown or searched, and are deleted when the probe ends.

Without a canary, `delivery_problems` still reads the lag of the queues from the database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import Min, Q
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from alerts import digests, esp, subscribing
from alerts.models import CanaryProbe, Delivery, EspState, Subscriber, Subscription
from questions.ingest import upsert
from questions.models import CANARY_PREFIX, Question, QuestionEvent
from questions.records import QuestionRecord

log = logging.getLogger(__name__)

# What the ESP's webhooks may say of an email that reached the inbox: a later "opened" must not undo it.
def enabled() -> bool:
    return bool(settings.CANARY_EMAIL)


def _canary_subscriber(now: dt.datetime) -> Subscriber:
    # As any address: one erased after it bounced comes back suppressed.
    subscriber = subscribing.subscriber_for(settings.CANARY_EMAIL)
    if subscriber.confirmed_at is None:
        # The operator configured the address: that is its confirmation.
        Subscriber.objects.filter(pk=subscriber.pk).update(confirmed_at=now)
    return subscriber


def start_probe(now: dt.datetime | None = None) -> CanaryProbe:
    now = now or timezone.now()
    token = uuid.uuid4().hex[:12]
    record = QuestionRecord(external_id=f"{CANARY_PREFIX}{token}", heading=f"Canary check {token}",
                            question_text="A check that alerts reach inboxes.", date_tabled=timezone.localdate(now))
    with transaction.atomic():
        subscriber = _canary_subscriber(now)
        upsert([record], alert=False)
        question = Question.objects.get(external_id=record.external_id)
        subscription = Subscription.objects.create(
            subscriber=subscriber, question=question, label=record.heading, confirmed_at=now,
            frequency=Subscription.Frequency.IMMEDIATE,
        )
        answer = "This answer should reach the canary's inbox within minutes."
        upsert([dataclasses.replace(record, answer_text=answer, answer_html=f"<p>{answer}</p>",
                                    date_answered=record.date_tabled)])
        probe = CanaryProbe.objects.create(started_at=now, question=question, subscription=subscription)
        if subscriber.suppressed_at is not None:
            # Nothing can reach it: said now, rather than "no email was created" when the bound has passed.
            probe.outcome, probe.finished_at = CanaryProbe.Outcome.FAILED, now
            probe.detail = (f"the canary address is suppressed ({subscriber.suppressed_reason}): nothing is sent "
                            "to it; set CANARY_EMAIL to another address")
            probe.question = probe.subscription = None
            probe.save()
            question.delete()
            return probe
    # Matched now rather than at beat's next tick, as a poll that stores events does.
    transaction.on_commit(lambda: current_app.tasks["alerts.match_events"].delay())
    return probe


def _judge(probe: CanaryProbe, now: dt.datetime) -> tuple[str, str, Delivery | None]:
    """What became of the probe so far: its outcome, why, and its email if there is one."""
    delivery = probe.delivery or (Delivery.objects.filter(matches__subscription_id=probe.subscription_id)
                                  .order_by("pk").first() if probe.subscription_id else None)
    bound = dt.timedelta(seconds=settings.CANARY_MAX_SECONDS)
    if delivery is not None and delivery.status == Delivery.Status.SENT and (
            not settings.CANARY_WAIT_FOR_DELIVERED or delivery.esp_status in esp.ARRIVED):
        took = (delivery.sent_at or now) - probe.started_at
        if took <= bound:
            return CanaryProbe.Outcome.OK, f"sent to the ESP ({delivery.esp_status or 'accepted'})", delivery
        return (CanaryProbe.Outcome.LATE, f"the email went out {took.total_seconds():.0f} s after the question was "
                f"stored, more than {settings.CANARY_MAX_SECONDS} s", delivery)
    if delivery is not None and delivery.status in (Delivery.Status.REJECTED, Delivery.Status.FAILED):
        return CanaryProbe.Outcome.FAILED, f"the email was {delivery.status}: {delivery.error}"[:2000], delivery
    if now - probe.started_at > bound:
        where = ("no email was created: is matching running?" if delivery is None
                 else f"its email is {delivery.status}" + (f" ({delivery.error})" if delivery.error else "")
                 + (f", the ESP said {delivery.esp_status}" if delivery.esp_status else ""))
        return CanaryProbe.Outcome.LATE, f"nothing arrived within {settings.CANARY_MAX_SECONDS} s: {where}"[:2000], \
            delivery
    return CanaryProbe.Outcome.PENDING, "", delivery


def finish_probes(now: dt.datetime | None = None) -> list[CanaryProbe]:
    """Record the outcome of every probe that has one, and remove its question."""
    now = now or timezone.now()
    finished = []
    for probe in CanaryProbe.objects.filter(outcome=CanaryProbe.Outcome.PENDING):
        outcome, detail, delivery = _judge(probe, now)
        if outcome == CanaryProbe.Outcome.PENDING:
            continue
        probe.outcome, probe.detail, probe.delivery, probe.finished_at = outcome, detail, delivery, now
        if delivery is not None and delivery.sent_at:
            probe.seconds = (delivery.sent_at - probe.started_at).total_seconds()
        with transaction.atomic():
            probe.save()
            if probe.question_id:
                Question.objects.filter(pk=probe.question_id).delete()
            if delivery is not None and delivery.status == Delivery.Status.PENDING:
                # Judged late: its email, still waiting, would fail once its question is gone and show among
                # the subscribers' failed emails. What became of it is in the probe's detail. One a sender
                # holds is left to it: taking it away would cost the sender its whole chunk.
                Delivery.objects.filter(Q(leased_until__isnull=True) | Q(leased_until__lt=now), pk=delivery.pk,
                                        status=Delivery.Status.PENDING).delete()
        log.log(logging.INFO if outcome == CanaryProbe.Outcome.OK else logging.ERROR, "canary finished",
                extra={"probe": probe.pk, "outcome": outcome, "seconds": probe.seconds, "detail": detail,
                       "delivery": delivery.pk if delivery else None})
        finished.append(probe)
    return finished


def run_canary(now: dt.datetime | None = None) -> CanaryProbe | None:
    """Beat's tick: judge the probes under way (even with the canary turned off since, so that their
    questions go), then start the next."""
    now = now or timezone.now()
    finish_probes(now)
    return start_probe(now) if enabled() else None


def _interval() -> dt.timedelta:
    """How often beat starts a probe: its schedule as an operator may have changed it in the admin."""
    task = PeriodicTask.objects.filter(task="alerts.canary", enabled=True, interval__isnull=False).select_related(
        "interval").first()
    if task is None:
        return dt.timedelta(minutes=settings.CANARY_INTERVAL_MINUTES)
    return dt.timedelta(**{task.interval.period: task.interval.every})


def canary_problems(now: dt.datetime | None = None) -> list[str]:
    """Why the canary says alerts are not reaching inboxes; empty when it is happy (or not configured)."""
    if not enabled():
        return []
    now = now or timezone.now()
    latest = CanaryProbe.objects.first()
    stale = _interval() * 2 + dt.timedelta(seconds=settings.CANARY_MAX_SECONDS)
    if latest is None or now - latest.started_at > stale:
        return ["no canary probe has started lately: is beat, or the worker, running?"]
    problems = []
    for probe in CanaryProbe.objects.filter(started_at__gte=now - stale):
        outcome, detail, _ = ((probe.outcome, probe.detail, None) if probe.outcome != CanaryProbe.Outcome.PENDING
                              else _judge(probe, now))
        if outcome in (CanaryProbe.Outcome.LATE, CanaryProbe.Outcome.FAILED):
            problems.append(f"canary of {probe.started_at:%H:%M}: {detail}")
            break
        if outcome == CanaryProbe.Outcome.OK:
            break  # the newest probe that arrived vouches for the pipeline
    return problems


def queue_problems(now: dt.datetime | None = None) -> list[str]:
    """What the database says of delivery, canary or not: an email due and not sent, an email still being
    retried (the ESP failing it: its next try is always in the future, so it is never long "due"), or an
    event not matched, for longer than DELIVERY_LAG_MAX_SECONDS; and a digest run missed, not made or not
    finished DIGEST_LATE_SECONDS after its period ended."""
    now = now or timezone.now()
    bound = dt.timedelta(seconds=settings.DELIVERY_LAG_MAX_SECONDS)
    problems = []
    pending = Delivery.objects.filter(status=Delivery.Status.PENDING)
    oldest_due = pending.filter(next_attempt_at__lte=now).aggregate(oldest=Min("next_attempt_at"))["oldest"]
    if oldest_due and now - oldest_due > bound:
        problems.append(f"an email has been due since {oldest_due:%Y-%m-%d %H:%M} UTC")
    oldest_retried = pending.filter(attempts__gt=0).aggregate(oldest=Min("created_at"))["oldest"]
    if oldest_retried and now - oldest_retried > bound:
        problems.append(f"an email queued at {oldest_retried:%Y-%m-%d %H:%M} UTC is still being retried")
    oldest_event = QuestionEvent.objects.filter(matched_at__isnull=True).aggregate(
        oldest=Min("created_at"))["oldest"]
    if oldest_event and now - oldest_event > bound:
        problems.append(f"a question event has waited to be matched since {oldest_event:%Y-%m-%d %H:%M} UTC")
    return problems + esp_problems(now) + digests.late_runs(now)


def esp_states():
    """The state of the ESP the senders use now: that of one switched away from is never cleared again."""
    return EspState.objects.filter(esp=esp.configured_name())


def esp_state() -> EspState:
    """The senders' ESP's state, answering (and unsaved) until it has ever failed as a whole."""
    return esp_states().first() or EspState(esp=esp.configured_name())


def refuses_us(state: EspState) -> bool:
    """Whether the ESP is held down by refusing our credentials or account: no passing fault."""
    return state.problem == esp.AUTH


def esp_problems(now: dt.datetime | None = None) -> list[str]:
    """An ESP failing as a whole for longer than ESP_DOWN_ALERT_SECONDS, or refusing our credentials at all:
    every email waits for it, and its emails' own lag would show only much later."""
    now = now or timezone.now()
    bound = dt.timedelta(seconds=settings.ESP_DOWN_ALERT_SECONDS)
    problems = []
    for state in esp_states().filter(down_since__isnull=False):
        if refuses_us(state):
            problems.append(f"the ESP ({state.esp}) refuses our credentials or account since "
                            f"{state.down_since:%Y-%m-%d %H:%M} UTC: {state.last_error}"[:1000])
        elif now - state.down_since > bound:
            problems.append(f"the ESP ({state.esp}) has failed since {state.down_since:%Y-%m-%d %H:%M} UTC: "
                            f"{state.last_error}"[:1000])
    return problems


def delivery_problems(now: dt.datetime | None = None) -> list[str]:
    return queue_problems(now) + canary_problems(now)


def check_delivery() -> str:
    """The /healthz check: "ok", or raises with what is wrong."""
    problems = delivery_problems()
    if problems:
        raise RuntimeError("; ".join(problems))
    return "ok"
