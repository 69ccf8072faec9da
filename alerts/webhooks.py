"""What ESPs tell us through Anymail's tracking webhooks: bounces and complaints stop all email.

Only the tracking webhook of the ESP that sends our email is served, and only with the settings that
authenticate it for Anymail (a shared secret, or the ESP's own signing key): a webhook anyone could post
to would let anyone silence any address. Events are taken one at a time, so one the ESP garbled does
not lose the others beside it; a signed token is taken once; and an event older than its ESP could
report is a replay, which changes nobody's email.
"""

from __future__ import annotations

import copy
import datetime as dt
import importlib.util
import json
import logging
import re
from dataclasses import dataclass

import anymail.urls
from anymail.backends.base import AnymailBaseBackend
from anymail.exceptions import AnymailError, AnymailWebhookValidationFailure
from anymail.signals import AnymailTrackingEvent, tracking
from anymail.utils import get_anymail_setting
from django.conf import settings
from django.db import DataError, IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.utils import timezone
from django.utils.module_loading import import_string
from django.views.decorators.csrf import csrf_exempt

from alerts import metrics
from alerts.models import Delivery, Subscriber, WebhookEvent, WebhookToken
from alerts.retention import remember_suppressed
from questions.records import UNSTORABLE, clean

log = logging.getLogger(__name__)

SUPPRESSING = {
    # Anymail's "bounced", less those its ESP says may pass (PASSING_BOUNCE); "deferred" is a soft bounce.
    "bounced": Subscriber.Suppression.BOUNCED,
    "complained": Subscriber.Suppression.COMPLAINED,
    "unsubscribed": Subscriber.Suppression.UNSUBSCRIBED,
}
# An email the ESP would not even send (SendGrid's "dropped", say), because the address is on its own
# list of bounced, complaining or unsubscribed ones, or is no address at all: ours must stop too.
REJECTED_FOR = {
    "bounced": Subscriber.Suppression.BOUNCED,
    "invalid": Subscriber.Suppression.BOUNCED,
    "spam": Subscriber.Suppression.COMPLAINED,
    "unsubscribed": Subscriber.Suppression.UNSUBSCRIBED,
}
# SendGrid's reason for a drop that Anymail does not map.
SENDGRID_DROPPED_FOR = {"spam reporting address": Subscriber.Suppression.COMPLAINED}

# What is wrong with an event or payload as sent, rather than with us: answered without a 500, which
# the ESP would retry for ever. A database that is down is not among them: that the ESP should retry.
UNREADABLE = (ValueError, TypeError, KeyError, AttributeError, IndexError, RecursionError, OverflowError,
              UnicodeError, DataError)
# Anymail reads a payload without I/O, so an OSError there is a timestamp beyond what the platform's clock
# can hold (errno 75 for 10**18), not a fault of ours. Not so once the event is being taken.
UNPARSABLE = (*UNREADABLE, OSError)


@dataclass(frozen=True)
class Signing:
    """An ESP's own webhook signature, as Anymail reads its key."""

    setting: str  # after ANYMAIL_<ESP>_, as Anymail spells it
    bare: bool = False  # Anymail also reads it without the ANYMAIL_ prefix
    required: bool = False  # Anymail's webhook will not run without it, whatever WEBHOOK_SECRET says
    needs: str = ""  # the package Anymail needs to check it


# ESP -> what authenticates its tracking webhook in Anymail (django-anymail 15). WEBHOOK_SECRET (HTTP basic
# auth) is checked for every ESP whenever it is set; the ESPs without an entry's signing have nothing else.
# Amazon SES: Anymail does not verify SNS signatures, so basic auth it is. Mailgun: Anymail would fall back
# to the API key, which Mailgun no longer signs with, so every genuine webhook would be refused.
WEBHOOK_AUTH: dict[str, Signing | None] = {
    "amazon_ses": None,
    "brevo": None,
    "mailersend": Signing("SIGNING_SECRET", required=True),
    "mailgun": Signing("WEBHOOK_SIGNING_KEY", required=True),
    "mailjet": None,
    "mailtrap": Signing("TRACKING_SECRET"),
    "postal": Signing("WEBHOOK_KEY", bare=True, required=True, needs="cryptography"),
    "postmark": None,
    "resend": Signing("SIGNING_SECRET", needs="svix"),
    "sendgrid": Signing("TRACKING_WEBHOOK_VERIFICATION_KEY", bare=True, needs="cryptography"),
    "sendinblue": None,
    "sparkpost": None,
    "unisender_go": Signing("API_KEY", bare=True, required=True),
}

