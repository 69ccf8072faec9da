"""Upgrading to query language v2 on a database the release before left: questions get their base forms and
their indexes, saved searches their new canonical text, and a question the old poller writes meanwhile is
matched by its word forms all the same."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from alerts.models import Subscription
from questions import searching
from questions.models import Question
from questions.search import FIELDS, document, normalise, parse
from questions.search.percolate import QueryIndex

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

BEFORE = [("questions", "0008_question_text_cut"), ("alerts", "0010_forget_addresses_in_sessions")]
# What the release before stored for a question: the words of each field, no base forms.
V1_COLUMNS = {"heading": "heading", "question_text": "question", "answer_text": "answer",
              "asking_member_name": "member", "answering_body_name": "department", "uin": "uin"}


def migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


def store_v1_question(apps, external_id: str, **fields) -> None:
    """A question as the release before wrote it (its normalised words, through the historical model)."""
    Old = apps.get_model("questions", "Question")
    written = {V1_COLUMNS[name]: value for name, value in fields.items()}
    norms = {f"norm_{field}": normalise(written.get(field, "")) for field in FIELDS}
    Old.objects.create(external_id=external_id, **fields, **norms)


def base_indexes() -> dict[str, bool]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                       "WHERE c.relname LIKE 'question_base_%%year_trgm'")
        return dict(cursor.fetchall())


def test_an_archive_and_its_saved_searches_take_the_new_meaning_when_it_ships():
    executor = migrate(BEFORE)
    try:
        apps = executor.loader.project_state(BEFORE).apps
        store_v1_question(apps, "q1", uin="1", heading="Prison Officers: Recruitment",
                          question_text="To ask the Secretary of State for Justice, how many prison officers...",
                          asking_member_name="Clive Lewis", answering_body_name="Ministry of Justice")
        store_v1_question(apps, "q2", uin="2", heading="Social Security: Policy", question_text="On policy.")
        Subscriber = apps.get_model("alerts", "Subscriber")
        OldSubscription = apps.get_model("alerts", "Subscription")
        ada = Subscriber.objects.create(email="ada@example.org")
        # The release before spelt a quoted word as the plain word.
        OldSubscription.objects.create(subscriber=ada, query='"prisons"', canonical_query="prisons")
        OldSubscription.objects.create(subscriber=ada, query="Prisons  officers",
                                       canonical_query="prisons AND officers")
        assert not base_indexes()

        executor = migrate(executor.loader.graph.leaf_nodes())

        for question in Question.objects.all():
            assert question.search_document() == document(question.search_fields())
        assert [q.uin for q in searching.search("prisons")] == ["1"]
        assert [q.uin for q in searching.search('"prisons"')] == []
        assert [q.uin for q in searching.search("Clive Lewis")] == ["1"]
        assert [q.uin for q in searching.search("policies")] == ["2"]
        assert dict(Subscription.objects.values_list("query", "canonical_query")) == {
            '"prisons"': '"prisons"', "Prisons  officers": "prisons AND officers"}
        built = base_indexes()
        assert len(built) == 10 and all(built.values()), built
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())


def test_what_the_old_poller_writes_during_the_upgrade_is_matched_by_its_forms_and_refreshed_later():
    inserted = Question.objects.create(external_id="old-insert", uin="8", heading="Prisons: Staff")
    answered = Question.objects.create(external_id="old-update", uin="9", heading="Probation: Staff")
    for question in (inserted, answered):
        question.refresh_search_text()
        question.save()
    answer = "The Ministry is building two new prisons."
    with connection.cursor() as cursor:
        # The release before inserts without the new columns (the database's default leaves them empty), and
        # updates the words of a field without their base forms.
        cursor.execute("UPDATE questions_question SET base_heading = '', base_uin = '' WHERE id = %s", [inserted.pk])
        cursor.execute("UPDATE questions_question SET answer_text = %s, norm_answer = %s WHERE id = %s",
                       [answer, normalise(answer), answered.pk])
    documents = [q.search_document() for q in Question.objects.order_by("uin")]

    index = QueryIndex()
    index.add("prison", parse("prison"))
    assert index.match(documents) == {"prison": 0b11}
    assert [q.uin for q in searching.search("prison")] == []

    call_command("refresh_search_text", stdout=StringIO())
    assert sorted(q.uin for q in searching.search("prison")) == ["8", "9"]
