"""Matches lose their id: (event, subscription) is the primary key, and only the indexes reads need are kept.

Django cannot change a table's primary key in place, so the table is made again and its rows copied over."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def remake(apps, schema_editor):
    match = apps.get_model("alerts", "Match")
    table = schema_editor.quote_name(match._meta.db_table)
    kept = schema_editor.quote_name(match._meta.db_table + "_before")
    columns = "subscription_id, event_id, created_at, delivery_id"
    schema_editor.execute(f"CREATE TABLE {kept} AS SELECT {columns} FROM {table}")
    schema_editor.execute(f"DROP TABLE {table}")
    schema_editor.create_model(match)
    schema_editor.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM {kept}")
    schema_editor.execute(f"DROP TABLE {kept}")


def foreign_key(to: str, on_delete, **options) -> models.ForeignKey:
    return models.ForeignKey(db_index=False, on_delete=on_delete, related_name="matches", to=to, **options)


class Migration(migrations.Migration):

    dependencies = [
        ("alerts", "0016_address_changed"),
        ("questions", "0015_backfill"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.RemoveConstraint(model_name="match", name="one_match_per_event"),
            migrations.RemoveIndex(model_name="match", name="match_undelivered"),
            migrations.RemoveField(model_name="match", name="id"),
            migrations.AddField(
                model_name="match",
                name="pk",
                field=models.CompositePrimaryKey("event", "subscription", blank=True, editable=False,
                                                 primary_key=True, serialize=False),
            ),
            migrations.AlterField(model_name="match", name="created_at",
                                  field=models.DateTimeField(default=django.utils.timezone.now)),
            migrations.AlterField(model_name="match", name="delivery",
                                  field=foreign_key("alerts.delivery", django.db.models.deletion.SET_NULL,
                                                    blank=True, null=True)),
            migrations.AlterField(model_name="match", name="event",
                                  field=foreign_key("questions.questionevent", django.db.models.deletion.CASCADE)),
            migrations.AlterField(model_name="match", name="subscription",
                                  field=foreign_key("alerts.subscription", django.db.models.deletion.CASCADE)),
            migrations.AddIndex(model_name="match",
                                index=models.Index(fields=["subscription", "delivery"], name="match_by_alert")),
            migrations.AddIndex(
                model_name="match",
                index=models.Index(condition=models.Q(("delivery__isnull", False)), fields=["delivery"],
                                   name="match_delivered"),
            ),
        ]),
        migrations.RunPython(remake, elidable=False),
    ]
