"""Subscribers, their saved searches, what matched them, and the emails that carried it."""

from __future__ import annotations

import datetime as dt
import hashlib

from django.conf import settings
from django.db import models, transaction
from django.db.models import F, Q, Sum
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from questions.models import Question, QuestionEvent
from questions.search import MAX_LENGTH

# What a follower of one question is told about: the answer (holding or not), a correction, a withdrawal, and
# its due date passing with no answer.
FOLLOWED_KINDS = (QuestionEvent.Kind.ANSWERED, QuestionEvent.Kind.CORRECTED, QuestionEvent.Kind.WITHDRAWN,
                  QuestionEvent.Kind.OVERDUE)
# What only followers are told: a search's alert is about questions and answers. Only a search that asked
# for it (`Subscription.AlertOn.OVERDUE`) hears that a question went overdue.
FOLLOWERS_ONLY = (QuestionEvent.Kind.WITHDRAWN,)


class Subscriber(models.Model):
    class Suppression(models.TextChoices):
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        BOUNCED = "bounced", "Bounced"
        COMPLAINED = "complained", "Complained"
        OPERATOR = "operator", "Suppressed by an operator"

    # Addresses that asked us to stop may ask again; one that bounced or complained, or that an operator
    # stopped, never hears from us.
    NEVER_EMAIL = frozenset({Suppression.BOUNCED, Suppression.COMPLAINED, Suppression.OPERATOR})

    class Grouping(models.TextChoices):
        COMBINED = "combined", "One email, grouped by alert"
        SEPARATE = "separate", "One email per alert"

    email = models.EmailField(max_length=254)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    suppressed_at = models.DateTimeField(null=True, blank=True)
    suppressed_reason = models.CharField(max_length=20, choices=Suppression.choices, blank=True)
    # Part of every signed link: raising it revokes every link sent so far.
    token_version = models.PositiveIntegerField(default=1)
    # When the alerts last moved here from another address: links emailed before links named their address
    # (unsubscribe links live for years) were all sent to the address before.
    email_changed_at = models.DateTimeField(null=True, blank=True)
    email_grouping = models.CharField(max_length=10, choices=Grouping.choices, default=Grouping.COMBINED)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(Lower("email"), name="one_subscriber_per_address")]

    def __str__(self) -> str:
        return self.email

    @property
    def can_receive(self) -> bool:
        return self.suppressed_at is None

    @property
    def may_add_alerts(self) -> bool:
        """Whether the manage page may add alerts without another confirmation: the address proved it is
        theirs, and nothing since has stopped it."""
        return self.confirmed_at is not None and self.suppressed_at is None

    def suppress(self, reason: str) -> None:
        # A bounce or complaint outranks an unsubscribe: such an address must not get even the
        # confirmation emails that someone who unsubscribed may ask for. Unsubscribing again is
        # recorded anew: no link sent before it may undo it.
        if self.suppressed_at is None or self.suppressed_reason == self.Suppression.UNSUBSCRIBED:
            self.suppressed_at = timezone.now()
            self.suppressed_reason = reason
            self.save(update_fields=["suppressed_at", "suppressed_reason"])

    # Its owner asked for an unsubscribe, and only its owner may undo it (by confirming an alert again).
    LIFTABLE = (Suppression.BOUNCED, Suppression.COMPLAINED, Suppression.OPERATOR)

    def lift_suppression(self, by: str) -> SuppressionLift | None:
        """Let this address receive again, keeping what the suppression was; None (and nothing changed) when
        it is not suppressed, or suppressed by its owner's unsubscribe."""
        if self.suppressed_at is None or self.suppressed_reason not in self.LIFTABLE:
            return None
        with transaction.atomic():
            # Only the suppression the operator was shown: a bounce or an unsubscribe since is left alone.
            if not Subscriber.objects.filter(pk=self.pk, suppressed_at=self.suppressed_at,
                                             suppressed_reason=self.suppressed_reason).update(
                    suppressed_at=None, suppressed_reason=""):
                return None
            lift = SuppressionLift.objects.create(subscriber=self, reason=self.suppressed_reason,
                                                  suppressed_at=self.suppressed_at, lifted_by=by)
        self.suppressed_at, self.suppressed_reason = None, ""
        return lift


