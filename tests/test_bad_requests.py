"""Hostile addresses and hostile stored text: a 4xx for the one, well-formed feeds for the other, never a 500."""

from __future__ import annotations

import datetime as dt
import re
import socket
import threading
import xml.etree.ElementTree as ET

import pytest
from django.test import Client
from django.utils import timezone

from alerts import tokens
from alerts.models import Subscriber, Subscription
from questions import views
from questions.models import Question

pytestmark = pytest.mark.django_db

MIDDLEWARE = "questions.middleware.RefuseBadAddressesMiddleware"
ATOM = "{http://www.w3.org/2005/Atom}"


def test_the_settings_refuse_bad_addresses_before_anything_reads_them():
    from django.conf import settings

    # After only what reads no more than headers: the request's id and its count, dropping forwarded ones no
    # proxy wrote, and HTTPS's redirect.
    assert settings.MIDDLEWARE[:settings.MIDDLEWARE.index(MIDDLEWARE)] == [
        "config.middleware.RequestIdMiddleware", "config.middleware.RequestMetricsMiddleware",
        "config.proxy.ForwardedHeadersMiddleware", "django.middleware.security.SecurityMiddleware"]


# Every public route, with {} where hostile text goes into its path and <...> for what the links need.
ROUTES = {
    "": "/{}",
    "search/": "/search/{}",
    "help/": "/help/{}",
    "healthz": "/healthz{}",
    "departments/": "/departments/{}",
    "departments/<str:slug>/": "/departments/home{}-office/",
    "questions/id/<int:pk>/": "/questions/id/<pk>{}/",
    "questions/<str:key>/": "/questions/hostile{}-1/",
    "feeds/search.rss": "/feeds/search.rss{}",
    "feeds/search.atom": "/feeds/search.atom{}",
    "alerts/new/": "/alerts/new/{}",
    "alerts/check-your-inbox/": "/alerts/check-your-inbox/{}",
    "alerts/link/": "/alerts/link/{}",
    "alerts/follow/<int:pk>/": "/alerts/follow/<pk>{}/",
    "alerts/confirm/<str:token>/": "/alerts/confirm/<confirm>{}/",
    "alerts/manage/<str:token>/": "/alerts/manage/<manage>{}/",
    "alerts/manage/<str:token>/data.json": "/alerts/manage/<manage>/data{}.json",
    "alerts/manage/<str:token>/revoke/": "/alerts/manage/<manage>/revoke{}/",
    "alerts/manage/<str:token>/add/": "/alerts/manage/<manage>/add{}/",
    "alerts/manage/<str:token>/grouping/": "/alerts/manage/<manage>/grouping{}/",
    "alerts/manage/<str:token>/<int:pk>/": "/alerts/manage/<manage>/<subscription>{}/",
    "alerts/manage/<str:token>/<int:pk>/<str:action>/": "/alerts/manage/<manage>/<subscription>/pause{}/",
    "unsubscribe/<str:token>/": "/unsubscribe/<unsubscribe>{}/",
    "alerts/ways/": "/alerts/ways/{}",
    "alerts/manage/<str:token>/email/": "/alerts/manage/<manage>/email{}/",
    "alerts/new-address/<str:token>/": "/alerts/new-address/<newaddress>{}/",
}

# Percent-escaped, as a link carries them; the server undoes them before Django sees the path.
HOSTILE = {
    "NUL": "%00",
    "invalid UTF-8": "%FF",
    "truncated UTF-8": "%C3",
    "overlong UTF-8": "%C0%AF",
    "surrogate": "%ED%A0%80",
    "C0 control": "%01",
    "escape": "%1B",
    "DEL": "%7F",
    "C1 control": "%C2%85",
    "U+FFFE": "%EF%BF%BE",
    "U+FFFF": "%EF%BF%BF",
    "U+FDD0": "%EF%B7%90",
    "U+10FFFF": "%F4%8F%BF%BF",
}
HOSTILE_IN_PATH = {**HOSTILE, "tab": "%09", "line feed": "%0A"}
HOSTILE_QUERIES = {
    **{f"q with {name}": f"q=police{escaped}" for name, escaped in HOSTILE.items()},
    "q with a raw byte that is not UTF-8": "q=police\xff",
    "q with raw UTF-8 of U+FFFE": "q=police" + "\ufffe".encode().decode("latin-1"),
    "page with NUL": "q=police&page=%00",
    "another parameter with invalid UTF-8": "x=%FF",
    "a parameter's name with a control character": "%01=1",
}


