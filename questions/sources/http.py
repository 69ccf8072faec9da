"""One polite HTTP client for every source: a request rate, time-outs, a size cap and back-off."""

from __future__ import annotations

import contextlib
import email.utils
import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import requests
from django.conf import settings

log = logging.getLogger(__name__)

RETRY_STATUSES = {429, 500, 502, 503, 504}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}
MAX_REDIRECTS = 5


class FetchError(Exception):
    """The source could not be read; the message is what the operator sees on the source, and the cause what kind
    of failure it was, without the address: the items of one poll that failed for one cause are said once."""

    def __init__(self, message: str, cause: str = "") -> None:
        super().__init__(message)
        self.cause = cause or message


class OutOfTime(FetchError):
    """The poll ran past its budget: what was read is kept, and the rest waits for the next poll."""


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    def text(self) -> str:
        # Sources declare charsets unreliably; every one we poll is UTF-8.
        return self.body.decode("utf-8", errors="replace")


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


class PoliteClient:
    def __init__(
        self,
        *,
        requests_per_second: float | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_bytes: int | None = None,
        max_retries: int | None = None,
        backoff_seconds: float | None = None,
        max_retry_after: float | None = None,
        poll_seconds: float | None = None,
        response_seconds: float | None = None,
    ) -> None:
        rate = requests_per_second or settings.SOURCE_REQUESTS_PER_SECOND
        self.min_interval = 1.0 / rate if rate > 0 else 0.0
        self.timeout = (
            connect_timeout or settings.SOURCE_CONNECT_TIMEOUT,
            read_timeout or settings.SOURCE_READ_TIMEOUT,
        )
        self.max_bytes = max_bytes or settings.SOURCE_MAX_BYTES
        self.max_retries = settings.SOURCE_MAX_RETRIES if max_retries is None else max_retries
        self.backoff = settings.SOURCE_BACKOFF_SECONDS if backoff_seconds is None else backoff_seconds
        self.max_retry_after = max_retry_after or settings.SOURCE_MAX_RETRY_AFTER
        # Wall-clock budgets: a read time-out applies to each read, so a source that drips one byte at a
        # time, or pages for ever, would otherwise hold the poll (and its worker) without end.
        self.deadline = time.monotonic() + (poll_seconds or settings.SOURCE_POLL_SECONDS)
        self.response_seconds = response_seconds or settings.SOURCE_RESPONSE_SECONDS
        self.session = requests.Session()
        self.session.headers["User-Agent"] = "written-question-alerts (+" + settings.SITE_URL + ")"
        self.requests_made = 0
        self._last_request = 0.0

    def _wait_for_turn(self) -> None:
        wait = self._last_request + self.min_interval - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._last_request = time.monotonic()

    def _time_left(self, url: str) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise OutOfTime(f"{url}: the poll ran past its budget of {settings.SOURCE_POLL_SECONDS:.0f} s; "
                            "what was read is stored, and the next poll goes on")
        return left

    def get(self, url: str, *, params: dict | None = None, headers: dict | None = None) -> Response:
        attempt = redirects = 0
        while True:
            attempt += 1
            self._time_left(url)
            self._wait_for_turn()
            try:
                response = self._get_once(url, params, headers)
                # Followed here, not by requests, so that each hop keeps to the budget and the size cap.
                if response.status in REDIRECT_STATUSES and response.headers.get("location"):
                    redirects += 1
                    if redirects > MAX_REDIRECTS:
                        raise FetchError(f"{url}: more than {MAX_REDIRECTS} redirects",
                                         f"more than {MAX_REDIRECTS} redirects")
                    url, params, attempt = urljoin(url, response.headers["location"]), None, 0
                    continue
            except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
                kind = type(exc).__name__
                problem, delay = f"{kind}: {exc}", None
            except requests.RequestException as exc:
                # Redirect loops, bad URLs, undecodable bodies: asking again would not help.
                raise FetchError(f"{url}: {type(exc).__name__}: {exc}", type(exc).__name__) from exc
            else:
                if response.status not in RETRY_STATUSES:
                    return response
                problem = kind = f"HTTP {response.status}"
                delay = retry_after_seconds(response.headers.get("retry-after"))
                if delay is not None and delay > self.max_retry_after:
                    raise FetchError(
                        f"{url}: HTTP {response.status}, asked to retry after {delay:.0f}s; will try next poll",
                        f"HTTP {response.status}, asked to retry later than this poll can wait",
                    )
            if attempt > self.max_retries:
                raise FetchError(f"{url}: {problem} (gave up after {attempt} attempts)", kind)
            delay = delay if delay is not None else self.backoff * 2 ** (attempt - 1)
            if delay >= self._time_left(url):
                raise OutOfTime(f"{url}: {problem}, and no time is left in this poll to try again")
            log.info("source fetch retry", extra={"url": url, "problem": problem, "attempt": attempt,
                                                  "delay": round(delay, 2)})
            time.sleep(delay)

    def _get_once(self, url: str, params: dict | None, headers: dict | None) -> Response:
        self.requests_made += 1
        budget = min(self.response_seconds, self._time_left(url))
        with self.session.get(url, params=params, headers=headers, timeout=self.timeout, stream=True,
                              allow_redirects=False) as r:
            declared = r.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > self.max_bytes:
                raise FetchError(f"{url}: the response is {int(declared):,} bytes, over the cap of {self.max_bytes:,}",
                                 "the response is over the size cap")
            # Past the budget the socket is shut, which ends a read however slowly the bytes come.
            cut = threading.Event()

            def cut_off() -> None:
                cut.set()
                with contextlib.suppress(ValueError, RuntimeError, OSError):  # already finished and released
                    r.raw.shutdown()

            watchdog = threading.Timer(budget, cut_off)
            watchdog.start()
            body = bytearray()
            try:
                for chunk in r.iter_content(chunk_size=65536):
                    body.extend(chunk)
                    if len(body) > self.max_bytes:
                        raise FetchError(f"{url}: the response is over the cap of {self.max_bytes:,} bytes",
                                         "the response is over the size cap")
            except requests.RequestException:
                if not cut.is_set():
                    raise
            finally:
                watchdog.cancel()
            if cut.is_set():
                raise OutOfTime(f"{url}: the response took longer than {budget:.0f} s to arrive")
            return Response(r.status_code, bytes(body), {k.lower(): v for k, v in r.headers.items()})
