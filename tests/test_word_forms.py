"""Word forms (query language v2) on real questions of the bundled sample: what a person finds, on every surface
that reads a search.

Each case names real questions by their API ids, and says which of them a search must find and which it must
not. Every surface must answer it, and all of them alike over the same few hundred questions:

- the search (`questions.searching.search`) on PostgreSQL, and the search page a person reads;
- the alert matcher on the stored questions (`Question.search_document`, what `alerts` match);
- the evaluator on documents made from the records (`questions.search.matches` on `document(...)`);
- the percolator (`manage.py percolate`), with no database;
- `manage.py search --queries` on SQLite, as `make run` serves it, in a process of its own.
"""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from io import StringIO

import pytest
from django.core.management import call_command
from django.test import Client

from questions.models import Question
from questions.search import DEFAULT_FIELDS, document, matches, parse, words
from questions.searching import search
from tests.conftest import FIXTURES, ROOT

SAMPLE = FIXTURES / "written_questions_sample.jsonl.gz"

# Real questions of the sample, by API id. Comments quote what each says; EVIDENCE below checks it.
PRISON = 1849072          # "...plans to create new prison places."
PRISONS = 1839317         # "...the use of companion dogs in prisons."
SCHOOLS = 1839135         # "...the Schools White Paper."
FARMERS = 1755439         # "Sheep: Livestock Industry": "...support sheep farmers..."
HOSPITAL = 1755867        # "Torbay Hospital"
CHILD = 1924572           # "Child Trust Fund"
CHILDREN = 1837322        # "...funding for children's..."
WOMAN = 1833587           # "Asylum: Pregnancy": "...a pregnant woman..."
WOMEN = 1838913           # "To ask the Minister for Women and Equalities, ... the gender pay gap."
FUNDS = 1898128           # "Cinemas: Finance": "...what capital funds are open to independent cinemas."
FUND = 1905578            # "National Wealth Fund"
GOVERNMENT = 1925580      # "...whether the Defence Investment Plan is Government policy."
POLICY = 1741494          # "Export Controls": "...his export controls policy priorities..."
POLICE = 1905887          # "Police: Recruitment"
UNIVERSITY = 1878099      # "Students: Suicide": "...that universities share learning..."
NEWS = 1838996            # "...support local news..."
COMMUNICATION = 1831218   # "Uncrewed Systems: Communication"
COMMUNITY = 1924883       # "Glaucoma: Community Health Services"
PUBLIC = 1741861          # "Public Finance"
PUBLICITY = 1754772       # "Government Departments: Publicity"
PRISON_OFFICERS = 1905554  # "Prison Officers: Protection"
PRISON_OFFICER = 1851386  # "...removing ... prison officer..." (the singular only)
# Asked by Clive Lewis; answered by Karin Smyth; to the Home Office: none of them has all the words of the
# member's, the minister's or the department's name in its heading, question or answer, so only those fields
# can find them.
CLIVE_LEWIS = (1833918, 1837101, 1756493)
KARIN_SMYTH = (1741444, 1754913)
HOME_OFFICE = (1838543, 1900227)

TEXT_FIELDS = ("heading", "question", "answer")

# (words it has, words it never has) in the fields a plain search looks in: the case each question makes.
EVIDENCE: dict[int, tuple[set[str], set[str]]] = {
    PRISON: ({"prison", "new"}, {"prisons", "news"}),
    PRISONS: ({"prisons"}, {"prison"}),
    SCHOOLS: ({"schools"}, {"school"}),
    FARMERS: ({"farmers"}, {"farmer"}),
    HOSPITAL: ({"hospital"}, {"hospitals"}),
    CHILD: ({"child"}, {"children"}),
    CHILDREN: ({"children"}, {"child"}),
    WOMAN: ({"woman"}, {"women"}),
    WOMEN: ({"women"}, {"woman"}),
    FUNDS: ({"funds"}, {"fund", "funded", "funding"}),
    FUND: ({"fund"}, {"funds", "funded", "funding"}),
    GOVERNMENT: ({"government"}, {"governance"}),
    POLICY: ({"policy"}, {"police", "polices", "policed", "policing", "policies"}),
    POLICE: ({"police"}, {"policy", "policies"}),
    UNIVERSITY: ({"universities"}, {"university", "universe", "universes"}),
    NEWS: ({"news"}, {"new"}),
    COMMUNICATION: ({"communication"}, {"community", "communities"}),
    COMMUNITY: ({"community"}, {"communication", "communications"}),
    PUBLIC: ({"public"}, {"publicity"}),
    PUBLICITY: ({"publicity"}, {"public"}),
    PRISON_OFFICERS: ({"prison", "officers"}, set()),
    PRISON_OFFICER: ({"prison", "officer"}, {"officers"}),
}


@dataclass(frozen=True)
class Case:
    query: str
    found: tuple[int, ...] = ()
    not_found: tuple[int, ...] = ()


