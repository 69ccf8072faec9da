"""Sections 3 and 5 of the query-language contract: reading queries, and refusing them."""

import pytest

from questions.search import (
    DEFAULT_FIELDS,
    And,
    Not,
    Or,
    Phrase,
    Prefix,
    QueryError,
    Term,
    canonical,
    parse,
    parse_or_none,
)

D = DEFAULT_FIELDS


def t(word, *fields):
    return Term(fields or D, word)


def p(prefix, *fields):
    return Prefix(fields or D, prefix)


def ph(text, *fields):
    return Phrase(fields or D, tuple(text.split()))


# --- reading ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("police", t("police")),
        ("Police", t("police")),
        ('"facial recognition"', ph("facial recognition")),
        ("“facial recognition”", ph("facial recognition")),
        ("„facial recognition“", ph("facial recognition")),
        ('"facial recognition”', ph("facial recognition")),
        ('„facial recognition"', ph("facial recognition")),
        # A quoted word is exact: a phrase of one word, not a word in any of its forms.
        ('"police"', ph("police")),
        ('"AND OR NOT * ( ) - : police"', ph("and or not police")),
        ("police AND crime", And((t("police"), t("crime")))),
        ("police crime", And((t("police"), t("crime")))),
        ("police OR crime", Or((t("police"), t("crime")))),
        ("police and crime", And((t("police"), t("and"), t("crime")))),
        ("police or crime", And((t("police"), t("or"), t("crime")))),
        ("police not crime", And((t("police"), t("not"), t("crime")))),
        ("police Or crime", And((t("police"), t("or"), t("crime")))),
        ("and", t("and")),
        ("police NOT crime", And((t("police"), Not(t("crime"))))),
        ("police -crime", And((t("police"), Not(t("crime"))))),
        ("-crime police", And((Not(t("crime")), t("police")))),
        ("police (-crime)", And((t("police"), Not(t("crime"))))),
        ('police -"facial recognition"', And((t("police"), Not(ph("facial recognition"))))),
        ("police -(crime OR fraud)", And((t("police"), Not(Or((t("crime"), t("fraud"))))))),
        ("police NOT NOT crime", And((t("police"), Not(Not(t("crime")))))),
        # A "-" only means NOT at the start of a piece and before something.
        ("police-crime", ph("police crime")),
        ("police - crime", And((t("police"), t("crime")))),
        ("police -", t("police")),
        ("(police -)", t("police")),
        ("police --crime", And((t("police"), Not(t("crime"))))),
        ('"a b"-crime', And((ph("a b"), t("crime")))),
        # Precedence: NOT, then AND, then OR.
        ("a OR b c", Or((t("a"), And((t("b"), t("c")))))),
        ("NOT a b", And((Not(t("a")), t("b")))),
        ("a b OR c d", Or((And((t("a"), t("b"))), And((t("c"), t("d")))))),
        ("(a OR b) c", And((Or((t("a"), t("b"))), t("c")))),
        ("a AND (b AND c)", And((t("a"), t("b"), t("c")))),
        ("(a OR b) OR (c OR d)", Or((t("a"), t("b"), t("c"), t("d")))),
        ("((police))", t("police")),
        ("(police)crime", And((t("police"), t("crime")))),
        ('police"crime"', And((t("police"), ph("crime")))),
        # Fields.
        ("member:lewis", t("lewis", "member")),
        ("Member:Lewis", t("lewis", "member")),
        ("MEMBER:lewis", t("lewis", "member")),
        ("member: lewis", t("lewis", "member")),
        ("member:   lewis", t("lewis", "member")),
        ('member:"Clive Lewis"', ph("clive lewis", "member")),
        ('member: "Clive Lewis"', ph("clive lewis", "member")),
        ("member:Clive-Lewis", ph("clive lewis", "member")),
        ("member:lew*", p("lew", "member")),
        ("member: lew*", p("lew", "member")),
        ("member:(lewis)", t("lewis", "member")),
        ("member: (lewis OR johnson)", Or((t("lewis", "member"), t("johnson", "member")))),
        ("member:& lewis", t("lewis", "member")),
        ("member: & lewis", t("lewis", "member")),
        ("member:AND", t("and", "member")),
        ("member:department:home", ph("department home", "member")),
        ("uin:HL1234", t("hl1234", "uin")),
        ("uin:61234", t("61234", "uin")),
        ("house:Lords", t("lords", "house")),
        (
            "member:(lewis department:home)",
            And((t("lewis", "member"), t("home", "department"))),
        ),
        (
            "member:(lewis OR party:(labour green)) police",
            And(
                (
                    Or((t("lewis", "member"), And((t("labour", "party"), t("green", "party"))))),
                    t("police"),
                )
            ),
        ),
        ("-member:lewis police", And((Not(t("lewis", "member")), t("police")))),
        # A name that is not a field is plain text.
        ("Police: AI", And((t("police"), t("ai")))),
        ("Police:AI", ph("police ai")),
        ("foo:bar", ph("foo bar")),
        (":police", t("police")),
        ("membership:lewis", ph("membership lewis")),
        # Pieces of several words are phrases.
        ("AI-enabled", ph("ai enabled")),
        ("£1.5bn", ph("1 5bn")),
        ("Children's", ph("children s")),
        # Dropped pieces.
        ("police &", t("police")),
        ("police & crime", And((t("police"), t("crime")))),
        ('police "" crime', And((t("police"), t("crime")))),
        ('police "&" crime', And((t("police"), t("crime")))),
        ("police * crime", And((t("police"), t("crime")))),
        ("police ***", t("police")),
        ("police (& crime)", And((t("police"), t("crime")))),
        # Wildcards.
        ("artificial*", p("artificial")),
        ("Polic*", p("polic")),
        ("pol*", p("pol")),
        ("café*", p("cafe")),
        ("polic**", p("polic")),
        ("AND*", p("and")),
        ("-polic* crime", And((Not(p("polic")), t("crime")))),
        ("pol*ce", ph("pol ce")),
        ("*police", t("police")),
        ('"polic*"', ph("polic")),
        ("(polic*)", p("polic")),
        # Spacing of any kind.
        ("  police\tAND\ncrime  ", And((t("police"), t("crime")))),
        ("police\u00a0crime", And((t("police"), t("crime")))),
    ],
)
def test_parse(query, expected):
    assert parse(query) == expected


