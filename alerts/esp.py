"""Handing composed emails to the ESP, and classing what it said about each: sent, rejected or retry.

A transport is chosen once per sender run from EMAIL_BACKEND (`open_transport`):

- Postmark takes up to 500 different messages in one call (`/email/batch`): those are built with
  Anymail's own Postmark payload code and posted over Anymail's session, so a chunk of emails costs one
  round trip.
- Any other Anymail ESP takes one message per call, so a chunk is sent over a pool of
  DELIVERY_ESP_CONNECTIONS threads, each with a backend (and so a kept-alive connection) of its own:
  the round trips overlap instead of adding up.
- Django's own backends (files, memory, SMTP, console), and Anymail's test and console ones, send one
  message at a time in the caller's thread.

Every outcome also says whether the ESP as a whole failed (`outage`: unreachable, timed out, 5xx, 429, our
credentials or account refused) rather than this one message; once it has, the rest of the chunk is not
sent but comes back as retry, outage, so that the senders can back off together.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urljoin

import requests
from anymail.backends.base import AnymailBaseBackend
from anymail.backends.base_requests import AnymailRequestsBackend
from anymail.backends.postmark import EmailBackend as PostmarkBackend
from anymail.backends.test import EmailBackend as AnymailTestBackend
from anymail.exceptions import (
    AnymailAPIError,
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from django.conf import settings
from django.core.mail import BadHeaderError, EmailMessage, get_connection
from requests.utils import to_key_val_list
from urllib3 import encode_multipart_formdata

from alerts import metrics

SENT = "sent"
REJECTED = "rejected"  # the ESP refuses this address for good
FAILED = "failed"  # this email can never be sent as it is (trying again would not help)
RETRY = "retry"
# The lease on the chunk was lost (another sender has it): neither sent nor to be recorded.
TAKEN = "taken"

POSTMARK_BATCH_MAX = 500
# Postmark's per-message codes that say the address itself is refused: 406 inactive recipient (a past hard
# bounce or complaint), 300 with a recipient named as invalid.
_POSTMARK_INVALID_RECIPIENT = re.compile(r"^(Invalid|Error\s+parsing)\s+'(To|Cc|Bcc)'", re.IGNORECASE)
# Postmark's codes that are about our account rather than a message, whatever the HTTP status: bad token,
# sender signature missing or unconfirmed, not allowed to send (out of credits, suspended), account
# pending, account may not send; and maintenance. Every message would get the same answer.
_POSTMARK_ACCOUNT_CODES = {10, 400, 401, 405, 412, 413}
_POSTMARK_MAINTENANCE = 100
_POSTMARK_OUTAGE_CODES = _POSTMARK_ACCOUNT_CODES | {_POSTMARK_MAINTENANCE}
# HTTP answers that say our credentials or account are refused (401, 403: a revoked key fails every message
# alike, and must not fail them for good) or the address we post to is unknown (404: a wrong URL or sending
# domain). With 408, 429 and every 5xx these are about the ESP or our account, not about one message.
_AUTH_HTTP_STATUS = {401, 403, 404}
# How an ESP that takes one message per call says the recipient's address is refused (Mailgun: a 400 with
# "'to' parameter is not a valid address").
_INVALID_RECIPIENT_TEXT = re.compile(r"\b(to|cc|bcc)'?\s+parameter is not a valid address", re.IGNORECASE)


# What went wrong, in words an operator can tell apart: the `error` label of wqa_esp_errors_total, and the
# logs' counts. The first four are about the ESP (or our account with it), not about one message.
# The tracking events (Anymail's names) that show an email reached the inbox: opening, clicking, an automatic
# reply or a List-Unsubscribe click all come from the mailbox itself. The canary and the manage page both read it.
ARRIVED = ("delivered", "opened", "clicked", "autoresponded", "unsubscribed")

UNREACHABLE = "unreachable"  # no answer: refused, reset, timed out, a name or TLS failure
SERVER_ERROR = "server_error"  # the ESP answered 5xx (or 408, or SMTP's 4xx "try later")
RATE_LIMITED = "rate_limited"  # asked to slow down (429, a throttling code)
AUTH = "auth"  # our credentials, account, sender or endpoint refused: nothing goes until an operator acts
INVALID = "invalid"  # this message refused as it is (a 400 or 422 about it, too big, a bad header)
REJECTED_ADDRESS = "rejected"  # the recipient's address refused for good
OTHER = "other"  # anything else, such as an answer that could not be read
OUTAGE_PROBLEMS = {UNREACHABLE, SERVER_ERROR, RATE_LIMITED, AUTH}


@dataclass(frozen=True)
class Outcome:
    status: str
    message_id: str = ""
    esp_status: str = ""
    error: str = ""
    # The ESP as a whole failed (not this one message): the senders back off together.
    outage: bool = False
    problem: str = ""  # one of the classes above, for an outcome other than sent


class Transport(Protocol):
    """Hands messages to one ESP. `send` is called from one thread at a time."""

    name: str  # the ESP's name, e.g. "postmark", "mailgun", "filebased"

    def send(self, messages: list[EmailMessage], still_ours: Callable[[], bool]) -> list[Outcome]:
        """One outcome per message, in order. `still_ours()` is asked before each call to the ESP (one
        ask at a time, though maybe from a thread of the transport's own); once it says no, the rest are
        TAKEN, unsent. Once the ESP as a whole has failed, the rest are not sent and come back RETRY with
        `outage`."""
        ...

    def close(self) -> None: ...


def open_transport() -> Transport:
    """The transport for settings.EMAIL_BACKEND; close it when done (it is a context manager too).
    A backend that is not configured (an ESP's key missing, say) raises here, before anything is sent."""
    backend = get_connection()
    if isinstance(backend, PostmarkBackend) and not backend.use_bulk_api:
        return PostmarkTransport(backend)
    if isinstance(backend, AnymailBaseBackend) and not isinstance(backend, AnymailTestBackend):
        return PooledTransport(settings.DELIVERY_ESP_CONNECTIONS, first=backend)
    # Django's backends, and Anymail's test and console ones: no round trip to overlap, and the order of
    # the messages kept, as tests read it.
    return SerialTransport(backend)


def configured_name() -> str:
    """The name the senders keep the configured ESP's state under (a transport's `name`); "" when its
    backend cannot be made (a key missing, say)."""
    try:
        backend = get_connection()
    except Exception:  # noqa: BLE001 - said by the senders' own errors
        return ""
    return "postmark" if isinstance(backend, PostmarkBackend) and not backend.use_bulk_api else _esp_name(
        backend).lower()


def request_timeout() -> tuple[float, float]:
    """The longest one call to the ESP may take: to connect, then to answer."""
    timeout = settings.ANYMAIL.get("REQUESTS_TIMEOUT", (10.0, 20.0))
    return (timeout[0], timeout[1]) if isinstance(timeout, tuple | list) else (timeout, timeout)


def _esp_name(connection) -> str:
    """The ESP's label in metrics: Anymail's name for it ("Postmark"), or the Django backend's module."""
    return str(getattr(connection, "esp_name", "") or type(connection).__module__.rsplit(".", 1)[-1])[:30]


def _postmark_code(response) -> int | None:
    try:
        body = response.json()
    except Exception:  # noqa: BLE001 - no JSON, no code
        return None
    return _int_code(body) if isinstance(body, dict) else None


def _http_problem(status: int, code: int | None, text: str) -> str:
    """`code`: Postmark's ErrorCode, for Postmark's answers only."""
    if status >= 500 or status == 408:
        return SERVER_ERROR
    if status == 429:
        return RATE_LIMITED
    if status in _AUTH_HTTP_STATUS:
        return AUTH
    if code == _POSTMARK_MAINTENANCE:
        return SERVER_ERROR
    if code in _POSTMARK_ACCOUNT_CODES:
        return AUTH
    if status == 400 and _INVALID_RECIPIENT_TEXT.search(text):
        return REJECTED_ADDRESS
    return INVALID if 400 <= status < 500 else OTHER


# Exceptions of boto3 (Amazon SES through Anymail) named rather than imported: boto3 is installed only with SES.
_BOTO_UNREACHABLE = {"EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ConnectionClosedError",
                     "SSLError", "ProxyConnectionError"}
_BOTO_THROTTLED = {"Throttling", "ThrottlingException", "TooManyRequestsException", "MaxSendRateExceeded"}
# Our credentials or account, not the message: every email would be refused alike.
_BOTO_ACCOUNT = {"NoCredentialsError", "PartialCredentialsError", "AccountSuspendedException",
                 "SendingPausedException", "MailFromDomainNotVerifiedException", "AccessDenied",
                 "AccessDeniedException", "InvalidClientTokenId", "UnrecognizedClientException",
                 "SignatureDoesNotMatch", "ExpiredToken", "ConfigurationSetDoesNotExist"}


def _boto_problem(exc: BaseException) -> str | None:
    """What Amazon SES's client said, found in the chain of causes Anymail leaves on its error."""
    for _ in range(10):  # a chain of causes is short; a long one is not worth walking
        if exc is None:
            return None
        if type(exc).__name__ in _BOTO_UNREACHABLE:
            return UNREACHABLE
        if type(exc).__name__ in _BOTO_ACCOUNT:
            return AUTH
        response = getattr(exc, "response", None)
        if isinstance(response, dict) and isinstance(response.get("Error"), dict):
            code, text = str(response["Error"].get("Code", "")), str(response["Error"].get("Message", ""))
            if code in _BOTO_THROTTLED:
                return RATE_LIMITED
            # SES refuses a sender it has not verified with MessageRejected, as it would refuse every email.
            if code in _BOTO_ACCOUNT or (code == "MessageRejected" and "not verified" in text):
                return AUTH
            metadata = response.get("ResponseMetadata")
            status = metadata.get("HTTPStatusCode") if isinstance(metadata, dict) else None
            return _http_problem(status, None, text) if isinstance(status, int) else OTHER
        exc = exc.__cause__ or exc.__context__
    return None


def _smtp_problem(code: int) -> str:
    """An SMTP server's answer to this message: 4xx is "later" (busy, closing), 5xx refuses the message."""
    if 400 <= code < 500:
        return SERVER_ERROR
    return INVALID if 500 <= code < 600 else OTHER


# The words of a server that will not relay for us: our account or settings, whatever the address.
_RELAY_DENIED = re.compile(r"relay(ing)?\s+(access\s+)?denied|unable\s+to\s+relay|relay\s+not\s+permitted",
                           re.IGNORECASE)
# Anymail names the field of an address it cannot parse: the recipients', or ours (the sender, reply-to).
_RECIPIENT_FIELD = re.compile(r"in `(to|cc|bcc)`")


def _smtp_refused_recipients(exc: smtplib.SMTPRecipientsRefused) -> str:
    """The address's own fault unless the server says otherwise: it is closing (421), will not relay for us,
    or only asks to try later (4xx: greylisting, a domain it cannot resolve now), for this address alone."""
    answers = [(code, str(text)) for code, text in exc.recipients.values()
               if isinstance(code, int)] if isinstance(exc.recipients, dict) else []
    if any(code == 421 for code, _ in answers):
        return SERVER_ERROR
    if any(_RELAY_DENIED.search(text) for _, text in answers):
        return AUTH
    if answers and all(400 <= code < 500 for code, _ in answers):
        return INVALID
    return REJECTED_ADDRESS


def problem(exc: BaseException) -> str:
    """The class of what went wrong in a call to the ESP (see UNREACHABLE and the rest)."""
    if isinstance(exc, AnymailRecipientsRefused):
        return REJECTED_ADDRESS
    if isinstance(exc, AnymailInvalidAddress):
        # A sender or reply-to address that cannot be parsed is our settings, for every email alike.
        return REJECTED_ADDRESS if _RECIPIENT_FIELD.search(str(exc)) else AUTH
    if isinstance(exc, BadHeaderError | AnymailUnsupportedFeature | AnymailSerializationError):
        return INVALID
    if isinstance(exc, AnymailRequestsAPIError):  # also what Anymail raises for a requests exception
        if exc.status_code is None:
            return UNREACHABLE
        code = _postmark_code(exc.response) if exc.esp_name == "Postmark" else None
        return _http_problem(exc.status_code, code, str(exc))
    if isinstance(exc, AnymailAPIError) and (found := _boto_problem(exc)):
        return found
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return _smtp_refused_recipients(exc)
    # Before SMTP's answers in general: a refused greeting is an SMTPResponseException too.
    if isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPServerDisconnected | ssl.SSLError | ConnectionError
                  | TimeoutError | socket.gaierror):
        return UNREACHABLE
    if isinstance(exc, smtplib.SMTPNotSupportedError):  # no STARTTLS or AUTH where the settings ask for it
        return AUTH
    if isinstance(exc, smtplib.SMTPSenderRefused) and exc.smtp_code == 552:
        return INVALID  # the message is larger than the server takes
    if isinstance(exc, smtplib.SMTPAuthenticationError | smtplib.SMTPSenderRefused | smtplib.SMTPHeloError):
        # Refused us rather than this message: "later" for a 4xx, else our account or settings.
        return SERVER_ERROR if 400 <= exc.smtp_code < 500 else AUTH
    if isinstance(exc, smtplib.SMTPResponseException):
        return _smtp_problem(exc.smtp_code)
    if isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException):
        return UNREACHABLE  # no route, network unreachable and the rest of the socket's failures
    return OTHER


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


