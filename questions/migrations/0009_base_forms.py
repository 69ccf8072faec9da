"""The base form of every word of every question (query language v2: an unquoted word matches its forms).

The columns come empty here; 0010 fills them. A poller of the release before, still running while this one
migrates, inserts questions without them: the database's own default ("") keeps that working.
"""

from django.db import migrations, models

FIELDS = ("heading", "question", "answer", "member", "party", "constituency", "department", "minister", "house",
          "uin")


class Migration(migrations.Migration):
    dependencies = [("questions", "0008_question_text_cut")]
    operations = [
        migrations.AddField(model_name="question", name=f"base_{field}",
                            field=models.TextField(db_default="", default="", editable=False))
        for field in FIELDS
    ]
