"""A question's due date passing with no answer but a holding one is an event of its own (questions.overdue),
made once per question: a choice of the column, which the database does not check."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("questions", "0019_word_indexes")]
    operations = [
        migrations.AlterField(
            model_name="questionevent", name="kind",
            field=models.CharField(choices=[("tabled", "New question"), ("answered", "Answered"),
                                            ("corrected", "Answer corrected"), ("withdrawn", "Withdrawn"),
                                            ("overdue", "Overdue")], max_length=20),
        ),
    ]
