"""The operator's page: is every stage of the pipeline moving?"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.contrib import admin
from django.contrib.admin.views.decorators import staff_member_required
from django.db.models import Count, Min, Q
from django.shortcuts import render
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from alerts.canary import delivery_problems, esp_states
from alerts.canary import enabled as canary_enabled
from alerts.models import CanaryProbe, Delivery, Match, Subscriber, Subscription
from questions.models import Question, QuestionEvent, Source


@dataclass(frozen=True)
class EspLine:
    down: bool
    text: str


def esp_lines(now: dt.datetime | None = None) -> list[EspLine]:
    """The ESP as senders see it: answering, or down since when, its latest error, and when it is tried next.
    An ESP has a state once it has failed as a whole."""
    now = now or timezone.now()
    lines = []
    for state in esp_states():
        if state.down_since is None:
            lines.append(EspLine(False, f"{state.esp} is answering."))
            continue
        if state.probe_until and state.probe_until > now:
            following = "a probe is under way"
        elif state.next_probe_at and state.next_probe_at > now:
            following = f"next probe due {state.next_probe_at:%Y-%m-%d %H:%M:%S} UTC"
        else:
            following = "next probe due now"
        lines.append(EspLine(True, f"{state.esp} has failed since {state.down_since:%Y-%m-%d %H:%M} UTC (failed "
                                   f"tries: {state.failures}); {following}. Latest error: {state.last_error[:500]}"))
    return lines or [EspLine(False, "answering (it has never failed as a whole).")]


def failing_sources() -> list[Source]:
    """Enabled sources whose latest poll failed: what is not coming in now."""
    return list(Source.objects.filter(enabled=True, consecutive_failures__gt=0).order_by("name"))


def not_working(failing: list[Source], problems: list[str]) -> list[str]:
    """What the overview's headline names as not working, source by source, then delivery."""
    said = [f"{s.name} has failed {s.consecutive_failures} poll(s) in a row, so its new questions are not coming "
            f"in" for s in failing]
    return said + (["alerts may not be reaching inboxes (see Delivery)"] if problems else [])


def overview(now: dt.datetime | None = None) -> dict:
    now = now or timezone.now()
    day = now - dt.timedelta(hours=24)
    deliveries = Delivery.objects.filter(created_at__gte=day).aggregate(
        **{status: Count("pk", filter=Q(status=status)) for status in Delivery.Status.values}
    )
    due = Delivery.objects.filter(status=Delivery.Status.PENDING)
    problems = delivery_problems(now)
    return {
        "not_working": not_working(failing_sources(), problems),
        "now": now,
        "sources": Source.objects.all(),
        "questions_24h": Question.objects.public().filter(created_at__gte=day).count(),
        "events_24h": dict(QuestionEvent.objects.filter(created_at__gte=day).values_list("kind")
                           .annotate(n=Count("pk")).order_by("kind")),
        "events_unmatched": QuestionEvent.objects.filter(matched_at__isnull=True).count(),
        "matches_waiting": Match.objects.filter(delivery__isnull=True,
                                                subscription__in=Subscription.objects.receiving()).events(),
        "deliveries_24h": deliveries,
        "deliveries_pending_all": due.count(),
        "deliveries_retrying": due.filter(attempts__gt=0).count(),
        # Given up, refused, or never sendable: waiting for an operator's Resend, however old.
        "deliveries_failed_all": Delivery.objects.filter(status=Delivery.Status.FAILED).exclude(
            error=Delivery.SUPERSEDED).count(),
        "oldest_due": due.filter(next_attempt_at__lte=now).aggregate(oldest=Min("next_attempt_at"))["oldest"],
        # The soonest an email the ESP failed on its own is tried again.
        "next_retry": due.filter(attempts__gt=0, next_attempt_at__gt=now).aggregate(
            soonest=Min("next_attempt_at"))["soonest"],
        "esp_lines": esp_lines(now),
        "subscribers": Subscriber.objects.count(),
        "suppressed": dict(Subscriber.objects.exclude(suppressed_reason="").values_list("suppressed_reason")
                           .annotate(n=Count("pk")).order_by("suppressed_reason")),
        "active_alerts": Subscription.objects.receiving().count(),
        "schedule": PeriodicTask.objects.select_related("interval", "crontab").order_by("name"),
        "delivery_problems": problems,
        "canary_on": canary_enabled(),
        "canary_probes": CanaryProbe.objects.all()[:10],
    }


@staff_member_required
def overview_page(request):
    # The admin's own context too: the site's name in the header and title, the sidebar's models.
    return render(request, "admin/overview.html", admin.site.each_context(request) | overview() | {"title": "Overview"})
