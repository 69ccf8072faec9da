"""Each trigram index also keys its rows by the year they were tabled, so that PostgreSQL can find a word's
matches within one year without reading the posting lists of every other year: how the search page finds
the newest matches of a word that is only in old questions (`questions.searching.year_by_year`).

A condition on the words alone uses these indexes as it used the trigram indexes they replace, at the same
cost. SQLite has no such index and scans, which is fine at its scale.

The indexes are built CONCURRENTLY, outside a transaction: on a large archive a plain build blocks the
poller's writes for minutes (about 4½ at a million questions). Each step can be run again, so a migration
stopped half way is finished by running it again; an index a stopped build left invalid is built anew. A build
whose `migrate` was stopped stops within a second (PostgreSQL 14 and later).
"""

import contextlib

from django.db import DatabaseError, migrations

FIELDS = ("heading", "question", "answer", "member", "party", "constituency", "department", "minister", "house",
          "uin")
# Spelt as `questions.searching.tabled_year` spells it: PostgreSQL uses an expression index only for the same
# expression.
YEAR = "(EXTRACT(YEAR FROM date_tabled))"


def _build(schema_editor, name: str, columns: str) -> None:
    with schema_editor.connection.cursor() as cursor:
        if schema_editor.connection.pg_version >= 140000:
            # A `migrate` stopped half way would otherwise leave its build running (or waiting for writers)
            # until done, and a second run would wait for it, drop it and start again. Some platforms cannot
            # check the client's connection and refuse the setting: there, builds go on as before.
            with contextlib.suppress(DatabaseError):
                cursor.execute("SET client_connection_check_interval = '1s'")
        # Found by name on the search path, the schema the index is built in.
        cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name])
        found = cursor.fetchone()
    if found and not found[0]:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON questions_question USING gin ({columns})"
    )


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    for field in FIELDS:
        # The new index first, so that searches always have one.
        _build(schema_editor, f"question_norm_{field}_year_trgm", f"{YEAR}, norm_{field} gin_trgm_ops")
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS question_norm_{field}_trgm")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for field in FIELDS:
        _build(schema_editor, f"question_norm_{field}_trgm", f"norm_{field} gin_trgm_ops")
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS question_norm_{field}_year_trgm")


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction.
    atomic = False
    dependencies = [("questions", "0006_pruned_problems")]
    operations = [migrations.RunPython(create, drop)]
