"""`make run` as a developer runs it: SQLite, the file broker and the file outbox, in a terminal's process group.

Each stack runs on a private VAR_DIR and port, so that it needs no service and touches no checkout's var/."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from config.schedule import ticks
from tests.conftest import ROOT, free_port, wait_until

# Settings the tests' own environment may carry that would move `make run` off its embedded defaults.
NOT_MAKE_RUNS = ("DATABASE_URL", "REDIS_URL", "REDIS_CACHE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
                 "EMAIL_BACKEND", "PROMETHEUS_MULTIPROC_DIR", "SITE_URL", "DEBUG", "LOG_LEVEL", "LOG_FORMAT",
                 "CELERY_TASK_ALWAYS_EAGER", "PORT")


def make_run_env(var_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in NOT_MAKE_RUNS}
    return {**env, "VAR_DIR": str(var_dir), **extra}


def manage(var_dir: Path, *arguments: str) -> None:
    subprocess.run([sys.executable, "manage.py", *arguments], cwd=ROOT, env=make_run_env(var_dir), check=True,
                   capture_output=True, timeout=300)


@pytest.fixture(scope="module")
def migrated(tmp_path_factory) -> Path:
    """A migrated var/, copied for each stack: migrating takes longer than starting one."""
    var_dir = tmp_path_factory.mktemp("make-run") / "var"
    manage(var_dir, "migrate", "--no-input")
    # The official API is the source a new database polls: these stacks read nothing from the internet.
    manage(var_dir, "shell", "-c", "from questions.models import Source; Source.objects.update(enabled=False)")
    return var_dir


class Stack:
    """`make run` in a session of its own, as a terminal runs it: Ctrl-C is SIGINT to its whole process group."""

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self.port = free_port()
        self.output = var_dir.parent / "make-run.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        # The prerequisites (install, migrate, sample) are taken as made: the copy is migrated, and the sample
        # is not needed.
        command = ["make", "--no-print-directory", "-o", "sample", "run", f"BIN={Path(sys.executable).parent}"]
        self.process = subprocess.Popen(command, cwd=ROOT, env=make_run_env(self.var_dir, PORT=str(self.port)),
                                        stdin=subprocess.DEVNULL, stdout=self.output.open("wb"),
                                        stderr=subprocess.STDOUT, start_new_session=True)
        wait_until(self.answers, timeout=120, interval=0.5, message="make run's web server to answer")

    def answers(self) -> bool:
        assert self.process.poll() is None, self.text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def lines(self) -> list[str]:
        return self.text().splitlines()

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def processes(self) -> set[int]:
        """Every live process started for this stack, whatever session it is in: they all carry its VAR_DIR."""
        mark = f"VAR_DIR={self.var_dir}".encode()
        found = set()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                try:
                    if mark in (entry / "environ").read_bytes().split(b"\0"):
                        found.add(int(entry.name))
                except OSError:  # gone meanwhile, or a zombie
                    pass
        return found

    def ctrl_c(self) -> None:
        os.killpg(self.process.pid, signal.SIGINT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.ctrl_c()
            self.process.wait(timeout=30)
        for pid in self.processes():
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def stack(migrated, tmp_path):
    var_dir = tmp_path / "var"
    shutil.copytree(migrated, var_dir)
    started = Stack(var_dir)
    yield started
    started.stop()


def test_ctrl_c_stops_every_process_of_make_run_at_once_and_quietly(stack):
    stack.start()
    running = stack.processes()
    # The supervisor, the web server and its reloader, two workers and their pool processes, and beat.
    assert len(running) >= 7, stack.text()
    printed = len(stack.lines())

    stack.ctrl_c()

    wait_until(lambda: not stack.processes(), timeout=10, interval=0.1, message="every process to stop")
    after = "\n".join(stack.lines()[printed:])
    assert len(after.splitlines()) < 50, after
    for noise in ("Segmentation fault", "Traceback", "Warm shutdown", "make: ***", "Error"):
        assert noise not in after
    assert stack.process.wait(timeout=5) in (0, -signal.SIGINT)


def test_a_process_that_stops_by_itself_stops_the_rest_and_make_run_says_which(stack):
    stack.start()
    beat = next(pid for pid in stack.processes()
                if b"beat" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"))

    os.kill(beat, signal.SIGKILL)

    assert stack.process.wait(timeout=15) != 0
    wait_until(lambda: not stack.processes(), timeout=10, interval=0.1, message="every process to stop")
    assert "make run: the beat stopped by itself (killed by SIGKILL); everything else was stopped" in stack.text()


def schedule_ticks_every_five_seconds(var_dir: Path) -> None:
    """Beat's schedule is what tests can move: every tick comes every 5 s rather than every 10 s or minute (a
    worker of the file broker takes about one task a second)."""
    manage(var_dir, "shell", "-c", (
        "from django_celery_beat.models import IntervalSchedule, PeriodicTask\n"
        "from config.schedule import ticks\nTICKS = ticks()\n"
        "every, _ = IntervalSchedule.objects.get_or_create(every=5, period='seconds')\n"
        "assert PeriodicTask.objects.filter(task__in=TICKS).update(interval=every) == len(TICKS)\n"))


class BrokerWatch:
    """The ticks beat sends, by the messages the file broker holds until a worker takes them."""

    def __init__(self, var_dir: Path) -> None:
        self.folder = var_dir / "broker" / "in"
        self.seen: dict[str, str] = {}

    def waiting(self) -> set[str]:
        names = set()
        for path in self.folder.glob("*.msg"):
            try:
                self.seen.setdefault(path.name, json.loads(path.read_text())["headers"]["task"])
                names.add(path.name)
            except (OSError, ValueError, KeyError):  # taken, or half written
                pass
        return names

    def taken(self, task: str) -> int:
        waiting = self.waiting()
        return sum(1 for name, seen in self.seen.items() if seen == task and name not in waiting)


def test_an_idle_make_run_writes_no_email_and_logs_no_tick_and_a_tick_that_sends_says_so(stack):
    schedule_ticks_every_five_seconds(stack.var_dir)
    outbox = stack.var_dir / "outbox"
    stack.start()
    watch = BrokerWatch(stack.var_dir)

    # The first ticks of a new database have work: the digest runs of the periods that have ended.
    wait_until(lambda: all(watch.taken(task) >= 2 for task in ticks()), timeout=120, interval=0.05,
               message=f"every tick to be taken twice: {sorted(ticks())}")
    printed = len(stack.lines())
    taken = {task: watch.taken(task) for task in ticks()}

    wait_until(lambda: all(watch.taken(task) >= taken[task] + 2 for task in ticks()), timeout=120, interval=0.05,
               message=f"every tick to be taken twice more: {sorted(ticks())}")

    assert not outbox.exists() or not list(outbox.iterdir())
    assert not [line for line in stack.lines()[printed:] if any(task in line for task in ticks())]

    manage(stack.var_dir, "shell", "-c", (
        "from alerts import form_requests\n"
        "from alerts.tasks import take_form_request_task\n"
        "take_form_request_task.delay(form_requests.record('signup', {'email': 'ada@example.org', 'query': "
        "'schools', 'frequency': 'immediate', 'alert_on': 'both'}, held=False).pk)\n"))

    emails = wait_until(lambda: list(outbox.glob("*")), timeout=60, message="the confirmation email")
    assert "ada@example.org" in emails[0].read_text()

    def sends() -> list[dict]:
        return [json.loads(line) for line in stack.lines() if "alerts.send_due" in line and "succeeded" in line]

    sent = wait_until(sends, timeout=30, message="the worker to say it sent the email")
    assert [(line["level"], line["data"]["return_value"]) for line in sent] == [("INFO", "{'sent': 1}")]


@pytest.mark.django_db
def test_the_quiet_ticks_are_what_beat_sends_every_minute_or_more_often():
    from django_celery_beat.models import PeriodicTask

    frequent = {entry.task for entry in PeriodicTask.objects.filter(interval__isnull=False, enabled=True)
                .select_related("interval")
                if dt.timedelta(**{entry.interval.period: entry.interval.every}) <= dt.timedelta(minutes=1)}

    assert frequent == ticks()
