"""Records no database or page can hold as they are: each is repaired on its own, and the rest still land."""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from dataclasses import fields
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from questions.ingest import RECORD_FIELDS, upsert
from questions.models import Question, Source
from questions.polling import poll_source
from questions.records import QuestionRecord, RecordError, from_normalised, text
from questions.sources.http import PoliteClient
from questions.sources.parliament import list_signature, record_from_api
from tests.conftest import load_fixture
from tests.factories import real_record
from tests.parliament_stub import LIST_PATH, ParliamentStub

DETAIL = load_fixture("question_detail.json")["value"]
OTTERS = "Otters \ud800 two"
# The characters the archive refuses, as often as ordinary ones: surrogates, noncharacters, C0, DEL and C1.
NASTY = ["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "\x01", "\x0b", "\x1f", "\x7f", "\x85", "\x9f", "\ufdd0",
         "\ufdef", "\ufffe", "\uffff", "\U0001fffe", "\U0010ffff", "\t", "\n", "\r", " ", "&#1;", "<", "\"",
         "javascript:", "https://"]
hostile = st.lists(
    st.characters() | st.characters(codec=None, categories=["Cs"]) | st.characters(categories=["Cc"])
    | st.sampled_from(NASTY),
    max_size=20,
).map("".join)
# House and UIN are short columns: what fits before cleaning fits after it.
short = hostile.map(lambda value: value[:20])
address = hostile | hostile.map(lambda t: "https://example.org/" + t) | hostile.map(lambda t: " JaVaScRiPt:" + t)


def storable(character: str) -> bool:
    code = ord(character)
    if 0xD800 <= code <= 0xDFFF or 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE:
        return False
    return character in "\t\n\r" or unicodedata.category(character) != "Cc"


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)


def on_the_web(url: str) -> bool:
    return url == "" or url.startswith(("http://", "https://"))


def harmless_href(href: str) -> bool:
    # What a browser makes of it: it ignores whitespace and controls, and a relative address stays on this site.
    scheme = re.match(r"([a-z][a-z0-9+.-]*):", re.sub(r"[\x00-\x20]", "", href.lower()))
    return scheme is None or scheme.group(1) in {"http", "https", "mailto"}


def wire(value):
    """The value as it comes out of a JSON response: a lone surrogate travels as a valid escape."""
    return json.loads(json.dumps(value))


@st.composite
def api_records(draw) -> dict:
    value = copy.deepcopy(DETAIL)
    value.update(house=draw(short), uin=draw(short))
    for key in ("heading", "questionText", "answeringBodyName", "originalAnswerText"):
        value[key] = draw(hostile)
    value["answerText"] = (f"<p>{draw(hostile)}</p><a href=\"{draw(address)}\">{draw(hostile)}</a>"
                           f"<p>{draw(hostile)}</p>")
    for key in ("askingMember", "answeringMember"):
        value[key] = {"id": 4253, "name": draw(hostile), "listAs": draw(hostile), "party": draw(hostile),
                      "memberFrom": draw(hostile)}
    value["groupedQuestions"] = draw(st.lists(hostile, max_size=3))
    value["attachments"] = draw(st.lists(
        st.fixed_dictionaries({"title": hostile, "url": address, "fileName": hostile}), max_size=3))
    return {"value": value, "links": []}


@st.composite
def normalised_records(draw) -> dict:
    item = {key: draw(hostile) for key in ("heading", "question", "member", "party", "constituency", "department",
                                           "minister", "minister_role")}
    item.update(uin=draw(short), house=draw(short), id="n-" + draw(hostile), url=draw(address),
                date_tabled="2024-01-05")
    if draw(st.booleans()):
        item["answer_html"] = f"<p>{draw(hostile)}</p><a href=\"{draw(address)}\">{draw(hostile)}</a>"
    else:
        item["answer"] = draw(hostile)
    return item


