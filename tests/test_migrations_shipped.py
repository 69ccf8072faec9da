"""A migration never changes once it ships, and the repair migrations (alerts 0014, questions 0012) bring a
database that ran the first versions of the migrations edited before that rule to what a fresh `migrate` makes."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
from io import StringIO
from pathlib import Path

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection, models
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import NOT_PROVIDED
from django.utils import timezone
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from alerts.models import Delivery, Match, Subscriber, Subscription
from questions import searching
from questions.models import Question, QuestionEvent, Source
from questions.search import document
from tests.conftest import ROOT
from tests.factories import pairs

MANIFEST = Path("config") / "shipped_migrations.txt"
TABLES = ["alerts_delivery", "alerts_subscription", "alerts_digestrun", "questions_question"]
BEFORE_REPAIR = [("alerts", "0013_schedule_runs_and_requests"), ("questions", "0011_base_form_indexes")]
REPAIRS = [("alerts", "0014_repair_edited_migrations"), ("questions", "0012_repair_edited_migrations")]
alerts_repair = importlib.import_module("alerts.migrations.0014_repair_edited_migrations")
sender = importlib.import_module("alerts.migrations.0005_delivery_queue")


def shipped_problems(root: Path) -> list[str]:
    """What is wrong between the migrations under `root` and its manifest of shipped ones."""
    # `sha256sum` lines ("digest  path", or "digest *path" in its binary mode); blank lines and comments aside.
    lines = [line for line in (root / MANIFEST).read_text().splitlines() if line.strip() and not line.startswith("#")]
    listed = {name.lstrip("*"): digest for digest, name in (line.split(maxsplit=1) for line in lines)}
    found = {path.relative_to(root).as_posix(): path for path in root.glob("*/migrations/[0-9]*.py")}
    problems = []
    for name, path in sorted(found.items()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if name not in listed:
            problems.append(f"{name} is not in {MANIFEST}: add its line (`sha256sum {name} >> {MANIFEST}`) in "
                            "the commit that adds the migration.")
        elif listed[name] != digest:
            problems.append(f"{name} differs from the version that shipped: shipped migrations must never be "
                            "edited, write a new migration instead (and restore this one). If it has not been "
                            "released yet, update its line instead.")
    problems += [f"{name} is in {MANIFEST} but gone: shipped migrations are never deleted or renamed."
                 for name in sorted(listed.keys() - found.keys())]
    return problems


def test_every_migration_is_in_the_manifest_as_it_shipped():
    problems = shipped_problems(ROOT)
    assert not problems, "\n".join(problems)


def test_the_manifest_check_tells_a_developer_what_to_do(tmp_path):
    migrations = tmp_path / "app" / "migrations"
    migrations.mkdir(parents=True)
    (tmp_path / "config").mkdir()
    shipped = migrations / "0001_initial.py"
    shipped.write_text("operations = []\n")
    digest = hashlib.sha256(shipped.read_bytes()).hexdigest()
    (tmp_path / MANIFEST).write_text(f"{digest}  app/migrations/0001_initial.py\n")
    assert shipped_problems(tmp_path) == []

    (migrations / "0002_new.py").write_text("operations = []\n")
    shipped.write_text("operations = ['edited']\n")
    assert shipped_problems(tmp_path) == [
        "app/migrations/0001_initial.py differs from the version that shipped: shipped migrations must never be "
        "edited, write a new migration instead (and restore this one). If it has not been released yet, update "
        "its line instead.",
        f"app/migrations/0002_new.py is not in {MANIFEST}: add its line "
        f"(`sha256sum app/migrations/0002_new.py >> {MANIFEST}`) in the commit that adds the migration.",
    ]

    shipped.rename(migrations / "0001_renamed.py")
    assert f"app/migrations/0001_initial.py is in {MANIFEST} but gone: shipped migrations are never deleted or " \
           "renamed." in shipped_problems(tmp_path)


@pytest.mark.django_db
def test_the_models_need_no_migration_that_is_not_written():
    call_command("makemigrations", "--check", "--dry-run", stdout=StringIO())


# --- the repair migrations ----------------------------------------------------------------------------------


def schema() -> dict[str, dict]:
    """Each table's columns (with their database defaults), constraints and indexes as the database has them."""
    introspection = connection.introspection
    with connection.cursor() as cursor:
        return {table: {
            "columns": {c.name: (c.type_code, c.null_ok, c.default)
                        for c in introspection.get_table_description(cursor, table)},
            "constraints": _named(introspection.get_constraints(cursor, table)),
            "indexes": _index_definitions(cursor, table),
        } for table in TABLES}


