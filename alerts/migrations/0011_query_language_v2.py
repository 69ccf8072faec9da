"""Saved searches keep the text people typed and take the meaning of query language v2: a quoted word is now
exact where an unquoted one matches its forms, so the two no longer share a canonical spelling (v1 wrote
`"prisons"` as `prisons`). Each canonical text is written again from the typed one. Two saved searches of one
subscriber that had different canonical texts still do: v2 tells apart more than v1 did, never less."""

from django.db import migrations
from django.utils import timezone

from questions.search import QueryError, canonical, parse


def rewrite(apps, schema_editor):
    Subscription = apps.get_model("alerts", "Subscription")
    changed = []
    now = timezone.now()
    for subscription in Subscription.objects.exclude(query="").only("query", "canonical_query").iterator(2000):
        try:
            text = canonical(parse(subscription.query, max_length=None))
        except QueryError:
            # Refused by the rules of today: it keeps the meaning it was saved with, as it did before.
            continue
        if text != subscription.canonical_query:
            # Changed now, so that a percolator already running takes the new text.
            subscription.canonical_query, subscription.updated_at = text, now
            changed.append(subscription)
    Subscription.objects.bulk_update(changed, ["canonical_query", "updated_at"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [("alerts", "0010_forget_addresses_in_sessions")]
    operations = [migrations.RunPython(rewrite, migrations.RunPython.noop)]