CASES: dict[str, Case] = {
    # Inflections are found.
    "prisons finds prison": Case("prisons", found=(PRISON, PRISONS)),
    "prison finds prisons": Case("prison", found=(PRISON, PRISONS)),
    "school finds schools": Case("school", found=(SCHOOLS,)),
    "farmer finds farmers": Case("farmer", found=(FARMERS,)),
    "hospitals finds hospital": Case("hospitals", found=(HOSPITAL,)),
    "children finds child": Case("children", found=(CHILD, CHILDREN)),
    "child finds children": Case("child", found=(CHILD, CHILDREN)),
    "women finds woman": Case("women", found=(WOMAN, WOMEN)),
    "woman finds women": Case("woman", found=(WOMAN, WOMEN)),
    "funded finds funds and fund": Case("funded", found=(FUNDS, FUND)),
    "university finds universities": Case("university", found=(UNIVERSITY,)),
    # Words of another meaning are not.
    "governance is not government": Case("governance", not_found=(GOVERNMENT,)),
    "government is itself": Case("government", found=(GOVERNMENT,)),
    "police is not policy": Case("police", found=(POLICE,), not_found=(POLICY,)),
    "policy is not police": Case("policy", found=(POLICY,), not_found=(POLICE,)),
    "universe is not university": Case("universe", not_found=(UNIVERSITY,)),
    "news is not new": Case("news", found=(NEWS,), not_found=(PRISON,)),
    "new is not news": Case("new", found=(PRISON,), not_found=(NEWS,)),
    "community is not communication": Case("community", found=(COMMUNITY,), not_found=(COMMUNICATION,)),
    "communication is not community": Case("communication", found=(COMMUNICATION,), not_found=(COMMUNITY,)),
    "publicity is not public": Case("publicity", found=(PUBLICITY,), not_found=(PUBLIC,)),
    "public is not publicity": Case("public", found=(PUBLIC,), not_found=(PUBLICITY,)),
    # Quotation marks mean what was typed.
    'quoted "prisons" is prisons only': Case('"prisons"', found=(PRISONS,), not_found=(PRISON,)),
    'quoted "prison" is prison only': Case('"prison"', found=(PRISON,), not_found=(PRISONS,)),
    "a phrase is matched as written": Case('"prison officers"', found=(PRISON_OFFICERS,), not_found=(PRISON_OFFICER,)),
    "the same words unquoted take their forms": Case("prison officers", found=(PRISON_OFFICERS, PRISON_OFFICER)),
    # A wildcard starts words as written.
    "prisons* is words starting prisons": Case("prisons*", found=(PRISONS,), not_found=(PRISON,)),
    "women* is words starting women": Case("women*", found=(WOMEN,), not_found=(WOMAN,)),
    "prison* is words starting prison": Case("prison*", found=(PRISON, PRISONS, PRISON_OFFICERS)),
    # Names are found by plain words.
    "an MP's name finds the questions they asked": Case("Clive Lewis", found=CLIVE_LEWIS),
    "a minister's name finds the questions they answered": Case("Karin Smyth", found=KARIN_SMYTH),
    "a department's name finds its questions": Case("home office", found=HOME_OFFICE),
    "a department's name quoted finds its questions": Case('"Home Office"', found=HOME_OFFICE),
    "member: finds the same": Case('member:"Clive Lewis"', found=CLIVE_LEWIS),
    "minister: finds the same": Case("minister:(karin smyth)", found=KARIN_SMYTH),
    "department: finds the same": Case('department:"home office"', found=HOME_OFFICE),
}

# A plain name finds at least what the same name in its field finds: it needs no `member:`.
PLAIN_AND_FIELDED = [("Clive Lewis", 'member:"Clive Lewis"'), ("Karin Smyth", "minister:(karin smyth)"),
                     ("home office", 'department:"home office"')]

NAMED = {api_id for case in CASES.values() for api_id in case.found + case.not_found}
# Questions no case names, spread over the whole sample, so that every search is answered on a real mix.
BACKGROUND_EVERY = 100

SURFACES = ("search", "page", "stored", "evaluator", "percolate", "sqlite")


def chosen_lines() -> list[dict]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as lines:
        found = [item for number, item in enumerate(map(json.loads, lines))
                 if item["api_id"] in NAMED or number % BACKGROUND_EVERY == 0]
    assert {item["api_id"] for item in found} >= NAMED, "a case names a question that is not in the sample"
    return found


def language_record(item: dict) -> dict:
    """A line of the sample with the field names of the query language (section 2), as `percolate` reads."""
    return {"id": str(item["api_id"]), "heading": item["heading"], "question": item["question"],
            "answer": item["answer"], "member": item["asking_member"], "minister": item["answering_member"],
            "department": item["department"], "house": item["house"], "uin": item["uin"]}


def ids(found) -> set[int]:
    return {int(api_id) for api_id in found}


@pytest.fixture(scope="module")
def lines() -> list[dict]:
    return chosen_lines()


