from django.contrib import admin, messages

from questions.models import Question, QuestionEvent, Source, SourceProblem
from questions.tasks import poll_source_task


class SourceProblemInline(admin.TabularInline):
    model = SourceProblem
    extra = 0
    can_delete = True
    readonly_fields = ("created_at", "record_id", "message")
    ordering = ("-created_at",)

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-created_at")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Source)
class SourceAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "enabled", "last_polled_at", "last_success_at", "consecutive_failures",
                    "short_error")
    list_filter = ("kind", "enabled")
    readonly_fields = ("last_polled_at", "last_success_at", "last_error", "last_error_at", "consecutive_failures")
    inlines = [SourceProblemInline]
    actions = ["poll_now"]

    @admin.display(description="last error")
    def short_error(self, source):
        return source.last_error[:100]

    @admin.action(description="Poll now")
    def poll_now(self, request, queryset):
        # A worker does it: a poll with many changed questions takes longer than a web request may.
        for source in queryset:
            poll_source_task.delay(source.pk)
        self.message_user(request, f"Polling {queryset.count()} source(s) now; refresh to see what landed.",
                          messages.SUCCESS)


class QuestionEventInline(admin.TabularInline):
    model = QuestionEvent
    extra = 0
    readonly_fields = ("kind", "key", "created_at", "matched_at")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):
    list_display = ("uin", "heading", "house", "answering_body_name", "asking_member_name", "date_tabled",
                    "answered")
    list_filter = ("house", "answering_body_name", ("date_answered", admin.EmptyFieldListFilter), "source")
    search_fields = ("heading", "uin", "asking_member_name", "answering_member_name", "external_id")
    date_hierarchy = "date_tabled"
    readonly_fields = [f.name for f in Question._meta.fields if f.name.startswith("norm_")] + ["created_at",
                                                                                              "updated_at"]
    inlines = [QuestionEventInline]

    @admin.display(boolean=True)
    def answered(self, question):
        return question.is_answered


@admin.register(QuestionEvent)
class QuestionEventAdmin(admin.ModelAdmin):
    list_display = ("question", "kind", "created_at", "matched_at")
    list_filter = ("kind", ("matched_at", admin.EmptyFieldListFilter))
    raw_id_fields = ("question",)
    list_select_related = ("question",)
