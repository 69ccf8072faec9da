import re

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.timesince import timeuntil

from alerts import subscribing
from alerts.delivery import ResendRefused, Resent, queue_delivery, resend, resend_confirmed, resend_token, send_now
from alerts.models import Delivery, DigestRun, Subscriber, Subscription, WebhookEvent
from alerts.overview import esp_lines
from alerts.retention import forget_erased
from questions.admin import Labelled
from questions.forms import QueryField
from questions.models import QuestionEvent
from questions.search import canonical, parse


class SubscriptionInline(Labelled, admin.StackedInline):
    # Stacked: each alert's fields under labels of their own, in the width beside the sidebar at 1280 px.
    model = Subscription
    extra = 0
    fields = ("query", "label", "frequency", "alert_on", "paused", "confirmed_at", "last_sent_at")
    readonly_fields = ("confirmed_at", "last_sent_at")


def confirmation(request, modeladmin, queryset, template: str, **context) -> TemplateResponse:
    """An action's page that asks before it acts; its form posts the action again, confirmed."""
    opts = modeladmin.model._meta
    return TemplateResponse(request, template, {
        **modeladmin.admin_site.each_context(request), "opts": opts, "app_label": opts.app_label,
        "action": request.POST["action"], "selected": queryset, "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        **context})


@admin.register(Subscriber)
class SubscriberAdmin(Labelled, admin.ModelAdmin):
    list_display = ("email", "confirmed_at", "suppressed_at", "suppressed_reason", "created_at")
    list_filter = ("suppressed_reason", ("confirmed_at", admin.EmptyFieldListFilter))
    search_fields = ("email",)
    # A suppression changes only by the actions, which keep its history.
    readonly_fields = ("suppressed_at", "suppressed_reason", "lifted_suppressions", "token_version", "created_at")
    inlines = [SubscriptionInline]
    actions = ["suppress", "lift_suppression", "resend_confirmation", "send_manage_link"]

    @admin.display(description="Suppressions lifted")
    def lifted_suppressions(self, subscriber: Subscriber) -> str:
        lifts = subscriber.suppression_lifts.all() if subscriber.pk else []
        if not lifts:
            return "None"
        return format_html("<ul>{}</ul>", format_html_join("", "<li>{}: since {}, lifted by {} on {}</li>", (
            (lift.get_reason_display(), date_format(timezone.localtime(lift.suppressed_at), "DATETIME_FORMAT"),
             lift.lifted_by, date_format(timezone.localtime(lift.lifted_at), "DATETIME_FORMAT")) for lift in lifts)))

    @admin.action(description="Suppress: send nothing more")
    def suppress(self, request, queryset):
        done = 0
        for subscriber in queryset:
            before = (subscriber.suppressed_at, subscriber.suppressed_reason)
            subscriber.suppress(Subscriber.Suppression.OPERATOR)
            done += (subscriber.suppressed_at, subscriber.suppressed_reason) != before
        if done:
            self.message_user(request, f"Suppressed {done} address(es): nothing more is sent to them. Lift "
                                       f"suppression undoes it.", messages.SUCCESS)
        if left := queryset.count() - done:
            self.message_user(request, f"{left} address(es) left as they were: already suppressed by a bounce, a "
                                       f"complaint or an operator.", messages.WARNING)

    @admin.action(description="Lift suppression: let the address receive again")
    def lift_suppression(self, request, queryset):
        if request.POST.get("confirm") != "yes":
            return confirmation(request, self, queryset, "admin/alerts/subscriber/lift_suppression.html",
                                title="Lift suppression?", liftable=Subscriber.LIFTABLE,
                                reported=(Subscriber.Suppression.BOUNCED, Subscriber.Suppression.COMPLAINED))
        lifted = 0
        for subscriber in queryset:
            if subscriber.lift_suppression(by=request.user.get_username()) is not None:
                # An address erased after it bounced is also remembered apart from its row: that goes too.
                forget_erased(subscriber.email)
                lifted += 1
        if lifted:
            self.message_user(request, f"Suppression lifted for {lifted} address(es): they receive their alerts "
                                       f"again. What each suppression was is kept on its page.", messages.SUCCESS)
        if left := queryset.count() - lifted:
            self.message_user(request, f"{left} address(es) left as they were: not suppressed, or unsubscribed by "
                                       f"their owner, who alone can come back (by confirming an alert again).",
                              messages.WARNING)

    @admin.action(description="Resend the confirmation email")
    def resend_confirmation(self, request, queryset):
        queued = 0
        for subscriber in queryset:
            pending = list(subscriber.subscriptions.filter(confirmed_at__isnull=True).values_list("pk", flat=True))
            if pending:
                queue_delivery(subscriber, Delivery.Kind.CONFIRMATION, {"subscriptions": pending})
                queued += 1
        self.message_user(request, f"Confirmation email queued for {queued} address(es) with unconfirmed alerts.",
                          messages.SUCCESS if queued else messages.WARNING)
        if left := queryset.count() - queued:
            self.message_user(request, f"{left} address(es) sent nothing: no alert of theirs waits for a "
                                       f"confirmation.", messages.WARNING)

    @admin.action(description="Email a link to the manage page")
    def send_manage_link(self, request, queryset):
        links = Delivery.objects.filter(kind=Delivery.Kind.MANAGE_LINK, subscriber__in=queryset)
        before = links.count()
        for subscriber in queryset:
            subscribing.request_manage_link(subscriber.email)
        queued = links.count() - before
        if queued:
            self.message_user(request, f"A link to the manage page is on its way to {queued} address(es).",
                              messages.SUCCESS)
        if left := queryset.count() - queued:
            self.message_user(request, f"{left} address(es) sent nothing: they have no alerts, or are suppressed "
                                       f"by a bounce, a complaint or an operator.", messages.WARNING)


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
class SubscriptionAdmin(Labelled, admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ("__str__", "subscriber", "frequency", "alert_on", "paused", "confirmed_at", "last_sent_at")
    list_filter = ("frequency", "alert_on", "paused")
    search_fields = ("query", "label", "subscriber__email")
    raw_id_fields = ("subscriber",)
    readonly_fields = ("canonical_query", "question", "retired_at", "latest_matches")

    @admin.display(description="Latest matches")
    def latest_matches(self, subscription: Subscription) -> str:
        # Matches are too many for a list of their own: each alert shows its latest, with the email that
        # carried each.
        if subscription.pk is None:
            return "-"
        # Each match holds at least one event, so the latest rows hold the latest events.
        matches = list(subscription.matches.select_related("delivery__subscriber")
                       .order_by("-created_at", "-pk")[:LATEST_MATCHES])
        events = QuestionEvent.objects.select_related("question").in_bulk(
            {event_id for m in matches for event_id in m.events})
        latest = [(m, events[event_id]) for m in matches for event_id in reversed(m.events)
                  if event_id in events][:LATEST_MATCHES]
        waiting = subscription.matches.filter(delivery__isnull=True).events()
        rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", (
            (date_format(timezone.localtime(m.created_at), "j M Y H:i"), event,
             format_html('<a href="{}">{}</a>', reverse("admin:alerts_delivery_change", args=[m.delivery_id]),
                         m.delivery) if m.delivery_id else "waiting")
            for m, event in latest))
        if not rows:
            return "None yet."
        return format_html('<p>{} waiting for an email.</p><table><caption>The latest {} matches</caption>'
                           '<thead><tr><th scope="col">Found</th><th scope="col">Event</th>'
                           '<th scope="col">Email</th></tr></thead><tbody>{}</tbody></table>',
                           waiting, LATEST_MATCHES, rows)


LATEST_MATCHES = 20


EXCEPTION_NAME = re.compile(r"\b[A-Z][a-z0-9]+(?:[A-Z][A-Za-z0-9]*)+: ")


@admin.register(Delivery)
class DeliveryAdmin(Labelled, admin.ModelAdmin):
    # What fits beside the admin's sidebar and filters at 1280 px; the rest is on each email's page.
    list_display = ("subscriber", "status", "next_try", "latest_error")
    list_filter = ("status", "kind")
    search_fields = ("subscriber__email", "esp_message_id", "subject")
    raw_id_fields = ("subscriber",)
    list_select_related = ("subscriber",)
    actions = ["send_now", "resend"]
    # When it was sent is a record: sending it again makes a row of its own, never a new time on this one.
    readonly_fields = ("run", "sent_at", "resend_of", "sent_again", "subject", "from_email", "to_email",
                       "email_headers", "body_text", "email_html", "rendered_at")
    fieldsets = [
        (None, {"fields": ("subscriber", "subscription", "kind", "run", "status", "attempts", "error",
                           "next_attempt_at", "leased_until", "give_up_at", "sent_at", "resend_of", "sent_again",
                           "esp_message_id", "esp_status", "payload", "created_at")}),
        ("The email as sent", {"fields": ("subject", "from_email", "to_email", "email_headers", "body_text",
                                          "email_html", "rendered_at")}),
    ]

    @admin.display(description="A resend of")
    def resend_of(self, delivery: Delivery) -> str:
        if not (first := delivery.payload.get("resend_of")):
            return "-"
        return format_html('<a href="{}">email {}</a>', reverse("admin:alerts_delivery_change", args=[first]), first)

    @admin.display(description="Sent again as")
    def sent_again(self, delivery: Delivery) -> str:
        resends = Delivery.objects.filter(payload__resend_of=delivery.pk) if delivery.pk else []
        if not resends:
            return "-"
        return format_html_join(", ", '<a href="{}">{}</a>', (
            (reverse("admin:alerts_delivery_change", args=[r.pk]), f"email {r.pk} ({r.get_status_display()})")
            for r in resends))

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

    @admin.action(description="Resend (asks first for emails already sent)")
    def resend(self, request, queryset):
        if request.POST.get("confirm") == "yes":
            try:
                done = resend_confirmed(request.POST.get("token", ""))
            except ResendRefused as refused:
                self.message_user(request, RESEND_REFUSED[refused.reason],
                                  messages.WARNING if refused.reason == "used" else messages.ERROR)
                return None
            return self.say_resent(request, done)
        sent = list(queryset.filter(status=Delivery.Status.SENT).select_related("subscriber").order_by("sent_at"))
        if sent:
            others = list(queryset.exclude(pk__in=[d.pk for d in sent]).values_list("pk", flat=True))
            return confirmation(request, self, queryset, "admin/alerts/delivery/resend_confirmation.html",
                                title="Send these emails again?", sent=sent, others=len(others),
                                token=resend_token([d.pk for d in sent], others))
        # Nothing shown as sent: nothing is sent again, not even one a sender finishes meanwhile.
        selected = list(queryset.values_list("pk", flat=True))
        queued = resend(selected)
        return self.say_resent(request, Resent(made_again=queued, sent_again=0, left=len(selected) - queued))

    def say_resent(self, request, done: Resent) -> None:
        if done.made_again:
            self.message_user(request, f"{done.made_again} email(s) not sent are queued to be made and tried again.",
                              messages.SUCCESS)
        if done.sent_again:
            self.message_user(request, f"{done.sent_again} email(s) already sent are queued to be sent again, each "
                                       f"as a new email; the first keeps its record of when it was sent.",
                              messages.SUCCESS)
        if done.left:
            self.message_user(request, f"{done.left} email(s) left as they were: being sent right now, or sent so "
                                       f"long ago that their text is no longer kept.", messages.WARNING)


AGAIN = "To send them again, select them and choose Resend once more."
RESEND_REFUSED = {
    "used": f"These emails were already sent again from this confirmation page: nothing more is queued. {AGAIN}",
    "expired": f"This confirmation page is more than an hour old: nothing was sent. {AGAIN}",
    "invalid": f"This confirmation could not be checked: nothing was sent. {AGAIN}",
}


@admin.register(WebhookEvent)
class WebhookEventAdmin(Labelled, admin.ModelAdmin):
    list_display = ("created_at", "esp", "event_type", "recipient", "message_id")
    list_filter = ("esp", "event_type")
    search_fields = ("recipient", "message_id")


@admin.register(DigestRun)
class DigestRunAdmin(Labelled, admin.ModelAdmin):
    list_display = ("__str__", "frequency", "period_start", "period_end", "built_at", "emails", "finished_at")
    list_filter = ("frequency",)
    readonly_fields = ("frequency", "period_start", "period_end", "created_at", "building_until", "built_at", "emails",
                       "finished_at")

    def has_add_permission(self, request) -> bool:
        return False


# The admins of Django's and django-celery-beat's models, as we ship them: their date and time boxes named, and
# lists to choose from that are plain labelled selects, not the widget whose help icons misuse aria-label.
for model, model_admin in list(admin.site._registry.items()):
    if not isinstance(model_admin, Labelled):
        admin.site.unregister(model)
        admin.site.register(model, type(type(model_admin).__name__, (Labelled, type(model_admin)),
                                        {"filter_horizontal": (), "filter_vertical": ()}))
