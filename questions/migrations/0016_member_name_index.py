"""An index of the names of the members who asked, so that the search page's list of them (for suggesting
`member:"..."` when a name is typed as words) is read with one index probe per member rather than a scan of the
archive: at a million questions that scan took over a second, paid by whichever search found the list's cache
expired (`questions.searching.member_names`).

On PostgreSQL it is built CONCURRENTLY, outside a transaction, so that questions go on being written meanwhile;
an index a stopped build left invalid is built anew by running `migrate` again, as 0007 explains.
"""

from django.db import migrations, models

NAME = "question_member_name"
TABLE = "questions_question"
COLUMN = "asking_member_name"


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {NAME} ON {TABLE} ({COLUMN})")
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [NAME])
        found = cursor.fetchone()
    if found and not found[0]:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NAME}")
    schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {NAME} ON {TABLE} ({COLUMN})")


def drop(apps, schema_editor):
    concurrently = " CONCURRENTLY" if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(f"DROP INDEX{concurrently} IF EXISTS {NAME}")


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction.
    atomic = False
    dependencies = [("questions", "0015_backfill")]
    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create, drop)],
            state_operations=[
                migrations.AddIndex(model_name="question", index=models.Index(fields=[COLUMN], name=NAME)),
            ],
        ),
    ]
