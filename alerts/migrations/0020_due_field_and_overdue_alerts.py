"""Saved searches may ask to hear when their questions go overdue (`alert_on` "overdue"), and the query language
has a due field (docs/query-language.md, section 8).

Before it, `due:` was ordinary text: `due:overdue` looked for the phrase "due overdue", and the canonical text
stored beside each saved search (what alerts match) says so, `"due overdue"`, and keeps meaning it. The typed
text is what the search page, the feeds and the edit form read: a saved search whose typed text now reads
otherwise (a due field), or is now refused (`due:tomorrow`), is given its canonical text as its typed text, so
that every place reads what it was saved to mean. How many were rewritten is written to the migration's output."""

import re

from django.db import migrations, models

from questions.search import DUE, QueryError, leaves, parse, parse_canonical

# The due field's name as a query piece: where a refusal can come from it.
DUE_PIECE = re.compile(r"(?i)(?:^|[\s(\-])due:")


def keep_meaning(apps, schema_editor):
    Subscription = apps.get_model("alerts", "Subscription")
    limit = Subscription._meta.get_field("query").max_length
    changed, kept = [], []
    for subscription in Subscription.objects.filter(question__isnull=True, query__icontains="due").only(
            "query", "canonical_query").iterator(2000):
        try:
            before = parse_canonical(subscription.canonical_query)
        except QueryError:
            continue
        try:
            now = parse(subscription.query, max_length=None)
        except QueryError:
            # Refused since only if the due field is what refuses it (it takes only its own words).
            now = None if DUE_PIECE.search(subscription.query) else before
        if now is None or now != before and any(DUE in leaf.fields for leaf in leaves(now)):
            if len(subscription.canonical_query) <= limit:
                subscription.query = subscription.canonical_query
                changed.append(subscription)
            else:
                kept.append(subscription.pk)
    Subscription.objects.bulk_update(changed, ["query"], batch_size=1000)
    if changed:
        print(f"\n  {len(changed)} saved search(es) with due: as text now written as their canonical text.")
    if kept:
        print(f"\n  {len(kept)} saved search(es) with due: as text whose canonical text is too long to be their "
              f"typed text: their alerts keep their meaning, their pages read the due field. Ids: {kept}")


class Migration(migrations.Migration):
    dependencies = [("alerts", "0019_match_per_alert")]
    operations = [
        migrations.AlterField(
            model_name="subscription",
            name="alert_on",
            field=models.CharField(
                choices=[("both", "New questions and answers"), ("new", "New questions only"),
                         ("answers", "Answers only"), ("overdue", "Questions that go overdue")],
                default="both", max_length=10),
        ),
        migrations.RunPython(keep_meaning, migrations.RunPython.noop),
    ]
