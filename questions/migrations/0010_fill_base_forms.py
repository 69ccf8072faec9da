"""Fills the base-form columns 0009 added from the words already stored, a batch at a time, each batch in its
own transaction: a `migrate` stopped half way goes on from where it was when run again. Each batch is written
in one round trip of single-row UPDATEs (psycopg pipelines `executemany`): Django's `bulk_update` builds one
CASE per column, which PostgreSQL works through row by row, ten times slower here.
"""

import importlib

from django.db import migrations, transaction

from questions.search.words import base_text

FIELDS = importlib.import_module("questions.migrations.0009_base_forms").FIELDS
BATCH = 2000
UPDATE = ("UPDATE questions_question SET " + ", ".join(f"base_{field} = %s" for field in FIELDS) +
          " WHERE id = %s")


def fill(apps, schema_editor):
    Question = apps.get_model("questions", "Question")
    # A filled column always holds at least two spaces, so "" marks a row not filled yet.
    unfilled = Question.objects.filter(base_uin="").order_by("pk").values_list("pk", *(f"norm_{f}" for f in FIELDS))
    last = 0
    while rows := list(unfilled.filter(pk__gt=last)[:BATCH]):
        last = rows[-1][0]
        with transaction.atomic(), schema_editor.connection.cursor() as cursor:
            cursor.executemany(UPDATE, [[*map(base_text, row[1:]), row[0]] for row in rows])


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("questions", "0009_base_forms")]
    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
