"""Hostile users: a flood from one IP must not lock an address out, the public forms must not tell a stranger
which addresses we know, and the site must degrade, not fail, when Redis (the cache) is down."""

from __future__ import annotations

import random
import statistics
import time
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client
from kombu.exceptions import OperationalError

from alerts import tokens
from alerts.models import Delivery, FormRequest, Subscriber, Subscription
from config.celery import app
from tests.conftest import FIXTURES

SIGNUP = "/alerts/new/"
LINK = "/alerts/link/"


def sign_up(client, email, ip="192.0.2.1", q="palantir"):
    return client.post(SIGNUP, {"email": email, "q": q, "frequency": "daily", "alert_on": "both", "label": "",
                                "website": ""}, REMOTE_ADDR=ip)


def ask_for_link(client, email, ip="192.0.2.1"):
    return client.post(LINK, {"email": email, "website": ""}, REMOTE_ADDR=ip)


@pytest.fixture
def broker(monkeypatch):
    """The broker as the views see it, without one: what they publish is kept in `sent`, unless `down`."""

    class Broker:
        def __init__(self) -> None:
            self.sent: list[tuple[str, dict]] = []
            self.down = False

        def send_task(self, name, args=None, kwargs=None, **options):
            if self.down:
                raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
            self.sent.append((name, kwargs))

    stub = Broker()
    app.conf.task_always_eager = False  # put back by conftest's _emails_through_anymail
    monkeypatch.setattr(app, "send_task", stub.send_task)
    return stub


# 3. Rate limits count what they let through.


@pytest.mark.django_db(transaction=True)
def test_a_flood_from_one_ip_does_not_lock_an_address_out(client, settings, limiter_clock):
    settings.RATELIMIT_SIGNUP_PER_IP, settings.RATELIMIT_SIGNUP_PER_ADDRESS = "20/h", "5/h"

    # The flooding IP spends its own budget on other addresses, then keeps asking for the victim's.
    spent = [sign_up(client, f"p{i}@example.org", "203.0.113.9").status_code for i in range(20)]
    refused = [sign_up(client, "Victim@example.org", "203.0.113.9", q=f"topic{i}").status_code for i in range(30)]

    assert spent == [302] * 20 and refused == [429] * 30
    assert not Subscriber.objects.filter(email__iexact="victim@example.org").exists()
    assert sign_up(client, "victim@example.org", "203.0.113.10").status_code == 302
    confirmation = Delivery.objects.get(subscriber__email="victim@example.org")
    assert confirmation.kind == "confirmation" and confirmation.status == "sent"
    assert mail.outbox[-1].to == ["victim@example.org"]
    assert ask_for_link(client, "victim@example.org", "203.0.113.11").status_code == 302


