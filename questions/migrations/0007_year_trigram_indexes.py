"""Each trigram index also keys its rows by the year they were tabled, so that PostgreSQL can find a word's
matches within one year without reading the posting lists of every other year: how the search page finds
the newest matches of a word that is only in old questions (`questions.searching.year_by_year`).

A condition on the words alone uses these indexes as it used the trigram indexes they replace, at the same
cost. SQLite has no such index and scans, which is fine at its scale.
"""

from django.db import migrations

FIELDS = ("heading", "question", "answer", "member", "party", "constituency", "department", "minister", "house",
          "uin")
# Spelt as `questions.searching.tabled_year` spells it: PostgreSQL uses an expression index only for the same
# expression.
YEAR = "(EXTRACT(YEAR FROM date_tabled))"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    for field in FIELDS:
        # The new index first, so that searches always have one.
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS question_norm_{field}_year_trgm "
            f"ON questions_question USING gin ({YEAR}, norm_{field} gin_trgm_ops)"
        )
        schema_editor.execute(f"DROP INDEX IF EXISTS question_norm_{field}_trgm")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for field in FIELDS:
        schema_editor.execute(
            f"CREATE INDEX IF NOT EXISTS question_norm_{field}_trgm "
            f"ON questions_question USING gin (norm_{field} gin_trgm_ops)"
        )
        schema_editor.execute(f"DROP INDEX IF EXISTS question_norm_{field}_year_trgm")


class Migration(migrations.Migration):
    dependencies = [("questions", "0006_pruned_problems")]
    operations = [migrations.RunPython(create, drop)]
