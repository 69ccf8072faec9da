"""Year-and-trigram indexes on the base forms, as 0007 made for the words as written: an unquoted word is
looked for in the base forms, a quoted one, a phrase or a wildcard in the words as written. Built
CONCURRENTLY, and finished by running `migrate` again if stopped, as 0007 explains."""

import importlib

from django.db import migrations

year_trigram = importlib.import_module("questions.migrations.0007_year_trigram_indexes")


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for field in year_trigram.FIELDS:
        year_trigram._build(schema_editor, f"question_base_{field}_year_trgm",
                            f"{year_trigram.YEAR}, base_{field} gin_trgm_ops")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for field in year_trigram.FIELDS:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS question_base_{field}_year_trgm")


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction.
    atomic = False
    dependencies = [("questions", "0010_fill_base_forms")]
    operations = [migrations.RunPython(create, drop)]