@pytest.mark.django_db
@pytest.mark.redis  # the database cache of a SQLite run cannot take a burst of writers
@pytest.mark.django_db(transaction=True)
def test_requests_arriving_together_are_held_to_the_limit(settings, broker, limiter_clock):
    """Each request is counted as it is checked, by the cache's atomic increment: a burst cannot all see
    room before any is counted."""
    import threading

    from django.test import Client

    settings.RATELIMIT_SIGNUP_PER_IP, settings.RATELIMIT_SIGNUP_PER_ADDRESS = "100/h", "3/h"
    start, statuses = threading.Barrier(12), []

    def ask(number: int) -> None:
        start.wait()
        statuses.append(ask_for_link(Client(), "victim@example.org", ip=f"198.51.100.{number}").status_code)

    threads = [threading.Thread(target=ask, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    # Every page is the one any address gets, every request saved and a worker woken alike; three were taken,
    # the rest held.
    assert statuses == [302] * 12
    assert sorted(FormRequest.objects.values_list("held", flat=True)) == [False] * 3 + [True] * 9
    assert len(broker.sent) == 12


# 5. Every address takes the same path, in the same time.


def _addresses() -> dict[str, str]:
    """One address of each kind a stranger might want to tell apart, all of the same length."""
    now = "2025-01-01T00:00:00Z"
    known = Subscriber.objects.create(email="known@example.org", confirmed_at=now)
    Subscription.objects.create(subscriber=known, query="palantir", canonical_query="palantir", confirmed_at=now)
    gone = Subscriber.objects.create(email="unsub@example.org", confirmed_at=now, suppressed_at=now,
                                     suppressed_reason="unsubscribed")
    Subscription.objects.create(subscriber=gone, query="palantir", canonical_query="palantir", confirmed_at=now,
                                paused=True)
    bounced = Subscriber.objects.create(email="bounc@example.org", confirmed_at=now, suppressed_at=now,
                                        suppressed_reason="bounced")
    Subscription.objects.create(subscriber=bounced, query="palantir", canonical_query="palantir", confirmed_at=now)
    return {"known": known.email, "unknown": "nobod@example.org", "unsubscribed": gone.email,
            "bounced": bounced.email}


def _timings(client, post, addresses: dict[str, str], rounds: int) -> tuple[dict[str, float], dict[str, float]]:
    """The median and the lowest decile, in milliseconds, of each kind's requests: `rounds` rounds, each
    asking once for every kind in a fresh random order, so that drift falls on every kind alike."""
    times: dict[str, list[float]] = {kind: [] for kind in addresses}
    kinds = list(addresses)
    for n in range(rounds + 20):
        random.shuffle(kinds)
        for kind in kinds:
            started = time.perf_counter()
            response = post(client, addresses[kind])
            elapsed = time.perf_counter() - started
            assert (response.status_code, response["Location"]) == (302, "/alerts/check-your-inbox/")
            if n >= 20:  # the first rounds warm up templates, connections and caches
                times[kind].append(elapsed * 1000)
    return ({kind: statistics.median(values) for kind, values in times.items()},
            {kind: statistics.quantiles(values, n=10)[0] for kind, values in times.items()})


# What is compared is the lowest decile of each kind's times. Other work on the machine only ever adds
# time, and on a small shared machine it adds it to about half the requests: the medians of kinds doing
# identical work then land either side of that cliff and were measured 7.6 ms apart (2 CPUs, six test runs
# at once), while their lowest deciles stayed within 0.12 ms. Extra work in the request shifts every
# decile alike, and the low ones are what a stranger timing us would compare too. The medians are printed.
#
# With the address-dependent work back in the request, as it was, the kinds' medians differed by 0.7 to
# 2.3 ms (22% to 57%) in this test on an idle machine, SQLite or PostgreSQL, and by 8.8 ms (43%) in the
# issue. Half a millisecond or 15% of a request, whichever is larger, catches all of that (a 2 ms floor
# would miss most of it on databases this quick), leaves four times the noise seen under load, and is
# beyond measuring through a network's jitter at the five requests an hour the limit lets a stranger make
# for one address.
ALLOWED_MS, ALLOWED_SHARE = 0.5, 0.15


@pytest.mark.django_db
@pytest.mark.parametrize("form, post", [("signup", sign_up), ("link", ask_for_link)])
def test_known_unknown_unsubscribed_and_bounced_addresses_take_the_same_path_and_time(
        client, settings, broker, form, post):
    settings.RATELIMIT_SIGNUP_PER_IP = settings.RATELIMIT_SIGNUP_PER_ADDRESS = "100000/h"
    settings.RATELIMIT_SIGNUP_PER_ADDRESS_TOTAL = "100000/h"
    addresses = _addresses()
    before = (Subscriber.objects.count(), Subscription.objects.count(), Delivery.objects.count())
    started = time.monotonic()

    medians, lowest = _timings(client, post, addresses, rounds=200)

    print(f"\n{form} ms: median " + ", ".join(f"{kind} {ms:.2f}" for kind, ms in medians.items())
          + "; lowest decile " + ", ".join(f"{kind} {ms:.2f}" for kind, ms in lowest.items()))
    assert time.monotonic() - started < 30
    # The same path: nothing written in the request but the request itself, and one message each, carrying
    # only its row's id.
    assert (Subscriber.objects.count(), Subscription.objects.count(), Delivery.objects.count()) == before
    assert {name for name, _ in broker.sent} == {"alerts.take_form_request"}
    assert sorted(kwargs["request_id"] for _, kwargs in broker.sent) == sorted(
        FormRequest.objects.values_list("pk", flat=True))
    for address in addresses.values():
        assert FormRequest.objects.filter(kind=form, data__email=address, held=False).count() == 220
    fastest, slowest = min(lowest.values()), max(lowest.values())
    assert slowest - fastest <= max(ALLOWED_MS, ALLOWED_SHARE * fastest), (lowest, medians)


@pytest.mark.django_db(transaction=True)
def test_what_the_tasks_do_for_each_kind_of_address(client):
    """The work the forms queue is the work they did before, whatever the address."""
    addresses = _addresses()

    for address in addresses.values():
        sign_up(client, address, q="prisons")
        ask_for_link(client, address)

    sent = sorted((m.to[0], m.subject) for m in mail.outbox)
    assert sent == [
        ("known@example.org", "Confirm your alert for written questions"),
        ("known@example.org", "Your written question alerts"),
        ("nobod@example.org", "Confirm your alert for written questions"),
        ("nobod@example.org", "Your written question alerts"),
        ("unsub@example.org", "Confirm your alert for written questions"),
        ("unsub@example.org", "Your written question alerts"),
    ]


# 6. The site degrades, never fails, without its cache or its broker.


@pytest.mark.django_db
def test_with_the_broker_down_the_forms_still_take_the_request(client, settings, broker, limiter_clock):
    settings.RATELIMIT_SIGNUP_PER_IP, settings.RATELIMIT_SIGNUP_PER_ADDRESS = "20/h", "5/h"
    broker.down = True

    taken = [sign_up(client, "victim@example.org"), ask_for_link(client, "victim@example.org")]

    # The request is saved before the page answers: the broker only wakes a worker, and the sweep does without.
    assert [response["Location"] for response in taken] == ["/alerts/check-your-inbox/"] * 2
    assert broker.sent == []
    assert sorted(FormRequest.objects.values_list("kind", "data__email")) == [
        ("link", "victim@example.org"), ("signup", "victim@example.org")]


@pytest.fixture
def archive():
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), stdout=StringIO())


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_with_redis_down_pages_work_and_signup_works_or_says_try_again(client, settings, archive,
                                                                      private_redis):
    from questions.models import Question

    redis_url, stop_redis, start_redis = private_redis
    # The cache, as configured, on the test's own Redis: changing CACHES makes Django open new connections.
    settings.CACHES = {"default": settings.CACHES["default"] | {"LOCATION": redis_url}}
    assert settings.CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert sign_up(client, "ada@example.org").status_code == 302
    subscriber = Subscriber.objects.get(email="ada@example.org")
    manage = tokens.make(subscriber, tokens.MANAGE)
    unsubscribe = tokens.make(subscriber, tokens.UNSUBSCRIBE)
    question = Question.objects.exclude(answering_body_name="").first().get_absolute_url()
    assert client.get("/", {"q": "police"}).status_code == 200  # the departments are in the cache now
    stop_redis()

    pages = {path: client.get(path, query) for path, query in [
        ("/", {"q": "police"}), ("/", {}), (question, {}), ("/feeds/search.rss", {"q": "police"}),
        ("/feeds/search.atom", {"q": "police"}), (f"/alerts/manage/{manage}/", {}),
        (f"/unsubscribe/{unsubscribe}/", {}), (SIGNUP, {"q": "police"}), (LINK, {})]}
    one_click = Client(enforce_csrf_checks=True).post(f"/unsubscribe/{unsubscribe}/",
                                                      {"List-Unsubscribe": "One-Click"})
    forms = {"signup": sign_up(client, "grace@example.org"), "link": ask_for_link(client, "ada@example.org")}

    assert {path: response.status_code for path, response in pages.items()} == dict.fromkeys(pages, 200)
    assert "Home Office" in pages["/"].content.decode()  # the department filter, worked out afresh
    assert one_click.status_code == 200
    subscriber.refresh_from_db()
    assert subscriber.suppressed_reason == "unsubscribed"
    for name, response in forms.items():
        assert response.status_code in (302, 503), name
        if response.status_code == 503:
            assert "try again in a minute" in response.content.decode()
    if forms["signup"].status_code == 302:
        assert Delivery.objects.filter(subscriber__email="grace@example.org", kind="confirmation").exists()
    if forms["link"].status_code == 302:
        assert Delivery.objects.filter(subscriber__email="ada@example.org", kind="manage_link").exists()

    start_redis()
    assert sign_up(client, "grace@example.org").status_code == 302  # and it comes back by itself
    assert Delivery.objects.filter(subscriber__email="grace@example.org", kind="confirmation").exists()