class SuppressionLift(models.Model):
    """A suppression an operator lifted: what it was and since when, and who lifted it when."""

    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="suppression_lifts")
    reason = models.CharField(max_length=20, choices=Subscriber.Suppression.choices)
    suppressed_at = models.DateTimeField()
    lifted_at = models.DateTimeField(default=timezone.now)
    lifted_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["-lifted_at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} since {self.suppressed_at:%Y-%m-%d %H:%M}, lifted by {self.lifted_by}"


class SubscriptionQuerySet(models.QuerySet):
    def receiving(self) -> SubscriptionQuerySet:
        """The one rule for who receives alerts: an active, confirmed alert of a confirmed address that
        nothing has suppressed."""
        return self.filter(paused=False, confirmed_at__isnull=False, retired_at__isnull=True,
                           subscriber__confirmed_at__isnull=False, subscriber__suppressed_at__isnull=True)

    def searches(self) -> SubscriptionQuerySet:
        """Saved searches, which the percolator matches; not follows of one question."""
        return self.filter(question__isnull=True)


class Subscription(models.Model):
    class Frequency(models.TextChoices):
        IMMEDIATE = "immediate", "As it happens"
        DAILY = "daily", "Daily digest"
        WEEKLY = "weekly", "Weekly digest"
        MONTHLY = "monthly", "Monthly digest"

    class AlertOn(models.TextChoices):
        BOTH = "both", "New questions and answers"
        NEW = "new", "New questions only"
        ANSWERS = "answers", "Answers only"
        # Its due date passing with no answer but a holding one (questions.overdue): "every overdue question to
        # the Home Office". The search's due field, if it has one, is read on the day the question goes overdue.
        OVERDUE = "overdue", "Questions that go overdue"

    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="subscriptions")
    # Set for a follow of one question ("email me when this is answered"); its query fields are then blank.
    question = models.ForeignKey(Question, null=True, blank=True, on_delete=models.CASCADE, related_name="followers")
    query = models.CharField(max_length=MAX_LENGTH, blank=True)
    canonical_query = models.TextField(db_index=True, blank=True)
    label = models.CharField(max_length=100, blank=True)
    frequency = models.CharField(max_length=10, choices=Frequency.choices, default=Frequency.IMMEDIATE)
    alert_on = models.CharField(max_length=10, choices=AlertOn.choices, default=AlertOn.BOTH)
    paused = models.BooleanField(default=False)
    # The rule for what a pause leaves behind: matches found before the alert was last resumed are not sent
    # (a pause means "nothing from before"), however long the pause, and whatever the frequency.
    resumed_at = models.DateTimeField(null=True, blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    # A follow ends by itself once its question is settled (answered or withdrawn, and the window for
    # corrections past); it then sends nothing and the manage page says why.
    retired_at = models.DateTimeField(null=True, blank=True)

    objects = SubscriptionQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        # A digest run walks the subscribers with alerts of its frequency, a chunk at a time.
        indexes = [models.Index(fields=["frequency", "subscriber"], name="subscription_frequency")]
        constraints = [
            models.UniqueConstraint(fields=["subscriber", "canonical_query"], condition=models.Q(question=None),
                                    name="one_subscription_per_query"),
            models.UniqueConstraint(fields=["subscriber", "question"], condition=models.Q(question__isnull=False),
                                    name="one_follow_per_question"),
        ]

    def __str__(self) -> str:
        return self.name

    def save(self, *args, **kwargs) -> None:
        # The rule for a pause (see resumed_at), however the alert is turned back on: here, the admin, a form.
        fields = kwargs.get("update_fields")
        # Asked only of a save that may turn the alert back on: most saves write other fields.
        if (self.pk and not self.paused and (fields is None or "paused" in fields)
                and Subscription.objects.filter(pk=self.pk, paused=True).exists()):
            self.resumed_at = timezone.now()
            if fields is not None:
                kwargs["update_fields"] = {*fields, "resumed_at"}
        super().save(*args, **kwargs)

    @property
    def is_follow(self) -> bool:
        return self.question_id is not None

    @property
    def name(self) -> str:
        return self.label or self.query

    def wants(self, event_kind: str) -> bool:
        """Whether an event of this kind is news to this subscription."""
        if self.is_follow:
            return event_kind in FOLLOWED_KINDS
        if self.alert_on == self.AlertOn.NEW:
            return event_kind == QuestionEvent.Kind.TABLED
        if self.alert_on == self.AlertOn.ANSWERS:
            return event_kind in (QuestionEvent.Kind.ANSWERED, QuestionEvent.Kind.CORRECTED)
        if self.alert_on == self.AlertOn.OVERDUE:
            return event_kind == QuestionEvent.Kind.OVERDUE
        return event_kind not in FOLLOWERS_ONLY and event_kind != QuestionEvent.Kind.OVERDUE


def _give_up_at() -> dt.datetime:
    return timezone.now() + dt.timedelta(hours=settings.DELIVERY_GIVE_UP_HOURS)


class Delivery(models.Model):
    """One email, and its place in the queue: this row is the only record of whether and when to try it."""

    # The error of a link email a change of address made void: made again, it would revive a revoked link.
    SUPERSEDED = "not sent: superseded by a change of address"

    class Kind(models.TextChoices):
        # An alert email's kind is its alert's frequency: one here for each Subscription.Frequency.
        IMMEDIATE = "immediate", "Immediate alert"
        DAILY = "daily", "Daily digest"
        WEEKLY = "weekly", "Weekly digest"
        MONTHLY = "monthly", "Monthly digest"
        CONFIRMATION = "confirmation", "Confirmation"
        MANAGE_LINK = "manage_link", "Manage link"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        # The ESP refused this address for good (inactive, invalid): trying again would not help.
        REJECTED = "rejected", "Rejected by the ESP"
        FAILED = "failed", "Failed"

    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE, related_name="deliveries")
    # The one alert this email is about, for an address that asked for one email per alert.
    subscription = models.ForeignKey(Subscription, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # The digest run that made this email, if it is a digest.
    run = models.ForeignKey("DigestRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    # What the email needs beyond its matches, e.g. the subscriptions a confirmation confirms.
    payload = models.JSONField(default=dict, blank=True)
    # The email as it is sent, rendered when the row is made: every try sends these same bytes.
    # Database defaults too: the release before, still running while this one migrates, inserts rows without them.
    subject = models.CharField(max_length=300, blank=True)
    from_email = models.CharField(max_length=320, blank=True, default="", db_default="")
    to_email = models.CharField(max_length=254, blank=True, default="", db_default="")
    headers = models.JSONField(default=dict, blank=True, db_default=models.Value({}, models.JSONField()))
    body_text = models.TextField(blank=True, default="", db_default="")
    body_html = models.TextField(blank=True, default="", db_default="")
    rendered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    esp_message_id = models.CharField(max_length=200, blank=True, db_index=True)
    esp_status = models.CharField(max_length=50, blank=True)
    error = models.TextField(blank=True, help_text="The last failure, if any.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A sender holds the row until then; past it, the sender is presumed dead and anyone may take it.
    leased_until = models.DateTimeField(null=True, blank=True)
    give_up_at = models.DateTimeField(default=_give_up_at)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        # The sender's two questions: what is due and free, and what a dead sender left leased.
        indexes = [
            models.Index(fields=["next_attempt_at", "id"], condition=models.Q(status="pending", leased_until=None),
                         name="delivery_due"),
            models.Index(fields=["next_attempt_at", "id"],
                         condition=models.Q(status="pending", leased_until__isnull=False), name="delivery_leased"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} to {self.subscriber} ({self.status})"


class DigestRun(models.Model):
    """One digest of one frequency for one period: made when its period ends, or as soon as the stack is back
    if it was down then. Its emails carry every match of its alerts found before the period ended and not yet
    sent, however late the run is made."""

    frequency = models.CharField(max_length=10, choices=Subscription.Frequency.choices)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    # Its emails are made subscriber by subscriber, in chunks that workers take in turn: up to this subscriber
    # id they are taken. Workers making them renew this; past it, they are presumed dead and others go on.
    made_up_to = models.PositiveBigIntegerField(default=0)
    # Chunks taken and not yet committed: one left open when the run is walked to its end was lost with its
    # worker, and the run is walked again.
    chunks_open = models.PositiveIntegerField(default=0)
    building_until = models.DateTimeField(null=True, blank=True)
    # Set once every email of the run is in the queue, then once none is waiting any more.
    built_at = models.DateTimeField(null=True, blank=True)
    emails = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-period_end", "frequency"]
        constraints = [models.UniqueConstraint(fields=["frequency", "period_end"], name="one_run_per_period")]

    def __str__(self) -> str:
        return f"{self.get_frequency_display()} ending {timezone.localtime(self.period_end):%Y-%m-%d %H:%M}"


class MatchQuerySet(models.QuerySet):
    def events(self) -> int:
        """How many (alert, event) matches these rows hold."""
        return self.aggregate(n=Coalesce(Sum("size"), 0))["n"]


class Match(models.Model):
    """What one matching run found for one alert (a saved search or a follow): the events it matched, in one
    row, waiting for its email or carried by one.

    A busy poll finds millions of (alert, event) pairs, and a row for each took PostgreSQL's one backend longer
    to write than everything else in matching together: an alert's matches from one run share their alert,
    time and email, so they are written once, with the events' ids beside each other."""

    # A match found before its alert was last resumed is never sent (see Subscription.resumed_at).
    SENDABLE = Q(subscription__resumed_at__isnull=True) | Q(created_at__gte=F("subscription__resumed_at"))

    # No foreign key constraint in the database: checking it for each of a million new rows took as long as
    # writing them. The matcher writes only alerts its index has just read; a match of an alert deleted
    # meanwhile is never sent, since every read goes through the alert, and retention sweeps it away.
    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="matches",
                                     db_index=False, db_constraint=False)
    # The ids of the question events matched, ascending. An event deleted since (its question was) is left
    # out of the email.
    events = models.JSONField()
    # How many events: what counts and sums read, without the arrays.
    size = models.PositiveIntegerField()
    # The lowest of them: retention keeps every event from this one on while the match may still be sent.
    first_event = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)
    delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="matches",
                                 db_index=False)

    objects = MatchQuerySet.as_manager()

    class Meta:
        verbose_name_plural = "matches"
        indexes = [
            models.Index(fields=["subscription", "delivery"], name="match_by_alert"),
            # What waits for an email, alone: the minute's sweep and the overview read it, not the whole table.
            models.Index(fields=["subscription"], condition=models.Q(delivery__isnull=True), name="match_undelivered"),
            # Written when the email is made, not when the match is found.
            models.Index(fields=["delivery"], condition=models.Q(delivery__isnull=False), name="match_delivered"),
        ]

    def __str__(self) -> str:
        return f"{self.subscription} ← {self.size} event{'s' if self.size != 1 else ''}"

    @classmethod
    def of(cls, subscription_id: int, event_ids: list[int], **fields) -> Match:
        """An unsaved match of these events (in any order, each once)."""
        events = sorted(set(event_ids))
        return cls(subscription_id=subscription_id, events=events, size=len(events), first_event=events[0],
                   **fields)


class MatchedShard(models.Model):
    """That one shard of a sharded run has recorded its matches of an event, until the event is marked
    matched: a shard run again (retried, or its chord sent out anew) skips what it has recorded, where
    matches are too many to be told apart one by one."""

    pk = models.CompositePrimaryKey("event_id", "shard", "shards")
    event_id = models.BigIntegerField()
    shard = models.PositiveSmallIntegerField()
    shards = models.PositiveSmallIntegerField()

    def __str__(self) -> str:
        return f"event {self.event_id} in shard {self.shard} of {self.shards}"


def address_digest(email: str) -> str:
    """The plain digest erased addresses were kept under before digests were keyed (alerts.retention)."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()


class EspState(models.Model):
    """Whether an ESP is answering, shared by every sender: while it is down they hold back together, one
    probe at a time, and once the probe goes through everything waiting goes at once."""

    esp = models.CharField(max_length=30, unique=True)
    down_since = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0)
    next_probe_at = models.DateTimeField(null=True, blank=True)
    # The sender that holds the probe, until then.
    probe_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"{self.esp}: {'down since ' + str(self.down_since) if self.down_since else 'answering'}"

    @property
    def problem(self) -> str:
        """The class of the latest failure (see alerts.esp): `last_error` starts with it."""
        return self.last_error.split(":", 1)[0] if self.down_since else ""


class FormRequest(models.Model):
    """What someone asked for on a public form (a signup, a follow, a manage link), written before the page
    answers, so that nothing they were told is on its way lives only in the broker. A worker takes it and
    deletes it; beat's sweep takes any the broker lost."""

    class Kind(models.TextChoices):
        SIGNUP = "signup", "Signup"
        FOLLOW = "follow", "Follow"
        LINK = "link", "Manage link"

    kind = models.CharField(max_length=10, choices=Kind.choices)
    data = models.JSONField(default=dict)
    # Over the address's limits: kept like any other so that the page takes the same time, then dropped.
    held = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    taken_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.get_kind_display()} request {self.pk}"


