"""What someone asked for on a form (a signup, a follow, "email me a link", a new address), kept in the database
from before the page answers until a worker has done it, so that a broker that loses its messages loses no request.

The web process records the request and wakes a worker with the row's id alone; the worker takes the row, does
the work and deletes the row in one transaction. Beat's sweep takes every row nobody took: its wake-up was lost
with the broker, or the worker died, or the work failed and its back-off is over."""

from __future__ import annotations

import datetime as dt
import logging
import traceback
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from alerts.models import FormRequest
from alerts.subscribing import follow, request_email_change, request_manage_link, sign_up

log = logging.getLogger(__name__)

# A request whose work failed waits a minute before it is tried again, then twice as long each time, up to an
# hour. A row's `taken_until` is both that back-off and the lease of whoever is doing it: while a worker does
# the work it also holds the row's lock, so work that outlasts the lease is still never done twice.
BACKOFF_FIRST_SECONDS = 60
BACKOFF_MAX_SECONDS = 60 * 60
# Tries before a request is given up on (logged as an error, and dropped): about three hours of back-off. What
# fails for a passing reason (a deadlock, a connection cut mid-work, the database restarting) costs a try or
# two; a database that is down costs none, since the try is counted in it. What fails every time (a bug, a
# search this release's parser refuses) would otherwise be tried forever, and a confirmation arriving hours
# after it was asked for is worth less than the person asking again.
MAX_ATTEMPTS = 8
# The sweep leaves rows younger than this to their wake-up, and takes at most this many oldest first in a run.
SWEEP_AFTER_SECONDS = 30
SWEEP_BATCH = 100


def address_in_logs(email: str) -> str:
    """How a log names an address typed into a form: a digest keyed with SECRET_KEY, the same for the same
    address, so that an operator who is given the address can find its lines, and nobody can read it back."""
    return "address:" + salted_hmac("alerts.log-address", email.strip().lower(), algorithm="sha256").hexdigest()[:16]


def backoff(attempts: int) -> float:
    """Seconds a request waits after its `attempts`-th try, and the lease of the worker making that try."""
    return min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** max(0, attempts - 1))


def record(kind: str, data: dict, held: bool) -> FormRequest:
    """Keep what a form asked for until a worker has done it. A request held to its address's limits is
    written all the same, so that the page takes the same time whatever the address; a worker drops it."""
    return FormRequest.objects.create(kind=FormRequest.Kind(kind), data=data, held=held)


def _free(now: dt.datetime) -> Q:
    return Q(taken_until__isnull=True) | Q(taken_until__lte=now)


def _about(row: FormRequest) -> dict:
    # The address only as its digest; a search or a name is not logged at all.
    return {"request": row.pk, "kind": row.kind, "attempts": row.attempts,
            "address": address_in_logs(str(row.data.get("email", "")))}


def _where(error: BaseException) -> str:
    """Where an error was raised, for the log: its message is left out, as a database's can quote the values
    of a row (an address among them)."""
    frames = traceback.extract_tb(error.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""


def _do(row: FormRequest) -> None:
    data = row.data
    if row.kind == FormRequest.Kind.SIGNUP:
        sign_up(data["email"], data["query"], frequency=data["frequency"], alert_on=data["alert_on"],
                label=data.get("label", ""))
    elif row.kind == FormRequest.Kind.FOLLOW:
        follow(data["email"], data["question_id"])
    elif row.kind == FormRequest.Kind.LINK and "subscriber" in data:
        # A link to a new address, asked for from the manage page of the subscriber moving to it.
        request_email_change(data["subscriber"], data["email"], data["v"])
    elif row.kind == FormRequest.Kind.LINK:
        request_manage_link(data["email"])
    else:
        raise ValueError(f"no such kind of form request: {row.kind!r}")


def take(request_id: int) -> bool:
    """Do one request, unless another worker is doing it, or it is waiting out its back-off; whether this call
    finished with it: done, dropped as held to its limits, or given up on.

    The try is counted in a transaction of its own before the work starts, so that work which fails, or kills
    the worker, is still counted and backed off, and a request that always fails cannot hold up the others.
    The work and the row's deletion then commit together: a worker that dies between them leaves the row, and
    nothing it did, to be taken again."""
    with transaction.atomic():
        row = (FormRequest.objects.select_for_update(skip_locked=True)
               .filter(_free(timezone.now()), pk=request_id).first())
        if row is None:
            return False
        if row.held:
            row.delete()
            log.info("emails to this address held to its limit, nothing sent", extra=_about(row))
            return True
        if row.attempts >= MAX_ATTEMPTS:
            row.delete()
            log.error("form request given up after failing every try, nothing sent", extra=_about(row))
            return True
        row.attempts += 1
        row.taken_until = timezone.now() + dt.timedelta(seconds=backoff(row.attempts))
        row.save(update_fields=["attempts", "taken_until"])
    try:
        with transaction.atomic():
            # Still this call's: nobody took it after the lease ran out, and from here its lock keeps it so.
            if not list(FormRequest.objects.select_for_update().filter(pk=row.pk, attempts=row.attempts)
                        .values_list("pk", flat=True)):
                return False
            _do(row)
            FormRequest.objects.filter(pk=row.pk).delete()
    except Exception as error:  # noqa: BLE001 - counted above, tried again after its back-off, given up on in the end
        log.warning("form request failed, to be tried again", extra=_about(row) | {
            "error": type(error).__name__, "at": _where(error), "retry_in_seconds": backoff(row.attempts)})
        return False
    log.info("form request taken", extra=_about(row))
    return True


@dataclass(frozen=True)
class Sweep:
    found: int
    taken: int
    # A full batch was found and some of it taken: another run should follow at once rather than in a minute.
    more: bool


def take_waiting(older_than_seconds: float = SWEEP_AFTER_SECONDS, limit: int = SWEEP_BATCH) -> Sweep:
    """Take the requests nobody took, oldest first, at most `limit` of them: those whose wake-up was lost (the
    broker went down, a worker died) and those whose back-off is over. Rows younger than `older_than_seconds`
    are left to their wake-up."""
    now = timezone.now()
    ids = list(FormRequest.objects.filter(_free(now), created_at__lte=now - dt.timedelta(seconds=older_than_seconds))
               .order_by("created_at", "pk").values_list("pk", flat=True)[:limit])
    taken = sum(take(request_id) for request_id in ids)
    if ids:
        log.info("waiting form requests taken", extra={"found": len(ids), "taken": taken})
    return Sweep(found=len(ids), taken=taken, more=len(ids) >= limit and taken > 0)