def _named(constraints: dict[str, dict]) -> dict[str, dict]:
    # SQLite numbers the constraints it has no name for in the order of their columns, which a column added
    # later changes: they are told apart by what they constrain.
    return {f"unnamed on {constraint['columns']}" if name.startswith("__unnamed_constraint_") else name: constraint
            for name, constraint in constraints.items()}


def _index_definitions(cursor, table: str) -> dict[str, tuple]:
    if connection.vendor == "postgresql":
        cursor.execute("SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisvalid FROM pg_index i "
                       "JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = %s::regclass", [table])
    else:
        cursor.execute("SELECT name, sql, 1 FROM sqlite_master WHERE type = 'index' AND tbl_name = %s", [table])
    return {name: (definition, valid) for name, definition, valid in cursor.fetchall()}


def storage() -> object:
    """What changes whenever one of the tables or their indexes is made again: their files on PostgreSQL, their
    root pages on SQLite. Of these tables only: undoing the repair migrations undoes those after them too."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT relname, relfilenode FROM pg_class WHERE oid = ANY(%s::regclass[]) OR oid IN "
                           "(SELECT indexrelid FROM pg_index WHERE indrelid = ANY(%s::regclass[]))", [TABLES, TABLES])
        else:
            places = ", ".join(["%s"] * len(TABLES))
            cursor.execute(f"SELECT name, rootpage FROM sqlite_master WHERE tbl_name IN ({places})", TABLES)
        return dict(cursor.fetchall())


def migrate(targets) -> None:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)


def repair() -> None:
    """Run the repair migrations again, as on a database that has not run them: recorded as not run (undone, they
    would undo nothing), not undone with the migrations after them, whose tables would then be made anew."""
    recorder = MigrationRecorder(connection)
    for app, name in REPAIRS:
        recorder.record_unapplied(app, name)
    migrate(REPAIRS)


def as_first_shipped() -> None:
    """The schema the first versions of alerts 0005 and 0012 and of questions 0008 made."""
    state = MigrationExecutor(connection).loader.project_state(BEFORE_REPAIR)
    for (app, model), names in {("alerts", "delivery"): alerts_repair.STORED_EMAIL,
                                ("questions", "question"): ["text_cut"]}.items():
        for name in names:
            state.models[app, model].fields[name] = field = state.models[app, model].fields[name].clone()
            field.db_default = NOT_PROVIDED
    old = state.apps
    with connection.schema_editor() as editor:
        # Defaults first: SQLite drops them by making the table anew from the model, indexes included.
        for model, names in ((Delivery, alerts_repair.STORED_EMAIL), (Question, ["text_cut"])):
            for name in names:
                stored = old.get_model(model._meta.app_label, model._meta.model_name)._meta.get_field(name)
                editor.alter_field(model, model._meta.get_field(name), stored)
        editor.execute("DROP INDEX delivery_leased")
        editor.execute("DROP INDEX delivery_due")
        editor.add_index(Delivery, models.Index(fields=["next_attempt_at"], condition=models.Q(status="pending"),
                                                name="delivery_due"))
        editor.execute("DROP INDEX subscription_frequency")
        for column in alerts_repair.RUN_COLUMNS:
            editor.execute(f"ALTER TABLE alerts_digestrun DROP COLUMN {column}")


def alert(email: str, created_at: dt.datetime, **fields) -> Subscription:
    # The subscriber as the schema before the repair has it: later migrations add columns to subscribers.
    subscriber = then("alerts", "Subscriber").objects.create(email=email, confirmed_at=created_at)
    subscription = Subscription.objects.create(subscriber_id=subscriber.pk, query="prisons", canonical_query="prisons",
                                               confirmed_at=created_at, **fields)
    Subscription.objects.filter(pk=subscription.pk).update(created_at=created_at)
    return subscription


def then(app: str, model: str, at=BEFORE_REPAIR):
    """A model as the schema before the repair (or at `at`) has it: later migrations change it."""
    return MigrationExecutor(connection).loader.project_state(at).apps.get_model(app, model)


def match(subscription: Subscription, created_at: dt.datetime) -> int:
    """A match of a new question's event, as the schema before the repair has it: the event's id."""
    question = then("questions", "Question").objects.create(external_id=f"q-{created_at:%Y%m%d}", heading="Prisons")
    event_then = then("questions", "QuestionEvent")
    event = event_then.objects.create(question_id=question.pk, kind="tabled", key="tabled")
    then("alerts", "Match").objects.create(subscription_id=subscription.pk, event_id=event.pk, created_at=created_at)
    return event.pk


def with_old_base_forms(heading: str, old: str, new: str) -> Question:
    """A question whose base forms the word forms of questions 0009's first version made."""
    question = Question(external_id=f"old-forms-{old}", heading=heading)
    question.refresh_search_text()
    assert f" {new} " in question.base_heading
    question.base_heading = question.base_heading.replace(f" {new} ", f" {old} ")
    question.pk = then("questions", "Question").objects.create(
        external_id=question.external_id, heading=heading,
        **{name: getattr(question, name) for name in Question.SEARCH_COLUMNS}).pk
    return question