@pytest.fixture
def places(db):
    question = Question.objects.create(external_id="hostile-1", heading="Police: tasers", question_text="tasers")
    question.refresh_search_text()
    question.save()
    subscriber = Subscriber.objects.create(email="ada@example.org", confirmed_at=timezone.now())
    subscription = Subscription.objects.create(subscriber=subscriber, query="tasers", canonical_query="tasers")
    return {"pk": question.pk, "subscription": subscription.pk, "confirm": tokens.make(subscriber, tokens.CONFIRM),
            "manage": tokens.make(subscriber, tokens.MANAGE),
            "unsubscribe": tokens.make(subscriber, tokens.UNSUBSCRIBE, sub=subscription.pk),
            "newaddress": tokens.make(subscriber, tokens.NEW_EMAIL, to="new@example.org", t=0)}


def address(route: str, places: dict, inserted: str = "") -> str:
    path = re.sub(r"<(\w+)>", lambda m: str(places[m.group(1)]), ROUTES[route])
    return path.replace("{}", inserted)


def assert_refused(response) -> None:
    assert 400 <= response.status_code < 500, response.status_code
    assert b"Traceback" not in response.content
    # Refused at the door, before any view could make something else of it.
    assert response.status_code == 400 and "This address can’t be used" in response.content.decode()


def test_the_table_lists_every_public_route():
    from alerts import urls as alerts_urls
    from questions import urls as questions_urls

    routes = {str(p.pattern) for p in questions_urls.urlpatterns + alerts_urls.urlpatterns}
    assert routes == set(ROUTES)


@pytest.mark.parametrize("route", ROUTES)
def test_every_route_answers_its_ordinary_address(client, places, route):
    assert client.get(address(route, places)).status_code < 500


@pytest.mark.parametrize("hostile", HOSTILE_IN_PATH.values(), ids=HOSTILE_IN_PATH)
@pytest.mark.parametrize("route", ROUTES)
def test_hostile_text_in_any_path_is_a_4xx(client, places, route, hostile):
    assert_refused(client.get(address(route, places, hostile)))


@pytest.mark.parametrize("query", HOSTILE_QUERIES.values(), ids=HOSTILE_QUERIES)
@pytest.mark.parametrize("route", ROUTES)
def test_hostile_text_in_any_query_string_is_a_4xx(client, places, route, query):
    # Given whole, so that raw bytes reach the server as they would off the wire.
    assert_refused(client.get(address(route, places), QUERY_STRING=query))


def test_the_refusal_is_a_short_page_of_the_site_that_says_why(client):
    response = client.get("/questions/a%00b/")

    assert response.status_code == 400
    html = response.content.decode()
    assert "This address can’t be used" in html and "control character" in html
    assert "Written question alerts" in html and 'href="/"' in html
    assert client.get("/?q=%FF").content.decode().count("not valid UTF-8") == 1


@pytest.mark.parametrize("url", [
    "/?q=caf%C3%A9", "/?q=Stra%C3%9Fe+OR+%E2%80%9Cfacial+recognition%E2%80%9D", "/?q=police%09OR%0D%0Ataser",
    "/?q=50%25", "/?q=%F0%9F%91%AE+police", "/feeds/search.rss?q=caf%C3%A9", "/questions/caf%C3%A9/",
    "/alerts/new/?q=%C3%A9cole",
])
def test_ordinary_text_beyond_ascii_is_not_refused(client, url):
    assert client.get(url).status_code in (200, 404)


def test_a_search_with_a_noncharacter_says_where_it_is(rf):
    # Past the middleware (a form can be posted), the search page gives its own message.
    response = views.search_page(rf.get("/", {"q": "police \ufffe tasers"}))

    assert response.status_code == 400
    html = response.content.decode()
    assert "can’t be searched for (U+FFFE) at character 8" in html
    assert "<mark>\ufffe</mark>" in html


@pytest.mark.parametrize("character", ["\x00", "\x01", "\x85", "\ufffe", "\uffff", "\ufdd0", "\U0010ffff"])
@pytest.mark.parametrize("feed", [views.SearchRSSFeed(), views.SearchAtomFeed()], ids=["rss", "atom"])
def test_a_feed_of_a_search_with_a_control_or_noncharacter_is_refused_with_the_reason(rf, feed, character):
    response = feed(rf.get("/feeds/search.rss", {"q": f"police{character}tasers"}))

    assert response.status_code == 400
    assert f"(U+{ord(character):04X}) at character 7" in response.content.decode()


