"""Celery tasks: thin shells around `alerts.matching` and `alerts.delivery`."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from celery import Task, chord, shared_task
from celery.backends.base import DisabledBackend
from celery.signals import worker_shutting_down
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError
from django.utils.crypto import salted_hmac

from alerts import volume
from alerts.canary import run_canary
from alerts.delivery import build_run, deliver_immediate, send_due, stop_claiming
from alerts.digests import start_due_runs
from alerts.following import retire_follows
from alerts.matching import BATCH_SIZE, claim_events, mark_matched, match_events, match_shards
from alerts.models import DigestRun
from alerts.retention import prune
from alerts.subscribing import follow, request_manage_link, sign_up

log = logging.getLogger(__name__)

# Held while a sharded run is out, so that runs started meanwhile do not send the same events again;
# it expires in case a shard fails and the chord never finishes, and the events are then matched anew.
FAN_OUT_LOCK = "alerts-match-fan-out"
FAN_OUT_SECONDS = 10 * 60


def _deliver(subscriber_ids: list[int]) -> None:
    if not subscriber_ids:
        return
    # The matches are committed; whatever this run fails to hand on, beat's "Send immediate alerts"
    # picks up within a minute, so a failure here delays alerts and loses none.
    try:
        deliver_immediate(subscriber_ids)
    except Exception:
        log.exception("immediate delivery after matching failed", extra={"subscribers": len(subscriber_ids)})


@shared_task(bind=True, name="alerts.match_events", max_retries=5, acks_late=True)
def match_events_task(self, batch_size: int = BATCH_SIZE) -> dict:
    shards = match_shards()
    if shards > 1 and not isinstance(self.app.backend, DisabledBackend):
        return {"fanned_out": fan_out(batch_size, shards)}
    try:
        # Without a result backend a chord cannot finish: every shard's saved searches are matched here.
        result = match_events(batch_size, shards=shards)
    except DatabaseError as exc:
        # A saved search deleted mid-run, or a lost connection: nothing was written; try again shortly.
        raise self.retry(exc=exc, countdown=5) from exc
    _deliver(result.immediate_subscriber_ids)
    if result.more:
        match_events_task.delay(batch_size)
    return result.as_dict()


def fan_out(batch_size: int, shards: int) -> int:
    """Send the oldest unmatched events to every shard; mark them matched when all have succeeded."""
    event_ids = claim_events(batch_size)
    token = uuid.uuid4().hex
    if not event_ids or not cache.add(FAN_OUT_LOCK, token, FAN_OUT_SECONDS):
        return 0
    header = [match_shard_task.s(event_ids, shard, shards) for shard in range(shards)]
    chord(header)(finish_match_task.s(event_ids, batch_size, token))
    return len(event_ids)


@shared_task(bind=True, name="alerts.match_shard", max_retries=5, acks_late=True, ignore_result=False)
def match_shard_task(self, event_ids: list[int], shard: int, shards: int) -> list[int]:
    try:
        return match_events(shard=shard, shards=shards, event_ids=event_ids).immediate_subscriber_ids
    except DatabaseError as exc:
        raise self.retry(exc=exc, countdown=5) from exc


@shared_task(name="alerts.finish_match", acks_late=True)
def finish_match_task(results: list[list[int]], event_ids: list[int], batch_size: int = BATCH_SIZE,
                      token: str = "") -> int:
    marked = mark_matched(event_ids)
    # Only this run's lock: if it expired meanwhile, another run holds it now.
    if cache.get(FAN_OUT_LOCK) == token:
        cache.delete(FAN_OUT_LOCK)
    _deliver(sorted({subscriber_id for ids in results for subscriber_id in ids}))
    if len(event_ids) >= batch_size:
        match_events_task.delay(batch_size)
    return marked


@shared_task(name="alerts.send_due", acks_late=True)
def send_due_task() -> dict:
    return dict(send_due())


@shared_task(name="alerts.deliver_immediate")
def deliver_immediate_task(subscriber_ids: list[int] | None = None) -> int:
    return len(deliver_immediate(subscriber_ids))


@shared_task(name="alerts.start_digest_runs")
def start_digest_runs_task() -> int:
    def build(run: DigestRun) -> None:
        for _ in range(settings.DIGEST_BUILDERS):
            build_digest_run_task.delay(run.pk)

    return len(start_due_runs(build=build))


@shared_task(name="alerts.build_digest_run", acks_late=True)
def build_digest_run_task(run_id: int) -> None:
    # A few seconds at a time, then queued again: sending, which the same workers do, is never held up
    # for the whole run behind a large one.
    run = DigestRun.objects.filter(pk=run_id, built_at__isnull=True).first()
    if run and not build_run(run, seconds=settings.DIGEST_BUILD_SECONDS):
        build_digest_run_task.delay(run_id)


@worker_shutting_down.connect
def _stop_sending(**kwargs) -> None:
    # A deploy's SIGTERM: senders finish the chunk they hold and claim no more, well inside compose's grace.
    stop_claiming()


@shared_task(name="alerts.estimate_volume", acks_late=True)
def estimate_volume_task(canonical_query: str, today: str) -> bool:
    return volume.estimate_for_later(canonical_query, dt.date.fromisoformat(today))


@shared_task(name="alerts.canary")
def canary_task() -> str:
    probe = run_canary()
    return f"probe {probe.pk} started" if probe else "no canary configured"


@shared_task(name="alerts.prune")
def prune_task() -> str:
    return str(prune())


@shared_task(name="alerts.retire_follows")
def retire_follows_task() -> int:
    return retire_follows()


# What the public forms ask for, done here rather than in the request so that the page shows the same
# thing, in the same time, whatever the address is. They return nothing: a worker logs what tasks return.


def address_in_logs(email: str) -> str:
    """How a log names an address typed into a form: a digest keyed with SECRET_KEY, the same for the same
    address, so that an operator who is given the address can find its lines, and nobody can read it back."""
    return "address:" + salted_hmac("alerts.log-address", email.strip().lower(), algorithm="sha256").hexdigest()[:16]


def _redacted(kwargs: dict) -> str:
    shown = {}
    for name, value in kwargs.items():
        if name == "email":
            shown[name] = address_in_logs(str(value))
        elif name in ("query", "label"):
            shown[name] = f"<{len(str(value))} characters>"
        else:
            shown[name] = value
    return repr(shown)


class FromAForm(Task):
    """A task carrying what someone typed into a public form. Celery's worker logs every task's arguments
    at INFO as it receives and finishes it; these log a keyed digest of the address and only the length of
    a search or name, since anyone's address and anything typed would otherwise sit in the logs."""

    def apply_async(self, args=None, kwargs=None, **options):
        options.setdefault("argsrepr", f"<{len(args or ())} arguments>")
        options.setdefault("kwargsrepr", _redacted(kwargs or {}))
        return super().apply_async(args, kwargs, **options)

    # `held` is for __call__, not the task's function, which Celery would otherwise refuse to publish it to.
    typing = False

    def __call__(self, *args, held: bool = False, **kwargs):
        # A request over its address's limits is published like any other (the web page must take the same
        # time) and dropped here: nothing is done, nothing sent.
        if held:
            log.info("emails to this address held to its limit, nothing sent", extra={"task": self.name})
            return None
        return super().__call__(*args, **kwargs)


# A database outage must not lose a request the person was told is on its way: retried, backing off to
# ten minutes apart, for some hours.
TAKE_RETRIES = {"autoretry_for": (DatabaseError,), "retry_backoff": 5, "retry_backoff_max": 600,
                "max_retries": 30, "acks_late": True, "base": FromAForm}


@shared_task(name="alerts.take_signup", **TAKE_RETRIES)
def take_signup_task(email: str, query: str, frequency: str, alert_on: str, label: str = "") -> None:
    sign_up(email, query, frequency=frequency, alert_on=alert_on, label=label)


@shared_task(name="alerts.take_follow", **TAKE_RETRIES)
def take_follow_task(email: str, question_id: int) -> None:
    follow(email, question_id)


@shared_task(name="alerts.take_link_request", **TAKE_RETRIES)
def take_link_request_task(email: str) -> None:
    request_manage_link(email)