# How old an event can be when its ESP posts it: the ESP's retries of a webhook we failed to take, and a
# day for queues in front of it. Older, it is a replay, and stops nobody's email. Mailgun retries for
# 8 hours, Postmark for 10.5, Brevo for 11; SendGrid for 72, the longest we know of, so it is the default.
EVENT_MAX_AGE = {"mailgun": dt.timedelta(days=1), "postmark": dt.timedelta(days=1),
                 "brevo": dt.timedelta(days=1), "sendinblue": dt.timedelta(days=1)}
DEFAULT_EVENT_MAX_AGE = dt.timedelta(days=4)
# How far the ESP's clock may be from ours, and its timestamps rounded.
CLOCK_SKEW = dt.timedelta(minutes=1)
# How far a signed timestamp may be from our clock. Mailgun retries a post we failed to take for 8 hours,
# and may send the signature it first made with each retry: a window that closed sooner would refuse the
# retries after an outage of ours (406, never retried), and their bounces would be lost. Replays within it
# are refused by their token, which is kept longer than this (WebhookToken.KEEP).
SIGNATURE_MAX_SKEW = dt.timedelta(hours=12)

WEAK_PASSWORD = re.compile(r"password|secret|changeme|example|letmein|qwerty|123456|abcdef", re.IGNORECASE)
MIN_PASSWORD = 16


def configured_esp() -> str | None:
    """The Anymail ESP that sends our email (as in its webhook addresses: "postmark", "amazon_ses"), or
    None; a backend of our own built on an Anymail one counts as that ESP."""
    try:
        backend = import_string(settings.EMAIL_BACKEND)
    except ImportError:
        # Its own requirements missing (boto3 for Amazon SES, say): known by its path all the same.
        found = re.fullmatch(r"anymail\.backends\.(\w+)\.EmailBackend", settings.EMAIL_BACKEND)
        esp = found.group(1) if found else ""
    else:
        anymail = isinstance(backend, type) and issubclass(backend, AnymailBaseBackend)
        esp = getattr(backend, "esp_name", "").lower().replace(" ", "_") if anymail else ""
    return esp if esp and esp not in {"test", "console"} else None


def _secret_problem(secret) -> str:
    """What is wrong with one WEBHOOK_SECRET entry ("user:password"), or ""."""
    if not isinstance(secret, str):
        return "is not text"
    user, colon, password = secret.partition(":")
    if not colon:
        return "has no colon: it must be user:password"
    if not user or not password:
        return "has an empty user or password"
    if password != password.strip() or user != user.strip():
        return "has spaces around its user or password, which the ESP would not send"
    if len(password) < MIN_PASSWORD:
        return f"has a password shorter than {MIN_PASSWORD} characters"
    if len(set(password)) < 10 or WEAK_PASSWORD.search(password):
        return "has a password that is easy to guess (a common word, or too few different characters)"
    return ""


def webhook_secrets() -> list:
    secrets = get_anymail_setting("webhook_secret", default=None)
    if secrets is None or secrets == "":
        return []
    return [secrets] if isinstance(secrets, str) else list(secrets) if isinstance(secrets, (list, tuple)) else [secrets]


def signing_key(esp: str) -> str:
    signing = WEBHOOK_AUTH.get(esp)
    if signing is None:
        return ""
    value = get_anymail_setting(signing.setting.lower(), esp_name=esp, default=None, allow_bare=signing.bare)
    return value if isinstance(value, str) else ""


def auth_settings(esp: str) -> str:
    """The settings that would authenticate this ESP's tracking webhook, in words."""
    signing = WEBHOOK_AUTH[esp]
    key = f"ANYMAIL_{esp.upper()}_{signing.setting}" if signing else ""
    if signing and signing.required:
        return f"{key} (its webhook signing key)"
    secret = "ANYMAIL_WEBHOOK_SECRET=user:password (a random password of 16 or more characters, given to the ESP " \
             "in the webhook URL)"
    return f"{secret}, or {key} (its webhook signing key)" if signing else secret


def webhook_problems(esp: str, strict: bool = True) -> list[str]:
    """Why this ESP's tracking webhook is not safe to serve; none if it is. Not `strict`: only what would
    let anyone in (no secret, or one anyone could send), which the webhook refuses to serve even when
    start-up checks were not run; the checks refuse a weak password too."""
    if esp not in WEBHOOK_AUTH:
        return []
    problems = []
    secrets = webhook_secrets()
    for secret in secrets:
        problem = _secret_problem(secret)
        open_to_all = problem and not problem.startswith(("has a password", "has spaces"))
        if problem and (strict or open_to_all):
            problems.append(f"ANYMAIL_WEBHOOK_SECRET {problem}")
    signing = WEBHOOK_AUTH[esp]
    key = signing_key(esp)
    if signing and key and signing.needs and importlib.util.find_spec(signing.needs) is None:
        problems.append(f"ANYMAIL_{esp.upper()}_{signing.setting} is set, but Anymail needs the {signing.needs} "
                        "package to check it, and it is not installed")
    elif signing and signing.required and not key:
        problems.append(f"{esp} signs its webhooks, and Anymail will not take them without "
                        f"ANYMAIL_{esp.upper()}_{signing.setting}")
    elif not key and not secrets:
        problems.append(f"Email goes through {esp}, but its tracking webhook has no secret: anyone could post a "
                        "forged bounce and silence any address")
    return problems


