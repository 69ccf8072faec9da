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
from tests.conftest import POSTMARK_BOUNCE, ROOT, post_webhook
from tests.factories import subscribe

pytestmark = pytest.mark.django_db(transaction=True)
STRONG = "x7Qp2vLr9KsT4mWz8NbY3cHd"
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
                             env=env | {"ANYMAIL_WEBHOOK_SECRET": f"hook:{STRONG}"}, timeout=60)

    assert refused.returncode != 0 and "alerts.E001" in refused.stderr
    assert secured.returncode == 0, secured.stderr


@pytest.mark.parametrize("path", ["/anymail/sendgrid/tracking/", "/anymail/mailgun/tracking/",
                                  "/anymail/amazon_ses/tracking/", "/anymail/postmark/inbound/",
                                  "/anymail/mandrill/"])
def test_only_the_configured_esps_tracking_webhook_is_served(client, webhook_secret, path):
    assert post_webhook(client, path, FORGED).status_code == 404


RAW_SURROGATE = '{"RecordType": "Bounce", "Email": "\udc80"}'.encode("utf-8", "surrogatepass")
ESCAPED_SURROGATE = b'{"RecordType": "Bounce", "Type": "HardBounce", "TypeCode": 1, "Email": "\\udc80@x.org"}'


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"a string"', b"42", b'{"RecordType": "Bounce"',
                                  b"\xff\xfe{}", RAW_SURROGATE, ESCAPED_SURROGATE])
def test_a_payload_that_cannot_be_read_is_a_400_and_changes_nothing(client, webhook_secret, body):
    import base64

    subscribe(email="victim@example.org")
    auth = "Basic " + base64.b64encode(b"hook:s3cret").decode()

    response = client.post("/anymail/postmark/tracking/", data=body, content_type="application/json",
                           HTTP_AUTHORIZATION=auth)

    assert response.status_code == 400
    assert suppressed() == [] and not WebhookEvent.objects.exists()


def test_a_forged_bounce_with_a_wrong_secret_changes_nothing(client, webhook_secret):
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


def check_errors() -> str:
    """What `manage.py check` says about the settings, "" when it passes."""
    try:
        call_command("check")
    except SystemCheckError as refused:
        return str(refused)
    return ""


def test_the_checks_hint_names_only_what_anymail_reads_and_a_made_up_key_opens_nothing(client, settings):
    """Postmark has no signing key: a setting named like one is read by nobody, so the webhook stays shut."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "token", "POSTMARK_WEBHOOK_SIGNING_KEY": STRONG}
    subscribe(email="victim@example.org")

    errors = check_errors()
    response = post_webhook(client, "/anymail/postmark/tracking/", FORGED, auth=None)

    assert "alerts.E001" in errors and "ANYMAIL_WEBHOOK_SECRET" in errors
    assert "SIGNING_KEY" not in errors
    assert response.status_code == 404 and suppressed() == []


@pytest.mark.parametrize("name", ["SENDGRID_WEBHOOK_SIGNING_KEY", "SENDGRID_WEBHOOK_KEY", "SENDGRID_SIGNING_SECRET"])
def test_a_sendgrid_key_anymail_does_not_read_is_refused(settings, name):
    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    settings.ANYMAIL = {"SENDGRID_API_KEY": "key", name: STRONG}

    errors = check_errors()

    assert "alerts.E001" in errors
    assert "ANYMAIL_SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY" in errors and "ANYMAIL_WEBHOOK_SECRET" in errors


def test_sendgrids_real_verification_key_is_what_the_check_asks_for(settings):
    """Anymail checks SendGrid's signature with the cryptography package: the key passes where Anymail
    can use it, and where it cannot, the check says what is missing rather than that no key is set."""
    import importlib.util

    settings.EMAIL_BACKEND = "anymail.backends.sendgrid.EmailBackend"
    settings.ANYMAIL = {"SENDGRID_API_KEY": "key", "SENDGRID_TRACKING_WEBHOOK_VERIFICATION_KEY": "MFkwEwYHKoZIzj0CAQYI"}

    errors = check_errors()

    if importlib.util.find_spec("cryptography"):
        assert errors == ""
    else:
        assert "alerts.E001" in errors and "needs the cryptography package" in errors and "no secret" not in errors


@pytest.mark.parametrize(("secret", "why"), [
    (":", "empty user or password"), ("hook:", "empty user or password"), (f":{STRONG}", "empty user or password"),
    (STRONG, "no colon"), ("hook:s3cret", "shorter than 16"), ("hook:aaaaaaaaaaaaaaaaaaaa", "easy to guess"),
    ("hook:long-random-password", "easy to guess"), (f"hook:{STRONG} ", "spaces"), ([f"hook:{STRONG}", ":"], "empty"),
])
def test_a_webhook_secret_must_be_a_user_and_a_strong_password(settings, secret, why):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "token", "WEBHOOK_SECRET": secret}

    errors = check_errors()

    assert "alerts.E001" in errors and why in errors and "secrets.token_urlsafe" in errors


def test_a_strong_webhook_secret_passes(settings):
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "token", "WEBHOOK_SECRET": [f"hook:{STRONG}", f"old:{STRONG[::-1]}"]}

    assert check_errors() == ""


@pytest.mark.parametrize("secret", [":", "hook:", STRONG])
def test_a_secret_anyone_could_send_leaves_the_webhook_shut(client, settings, secret):
    """Anymail would take an empty user and password from anyone who sends them."""
    settings.EMAIL_BACKEND = "anymail.backends.postmark.EmailBackend"
    settings.ANYMAIL = {"POSTMARK_SERVER_TOKEN": "token", "WEBHOOK_SECRET": secret}
    subscribe(email="victim@example.org")
    user, _, password = secret.partition(":")

    response = post_webhook(client, "/anymail/postmark/tracking/", FORGED, auth=(user, password))

    assert response.status_code == 404 and suppressed() == [] and not WebhookEvent.objects.exists()


def test_mailgun_needs_its_signing_key_whatever_else_is_set(settings):
    """Anymail will not take a Mailgun webhook without a key to check its signature with (the API key
    is not what Mailgun signs with)."""
    settings.EMAIL_BACKEND = "anymail.backends.mailgun.EmailBackend"
    settings.ANYMAIL = {"MAILGUN_API_KEY": "key", "WEBHOOK_SECRET": f"hook:{STRONG}"}

    errors = check_errors()
    settings.ANYMAIL = settings.ANYMAIL | {"MAILGUN_WEBHOOK_SIGNING_KEY": "key-from-mailgun"}

    assert "alerts.E001" in errors and "ANYMAIL_MAILGUN_WEBHOOK_SIGNING_KEY" in errors
    assert "ANYMAIL_WEBHOOK_SECRET=" not in errors.split("HINT")[1]
    assert check_errors() == ""
