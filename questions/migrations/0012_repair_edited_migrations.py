"""Brings a database that ran an earlier version of an edited migration to what today's versions make.

`migrate` knows a migration by its name alone, so a database that ran one before it was edited kept what that
version did, and `migrate` finds nothing left to do. Of this app's edited migrations:

- 0005 first wrote a feed's ids without hashing a long guid: on SQLite (PostgreSQL refused them) a feed item
  can have an id longer than the column's 500 characters, which the feed no longer finds;
- 0008 first added `text_cut` without a default kept by the database;
- 0009 first filled the base forms itself, with the word forms of its day, and the index build that is now 0011
  was 0010: a database that ran those has the record of a `0010_base_form_indexes` that no longer exists, and
  0010's fill, finding every row filled, left it base forms older than today's (an auxiliary verb such as
  "does" taken as a noun);
- 0007 changed only how its indexes are built, never which.

Each step looks before it acts: on a database those versions never touched it changes nothing, and one stopped
half way is finished by running `migrate` again.
"""

import importlib

from django.db import migrations, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import NOT_PROVIDED
from django.db.models.functions import Length

from questions.search.words import base_text

feed_ids = importlib.import_module("questions.migrations.0005_feed_question_ids")
fill = importlib.import_module("questions.migrations.0010_fill_base_forms")

RENAMED = "0010_base_form_indexes"


def column_defaults(schema_editor, table: str) -> dict[str, str | None]:
    """Each column of `table` and the default the database keeps for it (None for none)."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        return {column.name: column.default for column in connection.introspection.get_table_description(cursor, table)}


def keep_database_defaults(schema_editor, model, names) -> None:
    """Give each of the fields `names` of `model` the default its `db_default` says, where the column has none."""
    for name in names:
        field = model._meta.get_field(name)
        if column_defaults(schema_editor, model._meta.db_table)[field.column] is not None:
            continue
        if schema_editor.connection.vendor == "postgresql":
            # Setting a default takes a lock every reader of the table queues behind, briefly: a long
            # transaction holding the table fails the migration, which can be run again, rather than
            # stalling the site while it waits (as 0008 does).
            schema_editor.execute("SET LOCAL lock_timeout = '5s'")
        stored = field.clone()
        stored.db_default = NOT_PROVIDED
        stored.set_attributes_from_name(name)
        stored.model = model
        # On SQLite the table is made anew from the model, which gives every column its default at once.
        schema_editor.alter_field(model, stored, field)


def keep_text_cut_default(apps, schema_editor):
    keep_database_defaults(schema_editor, apps.get_model("questions", "Question"), ["text_cut"])


def hash_long_feed_ids(apps, schema_editor):
    Question = apps.get_model("questions", "Question")
    limit = Question._meta.get_field("external_id").max_length
    long = (Question.objects.filter(source__kind="feed").annotate(length=Length("external_id"))
            .filter(length__gt=limit).only("pk", "external_id", "source_id"))
    for question in long:
        guid = question.external_id.removeprefix(f"feed:{question.source_id}:")
        new_id = feed_ids.feed_question_id(question.source_id, guid)
        # A feed that brought the item again since stored it under the new id: that copy is the one it updates,
        # and this one, with whatever follows it, is left as it is.
        if not Question.objects.filter(external_id=new_id).exists():
            Question.objects.filter(pk=question.pk).update(external_id=new_id)


def refill_base_forms(apps, schema_editor):
    renamed = MigrationRecorder(schema_editor.connection).migration_qs.filter(app="questions", name=RENAMED)
    if not renamed.exists():
        return
    Question = apps.get_model("questions", "Question")
    words = [f"norm_{field}" for field in fill.FIELDS]
    bases = [f"base_{field}" for field in fill.FIELDS]
    rows = Question.objects.order_by("pk").values_list("pk", *words, *bases)
    last = 0
    while batch := list(rows.filter(pk__gt=last)[:fill.BATCH]):
        last = batch[-1][0]
        stale = []
        for pk, *texts in batch:
            made = [base_text(text) for text in texts[:len(words)]]
            if made != texts[len(words):]:
                stale.append([*made, pk])
        if stale:
            with transaction.atomic(), schema_editor.connection.cursor() as cursor:
                cursor.executemany(fill.UPDATE, stale)
    # Last: a run stopped before here starts again, and writes only what it had not.
    renamed.delete()


class Migration(migrations.Migration):
    # The base forms are written a batch at a time, each in its own transaction, as 0010 writes them.
    atomic = False
    dependencies = [("questions", "0011_base_form_indexes")]
    operations = [
        migrations.RunPython(keep_text_cut_default, migrations.RunPython.noop, atomic=True),
        migrations.RunPython(hash_long_feed_ids, migrations.RunPython.noop, atomic=True),
        migrations.RunPython(refill_base_forms, migrations.RunPython.noop),
    ]
