import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0014_repair_edited_migrations"),
    ]

    operations = [
        migrations.CreateModel(
            name="SuppressionLift",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("reason", models.CharField(choices=[("unsubscribed", "Unsubscribed"), ("bounced", "Bounced"),
                                                     ("complained", "Complained"),
                                                     ("operator", "Suppressed by an operator")], max_length=20)),
                ("suppressed_at", models.DateTimeField()),
                ("lifted_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("lifted_by", models.CharField(max_length=150)),
                ("subscriber", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE,
                                                 related_name="suppression_lifts", to="alerts.subscriber")),
            ],
            options={
                "ordering": ["-lifted_at", "-id"],
            },
        ),
    ]
