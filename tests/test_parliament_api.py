"""The Parliament API source, run for real against a local HTTP server in the API's shape."""

from __future__ import annotations

import json
import time

import pytest
from werkzeug.wrappers import Response

from questions.models import Question, QuestionEvent, SourceProblem
from questions.polling import poll_source
from tests.conftest import api_client, load_fixture
from tests.factories import TODAY, real_record, stamp
from tests.parliament_stub import LIST_PATH, ParliamentStub, member

pytestmark = pytest.mark.django_db

def test_questions_land_with_the_full_text_from_the_detail_endpoint(stub, source):
    stub.put(real_record(1000))
    stub.put(real_record(1001, answered=False))

    report = poll_source(source, api_client())

    assert not report.error
    answered = Question.objects.get(external_id="1000")
    full_answer = load_fixture("question_detail.json")["value"]["answerText"]
    assert len(answered.answer_text) > 300 and not answered.answer_text.endswith("...")
    assert "The department intends to publish data on achievements by FJAAs in due course." in answered.answer_text
    assert answered.answer_html.count("<p>") == full_answer.count("<p>")
    assert answered.question_text.startswith("To ask the Secretary of State for Education")
    assert answered.asking_member_name == "Jane Example"
    assert answered.asking_member_constituency == "Norwich South"
    assert answered.answering_body_name == "Department for Education"
    assert answered.answering_member_name == "Luke Hall"
    assert answered.official_url.endswith(f"/written-questions/detail/{answered.date_tabled.isoformat()}/1000")
    assert " apprenticeships " in answered.norm_answer
    assert sorted(QuestionEvent.objects.filter(question=answered).values_list("kind", flat=True)) == [
        "answered", "tabled"]
    assert list(Question.objects.get(external_id="1001").events.values_list("kind", flat=True)) == ["tabled"]
    source.refresh_from_db()
    assert source.last_success_at and source.cursor == TODAY and source.consecutive_failures == 0


def test_polling_the_same_data_twice_creates_nothing_twice(stub, source):
    stub.put(real_record(1000))
    poll_source(source, api_client())
    details_before = stub.detail_requests()
    events_before = QuestionEvent.objects.count()

    report = poll_source(source, api_client())

    assert Question.objects.count() == 1
    assert QuestionEvent.objects.count() == events_before
    assert report.landed is None
    # An unchanged list item costs no detail request.
    assert stub.detail_requests() == details_before


def test_an_answer_appearing_later_makes_exactly_one_answered_event(stub, source):
    stub.put(real_record(1002, answered=False))
    poll_source(source, api_client())
    answered = real_record(1002)
    stub.update(1002, **{k: answered[k] for k in ("dateAnswered", "answerText", "answeringMemberId",
                                                  "answeringMember")})

    poll_source(source, api_client())
    poll_source(source, api_client())

    kinds = list(QuestionEvent.objects.filter(question__external_id="1002").values_list("kind", flat=True))
    assert sorted(kinds) == ["answered", "tabled"]
    assert "flexi-Job apprenticeship agencies" in Question.objects.get(external_id="1002").answer_text


def test_a_correction_makes_exactly_one_corrected_event(stub, source):
    stub.put(real_record(1003))
    poll_source(source, api_client())
    stub.update(1003, answerText="<p>Corrected: there are now 45 FJAAs.</p>", answerIsCorrection=True,
                dateAnswerCorrected=stamp(TODAY))

    poll_source(source, api_client())
    poll_source(source, api_client())

    question = Question.objects.get(external_id="1003")
    assert question.answer_text == "Corrected: there are now 45 FJAAs."
    assert question.events.filter(kind="corrected").count() == 1


def test_a_member_missing_from_the_record_is_filled_on_a_later_poll(stub, source):
    stub.put(real_record(1004, askingMember=None))
    poll_source(source, api_client())
    question = Question.objects.get(external_id="1004")
    assert question.asking_member_id == 4253 and question.asking_member_name == ""

    stub.update(1004, askingMember=member("Jane Example", "Labour", "Norwich South", 4253))
    poll_source(source, api_client())

    question.refresh_from_db()
    assert question.asking_member_name == "Jane Example"


def test_429_with_retry_after_is_honoured_and_the_poll_completes(httpserver, source):
    api = ParliamentStub()
    api.put(real_record(1005))
    throttled = {"left": 1}

    def handler(request):
        if throttled["left"]:
            throttled["left"] -= 1
            return Response("slow down", status=429, headers={"Retry-After": "1"})
        return api(request)

    httpserver.expect_request(LIST_PATH).respond_with_handler(handler)
    httpserver.expect_request(f"{LIST_PATH}/1005").respond_with_handler(api)
    started = time.monotonic()

    report = poll_source(source, api_client())

    assert time.monotonic() - started >= 1
    assert not report.error
    assert Question.objects.filter(external_id="1005").exists()


