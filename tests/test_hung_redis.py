"""A Redis that accepts connections and never answers (a hung server, a connection a firewall dropped)
standing in for the broker and the cache of the site served by gunicorn: /healthz says the broker is
failing, and the forms answer within a few of Redis's time-outs (asking the person to try again when the
cache that counts their limits is hung), instead of holding a web worker until gunicorn kills it."""

from __future__ import annotations

import socket

import pytest
import requests

from tests.conftest import ANSWER_WITHIN, SIGNUP_FORM, SilentServer, post_form

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def silent_redis():
    server = SilentServer()
    yield server
    server.stop()


def asked_to_try_again(response: requests.Response) -> bool:
    return (response.status_code == 503 and response.headers["Retry-After"] == "60"
            and "Please try again in a minute" in response.text)


LINK = {"email": "ada@example.org", "website": ""}


def test_with_redis_hung_as_broker_and_cache_health_fails_fast_and_the_forms_say_try_again(site, silent_redis):
    web = site(CELERY_BROKER_URL=silent_redis.url(0), REDIS_CACHE_URL=silent_redis.url(1))

    health = requests.get(web.url + "/healthz", params={"checks": "database,broker"}, timeout=ANSWER_WITHIN)
    signup = post_form(web, "/alerts/new/", SIGNUP_FORM)
    link = post_form(web, "/alerts/link/", LINK)

    assert health.status_code == 503
    assert health.json() == {"status": "failing", "checks": {"database": "ok", "broker": "failing"}}
    assert asked_to_try_again(signup) and asked_to_try_again(link)


def test_with_only_the_broker_hung_the_forms_still_take_the_request(site, silent_redis, settings):
    from alerts.models import FormRequest

    # The cache is the real Redis: the limits are counted, and the broker is what does not answer.
    web = site(CELERY_BROKER_URL=silent_redis.url(0), REDIS_CACHE_URL=settings.CACHES["default"]["LOCATION"])

    signup = post_form(web, "/alerts/new/", SIGNUP_FORM)
    link = post_form(web, "/alerts/link/", LINK | {"email": "grace@example.org"})

    # Saved before the page answered, for the sweep to take: the hung broker cost only its time-outs.
    assert [page.headers["Location"] for page in (signup, link)] == ["/alerts/check-your-inbox/"] * 2
    assert sorted(FormRequest.objects.values_list("kind", "data__email")) == [
        ("link", "grace@example.org"), ("signup", "ada@example.org")]
    health = requests.get(web.url + "/healthz", params={"checks": "database,broker"}, timeout=ANSWER_WITHIN)
    assert health.json()["checks"] == {"database": "ok", "broker": "failing"}


# A search asks the cache several things (its client's allowance, the departments, the members' names); with
# the cache hung, the first to time out leaves it alone in that process for a while. Two time-outs: the one
# that teaches the process, and as long again for the page.
SEARCH_REDIS_TIMEOUT = 2
SEARCH_ANSWERS_WITHIN = 2 * SEARCH_REDIS_TIMEOUT


def test_with_the_cache_hung_searches_and_previews_pay_at_most_one_time_out(site, silent_redis):
    web = site(CELERY_BROKER_URL=silent_redis.url(0), REDIS_CACHE_URL=silent_redis.url(1),
               REDIS_TIMEOUT=str(SEARCH_REDIS_TIMEOUT))

    # Both of gunicorn's workers, whichever takes which, and each again after it has learnt.
    pages = [requests.get(web.url + path, params={"q": "palantir"}, timeout=SEARCH_ANSWERS_WITHIN)
             for path in ("/", "/alerts/new/", "/", "/alerts/new/", "/")]

    assert [page.status_code for page in pages] == [200] * 5
    assert all("No questions match “palantir”" in page.text for page in pages[::2])
    assert all("What this alert would have sent" in page.text for page in pages[1::2])


@pytest.mark.django_db
def test_a_process_leaves_a_failed_cache_alone_for_a_while_then_uses_it_again(settings, monkeypatch):
    from django.core.cache import cache

    from questions import searching

    now = [1000.0]
    monkeypatch.setattr(searching, "cache_clock", lambda: now[0])
    working = settings.CACHES
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    settings.CACHES = {"default": working["default"] | {"LOCATION": f"redis://127.0.0.1:{port}/0"}}
    searching.departments()  # the cache refuses: the process learns it is down

    settings.CACHES = working
    cache.delete(searching.DEPARTMENTS_KEY)
    searching.departments()
    left_alone = cache.get(searching.DEPARTMENTS_KEY)
    now[0] += searching.CACHE_REST_SECONDS
    searching.departments()

    assert left_alone is None
    assert cache.get(searching.DEPARTMENTS_KEY) == []
