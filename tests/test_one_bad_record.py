"""One record a source should never have sent costs that record alone: the rest of the poll lands, the cursor
moves, the next poll is fine, and the source is not reported as failing. Sources are real local HTTP servers."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone
from werkzeug.wrappers import Response

from questions.models import Question, Source, SourceProblem
from questions.polling import poll_source
from tests.conftest import api_client
from tests.factories import real_record
from tests.parliament_stub import LIST_PATH, ParliamentStub

pytestmark = pytest.mark.django_db

DEEP_MARK = '"@deep@"'


def deeply(stub: ParliamentStub, depth: int):
    """The stub, with the value "@deep@" sent as arrays nested `depth` levels deep, in list pages and details."""
    return sending(stub, DEEP_MARK, "[" * depth + "]" * depth)


def sending(stub: ParliamentStub, mark: str, raw: str):
    """The stub, with the JSON value `mark` sent as `raw` (which its encoder would refuse), in lists and details."""

    def handler(request):
        response = stub(request)
        return Response(response.get_data(as_text=True).replace(mark, raw), status=response.status_code,
                        content_type="application/json")

    return handler


@pytest.fixture
def deep_api(httpserver):
    return api_sending(httpserver, deeply)


def api_sending(httpserver, make_handler):
    stub = ParliamentStub()
    handler = make_handler(stub, 5000)
    httpserver.expect_request(LIST_PATH).respond_with_handler(handler)
    for api_id in (1000, 1001, 1002):
        httpserver.expect_request(f"{LIST_PATH}/{api_id}").respond_with_handler(handler)
    source = Source.objects.create(name="API", kind=Source.Kind.PARLIAMENT_API, url=httpserver.url_for("/"),
                                   created_at=timezone.now() - dt.timedelta(days=30))
    return stub, source


def test_a_record_with_a_number_of_thousands_of_digits_is_refused_alone_and_the_cursor_moves(httpserver):
    stub, source = api_sending(httpserver, lambda stub, digits: sending(stub, '"@long@"', "9" * digits))
    only_1001_refused(stub, source, "a number of more digits than can be read", answeringBodyId="@long@")


def only_1001_refused(stub: ParliamentStub, source: Source, reason: str, **bad) -> None:
    """Polls 1000 to 1002, 1001 with the bad values: 1001 alone is refused, for the reason, and the cursor moves."""
    stub.put(real_record(1000))
    # In its list page and in its detail record alike: each decodes, and only the record is refused.
    stub.put(real_record(1001, **bad))
    stub.put(real_record(1002))

    report = poll_source(source, api_client())

    assert report.error == ""
    assert sorted(Question.objects.values_list("external_id", flat=True)) == ["1000", "1002"]
    problem = SourceProblem.objects.get(source=source)
    assert problem.record_id == "1001" and reason in problem.message
    source.refresh_from_db()
    assert source.cursor == timezone.localdate() and source.consecutive_failures == 0


def test_an_imported_document_with_a_number_of_thousands_of_digits_loses_only_that_record(tmp_path):
    records = [{"id": f"n-{n}", "heading": f"Heading {n}", "member_id": "@long@" if n == 2 else n} for n in (1, 2, 3)]
    path = tmp_path / "questions.json"
    path.write_text(json.dumps(records, indent=2).replace('"@long@"', "9" * 5000))
    err = StringIO()

    call_command("import_questions", str(path), stdout=StringIO(), stderr=err)

    assert sorted(Question.objects.values_list("external_id", flat=True)) == ["n-1", "n-3"]
    assert "record 2 (id n-2)" in err.getvalue() and "more digits than can be read" in err.getvalue()


# Far longer than decoding this takes; the old scan of it took minutes.
@pytest.mark.timeout(10)
def test_an_imported_line_deep_and_full_of_escaped_quotes_is_refused_alone(tmp_path):
    path = tmp_path / "questions.jsonl"
    hostile = "[" * 2000 + '"' + '\\"' * 60_000
    path.write_text("\n".join([json.dumps({"id": "n-1", "heading": "Otters"}), hostile,
                                json.dumps({"id": "n-3", "heading": "Rivers"})]))
    err = StringIO()

    call_command("import_questions", str(path), stdout=StringIO(), stderr=err)

    assert sorted(Question.objects.values_list("external_id", flat=True)) == ["n-1", "n-3"]
    assert "line 2 is not valid JSON" in err.getvalue()


def healthz(client_) -> int:
    return client_.get("/healthz", {"checks": "database,polling"}).status_code


def test_a_record_nested_thousands_deep_is_refused_alone_and_the_cursor_moves(deep_api, client):
    stub, source = deep_api
    only_1001_refused(stub, source, "nested more than 32 levels deep", attachments=["@deep@"])
    assert healthz(client) == 200

    report = poll_source(source, api_client())

    assert report.error == "" and source.problems.count() == 2
    source.refresh_from_db()
    assert source.consecutive_failures == 0 and source.last_error == ""


FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Written questions</title><link>https://example.org/</link>
<item><title>Schools: Heating</title><guid>urn:q:1</guid><link>https://example.org/q/1</link>
<description>What funding is available for school heating.</description></item>
<item><title>Otters {bad} two</title><guid>urn:q:2</guid><link>https://example.org/q/2</link>
<description>How many otters {bad} live in rivers.</description></item>
<item><title>Prisons: Mobile Phones</title><guid>urn:q:3</guid><link>https://example.org/q/3</link>
<description>How many mobile phones were found in prisons.</description></item>
</channel></rss>"""


