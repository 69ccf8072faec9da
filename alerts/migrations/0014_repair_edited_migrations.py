"""Brings a database that ran an earlier version of an edited migration to what today's versions make.

`migrate` knows a migration by its name alone, so a database that ran one before it was edited kept what that
version did, and `migrate` finds nothing left to do. Of this app's edited migrations:

- 0005 first indexed every pending delivery as `delivery_due` on `next_attempt_at` alone, made no
  `delivery_leased`, and gave the "Send due emails" entry no expiry, then 10 seconds;
- 0012 first made digest runs without `building_until`, `made_up_to` or `chunks_open`, no
  `subscription_frequency` index, the stored emails' columns without the defaults the database keeps for the
  release before, and left every alert without `resumed_at`, so that matches the old eight-day window had
  dropped would be sent;
- 0006, 0011 and 0013 changed nothing a database keeps: 0011 later also marked each alert it rewrote as
  changed, which only a percolator running through the upgrade needs (new workers load every alert afresh).

Each step looks before it acts: on a database those versions never touched it changes nothing, and one stopped
half way is finished by running `migrate` again. The indexes are built CONCURRENTLY on PostgreSQL: the
deliveries table is the send queue and can be large, and a plain build would hold up every sender until done.
While `delivery_due` is rebuilt, senders find pending rows through the index on `status`.
"""

import contextlib
import datetime as dt
import importlib

from django.apps.registry import Apps
from django.db import DatabaseError, migrations
from django.db.migrations.recorder import MigrationRecorder
from django.db.migrations.state import ModelState
from django.db.models import Q
from django.utils import timezone

repair = importlib.import_module("questions.migrations.0012_repair_edited_migrations")

SEND_DUE = {"name": "Send due emails", "task": "alerts.send_due"}
SEND_EXPIRY = 60
# What 0005 gave that entry before: no expiry at first, then 10 seconds. Any other is an operator's choice.
SHIPPED_EXPIRIES = Q(expire_seconds=None) | Q(expire_seconds=10)
STORED_EMAIL = ["from_email", "to_email", "headers", "body_text", "body_html"]
RUN_COLUMNS = ["building_until", "made_up_to", "chunks_open"]
INDEXES = [("Delivery", "delivery_leased"), ("Delivery", "delivery_due"), ("Subscription", "subscription_frequency")]
OLD_WINDOW = dt.timedelta(days=8)


def add_run_columns(apps, schema_editor):
    DigestRun = apps.get_model("alerts", "DigestRun")
    for name in RUN_COLUMNS:
        stored = repair.column_defaults(schema_editor, DigestRun._meta.db_table)
        field = DigestRun._meta.get_field(name)
        if field.column not in stored:
            # SQLite adds most columns by copying the table through its model: one of the columns it has.
            schema_editor.add_field(_model_of_table(DigestRun, stored), field)


def _model_of_table(model, columns):
    state = ModelState.from_model(model)
    kept = {field.name for field in model._meta.local_fields if field.column in columns}
    state.fields = {name: field for name, field in state.fields.items() if name in kept}
    return state.render(Apps())


def keep_stored_email_defaults(apps, schema_editor):
    repair.keep_database_defaults(schema_editor, apps.get_model("alerts", "Delivery"), STORED_EMAIL)


def build_indexes(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor == "postgresql" and connection.pg_version >= 140000:
        # As questions 0007: a build whose `migrate` was stopped stops too, where the platform allows it.
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute("SET client_connection_check_interval = '1s'")
    for model_name, name in INDEXES:
        _build(schema_editor, apps.get_model("alerts", model_name), name)


def _build(schema_editor, model, name: str) -> None:
    """Index `name` as the model has it, where the table has none, one a stopped build left invalid, or one on
    other columns (every earlier `delivery_due` has other columns)."""
    index = next(index for index in model._meta.indexes if index.name == name)
    connection = schema_editor.connection
    concurrently = {"concurrently": True} if connection.vendor == "postgresql" else {}
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, model._meta.db_table).get(name)
        valid = True
        if found and concurrently:
            cursor.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name])
            valid = cursor.fetchone()[0]
    if found and valid and found["columns"] == [model._meta.get_field(field).column for field in index.fields]:
        return
    if found:
        schema_editor.remove_index(model, index, **concurrently)
    schema_editor.add_index(model, index, **concurrently)


def cut_at_the_old_window(apps, schema_editor):
    """As 0012 does: matches from more than eight days before it ran are not sent. Only alerts made before then
    can have such matches, and 0012 gave each of those a `resumed_at`."""
    recorded = MigrationRecorder(schema_editor.connection).migration_qs
    # The first record, should the table (which has no unique key) hold the row twice.
    cut = recorded.filter(app="alerts", name="0012_digest_runs_outbox_requests").order_by("applied").first(
        ).applied - OLD_WINDOW
    Subscription = apps.get_model("alerts", "Subscription")
    Subscription.objects.filter(resumed_at=None, created_at__lt=cut).update(resumed_at=cut)


def expire_send_ticks(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    if PeriodicTask.objects.filter(SHIPPED_EXPIRIES, expires=None, **SEND_DUE).update(expire_seconds=SEND_EXPIRY):
        # As django-celery-beat marks a saved entry, so that a running beat reloads its schedule.
        PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
        PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


class Migration(migrations.Migration):
    # CONCURRENTLY cannot run inside a transaction; every other step has one of its own.
    atomic = False
    dependencies = [
        ("alerts", "0013_schedule_runs_and_requests"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [
        migrations.RunPython(add_run_columns, migrations.RunPython.noop, atomic=True),
        migrations.RunPython(keep_stored_email_defaults, migrations.RunPython.noop, atomic=True),
        migrations.RunPython(build_indexes, migrations.RunPython.noop),
        migrations.RunPython(cut_at_the_old_window, migrations.RunPython.noop, atomic=True),
        migrations.RunPython(expire_send_ticks, migrations.RunPython.noop, atomic=True),
    ]
