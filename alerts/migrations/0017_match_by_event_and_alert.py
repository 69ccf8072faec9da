"""Matches lose their id: (event, subscription) is the primary key, only the indexes reads need are kept, and
the keys of new matches are not checked by the database (see Match).

Django cannot change a table's primary key in place, so the table is made again and its rows copied over."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

COLUMNS = "subscription_id, event_id, created_at, delivery_id"


def set_aside(apps, schema_editor):
    """Keep the matches in a plain table of their own and drop the model's table."""
    table = apps.get_model("alerts", "Match")._meta.db_table
    schema_editor.execute(f"CREATE TABLE {schema_editor.quote_name(table + '_before')} AS "
                          f"SELECT {COLUMNS} FROM {schema_editor.quote_name(table)}")
    schema_editor.execute(f"DROP TABLE {schema_editor.quote_name(table)}")


def bring_back(apps, schema_editor):
    """Make the model's table as the model now is, with the matches set aside."""
    match = apps.get_model("alerts", "Match")
    kept = schema_editor.quote_name(match._meta.db_table + "_before")
    schema_editor.create_model(match)
    # Only matches whose alert and event are still there: the table made back on a rollback checks its keys.
    schema_editor.execute(f"INSERT INTO {schema_editor.quote_name(match._meta.db_table)} ({COLUMNS}) "
                          f"SELECT {COLUMNS} FROM {kept} WHERE subscription_id IN (SELECT id FROM alerts_subscription) "
                          f"AND event_id IN (SELECT id FROM questions_questionevent)")
    schema_editor.execute(f"DROP TABLE {kept}")


def foreign_key(to: str, on_delete, **options) -> models.ForeignKey:
    return models.ForeignKey(db_index=False, on_delete=on_delete, related_name="matches", to=to, **options)


class Migration(migrations.Migration):

    dependencies = [
        ("alerts", "0016_address_changed"),
        ("questions", "0015_backfill"),
    ]

    operations = [
        migrations.RunPython(set_aside, bring_back, elidable=False),
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.RemoveConstraint(model_name="match", name="one_match_per_event"),
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
                                  field=foreign_key("questions.questionevent", django.db.models.deletion.CASCADE,
                                                    db_constraint=False)),
            migrations.AlterField(model_name="match", name="subscription",
                                  field=foreign_key("alerts.subscription", django.db.models.deletion.CASCADE,
                                                    db_constraint=False)),
            migrations.AddIndex(model_name="match",
                                index=models.Index(fields=["subscription", "delivery"], name="match_by_alert")),
            migrations.AddIndex(
                model_name="match",
                index=models.Index(condition=models.Q(("delivery__isnull", False)), fields=["delivery"],
                                   name="match_delivered"),
            ),
        ]),
        migrations.RunPython(bring_back, set_aside, elidable=False),
    ]
