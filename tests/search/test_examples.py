"""Section 6 of the query-language contract, against the question it describes."""

import pytest

from questions.search import Term, compile_matcher, document, matches, parse

from .seed import SEED_1

SEED = document(SEED_1)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ('"facial recognition"', True),
        ('"recognition facial"', False),
        ('police AND "artificial intelligence"', True),
        ('palantir OR "facial recognition"', True),
        ("police -palantir", True),
        ('member:"Clive Lewis"', True),
        ('member:lewis department:"home office"', True),
        ('department:(Justice OR "Home Office")', True),
        ("minister:johnson house:lords", False),
        ("artificial*", True),
        ("Police: Artificial Intelligence", True),
        ("and", True),
    ],
)
def test_section_6(query, expected):
    node = parse(query)
    assert matches(node, SEED) is expected
    assert compile_matcher(node)(SEED) is expected


def test_palantir_in_the_text_turns_the_negation_around():
    record = dict(SEED_1, answer=SEED_1["answer"] + " We do not use Palantir.")
    assert matches(parse("police -palantir"), document(record)) is False


def test_and_is_a_word_of_heading_question_and_answer_only():
    node = parse("and")
    assert node == Term(("heading", "question", "answer"), "and")
    quiet = {field: "" for field in SEED_1}
    assert matches(node, document(dict(quiet, member="Smith and Jones", department="Culture and Sport"))) is False
    assert matches(node, document(dict(quiet, heading="Arts and Culture"))) is True
    assert matches(node, document(dict(quiet, question="Bread and butter"))) is True
    assert matches(node, document(dict(quiet, answer="This and that"))) is True


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        # Around the examples: what each part of section 4 means for seed-1.
        ("police", True),
        ("policing", True),
        ("polic", False),
        ("polic*", True),
        ("palantir", False),
        ("lewis", False),
        ("member:lewis", True),
        ("member:clive", True),
        ("member:Lewis-Clive", False),
        ("party:labour", True),
        ('constituency:"norwich south"', True),
        ("constituency:south", True),
        ("minister:johnson", True),
        ("minister:lewis", False),
        ("house:commons", True),
        ("house:lords", False),
        ("department:home", True),
        ("heading:police", True),
        ("heading:facial", False),
        ("answer:facial", True),
        ("question:palantir OR answer:constables", True),
        ('"ai enabled"', True),
        ("AI-enabled", True),
        ("ai-enabled", True),
        ('"enabled ai"', False),
        ('heading:"police artificial"', True),
        ('"police chief s council"', True),
        ("Chief’s", True),
        ("(a) AI", True),
        ("facial* recog*", True),
        ("faci*", True),
        ("acial*", False),
        ('"facial recognition" -"recognition facial"', True),
        ("NOT palantir police", True),
        ("NOT police police", False),
        ("police NOT (palantir OR ethical)", False),
        ("police NOT (palantir OR unethical)", True),
        ("NOT NOT police", True),
        ("uin:hl1234", False),
    ],
)
def test_meaning_against_seed_1(query, expected):
    assert matches(parse(query), SEED) is expected