class ErasedAddress(models.Model):
    """An address erased after its owner left (or it bounced): only its digest and why it stopped, so that
    an address that bounced or complained is never mailed again, and one that unsubscribed can come back."""

    digest = models.CharField(max_length=64, unique=True)
    reason = models.CharField(max_length=20, choices=Subscriber.Suppression.choices)
    erased_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "erased addresses"

    def __str__(self) -> str:
        return f"{self.digest[:12]}… ({self.reason})"


class WebhookEvent(models.Model):
    """What an ESP told us about an email: kept so support can answer "why did my alerts stop?"."""

    esp = models.CharField(max_length=30)
    event_type = models.CharField(max_length=30)
    recipient = models.EmailField(max_length=254, blank=True, db_index=True)
    message_id = models.CharField(max_length=200, blank=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.esp} {self.event_type} {self.recipient}"


class WebhookToken(models.Model):
    """A token an ESP signed (Mailgun's signature covers it and a timestamp, not the event): taken once. Kept
    until a post carrying it would be refused for its age anyway."""

    KEEP = dt.timedelta(days=1)

    esp = models.CharField(max_length=30)
    token = models.CharField(max_length=200)
    signed_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["esp", "token"], name="one_use_per_webhook_token")]

    def __str__(self) -> str:
        return f"{self.esp} {self.token[:12]}…"


