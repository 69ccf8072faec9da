"""The `/metrics` page: what every process counted (`alerts.metrics`, `questions.metrics`), added up, with what
the database holds (queues and their age, suppressions, sources, the canary) read at each scrape, for a scraper
that shows the token or comes from an allowed address.
"""

from __future__ import annotations

import hmac
import ipaddress

from django.conf import settings
from django.db.models import Count, Min
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.module_loading import import_string
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from alerts import canary, digests
from alerts.models import CanaryProbe, Delivery, Subscriber, Subscription
from config.observability import BrokerCollector, BuildInfoCollector
from questions.models import Question, QuestionEvent, Source


def _age(oldest) -> float:
    return max(0.0, (timezone.now() - oldest).total_seconds()) if oldest else 0.0


class DatabaseCollector:
    """The state of the queues and sources, read from the database at each scrape."""

    def collect(self):
        unmatched = QuestionEvent.objects.filter(matched_at__isnull=True).aggregate(n=Count("id"),
                                                                                    oldest=Min("created_at"))
        yield GaugeMetricFamily("wqa_unmatched_events", "Question events not yet matched.", value=unmatched["n"])
        yield GaugeMetricFamily("wqa_oldest_unmatched_event_age_seconds",
                                "Age of the oldest question event not yet matched (0 when none).",
                                value=_age(unmatched["oldest"]))
        statuses = GaugeMetricFamily("wqa_deliveries", "Emails in the database, by status.", labels=["status"])
        counts = dict(Delivery.objects.order_by().values_list("status").annotate(n=Count("id")))
        for status in Delivery.Status.values:
            statuses.add_metric([status], counts.get(status, 0))
        yield statuses
        yield GaugeMetricFamily("wqa_digest_runs_late", "Digest runs missed, not made or not finished "
                                "DIGEST_LATE_SECONDS after their period ended.", value=len(digests.late_runs()))
        down = GaugeMetricFamily("wqa_esp_down", "1 while the ESP fails as a whole and senders hold back.",
                                 labels=["esp"])
        refused = GaugeMetricFamily("wqa_esp_refused", "1 while the ESP refuses our credentials or account "
                                    "(its latest failure is of class auth): nothing goes until an operator acts.",
                                    labels=["esp"])
        # The senders' ESP always has its series, at 0 until it has failed as a whole.
        state = canary.esp_state()
        if state.esp:
            down.add_metric([state.esp], 0 if state.down_since is None else 1)
            refused.add_metric([state.esp], 1 if canary.refuses_us(state) else 0)
        yield down
        yield refused
        due = Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=timezone.now())
        yield GaugeMetricFamily("wqa_oldest_due_delivery_age_seconds",
                                "How long the oldest email that is due has been waiting (0 when none).",
                                value=_age(due.aggregate(oldest=Min("next_attempt_at"))["oldest"]))
        suppressed = GaugeMetricFamily("wqa_suppressed_addresses", "Addresses we send nothing to, by reason.",
                                       labels=["reason"])
        reasons = dict(Subscriber.objects.filter(suppressed_at__isnull=False).order_by()
                       .values_list("suppressed_reason").annotate(n=Count("id")))
        for reason in Subscriber.Suppression.values:
            suppressed.add_metric([reason], reasons.get(reason, 0))
        yield suppressed
        yield GaugeMetricFamily("wqa_active_alerts", "Alerts that receive emails.",
                                value=Subscription.objects.receiving().count())
        yield GaugeMetricFamily("wqa_questions", "Questions in the archive.", value=Question.objects.public().count())
        success = GaugeMetricFamily("wqa_source_last_success_age_seconds",
                                    "Time since each enabled source was last polled successfully.", labels=["source"])
        failures = GaugeMetricFamily("wqa_source_consecutive_failures",
                                     "Failed polls of each enabled source since its last success.", labels=["source"])
        for source in Source.objects.filter(enabled=True):
            success.add_metric([source.name], _age(source.last_success_at or source.created_at))
            failures.add_metric([source.name], source.consecutive_failures)
        yield success
        yield failures
        problems = canary.delivery_problems()
        yield GaugeMetricFamily("wqa_delivery_healthy", "1 when alerts are reaching inboxes as "
                                "/healthz?checks=delivery judges it (the queues' lag, and the canary if any), else 0.",
                                value=0 if problems else 1)
        if canary.enabled():
            yield GaugeMetricFamily("wqa_canary_healthy", "1 when the canary's latest probe arrived in time, else 0.",
                                    value=0 if canary.canary_problems() else 1)
            last = CanaryProbe.objects.filter(outcome=CanaryProbe.Outcome.OK).first()
            yield GaugeMetricFamily("wqa_canary_last_seconds",
                                    "From storing the canary's question to its email, in its latest probe that "
                                    "arrived.",
                                    value=last.seconds if last and last.seconds is not None else float("nan"))


def allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """METRICS_ALLOWED_IPS as networks; what is not one is left out (and refused by check alerts.E002)."""
    networks = []
    for allowed in settings.METRICS_ALLOWED_IPS:
        try:
            networks.append(ipaddress.ip_network(allowed.strip(), strict=False))
        except ValueError:
            continue
    return networks


def _allowed(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    given = request.headers.get("Authorization", "")
    if token and hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        return True
    # The client's address found as for rate limits: behind a proxy named in TRUSTED_PROXIES, the one it saw;
    # otherwise the connection's own, whatever X-Forwarded-For claims.
    try:
        address = ipaddress.ip_address(import_string(settings.RATELIMIT_IP_META_KEY)(request))
    except ValueError:
        return False
    return any(address in network for network in allowed_networks())


def metrics_text() -> bytes:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(settings.METRICS_DIR))
    registry.register(DatabaseCollector())
    registry.register(BrokerCollector())
    registry.register(BuildInfoCollector())
    return generate_latest(registry)


def metrics_page(request: HttpRequest) -> HttpResponse:
    """The metrics, for a scraper that shows the token or comes from an allowed address; for anyone else
    the page does not exist."""
    if not _allowed(request):
        raise Http404("no such page")
    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
