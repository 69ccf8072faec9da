"""The manage page's answer to "is my alert working?" and its choice of one email or one per alert, at a desktop's
width and a phone's, against axe-core: an alert that was sent, a followed question, a quiet alert and its offer to
delete it, the grouping saved, and the refusal of an email that bounced."""

from __future__ import annotations

import datetime as dt
import re
from contextlib import contextmanager

import pytest
from django.db import connections
from django.test import Client
from django.utils import timezone

from alerts.models import Subscriber, Subscription
from questions.models import Source
from tests.browser import check_page
from tests.conftest import (
    POSTMARK_BOUNCE,
    WIDTHS,
    post_webhook,
    send_alerts,
    signed_up,
    status_message,
    use_postmark_webhooks,
    when,
)
from tests.factories import follow_question, matched, question, quiet_for

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@contextmanager
def signed_up_here(live_server, width: int, email: str):
    """`signed_up`, for a test that uses the database while the browser is open. Playwright runs that code in a
    greenlet of its own, which gets a database connection of its own: it is closed on the way out, so that the
    test database can be dropped at the end."""
    with signed_up(live_server, width, email) as opened:
        try:
            yield opened
        finally:
            connections.close_all()


def check(page, name: str, width: int) -> None:
    check_page(page, f"alert-health-{name}", width)


def activity_of(page, name: str) -> str:
    """The Activity cell of the row whose Delete button names `name`, as read on screen."""
    rows = page.locator("table.manage tbody tr").filter(
        has=page.get_by_role("button", name=f"Delete {name}", exact=True))
    assert rows.count() == 1, name
    text = rows.locator("td[data-label='Activity']").inner_text()
    return " ".join(text.removeprefix("Activity:").split())


@pytest.mark.parametrize("width", WIDTHS)
def test_a_subscriber_sees_their_alerts_working_chooses_separate_emails_and_sees_a_bounce(
        live_server, live_archive, settings, width):
    email = f"health-{width}@example.org"
    with signed_up_here(live_server, width, email) as (page, manage_url, _):
        subscriber = Subscriber.objects.get(email=email)
        alert = subscriber.subscriptions.get()
        checked = timezone.now() - dt.timedelta(minutes=4)
        Source.objects.create(name="Feed", kind="feed", url="http://127.0.0.1:9/feed", last_success_at=checked)
        match = matched(alert)
        delivery = send_alerts()
        answered = question(heading="Prisons: Staff numbers", date_answered=dt.date(2026, 3, 3),
                            answer_text="There are 20,000.")
        follow_question(subscriber=subscriber, question=answered)
        quiet = Subscription.objects.create(subscriber=subscriber, query="zzxqvb prisons", label="Prison staffing",
                                            canonical_query="zzxqvb prisons", confirmed_at=timezone.now())
        quiet_for(quiet, 120)

        # Health shown: when questions were checked, and what each alert did.
        page.reload()
        last_checked = page.locator("p.last-checked").inner_text()
        assert last_checked == f"We last checked for new questions at {when(checked, 'H:i')} on " \
                               f"{when(checked, 'j F Y')}."
        sent = activity_of(page, alert.name)
        assert f"Last matched {when(match.created_at)}: see what it finds" in sent
        assert f"Last email sent {when(delivery.sent_at)}: on its way to your mail server" in sent
        assert page.get_by_role("link", name=f"see what it finds for “{alert.name}”").get_attribute(
            "href") == "/?q=%22facial%20recognition%22"
        follow_row = page.locator("table.manage tbody tr").filter(has_text="Following: Prisons: Staff numbers")
        assert "Answered on 3 March 2026." in follow_row.inner_text()
        assert follow_row.get_by_role("link", name="Prisons: Staff numbers").get_attribute(
            "href") == answered.get_absolute_url()
        assert follow_row.get_by_role("link", name=re.compile("^Edit")).count() == 0
        assert follow_row.get_by_role("button", name=re.compile("^Delete")).count() == 1
        check(page, "shown", width)

        # A quiet alert says so, and its offer to delete it works.
        assert "Nothing has matched this alert in the last 90 days." in activity_of(page, "Prison staffing")
        assert page.get_by_role("link", name="change its search “Prison staffing”").count() == 1
        check(page, "quiet", width)
        page.get_by_role("button", name="delete it “Prison staffing”").click()
        page.wait_for_load_state()
        assert page.url == manage_url
        assert "Deleted “Prison staffing”." in status_message(page)
        assert "Nothing has matched this alert" not in page.content()

        # One email per alert, chosen and kept.
        group = page.get_by_role("group", name="When more than one alert has news, send it as")
        assert group.get_by_label("One email, grouped by alert").is_checked()
        group.get_by_label("One email per alert").check()
        page.get_by_role("button", name="Save this choice").click()
        page.wait_for_load_state()
        assert page.url == manage_url
        assert status_message(page) == "Saved: each alert will now come in an email of its own."
        assert page.get_by_label("One email per alert").is_checked()
        check(page, "grouping-saved", width)

        # The ESP reports a bounce: the page says the email was refused.
        use_postmark_webhooks(settings)
        bounce = POSTMARK_BOUNCE | {"MessageID": delivery.esp_message_id, "Email": email}
        assert post_webhook(Client(), "/anymail/postmark/tracking/", bounce).status_code == 200
        page.reload()
        assert f"Last email sent {when(delivery.sent_at)}: your mail server refused it (bounced)." in activity_of(
            page, alert.name)
        assert "none of these alerts is sending" in page.locator("#not-sending").inner_text()
        check(page, "bounced", width)

    subscriber.refresh_from_db()
    assert (subscriber.email_grouping, subscriber.suppressed_reason) == ("separate", "bounced")
    assert not Subscription.objects.filter(pk=quiet.pk).exists()