@pytest.mark.postgres
@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(api=api_records(), normalised=normalised_records(), signature=hostile)
def test_any_text_in_any_field_lands_clean_and_reads_back_as_it_was_stored(api, normalised, signature):
    Question.objects.all().delete()
    # Through JSON a surrogate pair becomes the one character it encodes; a lone one stays lone.
    api, normalised = wire(api), wire(normalised)
    records = [record_from_api(api, signature), from_normalised(normalised)]

    upsert(records)

    assert records[0].heading == text(api["value"]["heading"])
    assert records[0].asking_member_name == text(api["value"]["askingMember"]["name"])
    assert records[0].grouped_uins == [text(uin) for uin in api["value"]["groupedQuestions"]]
    assert records[1].heading == text(normalised["heading"])
    assert records[1].answering_member_role == text(normalised["minister_role"])
    for record in records:
        stored = Question.objects.get(external_id=record.external_id)
        for name in RECORD_FIELDS:
            assert getattr(stored, name) == getattr(record, name), name
        for name in (f.name for f in fields(QuestionRecord)):
            assert all(storable(c) for value in strings(getattr(record, name)) for c in value), name
        assert on_the_web(stored.url) and on_the_web(stored.official_url)
        assert all(on_the_web(a["url"]) for a in stored.attachments)
        assert all(harmless_href(href) for href in re.findall(r'href="([^"]*)"', stored.answer_html))


@pytest.mark.django_db
def test_a_lone_surrogate_in_one_record_repairs_it_and_the_batch_and_cursor_go_on(httpserver):
    api = ParliamentStub()
    httpserver.expect_request(LIST_PATH).respond_with_handler(api)
    for api_id in (1000, 1001, 1002):
        api.put(real_record(api_id, heading=OTTERS if api_id == 1001 else f"Heading {api_id}"))
        httpserver.expect_request(f"{LIST_PATH}/{api_id}").respond_with_handler(api)
    source = Source.objects.create(name="API", kind=Source.Kind.PARLIAMENT_API, url=httpserver.url_for("/"))

    report = poll_source(source, PoliteClient(requests_per_second=1000, backoff_seconds=0.01, read_timeout=2))

    assert not report.error and report.landed.created == 3
    assert Question.objects.get(external_id="1001").heading.split() == ["Otters", "two"]
    source.refresh_from_db()
    assert source.cursor == timezone.localdate() and source.consecutive_failures == 0


def import_file(path) -> str:
    err = StringIO()
    call_command("import_questions", str(path), stdout=StringIO(), stderr=err)
    return err.getvalue()


@pytest.mark.django_db
def test_an_import_line_with_a_lone_surrogate_is_repaired_and_named(tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"i-{n}", "heading": OTTERS if n == 2 else f"Heading {n}"})
                              for n in (1, 2, 3)), encoding="ascii")

    err = import_file(path)

    assert sorted(Question.objects.values_list("external_id", flat=True)) == ["i-1", "i-2", "i-3"]
    assert Question.objects.get(external_id="i-2").heading.split() == ["Otters", "two"]
    assert "line 2 (id i-2) repaired" in err and "line 1" not in err and "line 3" not in err


