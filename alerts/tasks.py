"""Celery tasks: thin shells around `alerts.matching` and `alerts.delivery`."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

from celery import chord, shared_task
from celery.backends.base import DisabledBackend
from celery.signals import beat_init, worker_shutting_down
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError

from alerts import form_requests, volume
from alerts.canary import enabled as canary_enabled
from alerts.canary import run_canary
from alerts.delivery import build_run, deliver_immediate, send_due, stop_claiming
from alerts.digests import start_due_runs
from alerts.following import retire_follows
from alerts.matching import BATCH_SIZE, claim_events, finish_shards, mark_matched, match_events, match_shards
from alerts.models import DigestRun, MatchedShard
from alerts.retention import prune

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
        if MatchedShard.objects.exclude(shards=shards).exists():
            # Left by runs sharded another way, before MATCH_SHARDS changed.
            _deliver(finish_shards(keep=shards))
        return {"fanned_out": fan_out(batch_size, shards)}
    try:
        # Without a result backend a chord cannot finish: every shard's saved searches are matched here.
        result = match_events(batch_size, shards=shards)
    except DatabaseError as exc:
        # A lost connection or a failed write: the run's transaction wrote nothing; try again shortly.
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
    elif run:
        start_digest_runs_task.delay()  # the next run of its frequency, if the stack missed several


@worker_shutting_down.connect
def _stop_sending(**kwargs) -> None:
    # A deploy's SIGTERM: senders finish the chunk they hold and claim no more, well inside compose's grace.
    stop_claiming()
    log.warning("worker shutting down: senders finish the emails they hold and claim no more")


@shared_task(name="alerts.estimate_volume", acks_late=True)
def estimate_volume_task(canonical_query: str, today: str) -> bool:
    return volume.estimate_for_later(canonical_query, dt.date.fromisoformat(today))


@shared_task(name="alerts.canary")
def canary_task() -> str:
    probe = run_canary()
    return f"probe {probe.pk} started" if probe else "no canary configured"


@beat_init.connect
def _probe_at_start(**kwargs) -> None:
    # Beat's first tick of an interval comes a whole interval after it starts: until then a fresh deploy
    # would have no probe and its delivery check would fail. One probe now vouches for it within minutes.
    if canary_enabled():
        try:
            canary_task.delay()
        except Exception:  # noqa: BLE001 - beat starts all the same; its schedule probes later
            log.warning("could not queue the canary's first probe", exc_info=True)


@shared_task(name="alerts.prune")
def prune_task() -> str:
    return str(prune())


@shared_task(name="alerts.retire_follows")
def retire_follows_task() -> int:
    return retire_follows()


# What the public forms ask for: written to the database by the web process (`alerts.form_requests`), and
# done here rather than in the request, so that the page shows the same thing, in the same time, whatever the
# address is. The messages carry only a row's id: nothing anyone typed reaches the broker or a worker's log.


@shared_task(name="alerts.take_form_request", acks_late=True)
def take_form_request_task(request_id: int) -> bool:
    # Nothing to retry: a request not done now is still in its row, and the sweep takes it.
    return form_requests.take(request_id)


@shared_task(name="alerts.take_form_requests", acks_late=True)
def take_form_requests_task(older_than_seconds: float = form_requests.SWEEP_AFTER_SECONDS) -> dict:
    sweep = form_requests.take_waiting(older_than_seconds)
    if sweep.more:
        # A backlog (after the broker lost its wake-ups, say) drains as fast as a worker takes it, a batch a run.
        try:
            take_form_requests_task.delay(older_than_seconds)
        except Exception:  # noqa: BLE001 - beat's next run goes on from here
            log.warning("could not queue the next sweep of form requests; beat's schedule will", exc_info=True)
    return {"found": sweep.found, "taken": sweep.taken}


# The previous release's web processes publish the request itself under these names, its address included,
# while the new workers start (README, Upgrading): each is written to a row, as this release's forms do, and
# taken from there. A name nothing served would be refused with the whole message, address and all, in the
# log. Remove once no web process of that release is left.
FROM_THE_PREVIOUS_RELEASE = {"autoretry_for": (DatabaseError,), "retry_backoff": 5, "retry_backoff_max": 600,
                             "max_retries": 30, "acks_late": True}


def _from_the_previous_release(kind: str, data: dict, held: bool) -> None:
    form_requests.take(form_requests.record(kind, data, held).pk)


@shared_task(name="alerts.take_signup", **FROM_THE_PREVIOUS_RELEASE)
def take_signup_task(email: str, query: str, frequency: str, alert_on: str, label: str = "",
                     held: bool = False) -> None:
    _from_the_previous_release("signup", {"email": email, "query": query, "frequency": frequency,
                                          "alert_on": alert_on, "label": label}, held)


@shared_task(name="alerts.take_follow", **FROM_THE_PREVIOUS_RELEASE)
def take_follow_task(email: str, question_id: int, held: bool = False) -> None:
    _from_the_previous_release("follow", {"email": email, "question_id": question_id}, held)


@shared_task(name="alerts.take_link_request", **FROM_THE_PREVIOUS_RELEASE)
def take_link_request_task(email: str, held: bool = False) -> None:
    _from_the_previous_release("link", {"email": email}, held)