# --- refusals ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "position", "message"),
    [
        # Every example of the table in section 5, and then some.
        ("", None, "The search is empty"),
        ("   ", None, "The search is empty"),
        ("&&", None, "The search has no words to look for"),
        ('""', None, "The search has no words to look for"),
        ("“”", None, "The search has no words to look for"),
        ("- & * ***", None, "The search has no words to look for"),
        ('"facial recognition', 0, "The quote you opened at character 1 is never closed."),
        ('police "facial recognition', 7, "The quote you opened at character 8 is never closed."),
        ('"a" "b', 4, "The quote you opened at character 5 is never closed."),
        ("(police OR crime", 0, "The bracket you opened at character 1 is never closed."),
        ("police)", 6, "There is a closing bracket at character 7 with no opening bracket before it."),
        ("(a)) (b", 3, "There is a closing bracket at character 4 with no opening bracket before it."),
        ("(a (b)", 0, "The bracket you opened at character 1 is never closed."),
        ('"(" police', None, None),
        ("police AND", 7, '"AND" at character 8 has nothing after it.'),
        ("OR police", 0, '"OR" at character 1 has nothing before it.'),
        ("police AND OR crime", 7, '"AND" at character 8 has nothing after it.'),
        ("NOT", 0, '"NOT" at character 1 has nothing after it.'),
        ("police OR", 7, '"OR" at character 8 has nothing after it.'),
        ("AND police", 0, '"AND" at character 1 has nothing before it.'),
        ("police OR OR crime", 7, '"OR" at character 8 has nothing after it.'),
        ("police (OR crime)", 8, '"OR" at character 9 has nothing before it.'),
        ("(police AND) crime", 8, '"AND" at character 9 has nothing after it.'),
        ("police NOT", 7, '"NOT" at character 8 has nothing after it.'),
        ("police AND &", 7, '"AND" at character 8 has nothing after it.'),
        ("police -&", 7, '"-" at character 8 has nothing after it.'),
        ("police NOT OR crime", 7, '"NOT" at character 8 has nothing after it.'),
        ("po*", 0, 'The wildcard "po*" at character 1 is too short: put at least 3 letters or digits before the "*".'),
        ("police é*", 7, 'The wildcard "é*" at character 8 is too short'),
        ("member:po*", 7, 'The wildcard "po*" at character 8 is too short'),
        (
            "ai-en*",
            0,
            'The wildcard "ai-en*" at character 1 has more than one word before the "*": '
            "a wildcard can only end a single word.",
        ),
        ("police artificial-intelli*", 7, 'The wildcard "artificial-intelli*" at character 8 has more than one word'),
        (
            "member:",
            0,
            'The field "member:" at character 1 is not followed by a word, a phrase in quotes or a group in '
            "brackets to look for.",
        ),
        ("member: AND police", 0, 'The field "member:" at character 1 is not followed by a word'),
        ("police Member:", 7, 'The field "Member:" at character 8 is not followed by a word'),
        ("member: &", 0, 'The field "member:" at character 1 is not followed by a word'),
        ("member: NOT lewis", 0, 'The field "member:" at character 1 is not followed by a word'),
        ("member: party:labour", 0, 'The field "member:" at character 1 is not followed by a word'),
        ("(member:) police", 1, 'The field "member:" at character 2 is not followed by a word'),
        ("()", 0, "The brackets at character 1 have nothing inside them."),
        ("police (&)", 7, "The brackets at character 8 have nothing inside them."),
        ('police ("")', 7, "The brackets at character 8 have nothing inside them."),
        ("member:()", 7, "The brackets at character 8 have nothing inside them."),
        ("NOT police", None, "This search would match even a question with no words at all"),
        ("-police", None, "This search would match even a question with no words at all"),
        ("police OR NOT crime", None, "This search would match even a question with no words at all"),
        ("NOT police NOT crime", None, "This search would match even a question with no words at all"),
        ("NOT (police crime)", None, "This search would match even a question with no words at all"),
        ("x" * 1001, None, "The search is 1,001 characters long; the most allowed is 1,000."),
        (" ".join(["police"] * 64) + " crime", 448, "The search has more than 64 words and phrases"),
        ("(" * 11 + "police" + ")" * 11, 10, "The bracket at character 11 nests the search more than 10 brackets"),
    ],
)
def test_refused(query, position, message):
    if message is None:
        assert parse(query) is not None
        return
    with pytest.raises(QueryError) as caught:
        parse(query)
    assert caught.value.message.startswith(message)
    assert str(caught.value) == caught.value.message
    assert caught.value.position == position
    assert parse_or_none(query) is None


