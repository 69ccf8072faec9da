"""The query tree's own rules."""

import dataclasses

import pytest

from questions.search import And, Not, Or, Phrase, Prefix, Term, leaves, parse

H = ("heading",)


def test_nodes_are_immutable_and_hashable():
    node = parse('police -"facial recognition" OR member:lew*')
    assert hash(node) == hash(parse("police NOT “facial recognition” OR Member: lew*"))
    assert len({node, parse('police -"facial recognition" OR member:lew*')}) == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        node.children = ()


def test_fields_are_kept_in_field_order_without_repeats():
    assert Term(("member", "heading", "member"), "x").fields == ("heading", "member")
    assert Term(["answer", "question", "heading"], "x") == Term(("heading", "question", "answer"), "x")


@pytest.mark.parametrize(
    "build",
    [
        lambda: Term((), "x"),
        lambda: Term(("nope",), "x"),
        lambda: Term(H, "Police"),
        lambda: Term(H, "two words"),
        lambda: Term(H, ""),
        lambda: Prefix(H, "po"),
        lambda: Prefix(H, "ai-en"),
        lambda: Phrase(H, ()),
        lambda: Phrase(H, ("one", "Two")),
        lambda: And((Term(H, "x"),)),
        lambda: Or(()),
    ],
)
def test_invalid_nodes_are_refused(build):
    with pytest.raises(ValueError):
        build()


def test_nested_and_or_are_flattened():
    a, b, c = (Term(H, w) for w in "abc")
    assert And((a, And((b, c)))) == And((a, b, c))
    assert Or((Or((a, b)), c)).children == (a, b, c)
    assert And((Or((a, b)), c)).children == (Or((a, b)), c)


def test_leaves_in_order():
    node = parse('a OR (b -"c d") member:eee*')
    assert [type(leaf).__name__ for leaf in leaves(node)] == ["Term", "Term", "Phrase", "Prefix"]
    assert leaves(Not(Term(H, "x"))) == [Term(H, "x")]
