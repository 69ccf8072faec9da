from django.core.management.base import BaseCommand, CommandError

from alerts.models import Subscriber, WebhookEvent
from alerts.retention import suppressed_reason_of


def when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "never"


class Command(BaseCommand):
    help = "Show what a subscriber has and what they were sent: the first question support is asked."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--emails", type=int, default=20, help="how many recent emails to list")

    def handle(self, *args, email, emails, **options):
        subscriber = Subscriber.objects.filter(email__iexact=email.strip()).first()
        if subscriber is None:
            erased = suppressed_reason_of(email)
            raise CommandError(f"No subscriber has the address {email}." + (
                f" It was erased after it stopped receiving ({erased}); only a digest of it is kept." if erased
                else ""))
        out = self.stdout.write
        out(f"{subscriber.email}: created {when(subscriber.created_at)}, confirmed {when(subscriber.confirmed_at)}")
        if subscriber.suppressed_at:
            out(f"  SUPPRESSED since {when(subscriber.suppressed_at)} ({subscriber.suppressed_reason}): "
                "nothing is sent to this address")
        out("\nAlerts:")
        for s in subscriber.subscriptions.all():
            state = "unconfirmed" if not s.confirmed_at else "paused" if s.paused else "on"
            waiting = s.matches.filter(delivery__isnull=True).events()
            state = "retired" if s.retired_at else state
            what = f"follows question {s.question_id} ({s.label})" if s.is_follow else (
                f"{s.query!r}{f' ({s.label})' if s.label else ''}")
            out(f"  [{state}] {what}: {s.frequency}, {s.alert_on}; "
                f"{s.matches.events()} matches, {waiting} waiting; last sent {when(s.last_sent_at)}")
        if not subscriber.subscriptions.exists():
            out("  none")
        out(f"\nLast {emails} emails:")
        for d in subscriber.deliveries.order_by("-created_at")[:emails]:
            out(f"  {when(d.created_at)} {d.kind:<12} {d.status:<7} attempts={d.attempts} "
                f"matches={d.matches.events()} esp_id={d.esp_message_id or '-'} esp_status={d.esp_status or '-'}"
                + (f" error={d.error!r}" if d.error else ""))
        events = WebhookEvent.objects.filter(recipient__iexact=subscriber.email).order_by("-created_at")[:emails]
        if events:
            out("\nWhat the ESP reported:")
            for e in events:
                out(f"  {when(e.created_at)} {e.esp} {e.event_type} {e.description[:120]}")
