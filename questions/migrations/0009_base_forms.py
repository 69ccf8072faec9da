"""The base form of every word of every question (query language v2: an unquoted word matches its forms).

The columns are filled here from the words already stored, a batch at a time, each batch in its own
transaction: on a large archive this takes minutes, and a `migrate` stopped half way goes on from where it was
when run again. A poller of the release before, still running while this one migrates, inserts questions
without the new columns (hence the database's own default, ""), and `refresh_search_text` fills those.
"""

from django.db import migrations, models, transaction

from questions.search.words import base_text

FIELDS = ("heading", "question", "answer", "member", "party", "constituency", "department", "minister", "house",
          "uin")
BATCH = 2000


def fill(apps, schema_editor):
    Question = apps.get_model("questions", "Question")
    # A filled column always holds at least two spaces, so "" marks a row not filled yet.
    unfilled = Question.objects.filter(base_uin="").order_by("pk").values_list("pk", flat=True)
    last = 0
    while ids := list(unfilled.filter(pk__gt=last)[:BATCH]):
        last = ids[-1]
        with transaction.atomic():
            batch = list(Question.objects.filter(pk__in=ids).only(*(f"norm_{field}" for field in FIELDS)))
            for question in batch:
                for field in FIELDS:
                    setattr(question, f"base_{field}", base_text(getattr(question, f"norm_{field}")))
            Question.objects.bulk_update(batch, [f"base_{field}" for field in FIELDS])


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('questions', '0008_question_text_cut'),
    ]

    operations = [
        *(migrations.AddField(model_name="question", name=f"base_{field}",
                              field=models.TextField(db_default="", default="", editable=False))
          for field in FIELDS),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
