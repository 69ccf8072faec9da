"""What a phrase finds on the search page (docs/query-language.md, section 4): the words as written, next to each
other, in order, within one field. Run on SQLite and PostgreSQL: on PostgreSQL the same page goes through the
trigram indexes and the roads of `questions.searching`, which must not widen or narrow it."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from questions import searching
from questions.models import Question

pytestmark = pytest.mark.django_db

# Each question's heading names it; its text is what the phrases are looked for in.
TEXTS = {
    "adjacent": "To ask what support there is for mental health in schools.",
    "apart": "To ask about mental wellbeing and health visitors.",
    "reversed": "To ask about health and the mental load of carers.",
    "longer words": "To ask about environmental health and mental healthcare.",
    "other forms": "To ask about mental healths and prison officer numbers.",
    "punctuated": "To ask about Mental-Health services; and MENTAL, HEALTH funding.",
    "accents": "To ask about the Café Culture fund.",
    "plural": "To ask how many prison officers there are.",
}


@pytest.fixture
def questions():
    stored = []
    for number, (name, text) in enumerate(TEXTS.items()):
        question = Question(external_id=f"phrase-{number}", heading=f"Case {name}", question_text=text,
                            date_tabled=dt.date(2024, 1, 1) + dt.timedelta(days=number))
        question.refresh_search_text()
        stored.append(question)
    Question.objects.bulk_create(stored)


def found(client, query: str) -> set[str]:
    response = client.get("/", {"q": query})
    assert response.status_code == 200
    page = response.context["page"]
    names = {q.heading.removeprefix("Case ") for q in page}
    assert page.paginator.count == len(names)
    return names


def test_a_phrase_finds_its_words_next_to_each_other_and_in_order_only(client, questions):
    # "apart" and "reversed" have both words, and "longer words" has them inside longer words: none is the phrase.
    assert found(client, '"mental health"') == {"adjacent", "punctuated"}


def test_a_phrase_is_matched_as_written_not_in_other_forms(client, questions):
    assert found(client, '"prison officers"') == {"plural"}
    assert found(client, '"prison officer"') == {"other forms"}
    assert found(client, '"mental healths"') == {"other forms"}
    # Unquoted, the words match their forms, anywhere in the field.
    assert found(client, "prison officers") == {"plural", "other forms"}


def test_case_accents_and_punctuation_between_the_words_do_not_matter(client, questions):
    assert found(client, '"MENTAL HEALTH"') == {"adjacent", "punctuated"}
    assert found(client, "mental-health") == {"adjacent", "punctuated"}
    assert found(client, '"cafe culture"') == {"accents"}


def test_a_phrase_does_not_run_from_one_field_into_the_next(client, questions):
    # The heading ends "adjacent" and the text begins "To": together "adjacent to", which no field has.
    assert found(client, '"adjacent to"') == set()
    assert found(client, '"case adjacent"') == {"adjacent"}


def test_a_phrase_of_the_words_in_the_wrong_order_finds_only_that_order(client, questions):
    assert found(client, '"health mental"') == set()
    assert found(client, '"health visitors"') == {"apart"}


def test_the_names_of_the_members_who_asked_are_each_listed_once():
    Question.objects.bulk_create(Question(external_id=f"m{number}", asking_member_name=name)
                                 for number, name in enumerate(["Clive Lewis", "", "Diana Johnson", "Clive Lewis"]))

    assert searching.member_names() == ["Clive Lewis", "Diana Johnson"]


@pytest.mark.postgres
def test_the_names_of_the_members_who_asked_are_read_through_their_index():
    with searching.planner(enable_seqscan="off"), connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + searching.MEMBER_NAMES_SQL)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    # Without the index, the list is a scan of the archive on every expiry of its cache.
    assert "question_member_name" in plan and "Seq Scan" not in plan, plan