class ResendToken(models.Model):
    """The mark of a Resend confirmation page that was confirmed: each page resends once (a second submit, from
    a double click, the back button or another tab, queues nothing). Kept until its page would be refused for
    its age anyway."""

    MAX_AGE = dt.timedelta(hours=1)

    once = models.CharField(max_length=32, unique=True)
    used_at = models.DateTimeField(default=timezone.now, db_index=True)

    def __str__(self) -> str:
        return f"resend confirmed at {self.used_at:%Y-%m-%d %H:%M}"


class WebhookTally(models.Model):
    """How many webhook events of each type there have been, counting those pruned from WebhookEvent."""

    esp = models.CharField(max_length=30)
    event_type = models.CharField(max_length=30)
    pruned = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["esp", "event_type"], name="one_tally_per_event_type")]

    def __str__(self) -> str:
        return f"{self.esp} {self.event_type}: {self.pruned} pruned"


class CanaryProbe(models.Model):
    """One run of the end-to-end check: a question stored and answered, followed by the canary address,
    and whether its email was sent (or delivered) in time."""

    class Outcome(models.TextChoices):
        PENDING = "pending", "Waiting for its email"
        OK = "ok", "Email arrived in time"
        LATE = "late", "No email in time"
        FAILED = "failed", "Email refused or given up"

    started_at = models.DateTimeField(default=timezone.now, db_index=True)
    # Both go once the probe is over: the question is deleted, with its events and its follow.
    question = models.ForeignKey(Question, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    subscription = models.ForeignKey(Subscription, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    delivery = models.ForeignKey(Delivery, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    outcome = models.CharField(max_length=10, choices=Outcome.choices, default=Outcome.PENDING)
    seconds = models.FloatField(null=True, blank=True, help_text="From storing the question to the email's arrival.")
    detail = models.TextField(blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"canary {self.started_at:%Y-%m-%d %H:%M}: {self.outcome}"
