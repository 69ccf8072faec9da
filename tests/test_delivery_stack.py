"""Sending on the real stack through what an operator lives through: an ESP outage while 2,000 emails are due,
a worker killed mid-send, a deploy's SIGTERM, the database cutting the app's connections, and digests missed
while the stack was down, on a worker and beat whose clock is moved with libfaketime."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connection
from django.db.models import Sum
from django.utils import timezone

from alerts.delivery import deliver_immediate
from alerts.digests import SETTLE
from alerts.models import Delivery, DigestRun, EspState, Subscriber, Subscription
from config import schedule
from questions.models import Question, QuestionEvent
from tests.conftest import FIXTURES, ROOT, beat_sends_due_emails, esp_env, start, wait_until
from tests.esp_stub import PostmarkStub, StubServer, emails_to
from tests.factories import match, subscribers_with_one_match_each

pytestmark = [pytest.mark.worker, pytest.mark.postgres]

COUNT = 2000
WEEKLY, MONTHLY = Subscription.Frequency.WEEKLY, Subscription.Frequency.MONTHLY


class CountingStub(PostmarkStub):
    """The Postmark stub, noting when it accepted emails."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.accepted_at: list[float] = []

    def __call__(self, request):
        response = super().__call__(request)
        if response.status_code == 200:
            with self.lock:
                self.accepted_at.append(time.monotonic())
        return response


@pytest.fixture
def counting_esp():
    server = StubServer(CountingStub()).start()
    yield server
    server.stop()


def readers(count: int = COUNT) -> set[str]:
    return {f"reader{i}@example.org" for i in range(count)}


def duplicates(stub: PostmarkStub, count: int = COUNT) -> int:
    """How many emails the ESP took more than once, once every reader is known to have had one."""
    got = Counter(stub.to())
    assert set(got) == readers(count), f"{len(readers(count) - set(got))} readers never had their email"
    return sum(got.values()) - count


def sent() -> int:
    return Delivery.objects.filter(status=Delivery.Status.SENT).count()


def all_sent(count: int = COUNT) -> bool:
    return sent() == count


def attempts() -> int:
    return Delivery.objects.aggregate(total=Sum("attempts"))["total"] or 0


def held() -> set[tuple[int, dt.datetime]]:
    """The rows a sender holds and has not recorded, each with its lease: what was in flight."""
    return set(Delivery.objects.filter(status=Delivery.Status.PENDING, leased_until__isnull=False)
               .values_list("pk", "leased_until"))


# --- An ESP outage ----------------------------------------------------------------------------------------------


def watch_outage(seconds: float, stub: CountingStub) -> dict:
    """What the outage looks like for `seconds`: the ESP is shown down all along; how many requests reached it
    and how many attempts the emails took meanwhile."""
    requests, tries, errors = stub.requests, attempts(), set()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = EspState.objects.get()
        assert state.down_since is not None, "the ESP was shown answering in the middle of its outage"
        errors.add(state.last_error)
        time.sleep(0.2)
    return {"requests": stub.requests - requests, "attempts": attempts() - tries, "errors": errors}


def most_probes(seconds: float, first: float, longest: float) -> int:
    """The most probes the schedule lets into `seconds`: waits doubling from ESP_PROBE_SECONDS up to
    ESP_PROBE_MAX_SECONDS, counted from the shortest as if the window began with the outage."""
    count, spent, wait = 1, 0.0, first
    while spent + wait <= seconds:
        count, spent, wait = count + 1, spent + wait, min(longest, wait * 2)
    return count


