"""Fills the due date 0017 added, a batch at a time, each batch in its own transaction, as 0010 fills the base
forms: a `migrate` stopped half way goes on from where it was when run again. Every filled row is written anew
with all its indexes; it runs before 0019 builds the word indexes, which it would otherwise rewrite too. The rule
is read from `questions.due` itself rather than copied here: the column must hold what the code that keeps it
up to date would write, and a later change of the rule rebuilds the column with `refresh_search_text`.
"""

from django.db import migrations, transaction
from django.db.models import Q

from questions.due import due_date

BATCH = 2000
UPDATE = "UPDATE questions_question SET date_due = %s WHERE id = %s"


def fill(apps, schema_editor):
    Question = apps.get_model("questions", "Question")
    # The questions the rule gives a date: a named day needs its date for answer, anything else either date.
    dated = Q(date_for_answer__isnull=False) | Q(is_named_day=False, date_tabled__isnull=False)
    unfilled = Question.objects.filter(dated, date_due__isnull=True).order_by("pk").values_list(
        "pk", "date_tabled", "date_for_answer", "is_named_day")
    last = 0
    while rows := list(unfilled.filter(pk__gt=last)[:BATCH]):
        last = rows[-1][0]
        with transaction.atomic(using=schema_editor.connection.alias), schema_editor.connection.cursor() as cursor:
            cursor.executemany(UPDATE, [[due_date(tabled, for_answer, named), pk]
                                        for pk, tabled, for_answer, named in rows])


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("questions", "0017_date_due")]
    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
