from django.core.management.base import BaseCommand

from questions.models import Question

BATCH = 2000


class Command(BaseCommand):
    help = ("Rebuild every question's searchable text (its words and their base forms) and its due date, after a "
            "change to how text is normalised, to the lemmatiser or to the calendar of bank holidays, or after an "
            "upgrade that an old poller outlived.")

    def handle(self, *args, **options):
        fields = [*Question.SEARCH_COLUMNS, "date_due"]
        changed = last = 0
        while batch := list(Question.objects.filter(pk__gt=last).order_by("pk")[:BATCH]):
            stale = []
            for question in batch:
                before = [getattr(question, name) for name in fields]
                question.refresh_derived()
                if [getattr(question, name) for name in fields] != before:
                    stale.append(question)
            Question.objects.bulk_update(stale, fields)
            changed, last = changed + len(stale), batch[-1].pk
        self.stdout.write(f"{changed} question(s) had stale searchable text or due date; all are up to date now.")