def _anymail_view(esp: str):
    for pattern in anymail.urls.urlpatterns:
        if str(pattern.pattern) == f"{esp}/tracking/":
            return pattern.callback
    return None


class Refused(Exception):
    """A post that authenticated, but that must not be taken: a stale or reused signed token."""


class Unreadable(ValueError):
    """A payload Anymail cannot read, nor any event of it."""


def _refuse_replays(esp: str, request: HttpRequest) -> None:
    """Mailgun signs a timestamp and a token, not the event: a signature seen before, or one signed long
    ago, would vouch for whatever is glued to it."""
    if esp != "mailgun":
        return
    if request.content_type == "application/json":
        signature = json.loads(request.body.decode("utf-8"))["signature"]
    else:
        signature = request.POST
    token, signed = str(signature["token"]), float(signature["timestamp"])
    # Compared as numbers first: a timestamp no date can hold (or NaN) is refused, not a 500.
    if not abs(timezone.now().timestamp() - signed) <= SIGNATURE_MAX_SKEW.total_seconds():
        raise Refused("signed too far from now")
    signed_at = dt.datetime.fromtimestamp(signed, tz=dt.UTC)
    try:
        with transaction.atomic():
            WebhookToken.objects.create(esp=esp, token=clean(token)[:200], signed_at=signed_at)
    except IntegrityError:
        raise Refused("its token was used before") from None


