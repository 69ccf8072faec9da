"""A feed's items are stored under ids of their own (`feed:<source>:<guid>`), so that no item can take the
id of an API question or of another feed's item; the questions feeds brought before keep theirs, renamed."""

from django.db import migrations
from django.db.models import CharField, F, Value
from django.db.models.functions import Cast, Concat


def prefix_feed_ids(apps, schema_editor):
    Question = apps.get_model("questions", "Question")
    Question.objects.filter(source__kind="feed").exclude(external_id__startswith="feed:").update(
        external_id=Concat(Value("feed:"), Cast("source_id", CharField()), Value(":"), F("external_id"))
    )


class Migration(migrations.Migration):
    dependencies = [("questions", "0004_cache_table")]
    operations = [migrations.RunPython(prefix_feed_ids, migrations.RunPython.noop)]
