import re

from django import forms
from django.contrib import admin, messages
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timesince import timeuntil

from alerts import subscribing
from alerts.delivery import queue_delivery, resend, send_now
from alerts.models import Delivery, DigestRun, Match, Subscriber, Subscription, WebhookEvent
from alerts.overview import esp_lines
from questions.forms import QueryField
from questions.search import canonical, parse


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    extra = 0
    fields = ("query", "label", "frequency", "alert_on", "paused", "confirmed_at", "last_sent_at")
    readonly_fields = ("confirmed_at", "last_sent_at")


@admin.register(Subscriber)
class SubscriberAdmin(admin.ModelAdmin):
    list_display = ("email", "confirmed_at", "suppressed_at", "suppressed_reason", "created_at")
    list_filter = ("suppressed_reason", ("confirmed_at", admin.EmptyFieldListFilter))
    search_fields = ("email",)
    readonly_fields = ("token_version", "created_at")
    inlines = [SubscriptionInline]
    actions = ["suppress", "resend_confirmation", "send_manage_link"]

    @admin.action(description="Suppress: send nothing more")
    def suppress(self, request, queryset):
        for subscriber in queryset:
            subscriber.suppress(Subscriber.Suppression.OPERATOR)

    @admin.action(description="Resend the confirmation email")
    def resend_confirmation(self, request, queryset):
        for subscriber in queryset:
            pending = list(subscriber.subscriptions.filter(confirmed_at__isnull=True).values_list("pk", flat=True))
            if pending:
                queue_delivery(subscriber, Delivery.Kind.CONFIRMATION, {"subscriptions": pending})
        self.message_user(request, "Confirmation emails queued for subscribers with unconfirmed alerts.")

    @admin.action(description="Email a link to the manage page")
    def send_manage_link(self, request, queryset):
        for subscriber in queryset:
            subscribing.request_manage_link(subscriber.email)


class SubscriptionForm(forms.ModelForm):
    """An operator's edit goes through the same parser as everyone else's. A follow of one question has
    no search: its query stays empty."""

    query = QueryField(required=False)

    class Meta:
        model = Subscription
        fields = ("subscriber", "query", "label", "frequency", "alert_on", "paused", "confirmed_at",
                  "created_at", "last_sent_at")

    def clean(self):
        cleaned = super().clean()
        subscriber, query = cleaned.get("subscriber"), cleaned.get("query")
        if self.instance.question_id:
            if query:
                self.add_error("query", "This alert follows one question: it has no search.")
            return cleaned
        if not query and "query" not in self.errors:
            self.add_error("query", "A search is needed.")
        if subscriber and query:
            self.instance.canonical_query = canonical(parse(query))
            others = subscriber.subscriptions.exclude(pk=self.instance.pk)
            if others.filter(canonical_query=self.instance.canonical_query).exists():
                raise forms.ValidationError("This subscriber already has an alert for this search.")
        return cleaned


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ("__str__", "subscriber", "frequency", "alert_on", "paused", "confirmed_at", "last_sent_at")
    list_filter = ("frequency", "alert_on", "paused")
    search_fields = ("query", "label", "subscriber__email")
    raw_id_fields = ("subscriber",)
    readonly_fields = ("canonical_query", "question", "retired_at")


@admin.register(Match)
class MatchAdmin(admin.ModelAdmin):
    list_display = ("subscription", "event", "created_at", "delivery")
    list_filter = (("delivery", admin.EmptyFieldListFilter),)
    raw_id_fields = ("subscription", "event", "delivery")
    list_select_related = ("subscription", "event__question", "delivery__subscriber")


EXCEPTION_NAME = re.compile(r"\b[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+: ")


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    # What fits beside the admin's sidebar and filters at 1280 px; the rest is on each email's page.
    list_display = ("subscriber", "status", "next_try", "latest_error")
    list_filter = ("status", "kind")
    search_fields = ("subscriber__email", "esp_message_id", "subject")
    raw_id_fields = ("subscriber",)
    list_select_related = ("subscriber",)
    actions = ["send_now", "resend"]
    readonly_fields = ("run", "subject", "from_email", "to_email", "email_headers", "body_text", "email_html",
                       "rendered_at")
    fieldsets = [
        (None, {"fields": ("subscriber", "subscription", "kind", "run", "status", "attempts", "error",
                           "next_attempt_at", "leased_until", "give_up_at", "sent_at", "esp_message_id",
                           "esp_status", "payload", "created_at")}),
        ("The email as sent", {"fields": ("subject", "from_email", "to_email", "email_headers", "body_text",
                                          "email_html", "rendered_at")}),
    ]

    @admin.display(description="Headers")
    def email_headers(self, delivery: Delivery) -> str:
        return "\n".join(f"{name}: {value}" for name, value in delivery.headers.items())

    @admin.display(description="HTML")
    def email_html(self, delivery: Delivery) -> str:
        # Shown as the reader saw it, in a frame that may run nothing and reach nothing of the admin's.
        if not delivery.body_html:
            return "-"
        return format_html('<iframe sandbox="" srcdoc="{}" title="The email as HTML" '
                           'style="width: 100%; height: 32rem; border: 1px solid #ccc"></iframe>', delivery.body_html)

    @admin.display(description="Next try", ordering="next_attempt_at")
    def next_try(self, delivery: Delivery) -> str | None:
        # Relative and short, to fit beside the sidebar; the time itself is on the email's page.
        if delivery.status != Delivery.Status.PENDING:
            return None
        if delivery.next_attempt_at <= timezone.now():
            return "due now"
        return f"in {timeuntil(delivery.next_attempt_at, depth=1)}"

    @admin.display(description="Latest error")
    def latest_error(self, delivery: Delivery) -> str:
        # Without the exception's name (AnymailRequestsAPIError: ...), which is no help at a glance and too long
        # a word to wrap; the whole error is on the email's page.
        return Truncator(EXCEPTION_NAME.sub("", delivery.error)).chars(50)

    @admin.action(description="Send now (pending emails: due now, attempts kept)")
    def send_now(self, request, queryset):
        selected = list(queryset.values_list("pk", flat=True))
        brought = send_now(selected)
        self.message_user(request, f"{brought} email(s) due now; the senders are woken.", messages.SUCCESS)
        if left := len(selected) - brought:
            self.message_user(request, f"{left} email(s) left as they were: not pending, or being sent right now.",
                              messages.WARNING)
        for line in esp_lines():
            if line.down:
                self.message_user(request, f"Senders hold back until it answers a probe. {line.text}",
                                  messages.WARNING)

    @admin.action(description="Resend")
    def resend(self, request, queryset):
        queued = resend(list(queryset.values_list("pk", flat=True)))
        self.message_user(request, f"{queued} email(s) queued to be sent again.", messages.SUCCESS)


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "esp", "event_type", "recipient", "message_id")
    list_filter = ("esp", "event_type")
    search_fields = ("recipient", "message_id")


@admin.register(DigestRun)
class DigestRunAdmin(admin.ModelAdmin):
    list_display = ("__str__", "frequency", "period_start", "period_end", "built_at", "emails", "finished_at")
    list_filter = ("frequency",)
    readonly_fields = ("frequency", "period_start", "period_end", "created_at", "building_until", "built_at", "emails",
                       "finished_at")

    def has_add_permission(self, request) -> bool:
        return False
