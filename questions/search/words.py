"""Cutting text into words, and each word's base form: the one tokeniser shared by documents and queries.

Every place that compares a query with a question goes through `words()` and `base()` on both sides, so
the rules of section 1 of docs/query-language.md live here only.

The letter/digit/mark categories come from the `regex` module's Unicode tables,
decomposition and case folding from Python's `unicodedata`.  Upgrading either can
change how rare characters are cut, so stored normalised text should be rebuilt
after such an upgrade (`UNICODE_VERSIONS` says which tables are in use).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping

import regex
from lemminflect import getAllLemmas

from .memo import short_text_cache

FIELDS: tuple[str, ...] = (
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
# Where a term with no field looks (section 2), in FIELDS order: a person types an MP's or a department's
# name as readily as a topic.
DEFAULT_FIELDS: tuple[str, ...] = ("heading", "question", "answer", "member", "department", "minister")
# The field of section 8: not text of the question but the state of its answer on the day it is read, so its
# words are worked out when a question is matched (`Question.due_words`) and in SQL (`sql.due_q`), never stored.
DUE = "due"
DUE_WORDS: tuple[str, ...] = ("overdue", "late", "named")
# Every field a search may name.
QUERY_FIELDS: tuple[str, ...] = (*FIELDS, DUE)

UNICODE_VERSIONS = f"unicodedata {unicodedata.unidata_version}; regex {regex.__version__}"

_MARKS = regex.compile(r"\p{M}+")
WORD_RE = regex.compile(r"[\p{L}\p{N}]+")


def fold(text: str) -> str:
    """The text after step 1 of section 1 (NFKD, combining marks dropped, casefolded).

    Marks are dropped before case folding because folding works on the
    decomposed letters; this order was checked to be stable over every code point
    (folding the result again changes nothing).
    """
    stripped: str = _MARKS.sub("", unicodedata.normalize("NFKD", text))
    return stripped.casefold()


def words(text: str) -> list[str]:
    """The words of `text`, in order: maximal runs of letters and digits after `fold`."""
    found: list[str] = WORD_RE.findall(fold(text))
    return found


def normalise(text: str) -> str:
    """The words of `text` joined by single spaces, with one space before and after.

    The surrounding spaces make a plain substring test exact: word `w` is present
    iff `f" {w} "` occurs, and some word starts with `p` iff `f" {p}"` occurs.  Text
    without words gives two spaces.
    """
    return " " + " ".join(words(text)) + " "


# Which reading of a word gives its base form when the dictionary knows several: a word in a question is
# most often a noun ("meetings", "buildings", "funding"), and taking the noun first keeps each noun's forms
# together ("meeting" and "meetings" both give "meeting", not "meet" for one of them).
_PARTS_OF_SPEECH = ("NOUN", "VERB", "ADJ", "ADV")


@short_text_cache(maxsize=1 << 17)
def base(word: str) -> str:
    """The base form of one word (section 1, "Word forms"): its lemma in LemmInflect's dictionary, an
    auxiliary verb's first, then the noun's, the verb's, the adjective's and the adverb's; an unknown word
    is its own base form, unless it is a known noun with an "s" added (`intelligences`). Only inflections
    share a base form: the dictionary lists no derivations, so `governance` and `government` stay apart.
    Why this lemmatiser, and what it gets wrong: docs/word-forms.md.
    """
    lemma = _lemma(word)
    if lemma is None and word.endswith("s"):
        # Only an "s" comes off: taking "es" too makes "james" a form of "jam" (docs/word-forms.md).
        lemma = next(iter(getAllLemmas(word[:-1], upos="NOUN").values()), (None,))[0]
    if lemma is None:
        return word
    # A lemma is written as the dictionary spells it: cut it as a word of a question is cut, and keep the
    # word itself where that is not one word (a lemma with a space or an apostrophe).
    cut = words(lemma)
    return cut[0] if len(cut) == 1 else word


def load_dictionary() -> None:
    """Load LemmInflect's dictionary now rather than on the first word: it takes a few tenths of a second, which
    one search must not pay, and threads that all ask first would each load it."""
    getAllLemmas("a")


def _lemma(word: str) -> str | None:
    found = getAllLemmas(word)
    if "AUX" in found and word not in found.get("NOUN", ()):
        # An auxiliary's forms are the verb's: "does" is "do", not the plural of "doe". A noun as it stands
        # ("being", "can", "will") stays the noun.
        return found["AUX"][0]
    for part in _PARTS_OF_SPEECH:
        if part in found:
            return found[part][0]
    return None


def base_text(normalised: str) -> str:
    """`normalise()` text with each word in its base form, spaced the same way."""
    return " " + " ".join(map(base, normalised.split())) + " "


def with_base_forms(normalised: Mapping[str, str]) -> dict[str, str]:
    """A document from each field's `normalise()` text: those, and under `base_key(field)` their base forms.
    Without `DUE` text the question has none of its words."""
    doc = {DUE: normalise(""), **normalised}
    for field in QUERY_FIELDS:
        doc[base_key(field)] = base_text(doc[field])
    return doc


def base_key(field: str) -> str:
    """The key, in a document, of a field's words in their base forms (the field's own key has them as written)."""
    return f"base_{field}"


# Every key of a document: the fields, then their base forms.
DOCUMENT_KEYS: tuple[str, ...] = FIELDS + tuple(map(base_key, FIELDS))


def document(record: Mapping[str, str | None]) -> dict[str, str]:
    """Each field of a question (`DUE` too) mapped to its normalised text, and `base_key(field)` to the same
    words in their base forms; an absent or None field is empty."""
    return with_base_forms({field: normalise("" if record.get(field) is None else str(record[field]))
                            for field in QUERY_FIELDS})