def feed_that_was_healthy(httpserver, body: str | bytes) -> Source:
    """A feed read fine until a day ago: /healthz goes red if this poll does not count as a success."""
    httpserver.expect_request("/feed").respond_with_data(body, content_type="application/rss+xml")
    return Source.objects.create(name="Feed", kind=Source.Kind.FEED, url=httpserver.url_for("/feed"),
                                 created_at=timezone.now() - dt.timedelta(days=30),
                                 last_success_at=timezone.now() - dt.timedelta(days=1))


def headings() -> list[str]:
    return sorted(" ".join(h.split()) for h in Question.objects.values_list("heading", flat=True))


@pytest.mark.parametrize("bad", ["&#xD800;", "&#55296;", "&#xdfff;", "&#x110000;", "&#" + "9" * 5000 + ";"])
def test_a_feed_item_with_a_reference_to_a_lone_surrogate_is_repaired_and_the_feed_lands(httpserver, client, bad):
    source = feed_that_was_healthy(httpserver, FEED.format(bad=bad))

    report = poll_source(source, api_client())

    assert report.error == ""
    assert headings() == ["Otters \ufffd two", "Prisons: Mobile Phones", "Schools: Heating"]
    problem = SourceProblem.objects.get(source=source)
    assert problem.record_id == "urn:q:2"
    assert problem.message == ("a character reference to no character in its title, description: replaced with U+FFFD; "
                               "the entry was stored")
    source.refresh_from_db()
    assert source.consecutive_failures == 0 and healthz(client) == 200

    report = poll_source(source, api_client())

    assert report.error == "" and report.landed.unchanged == 3


PRICED_FEED = """<?xml version="1.0" encoding="{encoding}"?>
<rss version="2.0"><channel><title>Written questions</title><link>https://example.org/</link>
<item><title>Cost £5 – the Minister’s reply</title><guid>urn:q:1</guid>
<description>Whether the £5 fee – set in 2020 – will rise.</description></item>
<item><title>Otters {bad} two</title><guid>urn:q:2</guid><description>How many otters.</description></item>
<item><title>Prisons: Mobile Phones</title><guid>urn:q:3{guid}</guid><description>Phones \ufffd found.</description>
</item></channel></rss>"""


def test_one_byte_that_is_not_utf8_costs_only_its_own_item_not_every_item_on_the_feed(httpserver):
    body = PRICED_FEED.format(encoding="UTF-8", bad="@", guid="").encode().replace(b"@", b"\xff")
    source = feed_that_was_healthy(httpserver, body)

    report = poll_source(source, api_client())

    assert report.error == ""
    assert headings() == ["Cost £5 – the Minister’s reply", "Otters \ufffd two", "Prisons: Mobile Phones"]
    priced = Question.objects.get(external_id=f"feed:{source.pk}:urn:q:1")
    assert priced.question_text == "Whether the £5 fee – set in 2020 – will rise."
    problem = SourceProblem.objects.get(source=source)
    assert problem.record_id == "urn:q:2"
    assert problem.message == "bytes that are not utf-8 in its title: replaced with U+FFFD; the entry was stored"


def test_a_feed_said_to_be_utf8_but_in_windows_1252_throughout_is_read_as_windows_1252(httpserver):
    body = PRICED_FEED.format(encoding="UTF-8", bad="", guid="").replace("\ufffd", "").encode("cp1252")
    source = feed_that_was_healthy(httpserver, body)

    poll_source(source, api_client())

    assert headings() == ["Cost £5 – the Minister’s reply", "Otters two", "Prisons: Mobile Phones"]
    assert not SourceProblem.objects.filter(source=source).exclude(message__contains="malformed feed").exists()


