"""Limits a stranger cannot spend for someone else: whoever floods signup or "email me a link" with someone
else's address, from one IP, a whole network or several, the owner asking from their own connection still
gets their email; a flood from everywhere at once is held to a ceiling; and the page never says which."""

from __future__ import annotations

import pytest
from django.core import mail
from django.utils import timezone

from alerts.models import Delivery, Subscriber, Subscription
from tests.conftest import Worker, purge_queues, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

VICTIM = "victim@example.org"
OWNER_IP = "192.0.2.44"


@pytest.fixture
def subscribed():
    """The victim already has an alert: "email me a link" sends only to an address we know."""
    subscriber = Subscriber.objects.create(email=VICTIM, confirmed_at=timezone.now())
    Subscription.objects.create(subscriber=subscriber, query="prisons", canonical_query="prisons",
                                confirmed_at=timezone.now())


def sign_up(client, email: str, ip: str, q: str = "palantir"):
    return client.post("/alerts/new/", {"email": email, "q": q, "frequency": "daily", "alert_on": "both",
                                        "label": "", "website": ""}, REMOTE_ADDR=ip)


def ask_for_link(client, email: str, ip: str):
    return client.post("/alerts/link/", {"email": email, "website": ""}, REMOTE_ADDR=ip)


def emails_to(address: str) -> list:
    return [message for message in mail.outbox if message.to == [address]]


def the_owner_gets_their_emails(client) -> None:
    """The owner, from their own connection, signs up for their own search and asks for a link: each
    email arrives, about what they asked for."""
    before = len(emails_to(VICTIM))

    assert sign_up(client, VICTIM, OWNER_IP, q="school meals")["Location"] == "/alerts/check-your-inbox/"
    assert ask_for_link(client, VICTIM, OWNER_IP)["Location"] == "/alerts/check-your-inbox/"

    confirmation, link = emails_to(VICTIM)[before:]
    assert "school meals" in confirmation.body and "/alerts/confirm/" in confirmation.body
    assert "/alerts/manage/" in link.body
    assert Subscription.objects.filter(subscriber__email=VICTIM, query="school meals").exists()


def test_a_stranger_flooding_from_one_ip_cannot_stop_the_owner_getting_their_email(client, limiter_clock):
    statuses = [sign_up(client, VICTIM, "203.0.113.9", q=f"topic{i}").status_code for i in range(25)]
    statuses += [ask_for_link(client, VICTIM, "203.0.113.9").status_code for _ in range(5)]

    # The stranger's IP is told when it has asked too often; the victim heard from us three times, no more.
    assert statuses == [302] * 20 + [429] * 5 + [302] * 5
    assert len(emails_to(VICTIM)) == 3
    the_owner_gets_their_emails(client)


@pytest.mark.parametrize("addresses", [
    [f"203.0.113.{n}" for n in range(1, 201)],
    # A stranger with an IPv6 block hops from one /64 to the next, within their /48.
    [f"2001:db8:77:{n:x}::1" for n in range(200)],
    # Or from one tunnel's /48 to the next, each given free to anyone who asks.
    [f"2001:db8:{n:x}::1" for n in range(200)],
], ids=["ipv4-/24", "ipv6-/48", "ipv6-/48s"])
def test_a_stranger_hopping_between_the_addresses_of_their_network_cannot_stop_the_owner(client, limiter_clock,
                                                                                        addresses):
    pages = [sign_up(client, VICTIM, ip, q=f"topic{n}") for n, ip in enumerate(addresses)]

    assert {page["Location"] for page in pages} == {"/alerts/check-your-inbox/"}
    assert len(emails_to(VICTIM)) == 3
    the_owner_gets_their_emails(client)


def test_strangers_on_several_networks_cannot_stop_the_owner(client, limiter_clock, subscribed):
    networks = [f"198.51.{n}.9" for n in range(6)]

    for ip in networks:
        for _ in range(10):
            ask_for_link(client, VICTIM, ip)

    assert len(emails_to(VICTIM)) == 18  # six networks, three each
    the_owner_gets_their_emails(client)


def test_a_flood_from_many_networks_at_once_is_held_to_the_ceiling_and_looks_like_any_other(client,
                                                                                           limiter_clock):
    pages = [sign_up(client, VICTIM, f"100.64.{n % 250}.7", q=f"topic{n}") for n in range(1000)]

    # Each page the flood got is the one every address gets; the inbox got the ceiling's twenty.
    assert {(page.status_code, page["Location"]) for page in pages} == {(302, "/alerts/check-your-inbox/")}
    assert len(emails_to(VICTIM)) == 20
    checked = client.get("/alerts/check-your-inbox/").content.decode()
    assert VICTIM in checked and "Too many" not in checked


def test_the_limits_come_round_again_in_the_next_hour(client, limiter_clock, subscribed):
    for _ in range(5):
        ask_for_link(client, VICTIM, "203.0.113.9")
    assert len(emails_to(VICTIM)) == 3

    limiter_clock.now += 3600
    ask_for_link(client, VICTIM, "203.0.113.9")

    assert len(emails_to(VICTIM)) == 4


def queued() -> int:
    """How many messages wait in the broker's default queue."""
    from config.celery import app

    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare("celery", passive=True).message_count


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.worker
def test_over_the_address_limit_the_broker_hears_of_it_as_ever_and_the_worker_sends_nothing(client, limiter_clock,
                                                                                            worker_env):
    purge_queues()
    pages = [sign_up(client, VICTIM, "203.0.113.9", q=f"topic{n}") for n in range(4)]

    # The fourth is over the network's share: published all the same, so that its page takes no less time.
    assert {page["Location"] for page in pages} == {"/alerts/check-your-inbox/"}
    assert queued() == 4

    # Another person's signup, queued behind them: once it is taken, the worker has been through the four.
    sign_up(client, "someone@example.org", "198.51.100.1")
    worker = Worker(worker_env)
    worker.start()
    try:
        wait_until(lambda: Subscription.objects.filter(subscriber__email="someone@example.org").exists(),
                   message="the later signup to be taken")
    finally:
        worker.stop()

    assert sorted(Subscription.objects.filter(subscriber__email=VICTIM).values_list("query", flat=True)) == [
        "topic0", "topic1", "topic2"]
    assert Delivery.objects.filter(subscriber__email=VICTIM).count() == 3