@pytest.mark.django_db(transaction=True)
def test_a_database_that_ran_the_first_versions_ends_as_a_fresh_migrate_makes_it():
    fresh = schema()
    now = timezone.now()
    migrate(BEFORE_REPAIR)
    try:
        as_first_shipped()
        assert schema() != fresh
        sender.schedule_sender(apps, None)
        PeriodicTask.objects.filter(name="Send due emails").update(expire_seconds=None)
        # 0012 at first gave no alert a resumed_at: a month-old match waits for a digest, though the eight-day
        # window it shipped to replace had dropped it.
        old_alert = alert("ada@example.org", now - dt.timedelta(days=60), frequency="daily")
        old_match, recent_match = match(old_alert, now - dt.timedelta(days=30)), match(old_alert, now)
        new_alert = alert("bo@example.org", now)
        sendable = then("alerts", "Match").objects.filter(Match.SENDABLE)
        assert sorted(sendable.values_list("subscription_id", "event_id")) == [(old_alert.pk, old_match),
                                                                                (old_alert.pk, recent_match)]
        MigrationRecorder(connection).record_applied("questions", "0010_base_form_indexes")
        does = with_old_base_forms("How does the Department plan", old="doe", new="do")
        assert not searching.search("did").filter(pk=does.pk).values("pk").exists()
        if connection.vendor == "sqlite":
            # The first 0005 wrote a long guid's id whole; PostgreSQL's 500-character column refused it.
            feed = Source.objects.create(name="Feed", kind="feed", url="http://127.0.0.1:9/")
            guid = "https://example.org/" + "x" * 500
            long_id = then("questions", "Question").objects.create(external_id=f"feed:{feed.pk}:{guid}",
                                                                   source_id=feed.pk)

        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

        assert schema() == fresh
        assert PeriodicTask.objects.get(name="Send due emails").expire_seconds == 60
        assert pairs(Match.objects.filter(Match.SENDABLE)) == [(old_alert.pk, recent_match)]
        new_alert.refresh_from_db()
        assert new_alert.resumed_at is None
        assert not MigrationRecorder(connection).migration_qs.filter(name="0010_base_form_indexes").exists()
        does.refresh_from_db()
        assert does.search_document() == document(does.search_fields())
        assert does in searching.search("did")
        if connection.vendor == "sqlite":
            long_id.refresh_from_db()
            assert long_id.external_id == f"feed:{feed.pk}:sha256:{hashlib.sha256(guid.encode()).hexdigest()}"
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_a_database_the_current_versions_made_is_left_as_it_is():
    now = timezone.now()
    sender.schedule_sender(apps, None)
    # An operator's own expiry for the sender's ticks.
    PeriodicTask.objects.filter(name="Send due emails").update(expire_seconds=30)
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": now - dt.timedelta(days=1)})
    # An alert that 0012 gave its resumed_at, and one made since, which has none.
    alert("ada@example.org", now - dt.timedelta(days=60), resumed_at=now - dt.timedelta(days=30))
    alert("bo@example.org", now)
    question = Question(external_id="q1", heading="How does the Department plan")
    question.refresh_search_text()
    question.save()

    def everything():
        return (schema(), storage(), list(PeriodicTask.objects.values()), list(PeriodicTasks.objects.values()),
                list(Subscription.objects.values()), list(Question.objects.values()),
                sorted(MigrationRecorder(connection).migration_qs.values_list("app", "name")))

    before = everything()
    repair()
    assert everything() == before