@pytest.mark.django_db
def test_an_import_line_with_a_byte_that_is_not_utf8_is_named_and_the_rest_load(tmp_path):
    path = tmp_path / "questions.jsonl"
    path.write_bytes(b'{"id": "u-1", "heading": "Schools"}\n'
                     b'{"id": "u-2", "heading": "Caf\xe9s"}\n'
                     b'{"id": "u-3", "heading": "Hospitals"}\n')

    err = import_file(path)

    assert Question.objects.get(external_id="u-1").heading == "Schools"
    assert Question.objects.get(external_id="u-3").heading == "Hospitals"
    assert Question.objects.get(external_id="u-2").heading == "Caf\ufffds"
    assert "line 2 (id u-2) repaired: byte 0xe9 at column 30 is not UTF-8" in err
    assert "line 1" not in err and "line 3" not in err


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [600, 5000])
@pytest.mark.parametrize("one_document", [False, True])
def test_one_record_nested_too_deep_to_walk_loses_no_other(tmp_path, depth, one_document):
    path = tmp_path / "questions.jsonl"
    deep = "[" * depth + "]" * depth
    records = ['{"id": "d-1", "heading": "Fine"}', f'{{"id": "d-2", "heading": "Deep", "extra": {deep}}}',
               '{"id": "d-3", "heading": "Fine too"}']
    path.write_text(f"[{', '.join(records)}]" if one_document else "\n".join(records), encoding="ascii")

    err = import_file(path)

    assert sorted(Question.objects.values_list("external_id", flat=True)) == ["d-1", "d-3"]
    assert "(id d-2) skipped: the record is nested more than 32 levels deep" in err


@pytest.mark.django_db
def test_a_file_of_one_document_with_a_bad_byte_still_loads(tmp_path):
    path = tmp_path / "questions.json"
    path.write_bytes(b'[{"id": "d-1", "heading": "Schools"},\n {"id": "d-2", "heading": "Caf\xe9s"}]')

    err = import_file(path)

    assert Question.objects.count() == 2
    assert "line 2 repaired: byte 0xe9" in err


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["javascript:alert(1)", " JaVaScRiPt:alert(1)", "data:text/html,<script>x</script>",
                                 "//evil.example/", "/relative/junk", "java\x01script:alert(1)"])
def test_an_imported_address_that_is_not_on_the_web_is_not_stored(tmp_path, url):
    path = tmp_path / "questions.jsonl"
    path.write_text(json.dumps({"id": "j-1", "heading": "Links", "url": url}))

    import_file(path)

    assert Question.objects.get(external_id="j-1").url == ""


@pytest.mark.django_db
def test_an_attachment_not_on_the_web_keeps_its_title_and_loses_its_address(client):
    value = real_record(1000, attachments=[
        {"title": "Letter", "url": "javascript:alert(1)"},
        {"title": "Table", "url": "https://example.org/table.pdf"},
        {"title": "", "url": "data:text/html,x"},
    ], answerText='<p>See <a href="ja&#1;vascript:alert(2)">this</a>.</p>')

    upsert([record_from_api(wire({"value": value}), list_signature(value))])

    question = Question.objects.get(external_id="1000")
    assert question.attachments == [{"title": "Letter", "url": ""},
                                    {"title": "Table", "url": "https://example.org/table.pdf"}]
    assert "javascript" not in question.answer_html and "\x01" not in question.answer_html
    page = client.get(question.get_absolute_url()).content.decode()
    assert "Letter" in page and 'href="https://example.org/table.pdf"' in page and "javascript" not in page


@pytest.mark.django_db
def test_a_row_stored_before_the_check_renders_no_unsafe_address(client):
    upsert([from_normalised({"id": "old-1", "heading": "Stored long ago"}),
            from_normalised({"id": "old-2", "heading": "With a number", "uin": "7926", "date_tabled": "2024-01-05"})])
    Question.objects.update(url="javascript:alert(1)",
                            attachments=[{"title": "Letter", "url": " javascript:alert(2)"}])

    assert Question.objects.get(external_id="old-1").official_url == ""
    assert Question.objects.get(external_id="old-2").official_url == (
        "https://questions-statements.parliament.uk/written-questions/detail/2024-01-05/7926")
    for external_id in ("old-1", "old-2"):
        page = client.get(Question.objects.get(external_id=external_id).get_absolute_url()).content.decode()
        assert "javascript" not in page and "Letter" in page


def test_a_record_with_nothing_left_of_its_id_is_refused_by_name():
    with pytest.raises(RecordError, match="no id"):
        from_normalised({"id": "\ud800\x00\ufffe", "heading": "Nothing to call it"})
