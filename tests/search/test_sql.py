"""The query tree as a Django filter (no database needed: these check the Q that is built).

That the database selects what `matches` selects is checked over random queries
in test_properties.test_evaluators_agree, by running the Q over a document.
"""

import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import Q

import questions.search
from questions.search import parse
from questions.search.sql import to_q

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _substring_tests_only(monkeypatch):
    # These pin the substring tests themselves; on PostgreSQL a word also goes through the word indexes, which
    # tests/test_search_words.py checks against the database.
    monkeypatch.setattr(connection, "vendor", "sqlite")


def test_word_looks_at_the_base_forms_of_the_default_columns():
    assert to_q(parse("Prisons")) == (
        Q(base_heading__contains=" prison ")
        | Q(base_question__contains=" prison ")
        | Q(base_answer__contains=" prison ")
        | Q(base_member__contains=" prison ")
        | Q(base_department__contains=" prison ")
        | Q(base_minister__contains=" prison ")
    )


def test_quoted_word_and_phrase_look_at_the_words_as_written():
    assert to_q(parse('heading:"Prisons"')) == Q(norm_heading__contains=" prisons ")
    assert to_q(parse('heading:"prisons estate"')) == Q(norm_heading__contains=" prisons estate ")


def test_field_word_wildcard_and_phrase():
    assert to_q(parse("member:Lewis")) == Q(base_member__contains=" lewis ")
    assert to_q(parse("uin:HL1234")) == Q(base_uin__contains=" hl1234 ")
    assert to_q(parse("member:lew*")) == Q(norm_member__contains=" lew")
    assert to_q(parse("department:“Home Office”")) == Q(norm_department__contains=" home office ")


def test_operators():
    lewis = Q(base_member__contains=" lewis ")
    labour = Q(base_party__contains=" labour ")
    lords = Q(base_house__contains=" lord ")
    assert to_q(parse("member:lewis party:labour")) == lewis & labour
    assert to_q(parse("member:lewis OR party:labour")) == lewis | labour
    assert to_q(parse("member:lewis -house:lords")) == lewis & ~lords
    assert to_q(parse("member:lewis (party:labour OR NOT house:lords)")) == lewis & (labour | ~lords)


def test_to_q_is_exported_without_importing_django_up_front():
    assert questions.search.to_q is to_q
    code = "import sys, questions.search; assert 'django' not in sys.modules, 'django imported'"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
