"""Trigram indexes so that LIKE '% word %' on the normalised text is served by an index on PostgreSQL.

SQLite has no such index and scans, which is fine at its scale.
"""

from django.db import migrations

FIELDS = ("heading", "question", "answer", "member", "party", "constituency", "department", "minister", "house",
          "uin")


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for field in FIELDS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS question_norm_{field}_trgm "
            f"ON questions_question USING gin (norm_{field} gin_trgm_ops)"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for field in FIELDS:
        schema_editor.execute(f"DROP INDEX IF EXISTS question_norm_{field}_trgm")


class Migration(migrations.Migration):
    dependencies = [("questions", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]