def _failure(exc: BaseException) -> Outcome:
    """What an exception from composing or sending one message means for it."""
    found, error = problem(exc), _error(exc)
    if found == REJECTED_ADDRESS:
        return Outcome(REJECTED, error=error, problem=found)
    if isinstance(exc, BadHeaderError | AnymailUnsupportedFeature | AnymailSerializationError) or (
            isinstance(exc, AnymailRequestsAPIError) and exc.status_code == 413) or (
            isinstance(exc, smtplib.SMTPSenderRefused) and exc.smtp_code == 552):
        # A bad header, a feature the ESP lacks, too big: so whenever it is tried.
        return Outcome(FAILED, error=error, problem=found)
    # Anything else that is this message's alone (a 400 or 422 about the sender, say) may go once the
    # operator has put it right: tried again until its give-up time.
    return Outcome(RETRY, error=error, outage=found in OUTAGE_PROBLEMS, problem=found)


def _not_sent(outage: Outcome) -> Outcome:
    """The outcome of a message left unsent because the ESP as a whole had just failed."""
    return Outcome(RETRY, error=f"not sent, the ESP failing: {outage.error}"[:2000], outage=True,
                   problem=outage.problem)


def _send_one(message: EmailMessage, backend) -> Outcome:
    try:
        with metrics.ESP_SECONDS.labels(_esp_name(backend)).time():
            backend.send_messages([message])
    except Exception as exc:  # noqa: BLE001 - whatever went wrong is said in the outcome
        return _failure(exc)
    status = getattr(message, "anymail_status", None)
    if status is None:
        return Outcome(SENT, esp_status="sent")
    return Outcome(SENT, message_id="" if status.message_id is None else str(status.message_id)[:200],
                   esp_status=",".join(sorted(status.status or []))[:50])


