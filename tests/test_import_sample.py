"""The bundled sample of 20,000 real questions (the API's records as republished in bulk, gzipped JSON lines):
its reader, the import command on it, and a poll of the API that finds a question it brought."""

from __future__ import annotations

import datetime as dt
import gzip
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from questions import importing
from questions.importing import read_records
from questions.models import Question, QuestionEvent, Source
from questions.polling import poll_source
from questions.records import RecordError, from_republished
from questions.sources.http import PoliteClient
from tests.conftest import FIXTURES
from tests.parliament_stub import LIST_PATH, ParliamentStub, member

SAMPLE = FIXTURES / "written_questions_sample.jsonl.gz"

# Real lines of the sample: answered with a holding answer first, its answer two paragraphs on two lines;
# unanswered and without a heading; answered, with the answer cut at 255 characters by the API's list.
NHS_APP, RESPIRATORY, FCA_STAFF = 1677336, 1742610, 1656125


def sample_lines() -> list[str]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as lines:
        return [line.rstrip("\n") for line in lines]


def sample_line(api_id: int) -> dict:
    return next(item for item in map(json.loads, sample_lines()) if item["api_id"] == api_id)


def write_gz(path, lines: list[str]) -> None:
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))


def test_an_answered_line_becomes_the_question_it_describes():
    record = from_republished(sample_line(NHS_APP))

    assert record.external_id == "1677336" and record.uin == "6539" and record.house == "Commons"
    assert record.heading == "NHS: Software"
    assert record.question_text.startswith("To ask the Secretary of State for Health and Social Care, what info")
    assert record.answer_text.startswith("NHS App functionality is available for: prospective record access")
    # A paragraph a line in the file, a paragraph each on the page.
    assert record.answer_html.count("<p>") == 2
    assert record.answer_html.startswith("<p>NHS App functionality")
    assert "</p><p>Practices can choose" in record.answer_html
    assert record.asking_member_name == "Wes Streeting" and record.asking_member_id == 4504
    assert record.answering_member_name == "" and record.answering_member_id == 4044
    assert record.answering_body_name == "Department of Health and Social Care"
    assert (record.date_tabled, record.date_for_answer, record.date_holding_answer, record.date_answered) == (
        dt.date(2023, 12, 12), dt.date(2023, 12, 19), dt.date(2023, 12, 19), dt.date(2024, 1, 11))
    assert record.is_named_day and not record.is_withdrawn and not record.answer_is_holding
    assert record.url == "https://questions-statements.parliament.uk/written-questions/detail/2023-12-12/6539"
    assert not record.text_cut


def test_an_unanswered_line_without_a_heading_has_empty_texts_not_none():
    record = from_republished(sample_line(RESPIRATORY))

    assert record.external_id == "1742610" and record.heading == ""
    assert record.answer_text == record.answer_html == "" and record.date_answered is None
    assert record.answering_member_name == "" and record.answering_member_id is None
    assert not record.answer_is_holding and record.is_named_day


def test_a_text_the_apis_list_cut_short_sends_readers_to_the_official_record():
    record = from_republished(sample_line(FCA_STAFF))

    assert record.answer_text.endswith("FCA emp...") and record.text_cut


@pytest.mark.parametrize(("change", "reason"), [
    ({"api_id": None}, "the record has no id"),
    ({"api_id": "x1"}, "api_id is not a positive whole number: 'x1'"),
    ({"date_tabled": "01/09/2023"}, "date_tabled is not a date in the form YYYY-MM-DD: '01/09/2023'"),
    ({"is_withdrawn": "false"}, "is_withdrawn is not true or false: 'false'"),
    ({"asking_member_id": 1.5e12}, "asking_member_id is out of range: 1500000000000.0"),
])
def test_a_line_that_cannot_be_a_question_says_why(change, reason):
    with pytest.raises(RecordError) as refused:
        from_republished(sample_line(FCA_STAFF) | change)

    assert str(refused.value) == reason


def test_every_line_of_the_bundled_sample_is_read_and_ids_are_the_apis():
    reading = read_records(SAMPLE)

    assert not reading.refused and not reading.repaired
    assert len(reading.records) == 20_000
    api_ids = [str(json.loads(line)["api_id"]) for line in sample_lines()]
    assert [record.external_id for record in reading.records] == api_ids
    assert len(set(api_ids)) == 20_000
    assert all(record.heading or record.question_text for record in reading.records)