def test_an_esp_outage_holds_2000_emails_back_with_one_probe_at_a_time_and_sends_each_once_when_it_is_back(
        worker_env, counting_esp):
    probe, probe_max, phase = 0.5, 3.0, 6.0
    subscribers_with_one_match_each(COUNT)
    beat_sends_due_emails(every_seconds=1)
    stub = counting_esp.stub
    stub.failures_left, stub.failure_status = 10**6, 503
    # A failed email alone is tried again within a second or two: without holding back together, every
    # email would reach the ESP again and again during the outage.
    env = esp_env(worker_env, counting_esp, ESP_PROBE_SECONDS=str(probe), ESP_PROBE_MAX_SECONDS=str(probe_max),
                  DELIVERY_BACKOFF_SECONDS="0.5", DELIVERY_BACKOFF_MAX_SECONDS="2")
    worker, beat = start(env, "--concurrency=2"), start(env, beat=True)
    try:
        deliver_immediate()
        wait_until(lambda: EspState.objects.filter(down_since__isnull=False).exists(), timeout=60,
                   message="the ESP to be shown down")
        time.sleep(1)  # the chunks already at the ESP when it failed come back
        errors = watch_outage(phase, stub)
        counting_esp.stop()  # now the port refuses connections, and the open ones are cut
        refused = watch_outage(phase, stub)
        state = EspState.objects.get()
        assert not stub.messages and Delivery.objects.filter(status=Delivery.Status.PENDING).count() == COUNT

        stub.failures_left = 0
        counting_esp.start()
        back, recovered_at = time.monotonic(), timezone.now()
        # However long the outage, the next probe is at most ESP_PROBE_MAX_SECONDS away.
        assert state.next_probe_at <= recovered_at + dt.timedelta(seconds=probe_max)
        # A generous ceiling: the probe's wait, a beat tick, and the drain of 2,000 emails.
        wait_until(all_sent, timeout=probe_max + 1 + 60, message="every email sent once the ESP was back")
        first, last = stub.accepted_at[0] - back, stub.accepted_at[-1] - back
    finally:
        beat.stop()
        worker.stop()
    print(f"\n{COUNT} emails, ESP down: {errors['requests']} requests in {phase:.0f} s of 503s, "
          f"{refused['attempts']} attempts in {phase:.0f} s of refused connections "
          f"(a probe every {probe}-{probe_max} s); "
          f"back: first email taken {first:.1f} s after it returned, the last {last:.1f} s after")
    # One probe per interval (and perhaps a chunk that was on its way), not one try per email nor per chunk.
    assert 1 <= errors["requests"] <= most_probes(phase, probe, probe_max) + 1
    assert 1 <= refused["attempts"] <= most_probes(phase, probe, probe_max) + 1
    assert any("503" in error for error in errors["errors"])
    assert "Connection" in state.last_error
    assert EspState.objects.get().down_since is None
    assert duplicates(stub) == 0


# --- A worker killed, stopped, or cut off from its database --------------------------------------------------------


def sending_worker(worker_env, counting_esp, **settings):
    """Beat ticking every second and a worker of two processes, as compose runs it, sending 2,000 due emails to
    an ESP that takes 5 ms a message: half a second a chunk, so that whatever happens lands mid-send."""
    subscribers_with_one_match_each(COUNT)
    beat_sends_due_emails(every_seconds=1)
    counting_esp.stub.latency_per_message = 0.005
    env = esp_env(worker_env, counting_esp, **settings)
    return env, start(env, beat=True), start(env, "--concurrency=2")


def test_a_worker_killed_three_times_mid_send_loses_nothing_and_sends_again_at_most_what_it_held(worker_env,
                                                                                                 counting_esp):
    # A short lease, so that what the dead worker held is taken again soon.
    env, beat, worker = sending_worker(worker_env, counting_esp, DELIVERY_LEASE_SECONDS="10",
                                       DELIVERY_BACKOFF_SECONDS="1")
    stub, in_flight = counting_esp.stub, set()
    try:
        deliver_immediate()
        for kill in range(3):
            # Once this worker has recorded a chunk (the ESP may still be answering the last one's requests),
            # it is sending the next.
            recorded = sent()
            wait_until(lambda recorded=recorded: sent() > recorded, timeout=60, message=f"sending before kill {kill}")
            worker.kill(signal.SIGKILL)  # the whole group, as the OOM killer or a crash would
            in_flight |= held()
            worker = start(env, "--concurrency=2")
        wait_until(all_sent, timeout=90, message="every email sent and recorded after the last restart")
    finally:
        beat.stop()
        worker.stop()
    sent_twice = duplicates(stub)
    limit = 3 * 2 * settings.DELIVERY_CHUNK_SIZE
    print(f"\n{COUNT} emails, 3 SIGKILLs of a worker of 2 processes: {len(in_flight)} held when killed, "
          f"{sent_twice} sent twice (at most 3 kills x 2 processes x {settings.DELIVERY_CHUNK_SIZE} = {limit})")
    # Only what a killed sender held can go twice: the chunks in flight, one per process.
    assert sent_twice <= len(in_flight) <= limit


