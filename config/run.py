"""`make run`: the web server, the two workers and beat in one terminal, stopped together by one Ctrl-C.

Each runs in a session of its own, so a terminal's Ctrl-C (sent to its whole foreground process group)
reaches this process alone: each child is then told to stop once, with SIGTERM, and a child (or a child's
child) still there after STOP_SECONDS is killed. A child that stops by itself stops the rest, and
`make run` fails naming it."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Long enough for a worker's senders to finish the chunk they hold with the file backend or a local ESP.
STOP_SECONDS = 8.0
# Ctrl-C, Ctrl-\, a closed terminal, or `kill`: the children, in sessions of their own, hear none of them.
STOP_SIGNALS = (signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGHUP)


def commands(python: str, port: str) -> dict[str, list[str]]:
    """What runs, by the name a failure is reported under."""
    celery = [python, "-m", "celery", "-A", "config", "--quiet"]
    return {
        "web server": [python, "manage.py", "runserver", f"127.0.0.1:{port}"],
        "worker": [*celery, "worker", "--loglevel=INFO", "--concurrency=1", "-n", "main@%h"],
        "polling worker": [*celery, "worker", "--loglevel=INFO", "--concurrency=1", "-Q", "poll", "-n", "poll@%h"],
        "beat": [*celery, "beat", "--loglevel=INFO"],
    }


def empty_metrics_folder() -> None:
    """Counts left by the processes of an earlier run would be added to this run's for ever."""
    from django.conf import settings

    shutil.rmtree(settings.METRICS_DIR, ignore_errors=True)
    settings.METRICS_DIR.mkdir(parents=True, exist_ok=True)


def shown(path: str | Path) -> str:
    """A path as a developer in the checkout would type it."""
    return os.path.relpath(path, ROOT) if str(path).startswith(str(ROOT)) else str(path)


class Supervisor:
    def __init__(self, named_commands: dict[str, list[str]], env: dict[str, str]) -> None:
        self.named_commands = named_commands
        self.env = env
        self.children: dict[str, subprocess.Popen] = {}
        self.signals: list[int] = []

    def _on_signal(self, signum: int, frame) -> None:
        self.signals.append(signum)

    def run(self) -> int:
        """0 once stopped by a signal; 1 when a child stopped by itself."""
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._on_signal)
        try:
            for name, command in self.named_commands.items():
                if self.signals:
                    break
                self.children[name] = subprocess.Popen(command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL,
                                                       start_new_session=True)
            dead = self._wait_for_a_stop()
        finally:
            self._stop_all()
        if dead:
            name, code = dead
            print(f"make run: the {name} stopped by itself ({_describe(code)}); everything else was stopped",
                  file=sys.stderr)
            return 1
        return 0

    def _wait_for_a_stop(self) -> tuple[str, int] | None:
        while not self.signals:
            for name, child in self.children.items():
                if (code := child.poll()) is not None:
                    return name, code
            time.sleep(0.2)
        return None

    def _stop_all(self) -> None:
        # One SIGTERM to each child, not to its group: a Celery worker stops its own pool processes, and the
        # web server's reloader its server.
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        signals_then = len(self.signals)
        deadline = time.monotonic() + STOP_SECONDS
        # A second Ctrl-C does not wait.
        while (any(child.poll() is None for child in self.children.values()) and time.monotonic() < deadline
               and len(self.signals) <= signals_then):
            time.sleep(0.1)
        for child in self.children.values():
            # Whatever is left in the child's session, the child included.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def _describe(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"


def main() -> int:
    port = os.environ.get("PORT", "8000")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    # Reads the settings, and with them .env, whose values then come before the defaults below.
    empty_metrics_folder()
    env = dict(os.environ)
    env.setdefault("DEBUG", "1")
    env.setdefault("SITE_URL", f"http://127.0.0.1:{port}")
    from django.conf import settings

    print(f"\nWritten question alerts: http://127.0.0.1:{port}/   (admin: http://127.0.0.1:{port}/admin/)\n"
          f"Make an admin login in another terminal: {shown(sys.executable)} manage.py createsuperuser\n"
          f"Emails are written to {shown(settings.EMAIL_FILE_PATH)}/. Press Ctrl-C to stop.\n", flush=True)
    return Supervisor(commands(sys.executable, port), env).run()


if __name__ == "__main__":
    sys.exit(main())