class _Closing:
    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class SerialTransport(_Closing):
    """One message at a time on one connection, in the caller's thread: Django's own backends."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.name = _esp_name(connection).lower()
        self.opened = False

    def send(self, messages: list[EmailMessage], still_ours: Callable[[], bool]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        outage: Outcome | None = None
        for message in messages:
            if outage:
                outcomes.append(_not_sent(outage))
                continue
            if not still_ours():
                return outcomes + [Outcome(TAKEN)] * (len(messages) - len(outcomes))
            try:
                if not self.opened:
                    # Opened here rather than at the start, so that an SMTP server that refuses the
                    # connection is an outcome like any other; kept open across messages and chunks.
                    self.connection.open()
                    self.opened = True
                outcome = _send_one(message, self.connection)
            except Exception as exc:  # noqa: BLE001 - opening failed: said in the outcome
                outcome = _failure(exc)
            if outcome.outage:
                outage = outcome
                self._reset()
            outcomes.append(outcome)
        return outcomes

    def _reset(self) -> None:
        """Drop a connection the ESP failed on: the next call opens a fresh one."""
        with contextlib.suppress(Exception):
            self.connection.close()
        self.opened = False

    def close(self) -> None:
        self.connection.close()


class _PostmarkBatch:
    """The payloads of many messages as one request to Postmark's batch endpoint. Anymail sends one message a
    call; this reuses its payload internals (`build_message_payload`, `.data`, `serialize_json`,
    `get_request_params`), which are not its public API: requirements.txt pins the version they were read from,
    and tests/test_transports.py sends through them to a Postmark stub."""

    def __init__(self, payloads: list) -> None:
        self.payloads = payloads
        self.data = [payload.data for payload in payloads]

    def get_request_params(self, api_url: str) -> dict:
        params = self.payloads[0].get_request_params(api_url)
        params["url"] = urljoin(api_url, "email/batch")
        params["data"] = self.payloads[0].serialize_json(self.data)
        return params


class PostmarkTransport(_Closing):
    """Postmark's batch endpoint: up to 500 messages a call, over one kept-alive session."""

    name = "postmark"

    def __init__(self, backend: PostmarkBackend) -> None:
        self.backend = backend
        backend.open()

    def close(self) -> None:
        self.backend.close()

    def send(self, messages: list[EmailMessage], still_ours: Callable[[], bool]) -> list[Outcome]:
        backend = self.backend
        outcomes: list[Outcome | None] = [None] * len(messages)
        outage: Outcome | None = None
        for start in range(0, len(messages), POSTMARK_BATCH_MAX):
            positions, payloads = [], []
            for position in range(start, min(start + POSTMARK_BATCH_MAX, len(messages))):
                try:
                    payloads.append(backend.build_message_payload(messages[position], backend.send_defaults))
                    positions.append(position)
                except Exception as exc:  # noqa: BLE001 - one message Anymail cannot build holds no other back
                    outcomes[position] = _failure(exc)
            if not payloads:
                continue
            if outage:
                for position in positions:
                    outcomes[position] = _not_sent(outage)
                continue
            if not still_ours():
                return [outcome or Outcome(TAKEN) for outcome in outcomes]
            try:
                with metrics.ESP_SECONDS.labels(_esp_name(backend)).time():
                    response = backend.post_to_esp(_PostmarkBatch(payloads), messages[positions[0]])
                results = response.json()
            except Exception as exc:  # noqa: BLE001 - the whole call failed (429, 5xx, time-out, ...): all retry
                found = problem(exc)
                failure = Outcome(RETRY, error=_error(exc), outage=found in OUTAGE_PROBLEMS, problem=found)
                if failure.outage or getattr(exc, "status_code", None) != 422:
                    for position in positions:
                        outcomes[position] = failure
                    if failure.outage:
                        outage = failure
                    continue
                results = None
            if isinstance(results, dict) and _int_code(results) in _POSTMARK_OUTAGE_CODES:
                # Refused as a whole for a reason of our account's (Anymail leaves 422s to us): every message
                # alone would be refused alike.
                outage = _postmark_outcome(results)
                for position in positions:
                    outcomes[position] = outage
                continue
            refused = results is None or response.status_code == 422
            readable = isinstance(results, list) and len(results) == len(payloads)
            if not refused and not readable:
                # An answer that is not one result per message: the batch may have been taken, so none is
                # sent again now; they are tried again later, as after any failed call.
                failure = Outcome(RETRY, error=f"Postmark answered {str(results)[:500]}", problem=OTHER)
                for position in positions:
                    outcomes[position] = failure
                continue
            if not readable:
                # Refused as a whole (a 422): one message may be the cause, so each is sent alone, and only
                # that one is held back.
                for position in positions:
                    if outage:
                        outcomes[position] = _not_sent(outage)
                    elif not still_ours():
                        outcomes[position] = Outcome(TAKEN)
                    else:
                        outcomes[position] = _send_one(messages[position], backend)
                        if outcomes[position].outage:
                            outage = outcomes[position]
                continue
            for position, result in zip(positions, results, strict=True):
                outcomes[position] = _postmark_outcome(result)
                if outage is None and outcomes[position].outage:
                    outage = outcomes[position]
        return [outcome or Outcome(RETRY, error="not sent", problem=OTHER) for outcome in outcomes]


