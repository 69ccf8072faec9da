"""Each question's due date (questions.due), kept so that searches can ask for due, overdue and late answers.

The rule is read from `questions.due` itself rather than copied here: the column must hold what the code that
keeps it up to date would write. A later change of the rule rebuilds the column with `refresh_search_text`.
A due date depends only on the date for answer and the kind of question (or, without the first, on the date
tabled), so it is worked out once per distinct date and written with one statement per batch of dates: a
million questions hold a few thousand distinct dates.
"""

from django.db import migrations, models
from django.db.models import Case, F, Value, When

from questions.due import due_date

DATES_PER_STATEMENT = 500


def fill(apps, schema_editor):
    questions = apps.get_model("questions", "Question").objects
    questions.filter(is_named_day=True).update(date_due=F("date_for_answer"))
    for column, rows in (("date_for_answer", questions.filter(is_named_day=False, date_for_answer__isnull=False)),
                         ("date_tabled", questions.filter(is_named_day=False, date_for_answer__isnull=True,
                                                          date_tabled__isnull=False))):
        dates = sorted(rows.order_by().values_list(column, flat=True).distinct())
        for start in range(0, len(dates), DATES_PER_STATEMENT):
            batch = dates[start:start + DATES_PER_STATEMENT]
            due = {day: due_date(day if column == "date_tabled" else None,
                                 day if column == "date_for_answer" else None, False) for day in batch}
            rows.filter(**{f"{column}__in": batch}).update(
                date_due=Case(*(When(**{column: day}, then=Value(when)) for day, when in due.items()),
                              output_field=models.DateField()))


class Migration(migrations.Migration):
    dependencies = [("questions", "0017_word_indexes")]
    operations = [
        migrations.AddField(
            model_name="question", name="date_due",
            field=models.DateField(blank=True, db_index=True, editable=False, null=True),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
