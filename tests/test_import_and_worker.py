"""The import command on the bundled samples, and polling run by a real Celery worker."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from questions.models import Question, QuestionEvent, Source
from tests.conftest import FIXTURES, wait_until
from tests.factories import real_record
from tests.parliament_stub import LIST_PATH, ParliamentStub

SAMPLES = [FIXTURES / "seed_questions.json", FIXTURES / "list_page_excerpt.json", FIXTURES / "question_detail.json"]


@pytest.mark.django_db
def test_import_questions_loads_the_bundled_samples_once():
    out = StringIO()
    call_command("import_questions", *map(str, SAMPLES), stdout=out)

    assert Question.objects.count() == 10 + 4 + 1
    seed = Question.objects.get(external_id="seed-1")
    assert seed.heading == "Police: Artificial Intelligence"
    assert seed.asking_member_name == "Clive Lewis" and seed.answering_member_role.startswith("Minister of State")
    assert seed.answer_html.startswith("<p>It is for operationally independent")
    assert " facial recognition " in seed.norm_answer
    assert Question.objects.get(external_id="1679416").answering_body_name == "Department for Education"
    assert "15 new" in out.getvalue() or "10 new" in out.getvalue()
    events = QuestionEvent.objects.count()

    call_command("import_questions", *map(str, SAMPLES), stdout=StringIO())

    assert Question.objects.count() == 15 and QuestionEvent.objects.count() == events
    # A backfill: its events are on record, and nobody is emailed about them.
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()


@pytest.mark.django_db
def test_import_questions_reports_bad_lines_and_keeps_the_rest(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [
        json.dumps({"id": "n-1", "heading": "Schools: Heating", "question": "What funding?",
                    "date_tabled": "2025-01-02"}),
        "{broken",
        json.dumps({"heading": "No id"}),
        json.dumps({"id": "n-2", "heading": "Bad date", "date_tabled": "02/01/2025"}),
    ]
    path.write_text("\n".join(lines))
    err = StringIO()

    call_command("import_questions", str(path), stdout=StringIO(), stderr=err)

    assert list(Question.objects.values_list("external_id", flat=True)) == ["n-1"]
    assert "line 2 is not valid JSON" in err.getvalue()
    assert "the record has no id" in err.getvalue()
    assert "date_tabled is not a date" in err.getvalue() and "(id n-2)" in err.getvalue()


@pytest.mark.worker
@pytest.mark.postgres
def test_a_real_worker_polls_sources_by_beats_task_name(celery_worker, httpserver):
    from config.celery import app

    api = ParliamentStub()
    for api_id in (1000, 1001):
        api.put(real_record(api_id))
        httpserver.expect_request(f"{LIST_PATH}/{api_id}").respond_with_handler(api)
    httpserver.expect_request(LIST_PATH).respond_with_handler(api)
    Source.objects.create(name="Stub API", kind=Source.Kind.PARLIAMENT_API, url=httpserver.url_for("/"))

    app.send_task("questions.poll_sources")

    wait_until(lambda: Question.objects.count() == 2, timeout=60, message="the worker to land two questions")
    assert QuestionEvent.objects.filter(kind="tabled").count() == 2
    assert wait_until(lambda: Source.objects.get(name="Stub API").last_success_at, message="the source's success")