@pytest.mark.django_db
def test_import_questions_loads_a_gzipped_file_and_reports_each_bad_line(tmp_path):
    good = [sample_line(api_id) for api_id in (NHS_APP, RESPIRATORY, FCA_STAFF)]
    path = tmp_path / "mixed.jsonl.gz"
    write_gz(path, [
        json.dumps(good[0]),
        "{broken",
        json.dumps(good[1] | {"date_tabled": "13/11/2024"}),
        json.dumps(good[2]),
        json.dumps(good[2] | {"api_id": None}),
    ])
    out, err = StringIO(), StringIO()

    call_command("import_questions", str(path), stdout=out, stderr=err)

    assert sorted(Question.objects.values_list("external_id", flat=True)) == ["1656125", "1677336"]
    assert f"{path}: skipped: line 2 is not valid JSON" in err.getvalue()
    assert f"{path}: line 3 (id 1742610) skipped: date_tabled is not a date" in err.getvalue()
    assert f"{path}: line 5 skipped: the record has no id" in err.getvalue()
    assert "2 new, 0 updated, 0 unchanged" in out.getvalue()
    question = Question.objects.get(external_id="1677336")
    assert question.heading == "NHS: Software" and question.asking_member_name == "Wes Streeting"
    assert " prescriptions " in question.norm_question
    # A backfill: on record, and nobody is emailed about it.
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()

    call_command("import_questions", str(path), stdout=(again := StringIO()), stderr=StringIO())

    assert "0 new, 0 updated, 2 unchanged" in again.getvalue()


@pytest.mark.django_db
def test_a_gzip_file_cut_short_loads_the_lines_before_the_cut(tmp_path):
    lines = sample_lines()[:400]
    whole = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    err = StringIO()

    call_command("import_questions", str(path), stdout=StringIO(), stderr=err)

    loaded = Question.objects.count()
    assert 100 < loaded < 400
    # What came before the cut, in full: the line the cut went through is refused on its own.
    assert set(Question.objects.values_list("external_id", flat=True)) == {
        str(json.loads(line)["api_id"]) for line in lines[:loaded]}
    assert f"line {loaded + 1} is not valid JSON" in err.getvalue()
    assert f"{path}: what follows skipped: its gzip data ends before its end" in err.getvalue()


@pytest.mark.django_db
def test_a_gzip_file_corrupt_part_way_loads_the_lines_before_it(tmp_path):
    lines = sample_lines()[:400]
    whole = bytearray(gzip.compress(("\n".join(lines) + "\n").encode()))
    middle = len(whole) // 2
    whole[middle:middle + 64] = b"\xff" * 64
    path = tmp_path / "corrupt.jsonl.gz"
    path.write_bytes(bytes(whole))
    err = StringIO()

    call_command("import_questions", str(path), stdout=StringIO(), stderr=err)

    assert 0 < Question.objects.count() < 400
    assert f"{path}: what follows skipped: its gzip data is corrupt" in err.getvalue()