@pytest.mark.parametrize(
    "response, expected",
    [
        (Response("oops", status=500), "HTTP 500"),
        (Response("{not json", content_type="application/json"), "not valid JSON"),
        (Response(json.dumps({"unexpected": True}), content_type="application/json"), "no list of results"),
    ],
    ids=["500", "invalid-json", "wrong-shape"],
)
def test_a_failing_list_endpoint_is_recorded_on_the_source(httpserver, source, response, expected):
    httpserver.expect_request(LIST_PATH).respond_with_response(response)

    report = poll_source(source, api_client())

    source.refresh_from_db()
    assert expected in report.error and expected in source.last_error
    assert source.consecutive_failures == 1 and source.last_success_at is None
    assert source.cursor is None
    assert SourceProblem.objects.filter(source=source, message__contains=expected).exists()


def test_a_time_out_is_recorded_and_does_not_hang(httpserver, source):
    def slow(request):
        time.sleep(1.5)
        return Response("{}", content_type="application/json")

    httpserver.expect_request(LIST_PATH).respond_with_handler(slow)

    report = poll_source(source, api_client(read_timeout=0.3, max_retries=1))

    assert "Timeout" in report.error
    source.refresh_from_db()
    assert source.consecutive_failures == 1


def test_a_50_mb_body_is_refused_without_reading_it_all(httpserver, source):
    body = b"[" + b" " * (50 * 1024 * 1024) + b"]"
    httpserver.expect_request(LIST_PATH).respond_with_data(body, content_type="application/json")

    report = poll_source(source, api_client(max_bytes=20 * 1024 * 1024))

    assert "over the cap" in report.error


def test_a_streamed_body_over_the_cap_is_cut_off(httpserver, source):
    def endless(request):
        return Response((b"x" * 65536 for _ in range(100)), content_type="application/json")

    httpserver.expect_request(LIST_PATH).respond_with_handler(endless)

    report = poll_source(source, api_client(max_bytes=1024 * 1024))

    assert "over the cap" in report.error


def test_bad_records_are_logged_on_the_source_and_the_rest_land(stub, source):
    stub.put(real_record(1006))
    stub.put(real_record(1007, dateTabled=stamp(TODAY), dateForAnswer="next Tuesday"))
    stub.put(real_record(1008, answerText='<p onclick="steal()">Fine.</p><script>alert(1)</script>'
                                          '<a href="javascript:alert(2)">link</a>'))
    stub.detail_failures[1009] = 99
    stub.put(real_record(1009))

    report = poll_source(source, api_client())

    assert set(Question.objects.values_list("external_id", flat=True)) == {"1006", "1008"}
    problems = {p.record_id: p.message for p in SourceProblem.objects.filter(source=source)}
    assert "dateForAnswer is not a date" in problems["1007"]
    assert "HTTP 500" in problems["1009"]
    assert report.problems == report.items_skipped == 2  # two causes, an item each
    unsafe = Question.objects.get(external_id="1008")
    assert "<script" not in unsafe.answer_html and "onclick" not in unsafe.answer_html
    assert "javascript:" not in unsafe.answer_html
    assert unsafe.answer_text.startswith("Fine.")
    # The failed detail is asked for again next time, and lands once the API is well.
    stub.detail_failures[1009] = 0
    poll_source(source, api_client())
    assert Question.objects.filter(external_id="1009").exists()


def test_a_list_item_without_an_id_is_logged_and_the_rest_land(httpserver, source):
    api = ParliamentStub()
    api.put(real_record(1001))

    def handler(request):
        page = api.list_page(request.args)
        if page["results"]:
            page["results"].append({"value": {"heading": "No id here"}})
        return Response(json.dumps(page), content_type="application/json")

    httpserver.expect_request(LIST_PATH).respond_with_handler(handler)
    httpserver.expect_request(f"{LIST_PATH}/1001").respond_with_handler(api)

    report = poll_source(source, api_client())

    assert Question.objects.filter(external_id="1001").exists()
    assert report.problems >= 1
    assert SourceProblem.objects.filter(source=source, message__contains="no numeric id").exists()


def test_a_new_sources_first_poll_is_a_backfill_and_what_comes_later_is_news(stub, source):
    stub.put(real_record(1000))
    poll_source(source, api_client())
    assert not QuestionEvent.objects.filter(matched_at__isnull=True).exists()

    stub.put(real_record(1001))
    poll_source(source, api_client())

    assert set(QuestionEvent.objects.filter(matched_at__isnull=True).values_list("question__external_id", flat=True)) \
        == {"1001"}
