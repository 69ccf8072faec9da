"""A word looked up whole (questions/search/sql.py): on PostgreSQL a word in the default fields is found through
the word indexes, and must find exactly what the substring tests of the normalised columns find, on SQLite as
on PostgreSQL: no word made of two fields' ends, none from a field a plain word does not look in."""

from __future__ import annotations

import datetime as dt

import pytest

from questions import searching
from questions.models import Question

pytestmark = pytest.mark.django_db

# name: (heading, question text, answer, party)
QUESTIONS = {
    "heading": ("Fisheries in rivers", "To ask about water.", "", ""),
    "answer": ("Water", "To ask about rivers.", "Fishery monitoring began in 2024.", ""),
    "ends": ("Pollution of the sea", "Bed of the river", "", ""),
    "party only": ("Budget", "To ask about taxes.", "", "Fisheries Party"),
    "quoted": ("Prisons", "To ask how many prisons there are.", "", ""),
    "phrase": ("Prison officers", "To ask about officers in the prison service.", "", ""),
}


@pytest.fixture
def questions():
    stored = []
    for number, (name, (heading, text, answer, party)) in enumerate(QUESTIONS.items()):
        question = Question(external_id=f"word-{number}", uin=name, heading=heading, question_text=text,
                            answer_text=answer, asking_member_party=party,
                            date_tabled=dt.date(2024, 1, 1) + dt.timedelta(days=number))
        question.refresh_search_text()
        stored.append(question)
    Question.objects.bulk_create(stored)


def found(query: str) -> set[str]:
    return set(searching.search(query).values_list("uin", flat=True))


def test_a_plain_word_is_found_in_any_form_in_the_default_fields_only(questions):
    assert found("fisheries") == {"heading", "answer"}
    assert found("fishery") == {"heading", "answer"}
    # The party is not a default field: only asked for by name.
    assert found("party:fisheries") == {"party only"}
    assert found("heading:fishery") == {"heading"}
    assert found("answer:fisheries") == {"answer"}
    assert found('"fishery"') == {"answer"}


def test_no_word_is_made_of_one_field_end_and_the_next_field_start(questions):
    # "sea" ends the heading and "bed" starts the question: the fields' words are never run together.
    assert found("seabed") == set()
    assert found('"sea bed"') == set()
    assert found("sea bed") == {"ends"}


def test_quoted_words_and_phrases_are_found_as_written(questions):
    assert found('"prisons"') == {"quoted"}
    assert found("prisons") == {"quoted", "phrase"}
    assert found('"prison officers"') == {"phrase"}
    # Both words are in "phrase", but not next to each other in the question.
    assert found('question:"prison officers"') == set()
    assert found('"officers prison"') == set()


def test_leaving_a_word_out_is_the_exact_complement(questions):
    asking = set(QUESTIONS) - {"ends"}
    assert found("ask") == asking
    assert found("ask -fisheries") == asking - {"heading", "answer"}
    assert found('ask -"prison officers"') == asking - {"phrase"}
    assert found('ask -"fishery"') == asking - {"answer"}
    assert found("ask -prisons") == {"heading", "answer", "party only"}
    assert found("water -fishery") == set()


def plan(query: str) -> str:
    rows = searching.search(query).order_by()
    with searching.planner(enable_seqscan="off"):
        return rows.explain()


@pytest.mark.postgres
def test_words_are_read_through_the_word_indexes():
    # Without them, a rare word is found only by reading the posting lists of each of its trigrams.
    assert "question_base_words" in plan("fisheries")
    assert "question_norm_words" in plan('"prisons"')
    assert "question_norm_words" in plan('"mental health"')
    assert "question_base_words" in plan("clive lewis")


@pytest.mark.parametrize("length", [254, 255, 600])
def test_a_word_longer_than_the_index_keeps_is_found_as_written(length):
    # An index entry holds at most 2,712 bytes: the word indexes keep a word's first 255 characters, so that a
    # question with a pasted hash is stored like any other, and the search looks a word that long up as written.
    word = ("ab12" * 1000)[:length]
    longer = Question(external_id="long", heading=f"Hash {word}9 here", question_text=f"The {word} value.")
    shorter = Question(external_id="short", heading=f"Hash {word[:-1]} here")
    for question in (longer, shorter):
        question.refresh_search_text()
        question.save()
    assert set(searching.search(word).values_list("external_id", flat=True)) == {"long"}
    assert set(searching.search(f"{word}9").values_list("external_id", flat=True)) == {"long"}
    assert set(searching.search(word[:-1]).values_list("external_id", flat=True)) == {"short"}
    assert set(searching.search(f'"{word} value"').values_list("external_id", flat=True)) == {"long"}


def test_a_question_with_a_word_too_long_for_an_index_entry_is_stored():
    # 3,000 bytes in one word: past what a GIN index entry holds, had the index kept the word whole.
    question = Question(external_id="hash", heading="Pasted hash", question_text="ab12" * 750)
    question.refresh_search_text()
    question.save()
    assert list(searching.search("pasted").values_list("external_id", flat=True)) == ["hash"]


@pytest.mark.postgres
def test_common_words_and_words_left_out_are_tested_as_text_and_find_the_same(questions):
    from django.db import connection

    from questions.search import parse, to_q

    def word_lookups(query: str, common=frozenset()) -> int:
        return str(Question.objects.filter(to_q(parse(query), common)).query).count("string_to_array")

    assert word_lookups("fisheries") == 1 and word_lookups("fisheries", common={"fishery"}) == 0
    # Left out, a word would be tested on every question the rest finds: as text, never through its array.
    assert word_lookups("ask -fisheries") == 1 and word_lookups("ask -fisheries", common={"ask"}) == 0
    assert word_lookups('prisons -"fishery" -(water OR seabed)') == 1
    # Nor one of an OR's alternatives: no match need have it.
    assert word_lookups("(fisheries OR water) prisons") == 1 and word_lookups("NOT NOT fisheries") == 1
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE questions_question")
    # "ask" is in five of the six questions: PostgreSQL's statistics of the word indexes say it is common.
    common = searching.common_words()
    assert "ask" in common and "fishery" in common
    assert found("ask -fisheries") == {"quoted", "phrase", "party only"}
    assert found("fisheries") == {"heading", "answer"}


@pytest.mark.postgres
def test_a_search_through_the_word_indexes_is_counted_in_one_read(questions):
    # The planner cannot know how few questions share two names; the word indexes hold no common word, so one
    # capped read of the matches is quick.
    assert searching.looks_up_words(searching.search("fisheries water"))
    assert not searching.looks_up_words(searching.search("polic*"))
    assert not searching.looks_up_words(searching.search("polic* -fisheries").filter(uin__gt=""))
    # In an OR, the word's posting list does not bound the matches.
    assert not searching.looks_up_words(searching.search("fisheries OR polic*"))
    assert searching.looks_up_words(searching.search("(fisheries OR polic*) water"))
    paginator = searching.CappedPaginator(searching.search("fisheries"), 20)
    assert paginator.count == 2 and paginator.all_keys is not None