@pytest.mark.django_db
@pytest.mark.parametrize("shipped", [None, 10])
def test_the_sender_ticks_expire_after_a_minute_and_a_running_beat_is_told(shipped):
    sender.schedule_sender(apps, None)
    PeriodicTask.objects.filter(name="Send due emails").update(expire_seconds=shipped)
    yesterday = timezone.now() - dt.timedelta(days=1)
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": yesterday})

    alerts_repair.expire_send_ticks(apps, None)

    assert PeriodicTask.objects.get(name="Send due emails").expire_seconds == 60
    assert PeriodicTasks.last_change() > yesterday


# --- matches gathered a row per alert and run (alerts 0019) ------------------------------------------------

ONE_PER_EVENT = [("alerts", "0018_resend_token")]


@pytest.mark.django_db(transaction=True)
def test_matches_a_row_each_are_gathered_by_alert_time_and_email_and_spread_back():
    migrate(ONE_PER_EVENT)
    try:
        # 0019 changes matches alone: the other tables are as the models have them.
        ada = Subscriber.objects.create(email="ada@example.org", confirmed_at=timezone.now())
        first, second = (Subscription.objects.create(subscriber=ada, query=q, canonical_query=q)
                         for q in ("prisons", "police"))
        sent = Delivery.objects.create(subscriber=ada, kind=Delivery.Kind.IMMEDIATE, status=Delivery.Status.SENT)
        question = Question.objects.create(external_id="q1", heading="Prisons")
        e1, e2, e3, e4, e5, e6 = (QuestionEvent.objects.create(question=question, kind="tabled", key=f"k{i}").pk
                                  for i in range(6))
        earlier = timezone.now().replace(microsecond=123456) - dt.timedelta(days=2)
        later, latest = earlier + dt.timedelta(hours=1), earlier + dt.timedelta(days=1, microseconds=1)
        old = [
            # One run's matches of the first alert, carried by one email; written in no order.
            (first.pk, e3, earlier, sent.pk), (first.pk, e1, earlier, sent.pk), (first.pk, e2, earlier, sent.pk),
            # Two later runs', waiting.
            (first.pk, e5, later, None), (first.pk, e4, later, None), (first.pk, e6, latest, None),
            # The second alert's from the first run: waiting, and one of them already sent.
            (second.pk, e4, earlier, None), (second.pk, e2, earlier, None), (second.pk, e1, earlier, sent.pk),
        ]
        before = then("alerts", "Match", ONE_PER_EVENT)
        before.objects.bulk_create(before(subscription_id=alert, event_id=event, created_at=at, delivery_id=email)
                                   for alert, event, at, email in old)

        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

        rows = Match.objects.order_by("subscription_id", "first_event", "created_at").values_list(
            "subscription_id", "events", "size", "first_event", "delivery_id", "created_at")
        assert list(rows) == [
            (first.pk, [e1, e2, e3], 3, e1, sent.pk, earlier),
            (first.pk, [e4, e5], 2, e4, None, later),
            (first.pk, [e6], 1, e6, None, latest),
            (second.pk, [e1], 1, e1, sent.pk, earlier),
            (second.pk, [e2, e4], 2, e2, None, earlier),
        ]
        assert pairs() == sorted((alert, event) for alert, event, _, _ in old)
        assert Match.objects.filter(delivery__isnull=True).events() == 5

        migrate(ONE_PER_EVENT)

        back = before.objects.values_list("subscription_id", "event_id", "created_at", "delivery_id")
        assert sorted(back, key=str) == sorted(old, key=str)
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