def test_limits_are_inclusive():
    assert parse("x" * 1000) == t("x" * 1000)
    assert parse(" ".join(["police"] * 64)) == And(tuple([t("police")] * 64))
    assert parse("(" * 10 + "police" + ")" * 10) == t("police")
    assert parse("NOT NOT police") == Not(Not(t("police")))
    assert parse("police NOT NOT crime") == And((t("police"), Not(Not(t("crime")))))


def test_size_counts_phrases_and_wildcards_but_not_dropped_pieces():
    assert parse(" ".join(['"a b"'] * 64) + " & &")
    with pytest.raises(QueryError):
        parse(" ".join(['"a b"'] * 32 + ["polic*"] * 33))


def test_first_problem_from_the_left_is_reported():
    with pytest.raises(QueryError) as caught:
        parse('po* "unclosed')
    assert caught.value.position == 0


def test_max_length_can_be_lifted():
    long = " ".join(["police"] * 60) + " " + "x" * 700
    with pytest.raises(QueryError):
        parse(long)
    assert parse(long, max_length=None) == parse(long, max_length=len(long))


# --- canonical text ------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("police", "police"),
        ("Police  -Palantir", "police AND NOT palantir"),
        ("“Facial Recognition”", '"facial recognition"'),
        ("a OR b c", "a OR b AND c"),
        ("(a OR b) c", "(a OR b) AND c"),
        ("NOT (a b) c", "NOT (a AND b) AND c"),
        ("--a b", "NOT a AND b"),
        ("Member: “Clive Lewis”", 'member:"clive lewis"'),
        ('department:(Justice OR "Home Office")', 'department:justice OR department:"home office"'),
        ("Artificial*", "artificial*"),
        ("Police: Artificial Intelligence", "police AND artificial AND intelligence"),
        ("AI-enabled", '"ai enabled"'),
        ("police and crime", "police AND and AND crime"),
        ("((police))", "police"),
        ("x NOT NOT y", "x AND NOT NOT y"),
    ],
)
def test_canonical(query, expected):
    assert canonical(parse(query)) == expected
    assert parse(canonical(parse(query))) == parse(query)


@pytest.mark.parametrize(
    "variants",
    [
        ["police -palantir", "Police   NOT  PALANTIR", "(police) AND (NOT palantir)", "police AND -palantir"],
        ['"facial recognition"', "“Facial  Recognition”", "facial-recognition", "„facial recognition“"],
        ["member:lewis", "Member: Lewis", "MEMBER:(lewis)", "member:((Lewis))"],
        ['member:"lewis"', 'Member: "Lewis"', "MEMBER:(“lewis”)"],
        ["a OR b c", "a OR (b AND c)", "(a) OR (b c)", "a OR b AND c"],
    ],
)
def test_same_meaning_same_canonical(variants):
    assert len({canonical(parse(query)) for query in variants}) == 1


def test_canonical_can_be_longer_than_the_query():
    query = " ".join(["a"] * 63) + " " + "b" * 800
    assert len(query) <= 1000
    text = canonical(parse(query))
    assert len(text) > 1000
    assert parse(text, max_length=None) == parse(query)


def test_canonical_of_hand_built_multi_field_term():
    node = Term(("member", "heading"), "lewis")
    assert node.fields == ("heading", "member")
    assert canonical(node) == "(heading:lewis OR member:lewis)"
    assert canonical(And((node, t("x")))) == "(heading:lewis OR member:lewis) AND x"


def test_long_chains_of_not_need_no_deep_recursion():
    query = "NOT " * 248 + "x y"
    assert len(query) <= 1000
    node = parse(query)
    assert parse(canonical(node)) == node
    much_longer = parse("NOT " * 5000 + "x y", max_length=None)
    assert canonical(much_longer).startswith("NOT NOT ")
