"""Two indexes of whole words, so that a word is found by its own posting list: the words of each question's
default fields (heading, question, answer, member, department, minister) in their base forms, for a word typed
without quotes, and as written, for quoted words and phrases. The trigram indexes find a rare word only by
reading the posting lists of all its trigrams, some of which are in most questions: at a million questions a
cold search for one took over 300 ms.

Each is a GIN index over the array of words the normalised columns hold (`questions.search.sql.DefaultWords`
spells the same expression, which is how PostgreSQL knows to use it). An index entry holds at most 2,712 bytes,
so a word is kept to its first 255 characters (the most a PostgreSQL pattern can count): a question with a
longer one (a pasted hash, say) would otherwise be refused whole. The search looks up no word that long here.
The planner's statistics keep 20,000 words per index rather than 1,000: outside those it guesses every word as
common as the rarest it keeps, which at the default made a rare word look too common to count quickly.

PostgreSQL only: on SQLite the search reads the columns as before. Built CONCURRENTLY, outside a transaction, so
that questions go on being written meanwhile (at a million questions, a few minutes and about 600 MB each); an
index a stopped build left invalid is built anew by running `migrate` again, as 0007 explains.
"""

from django.db import migrations

TABLE = "questions_question"
DEFAULT_FIELDS = ("heading", "question", "answer", "member", "department", "minister")
INDEXES = {
    "question_base_words": [f"base_{field}" for field in DEFAULT_FIELDS],
    "question_norm_words": [f"norm_{field}" for field in DEFAULT_FIELDS],
}
STATISTICS = 2000


def create(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "postgresql":
        return
    for name, columns in INDEXES.items():
        with connection.cursor() as cursor:
            cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name])
            found = cursor.fetchone()
        if found and not found[0]:
            schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        words = f"string_to_array(regexp_replace({' || '.join(columns)}, '([^ ]{{255}})[^ ]+', '\\1', 'g'), ' ')"
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {TABLE} USING gin (({words}))")
        schema_editor.execute(f"ALTER INDEX {name} ALTER COLUMN 1 SET STATISTICS {STATISTICS}")
    schema_editor.execute(f"ANALYZE {TABLE}")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction.
    atomic = False
    dependencies = [("questions", "0018_fill_due_dates")]
    operations = [migrations.RunPython(create, drop)]