class _EventByEvent:
    """Stands in for Anymail's tracking signal for one post: each event is taken in a savepoint of its
    own, and one that cannot be taken is logged and skipped, the others kept."""

    def __init__(self, esp: str) -> None:
        self.esp = esp
        self.taken = self.skipped = 0

    def skip(self, what: str) -> None:
        self.skipped += 1
        log.warning("webhook event skipped", exc_info=True, extra={"esp": self.esp, "event": what})

    def send(self, sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
        try:
            with transaction.atomic():
                tracking.send(sender=sender, event=event, esp_name=esp_name, **kwargs)
        except UNREADABLE:
            self.skip(str(getattr(event, "event_type", "") or "unknown")[:30])
        else:
            self.taken += 1


def _one_at_a_time(view, request: HttpRequest, signal: _EventByEvent) -> list[AnymailTrackingEvent]:
    """The post's events as Anymail reads them; a batch (a JSON array) Anymail cannot read as a whole is
    read an item at a time, and the items it cannot read are skipped."""
    _refuse_replays(signal.esp, request)
    parse = type(view).parse_events
    try:
        return parse(view, request)
    except UNPARSABLE as error:
        try:
            items = json.loads(request.body.decode("utf-8"))
        except UNREADABLE:
            items = None
        if not isinstance(items, list) or len(items) < 2:
            raise Unreadable(str(error)) from error
    events = []
    for item in items:
        single = copy.copy(request)
        single._body = json.dumps([item]).encode()
        for cached in ("_parsed_json", "_sns_message"):
            single.__dict__.pop(cached, None)
        try:
            events.extend(parse(view, single))
        except UNPARSABLE:
            signal.skip("unreadable")
    return events


@csrf_exempt
def tracking_webhook(request: HttpRequest, esp: str) -> HttpResponse:
    callback = _anymail_view(esp)
    if esp != configured_esp() or callback is None or webhook_problems(esp, strict=False):
        raise Http404("no such webhook")
    view = callback.view_class(**callback.view_initkwargs)
    view.setup(request)
    signal = _EventByEvent(esp)
    view.signal = signal
    view.parse_events = lambda request: _one_at_a_time(view, request, signal)
    unreadable = None
    try:
        # The token and the events it vouches for, together: a fault of ours (the database failing, a 500
        # that Mailgun retries) rolls the token back with them, so the retry is not refused as a replay.
        # Whatever else follows a good signature uses its token up, a post of which nothing can be read
        # included: else anyone who saw it could glue a forged event to its signature.
        with transaction.atomic():
            try:
                response = view.dispatch(request)
            except AnymailWebhookValidationFailure:
                raise
            except (*UNREADABLE, AnymailError) as error:
                unreadable = error  # each event was taken in a savepoint of its own: only the token is kept
    except Refused as refused:
        log.warning("webhook refused as a replay", extra={"esp": esp, "reason": str(refused)})
        # Mailgun does not retry a 406.
        return HttpResponse(f"Refused: {refused}.", status=406, content_type="text/plain")
    if unreadable is not None:
        # What the ESP sent cannot be read (not JSON, not an object, not UTF-8). Logged in full, as a
        # fault of ours would look the same.
        log.error("webhook refused", exc_info=unreadable, extra={"esp": esp})
        return HttpResponseBadRequest("The payload cannot be read.")
    if signal.skipped and not signal.taken:
        return HttpResponseBadRequest("No event in the payload can be read.")
    return response


def _as_utc(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None or timezone.is_aware(moment):
        return moment
    return timezone.make_aware(moment, dt.UTC)


def _clean(text, limit: int) -> str:
    return clean(str(text or ""))[:limit]


def _sparkpost_class(raw: dict) -> str:
    (event,) = raw["msys"].values()
    return str(event.get("bounce_class"))


# Bounces Anymail reports as "bounced" that their ESP says may pass (a full mailbox, a block by the
# receiving server, a virus scan): the address is not dead, and its email must not stop for good.
PASSING_BOUNCE = {
    "postmark": lambda raw: raw.get("Type") in {"SoftBounce", "VirusNotification"},
    "sendgrid": lambda raw: raw.get("type") == "blocked",
    "mailjet": lambda raw: not raw.get("hard_bounce"),
    # SparkPost's hard bounce classes: invalid recipient, and no RCPT.
    "sparkpost": lambda raw: _sparkpost_class(raw) not in {"10", "30"},
    "brevo": lambda raw: raw.get("event") == "soft_bounce",
    "sendinblue": lambda raw: raw.get("event") == "soft_bounce",
    "amazon_ses": lambda raw: raw.get("bounce", {}).get("bounceType") != "Permanent",
    "mailersend": lambda raw: raw.get("data", {}).get("type") == "soft_bounced",
}


def _reason(event: AnymailTrackingEvent, esp: str) -> str | None:
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    if event.event_type == "rejected":
        dropped = str(raw.get("reason") or "").lower() if esp == "sendgrid" else ""
        return SENDGRID_DROPPED_FOR.get(dropped) or REJECTED_FOR.get(event.reject_reason or "")
    if event.event_type == "bounced" and esp in PASSING_BOUNCE:
        try:
            if PASSING_BOUNCE[esp](raw):
                return None
        except (AttributeError, KeyError, TypeError, ValueError):
            pass  # a shape the ESP does not send: Anymail's word stands
    return SUPPRESSING.get(event.event_type)


def record_tracking_event(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    if UNSTORABLE.search(str(event.recipient or "")):
        raise ValueError("the recipient is not an address")
    message_id = _clean(event.message_id, 200)
    ours = Delivery.objects.filter(esp_message_id=message_id).select_related("subscriber").first() \
        if message_id else None
    # Postmark's "Unsubscribe request" names no address, only the email it was about: the address that email went
    # to, which for a change of address or its notice is not the subscriber's.
    recipient = str(event.recipient or (ours and (ours.to_email or ours.subscriber.email)) or "")[:254]
    event_type = _clean(event.event_type, 30)
    metrics.WEBHOOK_EVENTS.labels(esp_name[:30], event_type or "unknown").inc()
    WebhookEvent.objects.create(esp=esp_name[:30], event_type=event_type, recipient=recipient,
                                message_id=message_id,
                                description=_clean(event.description or event.mta_response, 2000))
    if message_id:
        Delivery.objects.filter(esp_message_id=message_id).update(esp_status=event_type[:50])
    esp = esp_name.lower().replace(" ", "_")
    reason = _reason(event, esp)
    if not reason or not recipient:
        return
    happened = _as_utc(event.timestamp)
    if happened and timezone.now() - happened > EVENT_MAX_AGE.get(esp, DEFAULT_EVENT_MAX_AGE):
        log.warning("webhook event ignored: older than its ESP reports", extra={
            "esp": esp_name, "event": event_type, "message_id": message_id, "happened": happened.isoformat()})
        return
    known = False
    for subscriber in Subscriber.objects.filter(email__iexact=recipient):
        known = True
        if happened and not ours and subscriber.created_at - happened > CLOCK_SKEW:
            # About an email we never sent, from before this address signed up: not about this subscriber.
            log.warning("webhook event ignored: from before the address signed up", extra={
                "esp": esp_name, "event": event_type, "message_id": message_id})
            return
        subscriber.suppress(reason)
    if not known and reason != Subscriber.Suppression.UNSUBSCRIBED:
        # An address erased after it left, or never ours: should it sign up again, it stays stopped.
        remember_suppressed(recipient, reason)
    log.info("address suppressed", extra={"esp": esp_name, "event": event_type, "message_id": message_id,
                                          "recipient_known": known})
