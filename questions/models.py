"""The archive: sources we poll, the questions they bring, and the events that alerts consume."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.urls import reverse
from django.utils import timezone

from questions import due
from questions.conditions import answered_in_full as answered_in_full
from questions.conditions import answered_late, overdue
from questions.conditions import settled as settled
from questions.records import web_url
from questions.search import DOCUMENT_KEYS, DUE, DUE_WORDS, FIELDS, document, normalise
from questions.search.sql import column
from questions.search.words import with_base_forms

URL_SAFE_KEY = re.compile(r"[A-Za-z0-9._-]{1,100}")
# The ids of the questions the end-to-end canary stores for a few minutes: no page or search shows them.
CANARY_PREFIX = "canary:"


def default_poll_interval() -> int:
    """How often a new source is polled, in minutes, until its own interval is changed in the admin."""
    return settings.POLL_INTERVAL_MINUTES


class Source(models.Model):
    class Kind(models.TextChoices):
        PARLIAMENT_API = "api", "Parliament Written Questions API"
        FEED = "feed", "RSS/Atom feed"

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    url = models.URLField(max_length=500)
    enabled = models.BooleanField(default=True)
    # The one knob for how often it is polled: beat looks every minute for the sources that are due.
    poll_interval_minutes = models.PositiveIntegerField(default=default_poll_interval)
    etag = models.CharField(max_length=500, blank=True)
    last_modified = models.CharField(max_length=100, blank=True)
    cursor = models.DateField(null=True, blank=True, help_text="The API is polled from this day (less the overlap).")
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Problems older than the retention period are deleted; this counts them.
    pruned_problems = models.PositiveBigIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def is_due(self, now=None) -> bool:
        if self.last_polled_at is None:
            return True
        now = now or timezone.now()
        return (now - self.last_polled_at).total_seconds() >= self.poll_interval_minutes * 60 - 5


class Backfill(models.Model):
    """A source's first successful poll: it brought the source's backlog, which alerted nobody."""

    source = models.OneToOneField(Source, on_delete=models.CASCADE, related_name="backfill")
    polled_at = models.DateTimeField(default=timezone.now)
    questions = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return (f"The first successful poll, on {timezone.localtime(self.polled_at):%Y-%m-%d %H:%M}, was a backfill: "
                f"{self.questions} question(s) stored, and nobody was alerted of them. What is new from then on is "
                f"alerted.")


class SourceProblem(models.Model):
    """One cause of trouble in one poll (the items it hit counted and some named), or one failed poll: what an
    operator reads first."""

    source = models.ForeignKey(Source, on_delete=models.CASCADE, related_name="problems")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    record_id = models.CharField(max_length=500, blank=True)
    message = models.TextField()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.source}: {self.record_id} {self.message[:80]}"


# The questions people may see and alerts may match: all but the canary's.
PUBLIC = ~models.Q(external_id__startswith=CANARY_PREFIX)


class QuestionQuerySet(models.QuerySet):
    def public(self) -> QuestionQuerySet:
        return self.filter(PUBLIC)

    def overdue(self, today: dt.date) -> QuestionQuerySet:
        return self.filter(overdue(today))

    def answered_late(self) -> QuestionQuerySet:
        return self.filter(answered_late())


class Question(models.Model):
    class House(models.TextChoices):
        COMMONS = "Commons"
        LORDS = "Lords"

    external_id = models.CharField(
        max_length=500, unique=True, help_text="The API id, a feed entry's guid, or the id of an imported record."
    )
    uin = models.CharField(max_length=50, blank=True, db_index=True)
    house = models.CharField(max_length=20, blank=True)
    heading = models.TextField(blank=True)
    question_text = models.TextField(blank=True)
    answer_html = models.TextField(blank=True, help_text="Sanitised HTML, safe to render.")
    answer_text = models.TextField(blank=True)
    date_tabled = models.DateField(null=True, blank=True, db_index=True)
    date_for_answer = models.DateField(null=True, blank=True)
    date_answered = models.DateField(null=True, blank=True)
    date_holding_answer = models.DateField(null=True, blank=True)
    date_answer_corrected = models.DateField(null=True, blank=True)
    is_named_day = models.BooleanField(default=False)
    # The last day on which an answer is on time (questions.due), kept so that a search can ask for it.
    date_due = models.DateField(null=True, blank=True, db_index=True, editable=False)
    is_withdrawn = models.BooleanField(default=False)
    answer_is_holding = models.BooleanField(default=False)
    grouped_uins = models.JSONField(default=list, blank=True)
    attachments = models.JSONField(default=list, blank=True)
    asking_member_id = models.IntegerField(null=True, blank=True)
    asking_member_name = models.CharField(max_length=200, blank=True)
    asking_member_party = models.CharField(max_length=200, blank=True)
    asking_member_constituency = models.CharField(max_length=200, blank=True)
    answering_body_id = models.IntegerField(null=True, blank=True)
    answering_body_name = models.CharField(max_length=200, blank=True, db_index=True)
    answering_member_id = models.IntegerField(null=True, blank=True)
    answering_member_name = models.CharField(max_length=200, blank=True)
    answering_member_role = models.CharField(max_length=300, blank=True)
    url = models.URLField(max_length=500, blank=True)
    source = models.ForeignKey(Source, null=True, blank=True, on_delete=models.SET_NULL, related_name="questions")
    # What the list endpoint last said, so an unchanged question costs no detail request.
    list_signature = models.CharField(max_length=64, blank=True)
    # A text was longer than the archive keeps (questions.records.TEXT_LIMITS) and was cut on the way in.
    # Kept by the database too: a poller of the release before, still running while this one migrates,
    # inserts questions without the column.
    text_cut = models.BooleanField(default=False, db_default=False, help_text="A text was cut to the stored maximum.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    # The searchable text of each field of docs/query-language.md, as normalised words (" w1 w2 ").
    norm_heading = models.TextField(default="", editable=False)
    norm_question = models.TextField(default="", editable=False)
    norm_answer = models.TextField(default="", editable=False)
    norm_member = models.TextField(default="", editable=False)
    norm_party = models.TextField(default="", editable=False)
    norm_constituency = models.TextField(default="", editable=False)
    norm_department = models.TextField(default="", editable=False)
    norm_minister = models.TextField(default="", editable=False)
    norm_house = models.TextField(default="", editable=False)
    norm_uin = models.TextField(default="", editable=False)
    # The same words in their base forms (" b1 b2 "), where a word typed without quotes is looked for.
    base_heading = models.TextField(default="", db_default="", editable=False)
    base_question = models.TextField(default="", db_default="", editable=False)
    base_answer = models.TextField(default="", db_default="", editable=False)
    base_member = models.TextField(default="", db_default="", editable=False)
    base_party = models.TextField(default="", db_default="", editable=False)
    base_constituency = models.TextField(default="", db_default="", editable=False)
    base_department = models.TextField(default="", db_default="", editable=False)
    base_minister = models.TextField(default="", db_default="", editable=False)
    base_house = models.TextField(default="", db_default="", editable=False)
    base_uin = models.TextField(default="", db_default="", editable=False)

    objects = QuestionQuerySet.as_manager()

    class Meta:
        ordering = ["-date_tabled", "-id"]
        indexes = [
            models.Index(fields=["-date_tabled", "-id"], name="question_newest"),
            # The names of the members who asked, one probe each (questions.searching.member_names).
            models.Index(fields=["asking_member_name"], name="question_member_name"),
        ]

    def __str__(self) -> str:
        return f"{self.uin or self.external_id}: {self.title}"

    def get_absolute_url(self) -> str:
        # API ids and imported ids make readable links; a feed's guid is a URL, so those use the row id.
        if URL_SAFE_KEY.fullmatch(self.external_id):
            return reverse("question", args=[self.external_id])
        return reverse("question-by-row", args=[self.pk])

    def search_fields(self) -> dict[str, str]:
        """The raw text of each field of the query language."""
        return {
            "heading": self.heading,
            "question": self.question_text,
            "answer": self.answer_text,
            "member": self.asking_member_name,
            "party": self.asking_member_party,
            "constituency": self.asking_member_constituency,
            "department": self.answering_body_name,
            "minister": self.answering_member_name,
            "house": self.house,
            "uin": self.uin,
        }

    # Every column of searchable text, as written and in base forms.
    SEARCH_COLUMNS: tuple[str, ...] = tuple(map(column, DOCUMENT_KEYS))

    def refresh_search_text(self) -> None:
        found = document(self.search_fields())
        for key in DOCUMENT_KEYS:
            setattr(self, column(key), found[key])

    def refresh_derived(self) -> None:
        """Everything kept beside the question that is worked out from it: its searchable text, its due date."""
        self.refresh_search_text()
        self.date_due = due.due_date(self.date_tabled, self.date_for_answer, self.is_named_day)

    # The columns of each field's words as written, which are all matching reads.
    WORD_COLUMNS: tuple[str, ...] = tuple(map(column, FIELDS))

    def search_document(self, today: dt.date | None = None) -> dict[str, str]:
        """What alerts match, on `today` (by default the day it is now): the base forms are worked out again
        from the words, not read from their columns, which a poller of the release before (still running
        during an upgrade) leaves as they were when it changes a question's words; and the due field's words
        are the question's state that day."""
        found = {field: getattr(self, name) for field, name in zip(FIELDS, self.WORD_COLUMNS, strict=True)}
        found[DUE] = normalise(self.due_words(today or timezone.localdate()))
        return with_base_forms(found)

    def due_words(self, today: dt.date) -> str:
        """The words of the query language's due field (docs/query-language.md, section 8) that this question
        has on `today`; `sql.due_q` is the same in SQL."""
        found = {"overdue": self.is_overdue(today), "late": bool(self.days_late), "named": self.is_named_day}
        return " ".join(word for word in DUE_WORDS if found[word])

    @property
    def title(self) -> str:
        """What names the question: its heading, or its UIN until it has one (a heading often comes with the
        answer: more than a quarter of the questions in the bundled sample have none yet)."""
        return self.heading or (f"Written question {self.uin}" if self.uin else "Written question")

    @property
    def is_canary(self) -> bool:
        """One of the questions the canary stores for its own follow: no page, search or other alert has it."""
        return self.external_id.startswith(CANARY_PREFIX)

    @property
    def is_answered(self) -> bool:
        return bool(self.answer_text)

    @property
    def has_substantive_answer(self) -> bool:
        """An answer that is not a holding one."""
        return self.is_answered and not self.answer_is_holding

    def is_overdue(self, today: dt.date) -> bool:
        """Past its due date with no answer but a holding one, and not withdrawn."""
        return (not self.is_withdrawn and not self.has_substantive_answer and self.date_due is not None
                and self.date_due < today)

    @property
    def days_late(self) -> int | None:
        """How many days after its due date the answer came; 0 on time, None if not (substantively) answered,
        or with no date to tell."""
        if not self.has_substantive_answer or self.date_answered is None or self.date_due is None:
            return None
        return max((self.date_answered - self.date_due).days, 0)

    def days_overdue(self, today: dt.date) -> int | None:
        """How many days ago the answer was due, while it is overdue."""
        return (today - self.date_due).days if self.is_overdue(today) else None

    def due_note(self, today: dt.date) -> str:
        """When the answer is due, in a few words, for one who follows the question: "" with no due date to
        tell, or once it is settled."""
        if self.date_due is None or self.is_settled:
            return ""
        if self.is_overdue(today):
            return self.overdue_label[0].lower() + self.overdue_label[1:]
        day = f"{self.date_due:%-d %B}"
        return f"to be answered on its named day, {day}" if self.is_named_day else f"answer due by {day}"

    @property
    def overdue_label(self) -> str:
        """What an overdue question's email and follow say of it: a named day is the one the member chose, and
        the department was bound to answer on it."""
        day = f"{self.date_due:%-d %B}" if self.date_due else ""
        return f"Not answered on its named day, {day}" if self.is_named_day else f"Overdue: due {day}"

    @property
    def is_settled(self) -> bool:
        """As `settled`: there is nothing left to follow but a correction."""
        return self.is_withdrawn or self.has_substantive_answer

    @property
    def official_url(self) -> str:
        # Checked again here, not only when stored: rows stored before the check are rendered as links too.
        url = web_url(self.url)
        if url:
            return url
        if self.date_tabled and self.uin:
            return (
                "https://questions-statements.parliament.uk/written-questions/detail/"
                f"{self.date_tabled.isoformat()}/{self.uin}"
            )
        return ""

    @property
    def official_site(self) -> str:
        """The host of the official record, for "the full text is on ..."."""
        host = urlsplit(self.official_url).hostname or ""
        return host.removeprefix("www.")

    @property
    def attachment_links(self) -> list[dict[str, str]]:
        """Each attachment's title and its address if that is on the web, else "": the only way to render them."""
        links = []
        for attachment in self.attachments if isinstance(self.attachments, list) else []:
            if isinstance(attachment, dict):
                title = attachment.get("title")
                links.append({"title": title if isinstance(title, str) else "", "url": web_url(attachment.get("url"))})
        return [link for link in links if link["title"] or link["url"]]