@pytest.mark.parametrize("character", ["\x00", "\x01", "\ufffe", "\ufdd0"])
def test_an_alert_form_posting_such_a_search_is_refused_with_the_search_message(client, character):
    response = client.post("/alerts/new/", {"q": f"police{character}", "email": "ada@example.org",
                                            "frequency": "immediate", "alert_on": "both", "preview": "1"})

    assert response.status_code == 400
    assert f"can’t be searched for (U+{ord(character):04X}) at character 7" in response.content.decode()
    assert not Subscription.objects.exists()


# Stored text as a source might send it: XML 1.0 forbids the C0 controls, U+FFFE and U+FFFF, not U+FDD0.
HOSTILE_TEXT = "\ufffe\x01\ufdd0\x1b\uffff\x85"
XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@pytest.fixture
def hostile_archive(db):
    made = []
    for n, answer in enumerate(["", f"Yes{HOSTILE_TEXT}."]):
        question = Question.objects.create(
            external_id=f"hostile-{n}" if n else f"https://example.org/q?id={HOSTILE_TEXT}",
            heading=f"Tasers {n}{HOSTILE_TEXT} report", question_text=f"To ask about tasers{HOSTILE_TEXT}",
            answer_text=answer, answer_html=f"<p>{answer}</p>" if answer else "",
            asking_member_name=f"Ada{HOSTILE_TEXT}", answering_body_name=f"Home{HOSTILE_TEXT} Office",
            date_tabled=dt.date(2025, 6, 1 + n))
        question.refresh_search_text()
        question.save()
        made.append(question)
    return made


def rss_titles(content: bytes) -> list[str]:
    return [item.findtext("title") for item in ET.fromstring(content).iter("item")]


def atom_titles(content: bytes) -> list[str]:
    return [entry.findtext(f"{ATOM}title") for entry in ET.fromstring(content).iter(f"{ATOM}entry")]


def test_feeds_of_stored_hostile_text_are_well_formed_xml(client, hostile_archive):
    from xml.dom.minidom import parseString

    expected = [XML_FORBIDDEN.sub("", q.heading) for q in reversed(hostile_archive)]
    for query in ("tasers", "tasers OR report", "member:ada AND department:\"home office\""):
        rss = client.get("/feeds/search.rss", {"q": query})
        atom = client.get("/feeds/search.atom", {"q": query})

        assert rss.status_code == atom.status_code == 200
        parseString(rss.content), parseString(atom.content)
        assert rss_titles(rss.content) == atom_titles(atom.content) == expected
    assert "\ufdd0" in expected[0]
    # The HTML pages show the same questions without failing.
    assert client.get("/", {"q": "tasers"}).status_code == 200
    assert all(client.get(q.get_absolute_url()).status_code == 200 for q in hostile_archive)


@pytest.mark.parametrize("query", ["tasers\ufffe", "tasers\x01", "tasers\ufdd0", "\ufffe", "tasers%00", "tasers\x85"])
@pytest.mark.parametrize("path", ["/feeds/search.rss", "/feeds/search.atom"])
def test_a_feed_asked_for_a_search_with_such_characters_is_refused_or_well_formed(client, rf, hostile_archive,
                                                                                  path, query):
    feed = views.SearchRSSFeed() if path.endswith("rss") else views.SearchAtomFeed()
    for response in (client.get(path, {"q": query}), feed(rf.get(path, {"q": query}))):
        assert response.status_code < 500
        if response.status_code == 200:
            ET.fromstring(response.content)
        else:
            assert 400 <= response.status_code < 500


@pytest.mark.parametrize("path", ["/feeds/search.rss", "/feeds/search.atom"])
def test_a_feed_leaves_out_what_xml_forbids_even_lone_surrogates(client, monkeypatch, path):
    # No database stores a lone surrogate, so the items are made in memory.
    now = timezone.now()
    items = [Question(pk=n + 1, external_id=f"lone\ud800{n}", heading=f"Tasers\udc00 {n}\x02",
                      question_text="\ud83d alone", asking_member_name="Ada\x00", created_at=now, updated_at=now)
             for n in range(2)]
    monkeypatch.setattr(views, "matching", lambda node, filters: items)

    response = client.get(path, {"q": "tasers"})

    assert response.status_code == 200
    titles = (rss_titles if path.endswith("rss") else atom_titles)(response.content)
    assert titles == ["Tasers 0", "Tasers 1"]


