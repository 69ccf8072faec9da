"""Forged and malformed webhooks: no secret means no webhook, only our ESP's is served, and a payload
that cannot be read is a 400 that changes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from anymail.backends.postmark import EmailBackend as PostmarkBackend
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from alerts.models import Subscriber, WebhookEvent
from tests.conftest import ROOT
from tests.test_delivery import POSTMARK_BOUNCE, post_webhook, subscribe, webhook_secret  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db(transaction=True)
FORGED = {"RecordType": "Bounce", "Type": "HardBounce", "TypeCode": 1, "Email": "victim@example.org",
          "MessageID": "x"}


def suppressed() -> list[str]:
    return list(Subscriber.objects.exclude(suppressed_at=None).values_list("email", flat=True))


def test_without_a_secret_there_is_no_webhook_and_the_site_will_not_start(client, settings):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "token"}
    subscribe(email="victim@example.org")

    response = post_webhook(client, "/anymail/postmark/tracking/", FORGED, auth=None)

    assert response.status_code == 404 and suppressed() == [] and not WebhookEvent.objects.exists()
    with pytest.raises(SystemCheckError, match="alerts.E001"):
        call_command("check")


def test_check_deploy_refuses_an_esp_without_a_webhook_secret(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANYMAIL", "DATABASE", "REDIS"))}
    env |= {"VAR_DIR": str(tmp_path), "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
            "ANYMAIL_POSTMARK_SERVER_TOKEN": "token"}

    refused = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=60)
    secured = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, capture_output=True, text=True,
                             env=env | {"ANYMAIL_WEBHOOK_SECRET": "user:long-random-password"}, timeout=60)

    assert refused.returncode != 0 and "alerts.E001" in refused.stderr
    assert secured.returncode == 0, secured.stderr


@pytest.mark.parametrize("path", ["/anymail/sendgrid/tracking/", "/anymail/mailgun/tracking/",
                                  "/anymail/amazon_ses/tracking/", "/anymail/postmark/inbound/",
                                  "/anymail/mandrill/"])
def test_only_the_configured_esps_tracking_webhook_is_served(client, webhook_secret, path):  # noqa: F811
    assert post_webhook(client, path, FORGED).status_code == 404


RAW_SURROGATE = '{"RecordType": "Bounce", "Email": "\udc80"}'.encode("utf-8", "surrogatepass")
ESCAPED_SURROGATE = b'{"RecordType": "Bounce", "Type": "HardBounce", "TypeCode": 1, "Email": "\\udc80@x.org"}'


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"a string"', b"42", b'{"RecordType": "Bounce"',
                                  b"\xff\xfe{}", RAW_SURROGATE, ESCAPED_SURROGATE])
def test_a_payload_that_cannot_be_read_is_a_400_and_changes_nothing(client, webhook_secret, body):  # noqa: F811
    import base64

    subscribe(email="victim@example.org")
    auth = "Basic " + base64.b64encode(b"hook:s3cret").decode()

    response = client.post("/anymail/postmark/tracking/", data=body, content_type="application/json",
                           HTTP_AUTHORIZATION=auth)

    assert response.status_code == 400
    assert suppressed() == [] and not WebhookEvent.objects.exists()


def test_a_forged_bounce_with_a_wrong_secret_changes_nothing(client, webhook_secret):  # noqa: F811
    subscribe(email="ada@example.org")

    response = post_webhook(client, "/anymail/postmark/tracking/", POSTMARK_BOUNCE, auth=("hook", "guess"))

    assert response.status_code in (400, 401, 403) and suppressed() == []


class OurPostmark(PostmarkBackend):
    """A backend of a site's own, built on Anymail's: its ESP's webhook and check still apply."""


def test_a_backend_built_on_an_anymail_one_counts_as_that_esp(settings):
    from alerts.webhooks import configured_esp

    settings.EMAIL_BACKEND = f"{__name__}.OurPostmark"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "token"}

    assert configured_esp() == "postmark"
    with pytest.raises(SystemCheckError, match="alerts.E001"):
        call_command("check")