@pytest.mark.django_db
def test_a_gzip_file_that_inflates_past_the_limit_loads_the_lines_before_it(tmp_path, monkeypatch):
    lines = sample_lines()[:400]
    write_gz(path := tmp_path / "big.jsonl.gz", lines)
    monkeypatch.setattr(importing, "GUNZIPPED_LIMIT", len("\n".join(lines)) // 2)
    err = StringIO()

    call_command("import_questions", str(path), stdout=StringIO(), stderr=err)

    assert 100 < Question.objects.count() < 400
    assert f"{path}: what follows skipped: it inflates to more than {importing.GUNZIPPED_LIMIT:,} bytes" in (
        err.getvalue())


@pytest.mark.django_db
def test_a_file_of_several_gzip_members_is_read_whole(tmp_path):
    lines = sample_lines()[:30]
    path = tmp_path / "joined.jsonl.gz"
    path.write_bytes(b"".join(gzip.compress((line + "\n").encode()) for line in lines))

    call_command("import_questions", str(path), stdout=StringIO(), stderr=(err := StringIO()))

    assert Question.objects.count() == 30 and not err.getvalue()


@pytest.mark.django_db
def test_the_api_poller_completes_a_question_the_sample_brought(httpserver, tmp_path):
    """The sample's ids are the API's: a poll that lists the question updates it in place, with the full answer,
    rather than storing it twice."""
    line = sample_line(FCA_STAFF)
    write_gz(path := tmp_path / "one.jsonl.gz", [json.dumps(line)])
    call_command("import_questions", str(path), stdout=StringIO())
    events = sorted(QuestionEvent.objects.values_list("kind", flat=True))
    full_answer = ("<p>" + line["answer"].removesuffix("...") + "ployees.</p><p>The FCA publishes its board's "
                   "register of interests.</p>")
    today = timezone.localdate()
    api = ParliamentStub()
    api.put({
        "id": FCA_STAFF, "uin": line["uin"], "house": "Commons", "heading": line["heading"],
        "questionText": line["question"], "answerText": full_answer, "dateTabled": "2023-09-01T00:00:00",
        # Listed as answered this week, so that the poll's window of days finds it.
        "dateAnswered": f"{today - dt.timedelta(days=1)}T00:00:00", "answeringBodyId": 14,
        "answeringBodyName": "Treasury", "askingMemberId": 1565, "answeringMemberId": 4874,
        "askingMember": member("Philip Davies", "Conservative", "Shipley", 1565),
        "answeringMember": member("Andrew Griffith", "Conservative", "Arundel and South Downs", 4874),
        "isWithdrawn": False, "isNamedDay": False, "answerIsHolding": False, "answerIsCorrection": False,
    })
    httpserver.expect_request(LIST_PATH).respond_with_handler(api)
    httpserver.expect_request(f"{LIST_PATH}/{FCA_STAFF}").respond_with_handler(api)
    source = Source.objects.create(name="API", kind=Source.Kind.PARLIAMENT_API, url=httpserver.url_for("/"))

    report = poll_source(source, PoliteClient(requests_per_second=1000, backoff_seconds=0.01, read_timeout=2))

    assert not report.error and api.detail_requests() == 1
    question = Question.objects.get()
    assert question.external_id == str(FCA_STAFF)
    assert question.answer_text.endswith("register of interests.") and not question.text_cut
    assert question.asking_member_constituency == "Shipley"
    assert sorted(QuestionEvent.objects.values_list("kind", flat=True)) == events == ["answered", "tabled"]


@pytest.mark.django_db
def test_a_sample_loaded_again_by_make_run_puts_nothing_back_over_what_the_poller_brought(tmp_path):
    path = tmp_path / "sample.jsonl"
    path.write_text(json.dumps({"api_id": 13789, "uin": "13789", "question": "On prisons.", "heading": None,
                                "answer": None, "date_tabled": "2024-01-05"}) + "\n")
    call_command("import_questions", "--if-empty", str(path), stdout=StringIO())
    Question.objects.filter(external_id="13789").update(heading="Prisons: Staff", answer_text="The answer.")

    out = StringIO()
    call_command("import_questions", "--if-empty", str(path), stdout=out)

    assert "nothing imported" in out.getvalue()
    assert Question.objects.values_list("heading", "answer_text").get() == ("Prisons: Staff", "The answer.")


@pytest.mark.django_db
@pytest.mark.parametrize("api_id", [1.9, True, "1_000", " 7 ", "٣", -5, 0, "1e3"])
def test_an_id_that_is_not_a_positive_whole_number_is_refused_not_read_as_another(tmp_path, api_id):
    path = tmp_path / "sample.jsonl"
    path.write_text(json.dumps({"api_id": api_id, "question": "On prisons."}) + "\n")
    err = StringIO()

    call_command("import_questions", str(path), stdout=StringIO(), stderr=err)

    assert not Question.objects.exists()
    assert "api_id is not a positive whole number" in err.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize("value", [{"a": 1}, ["x", "y"], True, 5])
def test_a_text_field_that_is_not_text_is_refused_not_stored_as_its_repr(tmp_path, value):
    path = tmp_path / "sample.jsonl"
    path.write_text(json.dumps({"api_id": 5, "heading": value}) + "\n" +
                    json.dumps({"api_id": 6, "heading": "Prisons"}) + "\n")
    err = StringIO()

    call_command("import_questions", str(path), stdout=StringIO(), stderr=err)

    assert list(Question.objects.values_list("external_id", "heading")) == [("6", "Prisons")]
    assert "heading is not text" in err.getvalue()


@pytest.mark.django_db
def test_an_id_given_twice_in_a_file_is_reported_with_which_was_kept(tmp_path):
    path = tmp_path / "sample.jsonl"
    path.write_text("".join(json.dumps({"api_id": 900010, "uin": uin}) + "\n" for uin in ("X1", "X2")))
    err = StringIO()

    call_command("import_questions", str(path), stdout=StringIO(), stderr=err)

    assert "id 900010 is given 2 times: the last one was kept" in err.getvalue()
    assert Question.objects.get().uin == "X2"


@pytest.mark.django_db
def test_a_file_of_many_gzip_members_loads_every_one(tmp_path):
    path = tmp_path / "members.jsonl.gz"
    path.write_bytes(b"".join(gzip.compress(json.dumps({"api_id": n, "uin": str(n)}).encode() + b"\n")
                              for n in range(1, 2001)))

    call_command("import_questions", str(path), stdout=StringIO())

    assert Question.objects.count() == 2000