def _int_code(result: dict) -> int | None:
    code = result.get("ErrorCode", 0)
    return code if isinstance(code, int) else None


def _postmark_outcome(result) -> Outcome:
    if not isinstance(result, dict) or (code := _int_code(result)) is None:
        return Outcome(RETRY, error=f"Postmark answered {str(result)[:500]}", problem=OTHER)
    text = str(result.get("Message", ""))
    if code == 0 and result.get("MessageID"):
        return Outcome(SENT, message_id=str(result["MessageID"])[:200],
                       esp_status="queued" if "delivery may be delayed" in text else "sent")
    error = f"Postmark error {code}: {text}"[:2000]
    if code == 406 or (code == 300 and _POSTMARK_INVALID_RECIPIENT.match(text)):
        return Outcome(REJECTED, error=error, problem=REJECTED_ADDRESS)
    if code in _POSTMARK_OUTAGE_CODES:
        return Outcome(RETRY, error=error, outage=True, problem=_http_problem(200, code, text))
    return Outcome(RETRY, error=error, problem=INVALID)


@dataclass
class _Round:
    """One chunk being sent through the pool: who takes which message next, and what stops the rest."""

    messages: list[EmailMessage]
    still_ours: Callable[[], bool]
    outcomes: list[Outcome | None]
    lock: threading.Lock
    next: int = 0
    taken: bool = False
    outage: Outcome | None = None


