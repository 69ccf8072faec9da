"""Section 1 of the query-language contract: cutting text into words."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from questions.search import DEFAULT_FIELDS, FIELDS, base, document, normalise, words


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The table of section 1.
        ("Children's Rights", ["children", "s", "rights"]),
        ("AI-enabled", ["ai", "enabled"]),
        ("£1.5bn", ["1", "5bn"]),
        ("Taser 10", ["taser", "10"]),
        ("Police: Artificial Intelligence", ["police", "artificial", "intelligence"]),
        # Its rules, one by one.
        ("café", ["cafe"]),
        ("cafe\u0301", ["cafe"]),
        ("CAFÉ", ["cafe"]),
        ("Straße", ["strasse"]),
        ("ﬁle", ["file"]),
        ("İstanbul", ["istanbul"]),
        ("naïve résumé", ["naive", "resume"]),
        ("½", ["1", "2"]),
        ("x²", ["x2"]),
        ("Ⅻ", ["xii"]),
        ("police_crime", ["police", "crime"]),
        ("policing", ["policing"]),
        ("the", ["the"]),
        ("日本語 テキスト", ["日本語", "テキスト"]),
        ("हिन्दी", ["हनद"]),
        ("٣٤ Ελλάδα", ["٣٤", "ελλαδα"]),
        ("", []),
        ("&& -- ** ()", []),
        ("Chief\u2019s", ["chief", "s"]),
        ("a\u00a0b\tc\nd", ["a", "b", "c", "d"]),
    ],
)
def test_words(text, expected):
    assert words(text) == expected


def test_no_stemming_and_no_stop_words():
    assert "police" not in words("policing")
    assert words("the and or not") == ["the", "and", "or", "not"]


def test_every_code_point_gives_words_that_are_their_own_words():
    # Query words are written back as text and re-read (canonical form), and are
    # compared with document words made by the same function: both rely on
    # words() being stable on its own output.
    for code in range(0x110000):
        found = words(chr(code))
        if found:
            assert words(" ".join(found)) == found, hex(code)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_words_are_stable_and_clean(text):
    found = words(text)
    assert words(" ".join(found)) == found
    for word in found:
        assert word
        assert all(unicodedata.category(char)[0] != "Z" for char in word)
        assert " " not in word


def test_normalise():
    assert normalise("Police: Artificial  Intelligence!") == " police artificial intelligence "
    assert normalise("") == "  "
    assert normalise("&&") == "  "
    assert normalise("Café") == " cafe "


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_normalise_marks_each_word_by_surrounding_spaces(text):
    norm = normalise(text)
    assert norm.startswith(" ") and norm.endswith(" ")
    for word in words(text):
        assert f" {word} " in norm
    assert norm == " " + " ".join(words(text)) + " "


def test_fields():
    assert FIELDS == (
        "heading",
        "question",
        "answer",
        "member",
        "party",
        "constituency",
        "department",
        "minister",
        "house",
        "uin",
    )
    assert DEFAULT_FIELDS == ("heading", "question", "answer", "member", "department", "minister")


def test_document():
    doc = document({"heading": "Prisons: AI", "member": "Clive Lewis", "answer": None, "uin": "HL1234", "other": "x"})
    # The due field too, empty unless the record says what state the question is in.
    assert set(doc) == set(FIELDS) | {"due"} | {f"base_{field}" for field in (*FIELDS, "due")}
    assert doc["due"] == doc["base_due"] == "  "
    assert doc["base_heading"] == " prison ai "
    assert doc["base_member"] == " clive lewis "
    assert doc["base_answer"] == "  "
    assert doc["heading"] == " prisons ai "
    assert doc["member"] == " clive lewis "
    assert doc["answer"] == "  "
    assert doc["party"] == "  "
    assert doc["uin"] == " hl1234 "


@pytest.mark.parametrize(
    "family",
    [
        ("prison", "prisons"),
        ("policy", "policies"),
        ("child", "children"),
        ("woman", "women"),
        ("fund", "funds", "funded"),
        ("assess", "assessed", "assesses"),
        ("ban", "banned", "bans"),
        ("apply", "applied", "applies"),
        ("police", "polices", "policed", "policing"),
        ("intelligence", "intelligences"),
        ("meeting", "meetings"),
        ("building", "buildings"),
    ],
)
def test_the_forms_of_a_word_share_its_base_form(family):
    assert len({base(word) for word in family}) == 1


@pytest.mark.parametrize(
    "pair",
    [
        ("governance", "government"),
        ("publicity", "public"),
        ("accountancy", "account"),
        ("police", "policy"),
        ("university", "universe"),
        ("community", "communication"),
        ("new", "news"),
        ("national", "nation"),
        ("general", "generally"),
        # Names the dictionary does not know are their own base forms; an "es" never comes off.
        ("jones", "jone"),
        ("james", "jam"),
        ("williams", "william"),
        ("nhs", "nh"),
    ],
)
def test_words_of_another_meaning_keep_apart(pair):
    assert base(pair[0]) != base(pair[1])


def test_a_base_form_is_one_word_as_the_tokeniser_cuts_it():
    for word in words("Prisons café 10 HL1234 日本 AI Straße women's " + "x" * 200):
        assert words(base(word)) == [base(word)]