def test_sigterm_to_the_workers_main_process_mid_burst_sends_nothing_twice_and_a_new_worker_sends_the_rest(
        worker_env, counting_esp):
    """As `docker compose stop` does: SIGTERM to the main process alone, then SIGKILL to all after the grace
    period. The lease is the default minute, so a row left held would hold the test up: none may be."""
    grace = 10  # compose's default stop_grace_period
    env, beat, worker = sending_worker(worker_env, counting_esp)
    stub = counting_esp.stub
    try:
        deliver_immediate()
        wait_until(lambda: len(stub.messages) >= 300, timeout=60, message="the burst to be under way")
        os.kill(worker.process.pid, signal.SIGTERM)
        asked, at_sigterm = time.monotonic(), len(stub.messages)
        try:
            worker.process.wait(timeout=grace)
            stopped = f"stopped by itself {time.monotonic() - asked:.1f} s after SIGTERM"
        except subprocess.TimeoutExpired:
            stopped = f"still running {grace} s after SIGTERM: killed"
        # Whatever is left of the group goes, as it does with the container.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.process.pid, signal.SIGKILL)
        worker.process.wait(timeout=30)
        left_held, recorded, at_esp = held(), sent(), len(stub.messages)
        worker = start(env, "--concurrency=2")
        wait_until(all_sent, timeout=60, message="the new worker to send the rest")
    finally:
        beat.stop()
        worker.stop()
    print(f"\n{COUNT} emails, SIGTERM to the worker after {at_sigterm}: {stopped}; {at_esp} at the ESP then, "
          f"{recorded} recorded as sent, {len(left_held)} rows left held")
    assert "by itself" in stopped
    assert not left_held and at_esp == recorded < COUNT  # every email the ESP took is recorded, mid-burst
    assert duplicates(stub) == 0


def cut_the_apps_connections() -> int:
    """pg_terminate_backend on every other connection to the test database: the worker's and beat's."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def log_lines(path: Path, since: int, text: str) -> int:
    return path.read_bytes()[since:].decode(errors="replace").count(text)


def test_the_apps_database_connections_cut_twice_mid_send_lose_nothing_and_send_nothing_twice(worker_env,
                                                                                              counting_esp):
    env, beat, worker = sending_worker(worker_env, counting_esp, DELIVERY_LEASE_SECONDS="10",
                                       DELIVERY_BACKOFF_SECONDS="1")
    stub, log_start = counting_esp.stub, worker.log.stat().st_size
    try:
        deliver_immediate()
        wait_until(lambda: len(stub.messages) >= 200, timeout=60, message="sending to be under way")
        cut = [cut_the_apps_connections()]
        time.sleep(3)
        cut.append(cut_the_apps_connections())
        at_second_cut = len(stub.messages)
        wait_until(all_sent, timeout=90, message="every email sent and recorded after the cuts")
    finally:
        beat.stop()
        worker.stop()
    retried = log_lines(worker.log, log_start, "database error while recording emails; trying again")
    print(f"\n{COUNT} emails, the app's connections cut twice ({cut} of them), {at_second_cut} sent at the "
          f"second cut: {retried} outcomes recorded again after a database error")
    assert all(cut) and at_second_cut < COUNT
    assert duplicates(stub) == 0


# --- Digests on a faked clock -----------------------------------------------------------------------------------

# Debian's faketime package, wherever the machine's architecture puts it.
LIBFAKETIME = next(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"), None)
LONDON = ZoneInfo("Europe/London")

# libfaketime 0.9.10 cannot leave Python alone on either setting of the monotonic clock: faked, a timed wait
# (threading.Event.wait, Lock.acquire with a timeout) never returns, as Python hands sem_clockwait a deadline
# on the faked monotonic clock that the library does not translate back; left real
# (FAKETIME_DONT_FAKE_MONOTONIC=1), time.sleep fails with EINVAL, as the library's clock_nanosleep mishandles
# Python's absolute CLOCK_MONOTONIC deadline. So the monotonic clock stays real and the worker's and beat's
# time.sleep waits in select() instead, loaded before anything else as sitecustomize.
SLEEP_WITHOUT_NANOSLEEP = '''import select
import time


def _sleep(seconds):
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    select.select([], [], [], seconds)


time.sleep = _sleep
'''


class FakeClock:
    """The wall clock of a worker and beat started with `env()`: an offset from the real one in a file that
    libfaketime reads again every second, so the test can move it while they run."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.file = directory / "faketime"
        (directory / "sitecustomize.py").write_text(SLEEP_WITHOUT_NANOSLEEP)

    def set(self, moment: dt.datetime) -> None:
        self.file.write_text(f"{round((moment - timezone.now()).total_seconds()):+d}\n")

    def env(self, env: dict[str, str]) -> dict[str, str]:
        return env | {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(self.file),
                      "FAKETIME_CACHE_DURATION": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
                      "PYTHONPATH": os.pathsep.join(filter(None, [str(self.directory), str(ROOT),
                                                                  env.get("PYTHONPATH")]))}