@pytest.fixture(scope="module")
def files(lines, tmp_path_factory):
    """The chosen lines as the sample holds them (gzipped), as the query language names them, and the queries."""
    folder = tmp_path_factory.mktemp("word-forms")
    sample = folder / "sample.jsonl.gz"
    sample.write_bytes(gzip.compress("".join(json.dumps(item) + "\n" for item in lines).encode()))
    questions = folder / "questions.jsonl"
    questions.write_text("".join(json.dumps(language_record(item)) + "\n" for item in lines))
    queries = folder / "queries.jsonl"
    texts = sorted({case.query for case in CASES.values()} | {q for pair in PLAIN_AND_FIELDED for q in pair})
    queries.write_text("".join(json.dumps({"id": text, "query": text}) + "\n" for text in texts))
    return {"folder": folder, "sample": sample, "questions": questions, "queries": queries, "texts": texts}


def read_answers(output: str) -> dict[str, set[int]]:
    answers = {}
    for line in output.splitlines():
        answer = json.loads(line)
        assert "error" not in answer, answer
        answers[answer["id"]] = ids(answer["matches"])
    return answers


def page_lists(client: Client, query: str, question: Question) -> bool:
    """Whether the search page, asked the query and this question's UIN, lists the question: what a person sees."""
    response = client.get("/", {"q": f"({query}) uin:{question.uin}"})
    assert response.status_code == 200, (query, response.status_code)
    return f'href="{question.get_absolute_url()}"' in response.content.decode()


@pytest.fixture(scope="module")
def answers(files, lines, django_db_setup, django_db_blocker) -> dict[str, dict[str, set[int]]]:
    """Every surface's answer to every query: surface -> query -> API ids found."""
    found: dict[str, dict[str, set[int]]] = {surface: {} for surface in SURFACES}
    texts = files["texts"]

    records = [language_record(item) for item in lines]
    documents = [(int(record["id"]), document(record)) for record in records]
    for text in texts:
        node = parse(text)
        found["evaluator"][text] = {api_id for api_id, doc in documents if matches(node, doc)}

    call_command("percolate", queries=files["queries"], questions=files["questions"], stdout=(out := StringIO()))
    found["percolate"] = read_answers(out.getvalue())

    loaded = [str(item["api_id"]) for item in lines]
    with django_db_blocker.unblock():
        call_command("import_questions", str(files["sample"]), stdout=StringIO())
        try:
            stored = list(Question.objects.filter(external_id__in=loaded))
            assert len(stored) == len(lines)
            assert len({question.uin for question in stored}) == len(stored), "the page finds a question by UIN"
            by_id = {int(question.external_id): question for question in stored}
            client = Client()
            for text in texts:
                node = parse(text)
                found["search"][text] = ids(search(text).values_list("external_id", flat=True)) & set(by_id)
                found["stored"][text] = {i for i, question in by_id.items()
                                         if matches(node, question.search_document())}
                case = next((case for case in CASES.values() if case.query == text), Case(text))
                found["page"][text] = {i for i in case.found + case.not_found if page_lists(client, text, by_id[i])}
        finally:
            Question.objects.filter(external_id__in=loaded).delete()

    database = files["folder"] / "db.sqlite3"
    env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"}
    env["DATABASE_URL"] = f"sqlite:///{database}"

    def manage(*arguments: str) -> str:
        done = subprocess.run([sys.executable, "manage.py", *arguments], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout

    manage("migrate", "--no-input")
    manage("import_questions", str(files["sample"]))
    found["sqlite"] = read_answers(manage("search", "--queries", str(files["queries"])))
    return found


def test_each_question_says_what_its_case_needs(lines):
    by_id = {item["api_id"]: language_record(item) for item in lines}
    for api_id, (has, never) in EVIDENCE.items():
        said = {word for field in DEFAULT_FIELDS for word in words(by_id[api_id][field] or "")}
        assert has <= said and not never & said, (api_id, has - said, never & said)
    for group, name in ((CLIVE_LEWIS, "Clive Lewis"), (KARIN_SMYTH, "Karin Smyth"), (HOME_OFFICE, "Home Office")):
        for api_id in group:
            record = by_id[api_id]
            assert name in (record["member"], record["minister"], record["department"]), (api_id, name)
            text = {word for field in TEXT_FIELDS for word in words(record[field] or "")}
            assert not set(words(name)) <= text, (api_id, name)


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("name", list(CASES))
def test_a_search_finds_what_a_person_means(answers, name, surface):
    case = CASES[name]
    found = answers[surface][case.query]

    assert set(case.found) <= found, f"{case.query!r} on {surface} misses {sorted(set(case.found) - found)}"
    assert not set(case.not_found) & found, f"{case.query!r} on {surface} finds {sorted(set(case.not_found) & found)}"


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize("surface", [s for s in SURFACES if s != "page"])
def test_every_surface_answers_every_search_alike(answers, surface):
    assert answers[surface] == answers["search"]


@pytest.mark.postgres
@pytest.mark.django_db
@pytest.mark.parametrize(("plain", "fielded"), PLAIN_AND_FIELDED)
def test_a_plain_name_needs_no_field(answers, plain, fielded):
    assert answers["search"][fielded] <= answers["search"][plain]
    assert answers["search"][fielded], fielded