@pytest.mark.parametrize("encoding", ["UTF-16", "UTF-32"])
def test_a_wide_feed_with_a_reference_to_a_lone_surrogate_lands(httpserver, encoding):
    # Python's codecs of these names begin with a byte order mark.
    source = feed_that_was_healthy(httpserver, PRICED_FEED.format(encoding=encoding, bad="&#xD800;", guid="")
                                   .encode(encoding))

    report = poll_source(source, api_client())

    assert report.error == "" and report.landed.created == 3
    assert headings() == ["Cost £5 – the Minister’s reply", "Otters \ufffd two", "Prisons: Mobile Phones"]
    assert SourceProblem.objects.get(source=source).record_id == "urn:q:2"


def test_a_repaired_guid_is_said_and_an_item_that_already_held_ufffd_is_not_called_repaired(httpserver):
    source = feed_that_was_healthy(httpserver, PRICED_FEED.format(encoding="UTF-8", bad="", guid="&#xDC00;"))

    poll_source(source, api_client())

    assert Question.objects.filter(external_id=f"feed:{source.pk}:urn:q:3\ufffd").exists()
    problem = SourceProblem.objects.get(source=source)
    assert problem.record_id == "urn:q:3\ufffd"
    assert problem.message == ("a character reference to no character in its guid: replaced with U+FFFD; "
                               "the entry was stored under the repaired guid")


def test_a_malformed_feed_whose_items_land_is_a_warning_said_once_not_a_failing_source(httpserver, client):
    # A stray control character: the strict parser gives up, the lenient one reads every item.
    source = feed_that_was_healthy(httpserver, FEED.format(bad="\x01"))

    first = poll_source(source, api_client())
    second = poll_source(source, api_client())

    assert headings() == ["Otters two", "Prisons: Mobile Phones", "Schools: Heating"]
    assert first.error == second.error == "" and "malformed feed" in first.warning
    warnings = SourceProblem.objects.filter(source=source, message__contains="malformed feed")
    assert warnings.count() == 1 and "the entries that could be read were stored" in warnings.get().message
    source.refresh_from_db()
    assert source.consecutive_failures == 0 and source.last_error == "" and healthz(client) == 200


DATED_FEED = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel><title>Written questions</title><link>https://example.org/</link>
<item><title>Schools: Heating</title><guid>urn:q:1</guid><pubDate>Mon, 06 Jan 2025 10:00:00 GMT</pubDate>
<description>What funding is available for school heating.</description></item>
<item><title>Otters</title><guid>urn:q:2</guid><pubDate>{bad}</pubDate>
<description>How many otters live in rivers.</description></item>
<item><title>Prisons: Mobile Phones</title><guid>urn:q:3</guid><description>How many phones.</description></item>
</channel></rss>"""


@pytest.mark.parametrize("bad", ["0000-00-00T00:00:00Z", "9999-12-31T23:59:59-14:00"])
def test_a_feed_item_with_an_impossible_date_lands_undated_and_the_rest_land(httpserver, client, bad):
    source = feed_that_was_healthy(httpserver, DATED_FEED.format(bad=bad))

    report = poll_source(source, api_client())

    assert report.error == ""
    assert headings() == ["Otters", "Prisons: Mobile Phones", "Schools: Heating"]
    assert Question.objects.get(heading="Otters").date_tabled is None
    assert Question.objects.get(heading="Schools: Heating").date_tabled == dt.date(2025, 1, 6)
    source.refresh_from_db()
    assert source.consecutive_failures == 0 and healthz(client) == 200


def test_a_feed_malformed_at_a_new_place_each_poll_is_still_said_once(httpserver):
    source = feed_that_was_healthy(httpserver, FEED.format(bad="\x01"))
    poll_source(source, api_client())
    httpserver.clear()
    # The same fault, a line further down: the parser's message names another line and column.
    httpserver.expect_request("/feed").respond_with_data("\n" + FEED.format(bad="\x01"),
                                                         content_type="application/rss+xml")

    second = poll_source(source, api_client())

    assert "malformed feed" in second.warning
    assert SourceProblem.objects.filter(source=source, message__contains="malformed feed").count() == 1


def test_a_feed_sent_as_plain_text_keeps_its_etag_and_is_not_downloaded_again(httpserver):
    httpserver.expect_request("/feed", headers={"If-None-Match": '"v1"'}).respond_with_data("", status=304)
    httpserver.expect_request("/feed").respond_with_data(FEED.format(bad=""), content_type="text/plain",
                                                         headers={"ETag": '"v1"'})
    source = Source.objects.create(name="Feed", kind=Source.Kind.FEED, url=httpserver.url_for("/feed"))

    first = poll_source(source, api_client())
    second = poll_source(source, api_client())

    assert first.landed.created == 3 and "text/plain is not an XML media type" in first.warning
    assert second.landed is None and second.error == ""
    source.refresh_from_db()
    assert source.etag == '"v1"'
