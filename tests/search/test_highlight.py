"""Marking what a query looked for in a question's text."""

from questions.search import highlight, parse

from .seed import SEED_1


def test_words_are_marked_and_the_rest_escaped():
    assert highlight("Police & <b>crime</b>", parse("police")) == "<mark>Police</mark> &amp; &lt;b&gt;crime&lt;/b&gt;"


def test_nothing_to_mark():
    assert highlight('Tom & "Jerry"', parse("police")) == "Tom &amp; &quot;Jerry&quot;"
    assert highlight("", parse("police")) == ""


def test_accents_and_case_are_compared_as_words():
    assert (
        highlight("Le Café, CAFE and cafe\u0301s", parse("cafe"))
        == "Le <mark>Café</mark>, <mark>CAFE</mark> and cafe\u0301s"
    )
    assert highlight("cafe\u0301 bar", parse("café")) == "<mark>cafe\u0301</mark> bar"
    assert highlight("Straße", parse("strasse")) == "<mark>Straße</mark>"


def test_only_whole_words():
    assert highlight("policemen police policeman", parse("police")) == "policemen <mark>police</mark> policeman"


def test_every_form_of_an_unquoted_word_and_only_the_quoted_form():
    text = "Prison places: the prisons, a prisoner view, policing and policy"
    assert highlight(text, parse("prisons")) == (
        "<mark>Prison</mark> places: the <mark>prisons</mark>, a prisoner view, policing and policy"
    )
    assert highlight(text, parse('"prisons"')) == (
        "Prison places: the <mark>prisons</mark>, a prisoner view, policing and policy"
    )
    assert highlight(text, parse("polices")) == (
        "Prison places: the prisons, a prisoner view, <mark>policing</mark> and policy"
    )


def test_wildcards_mark_each_word_they_match():
    assert highlight("Policing the police; Polish", parse("polic*")) == (
        "<mark>Policing</mark> the <mark>police</mark>; Polish"
    )


def test_phrases_are_marked_only_where_whole():
    text = "Facial recognition, recognition of faces, facial hair"
    assert highlight(text, parse('"facial recognition"')) == (
        "<mark>Facial recognition</mark>, recognition of faces, facial hair"
    )
    assert highlight("AI-enabled tools; AI, tools, enabled", parse("AI-enabled")) == (
        "<mark>AI-enabled</mark> tools; AI, tools, enabled"
    )
    # Punctuation only separates words, so it does not break a phrase.
    assert highlight("AI; enabled", parse('"ai enabled"')) == "<mark>AI; enabled</mark>"


def test_negated_parts_are_not_marked():
    assert highlight("police and palantir", parse("police -palantir")) == "<mark>police</mark> and palantir"
    assert highlight("police and palantir", parse("police NOT NOT palantir")) == (
        "<mark>police</mark> and <mark>palantir</mark>"
    )
    assert highlight("police and crime", parse("police NOT (crime OR fraud)")) == "<mark>police</mark> and crime"


def test_field_limits_marks_to_the_parts_that_look_in_it():
    node = parse('member:lewis police OR department:"home office"')
    assert highlight("Police Lewis, Home Office", node, "heading") == "<mark>Police</mark> Lewis, Home Office"
    assert highlight("Clive Lewis", node, "member") == "Clive <mark>Lewis</mark>"
    assert highlight("Home Office", node, "department") == "<mark>Home Office</mark>"
    assert highlight("Police Lewis", node) == "<mark>Police</mark> <mark>Lewis</mark>"


def test_overlapping_marks_are_merged():
    node = parse('"facial recognition" OR recognition OR "recognition technology"')
    assert highlight("facial recognition technology", node) == "<mark>facial recognition technology</mark>"


def test_characters_that_fold_into_several_words():
    assert highlight("½ and ﬁle", parse("file 2")) == "<mark>½</mark> and <mark>ﬁle</mark>"


def test_seed_answer():
    out = highlight(SEED_1["answer"], parse('"facial recognition" OR chief*'), "answer")
    assert out.count("<mark>facial recognition</mark>") == 2
    assert "<mark>Chief</mark> Constables" in out
    assert "<mark>Chief</mark>&#x27;s" not in out
    assert "<mark>Chief</mark>\u2019s Council" in out
