"""A match is one row per alert and matching run, holding the ids of the events it matched, instead of one row
per (alert, event); and a sharded run notes which events each shard has recorded (see Match, MatchedShard).

The table is made again, its rows gathered by alert, time and email."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

BEFORE = "alerts_match_before"


def set_aside(apps, schema_editor):
    """Keep the matches in a plain table of their own and drop the model's table."""
    table = schema_editor.quote_name(apps.get_model("alerts", "Match")._meta.db_table)
    schema_editor.execute(f"CREATE TABLE {BEFORE} AS SELECT * FROM {table}")
    schema_editor.execute(f"DROP TABLE {table}")


def gather(apps, schema_editor):
    """Make the new table and gather the old rows into it: one per alert, time found and email."""
    match = apps.get_model("alerts", "Match")
    schema_editor.create_model(match)
    table = schema_editor.quote_name(match._meta.db_table)
    events = ("to_jsonb(array_agg(event_id ORDER BY event_id))" if schema_editor.connection.vendor == "postgresql"
              else "json_group_array(event_id)")
    # SQLite gathers in the order rows come, so they come ordered.
    source = (BEFORE if schema_editor.connection.vendor == "postgresql"
              else f"(SELECT * FROM {BEFORE} ORDER BY event_id)")
    schema_editor.execute(
        f"INSERT INTO {table} (subscription_id, events, size, first_event, created_at, delivery_id) "
        f"SELECT subscription_id, {events}, count(*), min(event_id), created_at, delivery_id FROM {source} AS m "
        f"GROUP BY subscription_id, created_at, delivery_id")
    schema_editor.execute(f"DROP TABLE {BEFORE}")


def spread(apps, schema_editor):
    """Back: one row per (alert, event) again."""
    match = apps.get_model("alerts", "Match")
    schema_editor.create_model(match)
    table = schema_editor.quote_name(match._meta.db_table)
    postgresql = schema_editor.connection.vendor == "postgresql"
    each = "jsonb_array_elements_text(m.events)::bigint" if postgresql else "CAST(e.value AS INTEGER)"
    joined = "" if postgresql else ", json_each(m.events) AS e"
    # A pair held twice (two runs of differently sharded matching) comes back once: the one with an email.
    schema_editor.execute(
        f"INSERT {'' if postgresql else 'OR IGNORE '}INTO {table} (subscription_id, event_id, created_at, delivery_id) "
        f"SELECT subscription_id, {each}, created_at, delivery_id FROM {BEFORE} AS m{joined} "
        f"ORDER BY delivery_id IS NULL{' ON CONFLICT DO NOTHING' if postgresql else ''}")
    schema_editor.execute(f"DROP TABLE {BEFORE}")


def foreign_key(to: str, on_delete, **options) -> models.ForeignKey:
    return models.ForeignKey(db_index=False, on_delete=on_delete, related_name="matches", to=to, **options)


class Migration(migrations.Migration):

    dependencies = [
        ("alerts", "0018_resend_token"),
        ("questions", "0020_overdue_event"),
    ]

    operations = [
        migrations.RunPython(set_aside, spread, elidable=False),
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.DeleteModel(name="Match"),
            migrations.CreateModel(
                name="Match",
                fields=[
                    ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                               verbose_name="ID")),
                    ("events", models.JSONField()),
                    ("size", models.PositiveIntegerField()),
                    ("first_event", models.BigIntegerField()),
                    ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                    ("delivery", foreign_key("alerts.delivery", django.db.models.deletion.SET_NULL, blank=True,
                                             null=True)),
                    ("subscription", foreign_key("alerts.subscription", django.db.models.deletion.CASCADE,
                                                 db_constraint=False)),
                ],
                options={
                    "verbose_name_plural": "matches",
                    "indexes": [
                        models.Index(fields=["subscription", "delivery"], name="match_by_alert"),
                        models.Index(condition=models.Q(("delivery__isnull", True)), fields=["subscription"],
                                     name="match_undelivered"),
                        models.Index(condition=models.Q(("delivery__isnull", False)), fields=["delivery"],
                                     name="match_delivered"),
                    ],
                },
            ),
        ]),
        migrations.RunPython(gather, set_aside, elidable=False),
        migrations.CreateModel(
            name="MatchedShard",
            fields=[
                ("pk", models.CompositePrimaryKey("event_id", "shard", "shards", blank=True, editable=False,
                                                  primary_key=True, serialize=False)),
                ("event_id", models.BigIntegerField()),
                ("shard", models.PositiveSmallIntegerField()),
                ("shards", models.PositiveSmallIntegerField()),
            ],
        ),
    ]