class QuestionEvent(models.Model):
    class Kind(models.TextChoices):
        TABLED = "tabled", "New question"
        ANSWERED = "answered", "Answered"
        CORRECTED = "corrected", "Answer corrected"
        WITHDRAWN = "withdrawn", "Withdrawn"
        # Its due date passed with no answer but a holding one (questions.overdue): told to followers only.
        OVERDUE = "overdue", "Overdue"

    question = models.ForeignKey(Question, on_delete=models.CASCADE, related_name="events")
    kind = models.CharField(max_length=20, choices=Kind.choices)
    # Makes each event happen once: "tabled", "answered", "answered:holding", "corrected:<hash>", "withdrawn",
    # "overdue".
    key = models.CharField(max_length=100)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    matched_at = models.DateTimeField(null=True, blank=True)
    # A correction's answer as it stood before: the question keeps only the answer now, and an email shows
    # what the correction changed. Blank for other kinds, and for corrections seen before it was kept. A
    # database default too: a poller of the release before, still running while this one migrates, inserts
    # events without the column.
    answer_before = models.TextField(blank=True, default="", db_default="")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["question", "key"], name="one_event_per_key")]
        indexes = [
            models.Index(fields=["id"], condition=models.Q(matched_at__isnull=True), name="event_unmatched"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.question}"
