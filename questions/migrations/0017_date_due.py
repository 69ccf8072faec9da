"""Each question's due date (questions.due), kept so that searches can ask for due, overdue and late answers;
0018 fills it."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("questions", "0016_member_name_index")]
    operations = [
        migrations.AddField(
            model_name="question", name="date_due",
            field=models.DateField(blank=True, db_index=True, editable=False, null=True),
        ),
    ]
