"""Handing composed emails to the ESP, and classing what it said about each: sent, rejected or retry.

Postmark takes up to 500 different messages in one call (`/email/batch`): those are built with
Anymail's own Postmark payload code and posted over Anymail's session, so a chunk of emails costs one
round trip. Every other backend sends one message at a time through plain Anymail (or Django).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

from anymail.backends.postmark import EmailBackend as PostmarkBackend
from anymail.exceptions import (
    AnymailInvalidAddress,
    AnymailRecipientsRefused,
    AnymailSerializationError,
    AnymailUnsupportedFeature,
)
from django.core.mail import BadHeaderError, EmailMessage

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


@dataclass(frozen=True)
class Outcome:
    status: str
    message_id: str = ""
    esp_status: str = ""
    error: str = ""
    outage: bool = False


def _failure(exc: BaseException) -> Outcome:
    """What an exception from composing or sending one message means for it."""
    error = f"{type(exc).__name__}: {exc}"[:2000]
    if isinstance(exc, AnymailRecipientsRefused | AnymailInvalidAddress):
        return Outcome(REJECTED, error=error)
    if isinstance(exc, BadHeaderError | AnymailUnsupportedFeature | AnymailSerializationError):
        return Outcome(FAILED, error=error)
    return Outcome(RETRY, error=error)


def send(messages: list[EmailMessage], connection, still_ours: Callable[[], bool]) -> list[Outcome]:
    """One outcome per message, in order. `still_ours()` is asked before each call to the ESP; once it
    says no, the rest are left TAKEN, unsent."""
    if isinstance(connection, PostmarkBackend) and not connection.use_bulk_api:
        return _postmark_batches(messages, connection, still_ours)
    outcomes = []
    for message in messages:
        if not still_ours():
            return outcomes + [Outcome(TAKEN)] * (len(messages) - len(outcomes))
        outcomes.append(_send_one(message, connection))
    return outcomes


def _esp_name(connection) -> str:
    return str(getattr(connection, "esp_name", "") or type(connection).__module__.rsplit(".", 1)[-1])[:30]


def _send_one(message: EmailMessage, connection) -> Outcome:
    try:
        with metrics.ESP_SECONDS.labels(_esp_name(connection)).time():
            connection.send_messages([message])
    except Exception as exc:  # noqa: BLE001 - whatever went wrong is this message's alone
        return _failure(exc)
    status = getattr(message, "anymail_status", None)
    if status is None:
        return Outcome(SENT, esp_status="sent")
    return Outcome(SENT, message_id="" if status.message_id is None else str(status.message_id)[:200],
                   esp_status=",".join(sorted(status.status or []))[:50])


class _PostmarkBatch:
    """The payloads of many messages as one request to Postmark's batch endpoint."""

    def __init__(self, payloads: list) -> None:
        self.payloads = payloads
        self.data = [payload.data for payload in payloads]

    def get_request_params(self, api_url: str) -> dict:
        params = self.payloads[0].get_request_params(api_url)
        params["url"] = urljoin(api_url, "email/batch")
        params["data"] = self.payloads[0].serialize_json(self.data)
        return params


def _postmark_batches(messages: list[EmailMessage], backend: PostmarkBackend,
                      still_ours: Callable[[], bool]) -> list[Outcome]:
    outcomes: list[Outcome | None] = [None] * len(messages)
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
        if not still_ours():
            return [outcome or Outcome(TAKEN) for outcome in outcomes]
        try:
            with metrics.ESP_SECONDS.labels(_esp_name(backend)).time():
                response = backend.post_to_esp(_PostmarkBatch(payloads), messages[positions[0]])
            results = response.json()
        except Exception as exc:  # noqa: BLE001 - the whole call failed (429, 5xx, time-out, ...): all retry
            for position in positions:
                outcomes[position] = Outcome(RETRY, error=f"{type(exc).__name__}: {exc}"[:2000])
            continue
        if not isinstance(results, list) or len(results) != len(payloads):
            # Refused as a whole (a 422): one message may be the cause, so each is sent alone, and only
            # that one is held back.
            for position in positions:
                outcomes[position] = _send_one(messages[position], backend) if still_ours() else Outcome(TAKEN)
            continue
        for position, result in zip(positions, results, strict=True):
            outcomes[position] = _postmark_outcome(result)
    return [outcome or Outcome(RETRY, error="not sent") for outcome in outcomes]


def _postmark_outcome(result) -> Outcome:
    if not isinstance(result, dict):
        return Outcome(RETRY, error=f"Postmark answered {str(result)[:500]}")
    code, text = result.get("ErrorCode", 0), str(result.get("Message", ""))
    if code == 0 and result.get("MessageID"):
        return Outcome(SENT, message_id=str(result["MessageID"])[:200],
                       esp_status="queued" if "delivery may be delayed" in text else "sent")
    error = f"Postmark error {code}: {text}"[:2000]
    if code == 406 or (code == 300 and _POSTMARK_INVALID_RECIPIENT.match(text)):
        return Outcome(REJECTED, error=error)
    return Outcome(RETRY, error=error)


class _Connection:
    def __init__(self) -> None:
        from django.core.mail import get_connection

        self.connection = get_connection()
        self.connection.open()
        self.name = _esp_name(self.connection)

    def send(self, messages, still_ours):
        from dataclasses import replace

        return [replace(o, outage=o.status == RETRY and "AnymailRequestsAPIError" in o.error)
                for o in send(messages, self.connection, still_ours)]

    def close(self) -> None:
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_transport():
    return _Connection()