@pytest.mark.parametrize("feed_type", [views.XMLSafeRssFeed, views.XMLSafeAtomFeed])
def test_the_feed_writers_leave_out_what_xml_forbids_wherever_it_is(feed_type):
    bad = "\x00\x08\x0b\x1f\ufffe\uffff\ud800"
    feed = feed_type(title=f"a{bad}b", link=f"https://example.org/{bad}", description=f"d{bad}",
                     author_name=f"Ada{bad}", feed_url=f"https://example.org/feed{bad}")
    feed.add_item(title=f"t{bad}", link=f"https://example.org/1{bad}", description=f"<p>{bad}</p>",
                  unique_id=f"id{bad}", categories=[f"c{bad}"], pubdate=timezone.now(), author_name=f"x{bad}")

    root = ET.fromstring(feed.writeString("utf-8"))

    assert "ab" in {element.text for element in root.iter() if element.text}


def test_feeds_asked_for_at_once_each_get_their_own_search(transactional_db, monkeypatch):
    """Each request's search lives in its own object, not on the Feed instance the URLconf shares."""
    from django.contrib.syndication.views import Feed
    from django.db import connections

    from questions.searching import departments

    words = ["palantir", "tasers", "prisons", "badgers", "tunnels", "ferries"]
    for n, word in enumerate(words):
        question = Question.objects.create(external_id=f"word-{n}", heading=f"{word.title()}: question",
                                           question_text=word)
        question.refresh_search_text()
        question.save()
    departments()  # cached now, so no thread writes to the cache table
    requests = [(word, path) for word in words for path in ("/feeds/search.rss", "/feeds/search.atom")]
    # Every request gets as far as Django's Feed before any goes on: a shared object would now hold the last.
    barrier = threading.Barrier(len(requests))
    original = Feed.__call__

    def wait_for_the_others(self, request, *args, **kwargs):
        barrier.wait(timeout=30)
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(Feed, "__call__", wait_for_the_others)
    answers = {}

    def fetch(word, path):
        try:
            answers[word, path] = Client().get(path, {"q": word})
        finally:
            connections.close_all()

    threads = [threading.Thread(target=fetch, args=request) for request in requests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(answers) == len(requests)
    for (word, path), response in answers.items():
        assert response.status_code == 200, (word, path)
        root = ET.fromstring(response.content)
        if path.endswith("rss"):
            title, items = root.findtext("channel/title"), rss_titles(response.content)
        else:
            title, items = root.findtext(f"{ATOM}title"), atom_titles(response.content)
        assert title == f"Written questions matching {word}"
        assert items == [f"{word.title()}: question"]


@pytest.fixture
def real_server(transactional_db, settings):
    """Django's own threaded HTTP server (runserver's) on a free port, with the settings of this test."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler, allow_reuse_address=False)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def over_the_wire(port: int, target: bytes) -> tuple[int, str]:
    """The status and body of a GET of `target`, sent byte for byte as written."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode("utf-8", "replace")


@pytest.mark.parametrize("target", [
    b"/questions/a%00b/", b"/questions/a%FFb/", b"/questions/a\xffb/", b"/questions/a%01b/", b"/questions/%EF%BF%BE/",
    b"/?q=a%00b", b"/?q=%FF", b"/?q=\xff", b"/?q=police%01", b"/?q=police%EF%BF%BE", b"/?q=police\xef\xbf\xbe",
    b"/feeds/search.rss?q=police%EF%BF%BE", b"/feeds/search.atom?q=police%00", b"/alerts/new/?q=police%EF%BF%BF",
    b"/static/site%00.css", b"/static/site.css?%FF", b"/healthz?checks=%00",
])
def test_a_real_server_answers_hostile_bytes_with_a_400(real_server, target):
    status, body = over_the_wire(real_server, target)

    assert status == 400 and "This address can’t be used" in body


def test_a_real_server_still_answers_ordinary_addresses(real_server):
    for target in (b"/help/", b"/?q=caf%C3%A9", "/?q=café".encode(), b"/feeds/search.rss?q=Stra%C3%9Fe",
                   b"/static/site.css"):
        assert over_the_wire(real_server, target)[0] == 200, target
