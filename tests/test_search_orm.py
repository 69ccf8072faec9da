"""The search page's database filter selects exactly what the evaluator selects (PostgreSQL in CI)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from questions.models import Question
from questions.search import QueryError, compile_matcher, document, parse, to_q
from tests.search.strategies import queries, records

pytestmark = pytest.mark.django_db

# Model columns of each field of the language, and their lengths where they are limited.
COLUMNS = {
    "heading": ("heading", None), "question": ("question_text", None), "answer": ("answer_text", None),
    "member": ("asking_member_name", 200), "party": ("asking_member_party", 200),
    "constituency": ("asking_member_constituency", 200), "department": ("answering_body_name", 200),
    "minister": ("answering_member_name", 200), "house": ("house", 20), "uin": ("uin", 50),
}


def fitted(record: dict) -> dict:
    return {field: (value or "")[: COLUMNS[field][1]] for field, value in record.items()}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(batch=st.lists(records(), min_size=1, max_size=8), texts=st.lists(queries(), min_size=1, max_size=6))
def test_the_orm_filter_and_the_evaluator_select_the_same_questions(batch, texts):
    Question.objects.all().delete()
    stored = []
    for number, record in enumerate(map(fitted, batch)):
        question = Question(external_id=f"p{number}", **{COLUMNS[f][0]: v for f, v in record.items()})
        question.refresh_search_text()
        stored.append((question, document(record)))
    Question.objects.bulk_create([q for q, _ in stored])
    for text in texts:
        try:
            node = parse(text)
        except QueryError:
            continue
        matcher = compile_matcher(node)
        expected = {q.external_id for q, doc in stored if matcher(doc)}
        assert set(Question.objects.filter(to_q(node)).values_list("external_id", flat=True)) == expected, text
