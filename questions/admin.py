from django.contrib import admin, messages
from django.contrib.admin import widgets
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst

from questions.models import Backfill, Question, QuestionEvent, Source, SourceProblem
from questions.tasks import poll_source_task

RECENT_PROBLEMS = 20


class Labelled:
    """Each input named for a screen reader where Django's markup names it only by position: the two boxes of a
    date and time (under one label for neither), and the cells of an inline's row (under a column heading)."""

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if field is None:
            return field
        name = capfirst(db_field.verbose_name)
        if isinstance(field.widget, widgets.AdminSplitDateTime):
            date, time = field.widget.widgets
            date.attrs["aria-label"], time.attrs["aria-label"] = f"{name}: date", f"{name}: time"
        elif isinstance(self, admin.TabularInline):
            field.widget.attrs["aria-label"] = name
        return field

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)

        class Named(formset):
            def add_fields(self, form, index):
                super().add_fields(form, index)
                if "DELETE" in form.fields:
                    named = f" {form.instance}" if form.instance.pk else ""
                    form.fields["DELETE"].widget.attrs["aria-label"] = f"Delete{named}"

        return Named


@admin.register(SourceProblem)
class SourceProblemAdmin(Labelled, admin.ModelAdmin):
    list_display = ("created_at", "source", "record_id", "message")
    list_filter = ("source",)
    search_fields = ("record_id", "message")
    list_select_related = ("source",)
    readonly_fields = ("source", "created_at", "record_id", "message")

    def has_add_permission(self, request):
        return False


@admin.register(Source)
class SourceAdmin(Labelled, admin.ModelAdmin):
    # What fits beside the admin's sidebar at 1280 px; the kind is a filter, the whole error on the page.
    list_display = ("name", "enabled", "state", "last_success_at", "short_error")
    list_filter = ("kind", "enabled")
    # What the poller keeps (where to go on from, what the server said, how it went) and records, not settings:
    # an operator's edit of them would be overwritten by the next poll, or make it skip or repeat.
    readonly_fields = ("state", "first_poll", "last_polled_at", "last_success_at", "last_error", "last_error_at",
                       "consecutive_failures", "etag", "last_modified", "cursor", "pruned_problems",
                       "recent_problems", "created_at")
    actions = ["poll_now"]

    @admin.display(description="state")
    def state(self, source):
        # Enabled is not the same as working: a source failing poll after poll says so where it is listed.
        if source.consecutive_failures:
            return f"FAILING: {source.consecutive_failures} poll(s) in a row"
        return "working" if source.last_success_at else "not yet polled"

    @admin.display(description="last error")
    def short_error(self, source):
        return source.last_error[:60]

    @admin.display(description="first poll")
    def first_poll(self, source):
        backfill = Backfill.objects.filter(source_id=source.pk).first()
        if backfill:
            return str(backfill)
        if source.last_success_at:
            return "Polled before first polls were recorded."
        return "Not yet polled successfully: its first successful poll will be a backfill that alerts nobody."

    @admin.display(description="recent problems")
    def recent_problems(self, source):
        # The newest few, with the rest a paginated list away: a source can pile up thousands.
        problems = source.problems.order_by("-created_at")[:RECENT_PROBLEMS]
        rows = format_html_join("", "<li>{}: {} {}</li>", ((p.created_at, p.record_id, p.message) for p in problems))
        link = reverse("admin:questions_sourceproblem_changelist") + f"?source__id__exact={source.pk}"
        pruned = f" ({source.pruned_problems} older ones pruned)" if source.pruned_problems else ""
        return format_html("<ul>{}</ul><a href=\"{}\">All {} problems</a>{}", rows, link, source.problems.count(),
                           pruned)

    @admin.action(description="Poll now")
    def poll_now(self, request, queryset):
        # A worker does it: a poll with many changed questions takes longer than a web request may.
        for source in queryset:
            poll_source_task.delay(source.pk)
        self.message_user(request, f"Polling {queryset.count()} source(s) now; refresh to see what landed.",
                          messages.SUCCESS)


class QuestionEventInline(Labelled, admin.TabularInline):
    model = QuestionEvent
    extra = 0
    # A correction's earlier answer can be long: it is in the emails that tell of it, not in this table.
    fields = readonly_fields = ("kind", "key", "created_at", "matched_at")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Question)
class QuestionAdmin(Labelled, admin.ModelAdmin):
    list_display = ("uin", "heading", "house", "answering_body_name", "asking_member_name", "date_tabled",
                    "answered")
    list_filter = ("house", "answering_body_name", ("date_answered", admin.EmptyFieldListFilter), "source")
    search_fields = ("heading", "uin", "asking_member_name", "answering_member_name", "external_id")
    date_hierarchy = "date_tabled"
    readonly_fields = [*Question.SEARCH_COLUMNS, "created_at", "updated_at"]
    inlines = [QuestionEventInline]

    def save_model(self, request, obj, form, change):
        # An operator's correction must be found by searches for the new words, not the old.
        obj.refresh_derived()
        super().save_model(request, obj, form, change)

    @admin.display(boolean=True)
    def answered(self, question):
        return question.is_answered


@admin.register(QuestionEvent)
class QuestionEventAdmin(Labelled, admin.ModelAdmin):
    list_display = ("question", "kind", "created_at", "matched_at")
    list_filter = ("kind", ("matched_at", admin.EmptyFieldListFilter))
    raw_id_fields = ("question",)
    list_select_related = ("question",)
