"""Adding an alert from the manage page: the manage link already proves the inbox, so nothing is emailed."""

from __future__ import annotations

import time

import pytest
from django.core import mail, signing
from django.test import Client

from alerts import tokens
from alerts.models import Delivery, Subscription
from tests.conftest import add, confirmed_subscriber, page, sign_up, status_region

pytestmark = pytest.mark.django_db(transaction=True)


def error_summary(text: str) -> str:
    start = text.find('<div class="error-summary"')
    assert start != -1, "no error summary"
    return text[start:text.index("</div>", start)]


def test_an_added_alert_is_confirmed_and_on_without_an_email(client):
    subscriber, manage = confirmed_subscriber(client)
    sent, deliveries = len(mail.outbox), Delivery.objects.count()

    response = add(client, manage, "prisons", label="Prison staffing")

    assert response.status_code == 302 and response["Location"] == manage
    added = subscriber.subscriptions.get(query="prisons")
    assert added.confirmed_at is not None and not added.paused
    assert (added.label, added.frequency, added.alert_on) == ("Prison staffing", "daily", "new")
    assert subscriber.subscriptions.receiving().filter(pk=added.pk).exists()
    assert len(mail.outbox) == sent and Delivery.objects.count() == deliveries

    text = page(client.get(manage))
    assert "Added “Prison staffing”. It starts with the next new question." in status_region(text)
    assert '<td data-label="Status">On</td>' in text


def test_adding_spends_nothing_of_the_addresss_email_budget(client, settings):
    settings.RATELIMIT_SIGNUP_PER_ADDRESS = "2/h"
    _, manage = confirmed_subscriber(client)  # one of the two

    for q in ("prisons", "probation", "courts"):
        assert add(client, manage, q).status_code == 302

    assert Subscription.objects.count() == 4
    sent = len(mail.outbox)
    assert sign_up(client, q="schools").status_code == 302
    assert len(mail.outbox) == sent + 1  # the second, still allowed


def test_a_search_already_saved_is_refused_in_the_error_summary(client):
    subscriber, manage = confirmed_subscriber(client)

    response = add(client, manage, '"Facial  Recognition"')

    text = page(response)
    assert response.status_code == 400
    assert "You already have an alert for this search." in error_summary(text)
    assert subscriber.subscriptions.count() == 1


def test_the_cap_on_alerts_is_refused_in_the_error_summary(client, settings):
    settings.MAX_SUBSCRIPTIONS_PER_ADDRESS = 2
    subscriber, manage = confirmed_subscriber(client)
    assert add(client, manage, "prisons").status_code == 302

    response = add(client, manage, "probation")

    assert response.status_code == 400
    assert "You already have 2 alerts, as many as an address can have" in error_summary(page(response))
    assert subscriber.subscriptions.count() == 2
    assert 'value="probation"' in page(response)  # what was typed is kept


def test_a_refused_query_is_explained_like_the_edit_page_does(client):
    subscriber, manage = confirmed_subscriber(client)
    sent = len(mail.outbox)

    response = add(client, manage, '"facial recognition')

    text = page(response)
    assert response.status_code == 400
    assert "This search can’t be saved: The quote you opened at character 1 is never closed" in error_summary(text)
    assert 'href="#id_q"' in error_summary(text) and 'aria-invalid="true"' in text
    assert text.count("<title>Error: My alerts") == 1
    assert subscriber.subscriptions.count() == 1 and len(mail.outbox) == sent


@pytest.mark.parametrize("reason", ["bounced", "complained"])
def test_an_address_we_cannot_email_is_told_why_and_nothing_is_added(client, reason):
    subscriber, manage = confirmed_subscriber(client)
    subscriber.suppress(reason)
    assert "Add an alert" not in page(client.get(manage))
    sent = len(mail.outbox)

    text = page(add(client, manage, "prisons", follow=True))

    assert "We can’t send email to this address, so no alert can be added to it." in text
    assert subscriber.subscriptions.count() == 1 and len(mail.outbox) == sent


def test_an_unsubscribed_address_is_sent_to_confirm_from_its_inbox(client):
    subscriber, manage = confirmed_subscriber(client)
    Client(enforce_csrf_checks=True).post(f"/unsubscribe/{tokens.make(subscriber, tokens.UNSUBSCRIBE)}/")
    sent = len(mail.outbox)

    text = page(add(client, manage, "prisons", follow=True))

    assert "You unsubscribed from everything, so no alert can be added here" in text
    assert 'href="/alerts/new/?q=prisons"' in text
    assert subscriber.subscriptions.count() == 1 and len(mail.outbox) == sent


def test_an_unconfirmed_address_is_asked_to_confirm_first(client):
    sign_up(client)
    subscriber = Subscription.objects.get().subscriber
    manage = f"/alerts/manage/{tokens.make(subscriber, tokens.MANAGE)}/"
    assert "first confirm your address" in page(client.get(manage))

    text = page(add(client, manage, "prisons", follow=True))

    assert "Your address isn’t confirmed yet" in text
    assert subscriber.subscriptions.count() == 1


def test_tampered_expired_and_revoked_links_add_nothing(client, monkeypatch):
    subscriber, manage = confirmed_subscriber(client)
    token = manage.split("/")[3]

    assert add(client, f"/alerts/manage/{token[:-2]}xx/").status_code == 400

    real_time = time.time
    monkeypatch.setattr(signing.time, "time", lambda: real_time() - 91 * 86400)
    old = tokens.make(subscriber, tokens.MANAGE)
    monkeypatch.setattr(signing.time, "time", real_time)
    expired = add(client, f"/alerts/manage/{old}/")
    assert expired.status_code == 400 and "expired" in expired.content.decode()

    client.post(f"{manage}revoke/")
    revoked = add(client, manage)
    assert revoked.status_code == 400 and "revoked" in revoked.content.decode()

    assert subscriber.subscriptions.count() == 1


def test_adding_needs_a_post_with_the_csrf_token(client):
    subscriber, manage = confirmed_subscriber(client)
    strict = Client(enforce_csrf_checks=True)

    assert add(strict, manage).status_code == 403
    assert strict.get(f"{manage}add/").status_code == 405
    assert subscriber.subscriptions.count() == 1

    form_page = strict.get(manage)
    csrf = form_page.context["csrf_token"]
    response = strict.post(f"{manage}add/", {"q": "prisons", "label": "", "frequency": "daily", "alert_on": "new",
                                             "csrfmiddlewaretoken": str(csrf)})
    assert response.status_code == 302 and subscriber.subscriptions.count() == 2


def test_the_did_you_mean_link_after_a_refused_add_opens_the_manage_page_prefilled(client):
    _, manage = confirmed_subscriber(client)

    response = client.get(f"{manage}add/", {"q": "prisons OR probation"})

    assert response.status_code == 302
    assert 'value="prisons OR probation"' in page(client.get(response["Location"]))
