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
        # New in v2: word forms, and names in plain searches.
        ("polices", True),
        ("policy", False),
        ('"policing"', True),
        ('"polices"', False),
        ("Clive Lewis", True),
        ("home office", True),
        ("intelligences", True),
    ],
)
def test_section_6(query, expected):
    node = parse(query)
    assert matches(node, SEED) is expected
    assert compile_matcher(node)(SEED) is expected


def test_palantir_in_the_text_turns_the_negation_around():
    record = dict(SEED_1, answer=SEED_1["answer"] + " We do not use Palantir.")
    assert matches(parse("police -palantir"), document(record)) is False


def test_and_is_a_word_of_the_default_fields_only():
    node = parse("and")
    assert node == Term(("heading", "question", "answer", "member", "department", "minister"), "and")
    quiet = {field: "" for field in SEED_1}
    assert matches(node, document(dict(quiet, party="Labour and Co-operative", constituency="Bath and Avon"))) is False
    assert matches(node, document(dict(quiet, member="Smith and Jones"))) is True
    assert matches(node, document(dict(quiet, department="Culture and Sport"))) is True
    assert matches(node, document(dict(quiet, minister="Jones and Smith"))) is True
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
        ("lewis", True),
        ("diana", True),
        ("labour", False),
        ("norwich", False),
        ("commons", False),
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
        # Word forms: an unquoted word matches its inflections, a quoted one only itself.
        ("universities", True),
        ("university", True),
        ('"university"', False),
        ("universe", False),
        ("principle", True),
        ("principal", False),
        ("technologies", True),
        ("deploys", True),
        ("deployed", True),
        ("government", True),
        ("governments", True),
        ("governance", True),
        ("govern", False),
        ("community", True),
        ("communication", False),
        ("commissioner", True),
        ("commission", False),
        ('"constable"', False),
        ("constable", True),
        ("law", True),
        ('"law"', False),
        ("polic*", True),
        ("policies", False),
        ('"facial recognitions"', False),
        ("recognitions", True),
    ],
)
def test_meaning_against_seed_1(query, expected):
    assert matches(parse(query), SEED) is expected