class PooledTransport(_Closing):
    """Any Anymail ESP, one message per call, on `size` threads each with a backend of its own: each
    thread's session keeps its connection alive from one message, and chunk, to the next."""

    def __init__(self, size: int, first: AnymailBaseBackend | None = None) -> None:
        self.size = max(1, size)
        first = first or get_connection()
        self.name = _esp_name(first).lower()
        self.spare = [first]  # for the first thread, so that no backend is made for nothing
        self.backends: list = []
        self.local = threading.local()
        self.lock = threading.Lock()
        self.threads = ThreadPoolExecutor(self.size, thread_name_prefix="esp-pool")

    def _backend(self):
        backend = getattr(self.local, "backend", None)
        if backend is None:
            with self.lock:
                backend = self.spare.pop() if self.spare else get_connection()
                self.backends.append(backend)
            backend.open()
            if isinstance(backend, AnymailRequestsBackend) and backend.session is not None:
                backend.session = _multipart_forms(backend.session)
            self.local.backend = backend
        return backend

    def send(self, messages: list[EmailMessage], still_ours: Callable[[], bool]) -> list[Outcome]:
        chunk = _Round(messages, still_ours, [None] * len(messages), threading.Lock())
        for call in [self.threads.submit(self._work, chunk) for _ in range(min(self.size, len(messages)))]:
            call.result()
        return [outcome or Outcome(RETRY, error="not sent", problem=OTHER) for outcome in chunk.outcomes]

    def _work(self, chunk: _Round) -> None:
        while True:
            with chunk.lock:
                # Handed out in order and decided under the lock, so `still_ours` is asked by one thread
                # at a time and nothing is sent after it said no or after the ESP failed.
                position = chunk.next
                if position >= len(chunk.messages):
                    return
                chunk.next += 1
                if not chunk.taken and chunk.outage is None and not chunk.still_ours():
                    chunk.taken = True
                if chunk.taken:
                    chunk.outcomes[position] = Outcome(TAKEN)
                    continue
                if chunk.outage is not None:
                    chunk.outcomes[position] = _not_sent(chunk.outage)
                    continue
            try:
                outcome = _send_one(chunk.messages[position], self._backend())
            except Exception as exc:  # noqa: BLE001 - a backend that cannot be opened: said in the outcome
                outcome = _failure(exc)
            chunk.outcomes[position] = outcome
            if outcome.outage:
                with chunk.lock:
                    chunk.outage = chunk.outage or outcome

    def close(self) -> None:
        self.threads.shutdown(wait=True)
        for backend in self.backends + self.spare:
            with contextlib.suppress(Exception):
                backend.close()
        self.backends, self.spare = [], []


class _MultipartForms(requests.Session):
    """Form fields posted as multipart/form-data rather than URL-encoded (Mailgun's send API reads both,
    and documents the first): percent-encoding an alert email's 36 kB in Python, a byte at a time, cost
    the sender more CPU than composing the email. JSON bodies, and forms with files, go as they were."""

    def request(self, method, url, data=None, files=None, headers=None, **kwargs):
        if data and not files and not isinstance(data, str | bytes):
            fields = [(name, value) for name, values in to_key_val_list(data)
                      for value in (values if isinstance(values, list | tuple) else [values]) if value is not None]
            data, content_type = encode_multipart_formdata(fields)
            headers = {**(headers or {}), "Content-Type": content_type}
        return super().request(method, url, data=data, files=files, headers=headers, **kwargs)


def _multipart_forms(session: requests.Session) -> requests.Session:
    """Anymail's session, with all it was set up with, posting its forms as multipart."""
    forms = _MultipartForms()
    forms.close()
    vars(forms).update(vars(session))
    return forms