@pytest.fixture
def clock(tmp_path):
    if LIBFAKETIME is None:
        pytest.fail("needs libfaketime: apt-get install faketime")
    return FakeClock(tmp_path)


def london(*args) -> dt.datetime:
    return dt.datetime(*args, tzinfo=LONDON)


def beat_schedule(every_seconds: int, last_ran: dt.datetime) -> None:
    """Beat's schedule as declared, sending due emails every second and starting digest runs every
    few rather than every minute, each last run at `last_ran` on the faked clock (beat would otherwise count
    from when the row was changed, on the real clock, weeks after the faked one)."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    beat_sends_due_emails(every_seconds=1)
    schedule.sync(only=["Start digest runs", "Take waiting form requests"])
    interval, _ = IntervalSchedule.objects.get_or_create(every=every_seconds, period="seconds")
    PeriodicTask.objects.filter(task="alerts.start_digest_runs").update(interval=interval)
    PeriodicTask.objects.update(last_run_at=last_ran)


def digest_alert(email: str, frequency: str, confirmed: dt.datetime) -> Subscription:
    from django.core.management import call_command

    call_command("import_questions", str(FIXTURES / "seed_questions.json"), verbosity=0)
    person = Subscriber.objects.create(email=email, confirmed_at=confirmed)
    return Subscription.objects.create(subscriber=person, query="police", canonical_query="police",
                                       frequency=frequency, confirmed_at=confirmed)


def matched(alert: Subscription, question: Question, found: dt.datetime) -> None:
    match(alert, QuestionEvent.objects.filter(question=question).first(), created_at=found)


def done_run(frequency: str, start: dt.datetime, end: dt.datetime) -> None:
    DigestRun.objects.create(frequency=frequency, period_start=start, period_end=end, created_at=end,
                             built_at=end, finished_at=end)


def questions_in(message: dict) -> list[str]:
    """The paths of the questions an email lists, as often as it lists them."""
    return [urlsplit(url).path for url in re.findall(r"^Read it: (\S+)$", message["TextBody"], re.MULTILINE)]


def made_and_sent(frequency: str, end: dt.datetime) -> bool:
    return (DigestRun.objects.filter(frequency=frequency, period_end=end, built_at__isnull=False).exists()
            and not Delivery.objects.filter(status=Delivery.Status.PENDING).exists())


def ends(frequency: str) -> list[dt.datetime]:
    return list(DigestRun.objects.filter(frequency=frequency).order_by("period_end").values_list("period_end",
                                                                                                 flat=True))


def test_a_weekly_digest_missed_while_the_stack_was_down_arrives_once_when_it_is_back(worker_env, counting_esp, clock):
    """Confirmed on Tuesday 3 November with a match that day; the run of Monday 2 November was made; the stack
    was down on Monday 9 November at 07:00 and is back on Monday 16 November at 08:00."""
    alert = digest_alert("weekly@example.org", WEEKLY, london(2026, 11, 3, 9))
    question = Question.objects.order_by("pk").first()
    matched(alert, question, london(2026, 11, 3, 14))
    done_run(WEEKLY, london(2026, 10, 26, 7), london(2026, 11, 2, 7))
    beat_schedule(every_seconds=2, last_ran=london(2026, 11, 9, 6, 59))  # just before the stack went down
    clock.set(london(2026, 11, 16, 8))
    env = clock.env(esp_env(worker_env, counting_esp))
    worker, beat = start(env), start(env, beat=True)
    try:
        wait_until(lambda: emails_to(counting_esp.stub, "weekly@example.org")
                   and made_and_sent(WEEKLY, london(2026, 11, 16, 7)),
                   timeout=60, message="the missed weekly digest to be sent")
    finally:
        beat.stop()
        worker.stop()
    emails = emails_to(counting_esp.stub, "weekly@example.org")
    assert [questions_in(message) for message in emails] == [[question.get_absolute_url()]]
    assert ends(WEEKLY) == [london(2026, 11, 2, 7), london(2026, 11, 9, 7), london(2026, 11, 16, 7)]
    missed = DigestRun.objects.get(frequency=WEEKLY, period_end=london(2026, 11, 9, 7))
    latest = DigestRun.objects.get(frequency=WEEKLY, period_end=london(2026, 11, 16, 7))
    assert missed.emails == 1 and latest.emails == 0
    # Made on the worker's faked clock, when the stack came back.
    assert timezone.localtime(missed.deliveries.get().created_at).date() == dt.date(2026, 11, 16)


def test_monthly_digests_across_the_month_end_and_the_clock_change_each_send_their_own_months_matches(
        worker_env, counting_esp, clock):
    """Matches on 20 October (BST), 28 October (GMT, after the change on the 25th), 1 November at 06:30 GMT
    (before that day's 07:00, so October's, though past 06:00 UTC, where 07:00 fell in summer time) and 3 November;
    the stack runs through
    the end of October, 1 November 07:00 GMT and 1 December 07:00 GMT (each run made once its period has settled)."""
    alert = digest_alert("monthly@example.org", MONTHLY, london(2026, 9, 1, 9))
    october = list(Question.objects.order_by("pk")[:3])
    november = Question.objects.order_by("pk")[3]
    for question, found in zip(october, [london(2026, 10, 20, 10), london(2026, 10, 28, 10),
                                         london(2026, 11, 1, 6, 30)], strict=True):
        matched(alert, question, found)
    matched(alert, november, london(2026, 11, 3, 10))
    done_run(MONTHLY, london(2026, 9, 1, 7), london(2026, 10, 1, 7))
    beat_schedule(every_seconds=2, last_ran=london(2026, 10, 31, 11, 59))
    clock.set(london(2026, 10, 31, 12))
    env = clock.env(esp_env(worker_env, counting_esp))
    worker, beat = start(env), start(env, beat=True)
    stub = counting_esp.stub
    try:
        # A tick on 31 October makes that day's daily run and no monthly one.
        wait_until(lambda: made_and_sent(Subscription.Frequency.DAILY, london(2026, 10, 31, 7)), timeout=60,
                   message="beat's first tick on 31 October")
        assert ends(MONTHLY) == [london(2026, 10, 1, 7)] and not stub.messages
        clock.set(london(2026, 11, 1, 7) + SETTLE + dt.timedelta(seconds=1))
        wait_until(lambda: stub.messages and made_and_sent(MONTHLY, london(2026, 11, 1, 7)), timeout=60,
                   message="October's digest on 1 November")
        after_october = questions_in(stub.messages[-1])
        clock.set(london(2026, 12, 1, 7) + SETTLE + dt.timedelta(seconds=1))
        wait_until(lambda: len(stub.messages) > 1 and made_and_sent(MONTHLY, london(2026, 12, 1, 7)), timeout=60,
                   message="November's digest on 1 December")
    finally:
        beat.stop()
        worker.stop()
    emails = emails_to(stub, "monthly@example.org")
    assert sorted(after_october) == sorted(q.get_absolute_url() for q in october)
    assert [sorted(questions_in(message)) for message in emails] == [sorted(after_october),
                                                                     [november.get_absolute_url()]]
    # 07:00 in London each time: 06:00 UTC in summer time, 07:00 UTC after the change.
    assert [end.astimezone(dt.UTC).hour for end in ends(MONTHLY)] == [6, 7, 7]
    assert ends(MONTHLY) == [london(2026, 10, 1, 7), london(2026, 11, 1, 7), london(2026, 12, 1, 7)]
