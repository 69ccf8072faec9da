"""A feed's items are stored under ids of their own (`feed:<source>:<guid>`), so that no item can take the
id of an API question or of another feed's item; the questions feeds brought before keep theirs, renamed."""

import hashlib

from django.db import migrations

BATCH = 1000


def feed_question_id(source_id: int, guid: str) -> str:
    # As questions.sources.feed makes them, kept here so that the migration never changes with that code.
    prefix = f"feed:{source_id}:"
    if len(prefix) + len(guid) <= 500:
        return prefix + guid
    return prefix + "sha256:" + hashlib.sha256(guid.encode()).hexdigest()


def _rename(apps, rename) -> None:
    Question = apps.get_model("questions", "Question")
    rows = Question.objects.filter(source__kind="feed").only("pk", "external_id", "source_id").order_by("pk")
    last = 0
    while batch := list(rows.filter(pk__gt=last)[:BATCH]):
        changed = [q for q in batch if rename(q)]
        Question.objects.bulk_update(changed, ["external_id"])
        last = batch[-1].pk


def prefix_feed_ids(apps, schema_editor):
    def rename(question) -> bool:
        if question.external_id.startswith("feed:"):
            return False
        question.external_id = feed_question_id(question.source_id, question.external_id)
        return True

    _rename(apps, rename)


def unprefix_feed_ids(apps, schema_editor):
    # Back to the bare guid where no other question holds it (a hashed id cannot be undone).
    Question = apps.get_model("questions", "Question")

    claimed: set[str] = set()  # two feeds' copies of one item: only the first gets the bare guid back

    def rename(question) -> bool:
        prefix = f"feed:{question.source_id}:"
        guid = question.external_id.removeprefix(prefix)
        if guid == question.external_id or guid.startswith("sha256:") or guid in claimed or \
                Question.objects.filter(external_id=guid).exists():
            return False
        claimed.add(guid)
        question.external_id = guid
        return True

    _rename(apps, rename)


class Migration(migrations.Migration):
    dependencies = [("questions", "0004_cache_table")]
    operations = [migrations.RunPython(prefix_feed_ids, unprefix_feed_ids)]
