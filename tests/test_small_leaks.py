"""Small leaks, as an operator or a stranger would find them: the canary's question behind the follow form,
addresses kept in sessions, addresses and searches in the worker's log, link tokens in the access log,
digests of erased addresses anyone could match, and a form in a charset nobody can read."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from django.apps import apps
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core import mail
from django.db import connection
from django.utils import timezone

from alerts import tokens
from alerts.models import Delivery, ErasedAddress, Subscriber
from alerts.retention import prune
from alerts.subscribing import follow
from alerts.subscribing import sign_up as take_signup
from questions.models import CANARY_PREFIX, Question
from tests.conftest import ROOT, database_url_for_tests, sign_up, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_follow_form_does_not_show_the_canarys_question(client):
    canary = Question.objects.create(external_id=CANARY_PREFIX + "probe-1", heading="Canary probe 7f3e")

    response = client.post(f"/alerts/follow/{canary.pk}/", {"email": "not an address"})

    assert response.status_code == 404 and "Canary probe 7f3e" not in response.content.decode()
    assert client.post(f"/alerts/follow/{canary.pk}/", {"email": "ada@example.org"}).status_code == 404
    follow("ada@example.org", canary.pk)  # the worker's side, should a request get that far
    assert not Subscriber.objects.exists() and not mail.outbox


def test_check_your_inbox_keeps_the_address_without_a_session(client):
    response = sign_up(client, "ada@exmaple.org")
    page = client.get(response["Location"]).content.decode()

    assert "ada@exmaple.org" in page
    assert not Session.objects.exists() and "sessionid" not in client.cookies
    # In the visitor's own cookie, for a short while.
    assert 0 < int(client.cookies["sent_to"]["max-age"]) <= 3600


def test_the_honeypot_creates_no_session(client):
    response = sign_up(client, "bot@example.org", website="http://spam.example")

    assert response.status_code == 302
    assert not Session.objects.exists() and "sessionid" not in client.cookies


@pytest.mark.postgres
def test_pruning_clears_expired_sessions():
    old, current = SessionStore(), SessionStore()
    for session in (old, current):
        session["alerts.sent_to"] = {"email": "ada@example.org"}
        session.create()
    Session.objects.filter(pk=old.session_key).update(expire_date=timezone.now() - dt.timedelta(seconds=1))

    report = prune()

    assert report.counts["expired sessions"] == 1
    assert list(Session.objects.values_list("pk", flat=True)) == [current.session_key]


@pytest.mark.worker
@pytest.mark.postgres
def test_the_workers_log_holds_no_address_nor_search(celery_worker, client):
    start = celery_worker.log.stat().st_size if celery_worker.log.exists() else 0

    def logged() -> str:
        return celery_worker.log.read_bytes()[start:].decode("utf-8", errors="replace")

    response = sign_up(client, "private.person@example.org", q='"a very private matter"')

    assert response.status_code == 302
    wait_until(lambda: Delivery.objects.filter(kind="confirmation", status="sent").exists(), timeout=60,
               message="the confirmation to be sent")
    wait_until(lambda: "alerts.take_form_request" in logged() and "succeeded" in logged(),
               message="the worker to log the task")
    assert "private.person" not in logged() and "private matter" not in logged()
    assert "received" in logged() and '"form request taken"' in logged() and "address:" in logged()


class Gunicorn:
    def __init__(self, tmp_path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "REDIS", "LOG_FORMAT"))}
        env |= {"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"}
        self.err = tmp_path / "gunicorn.err"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "config/gunicorn.conf.py", "config.wsgi",
             "--bind", f"127.0.0.1:{port}", "--workers", "1"],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.err.open("wb"), start_new_session=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code
    except urllib.error.URLError:
        return 0  # not listening yet


def test_the_access_log_holds_no_link_token(tmp_path):
    from tests.conftest import stop_group

    token = "eyJzIjo0MiwidiI6MH0:1vPx2K:Zq8wV1c0nTfakeSignatureOfAManageLink"
    port = free_port()
    server = Gunicorn(tmp_path, port)
    try:
        wait_until(lambda: get(f"http://127.0.0.1:{port}/help/") == 200, message="gunicorn to serve")
        for path in (f"/alerts/manage/{token}/", f"/alerts%2Fmanage/{token}/data.json", f"/unsubscribe/{token}/",
                     f"/alerts/confirm/{token}/", f"/alerts/new-address/{token}/"):
            get(f"http://127.0.0.1:{port}{path}")
        wait_until(lambda: server.err.read_text().count('"gunicorn.access"') >= 6, message="the access log")
    finally:
        stop_group(server.process)

    logged = server.err.read_text(encoding="utf-8")
    access = [json.loads(line)["message"] for line in logged.splitlines() if '"gunicorn.access"' in line]
    assert '127.0.0.1 "GET /alerts/manage/[token]/ HTTP/1.1" 400' in access[1]
    assert '"GET /alerts/manage/[token]/data.json HTTP/1.1"' in access[2]
    assert "/unsubscribe/[token]/" in access[3] and "/alerts/confirm/[token]/" in access[4]
    assert '"GET /alerts/new-address/[token]/ HTTP/1.1" 400' in access[5]
    # Nor in Django's own line about the refused link.
    assert "1vPx2K" not in logged and "fakeSignature" not in logged


def test_an_erased_address_is_kept_as_a_keyed_digest_and_still_recognised(settings):
    now = timezone.now()
    gone = Subscriber.objects.create(email="Bounced@Example.org", confirmed_at=now - dt.timedelta(days=60),
                                     suppressed_at=now - dt.timedelta(days=40), suppressed_reason="bounced")

    prune(now=now)

    assert not Subscriber.objects.filter(pk=gone.pk).exists()
    stored = ErasedAddress.objects.get().digest
    assert stored != hashlib.sha256(b"bounced@example.org").hexdigest()
    take_signup("bounced@example.org", "police", frequency="immediate", alert_on="both")
    assert Subscriber.objects.get().suppressed_reason == "bounced" and not mail.outbox
    # A key rotated (the old one kept as a fallback) forgets nobody: the digest is rewritten under the new key.
    settings.SECRET_KEY_FALLBACKS, settings.SECRET_KEY = [settings.SECRET_KEY], "a new key, long and random enough"
    Subscriber.objects.all().delete()
    take_signup("bounced@example.org", "police", frequency="immediate", alert_on="both")
    assert Subscriber.objects.get().suppressed_reason == "bounced" and not mail.outbox
    assert ErasedAddress.objects.get().digest not in (stored, hashlib.sha256(b"bounced@example.org").hexdigest())


def test_a_digest_stored_before_digests_were_keyed_is_still_recognised_and_rekeyed():
    legacy = hashlib.sha256(b"complained@example.org").hexdigest()
    ErasedAddress.objects.create(digest=legacy, reason="complained")

    take_signup("Complained@example.org", "police", frequency="immediate", alert_on="both")

    assert Subscriber.objects.get().suppressed_reason == "complained" and not mail.outbox
    assert list(ErasedAddress.objects.values_list("reason", flat=True)) == ["complained"]
    assert ErasedAddress.objects.get().digest != legacy


def test_a_form_declaring_utf16_is_a_400_that_says_why(client):
    body = "email=ada%40example.org&q=police&frequency=immediate&alert_on=both"  # the client encodes it

    response = client.post("/alerts/new/", body, content_type="application/x-www-form-urlencoded; charset=utf-16")

    assert response.status_code == 400
    assert "send it as UTF-8" in response.content.decode()


# Names Python knows, of codecs that are no text encoding (rot13, hex, base64, zlib) or cannot read plain ASCII.
@pytest.mark.parametrize("charset", ["rot13", "hex", "base64", "zlib", "punycode"])
def test_a_form_declaring_a_codec_that_is_no_text_encoding_is_a_400_that_says_why(client, charset):
    body = b"email=ada%40example.org&q=police&frequency=immediate&alert_on=both"

    # Sent as it is: the client would otherwise try to encode the body with that codec.
    response = client.generic("POST", "/alerts/new/", body,
                              content_type=f"application/x-www-form-urlencoded; charset={charset}")

    assert response.status_code == 400
    assert f"The request says it is written in {charset}" in response.content.decode()


AFTER_ROTATING = """
import django, json, sys
django.setup()
from alerts import tokens
from alerts.retention import suppressed_reason_of
try:
    link = tokens.read(sys.argv[1], tokens.MANAGE).subscriber.email
except tokens.LinkError as error:
    link = error.reason
print(json.dumps({"erased": suppressed_reason_of("bounced@example.org"), "link": link}))
"""


@pytest.mark.postgres
def test_a_key_rotated_with_the_old_one_in_secret_key_fallbacks_forgets_no_address_nor_link(settings, tmp_path):
    now = timezone.now()
    Subscriber.objects.create(email="bounced@example.org", confirmed_at=now - dt.timedelta(days=60),
                              suppressed_at=now - dt.timedelta(days=40), suppressed_reason="bounced")
    prune(now=now)
    ada = Subscriber.objects.create(email="ada@example.org", confirmed_at=now)
    manage = tokens.make(ada, tokens.MANAGE)

    def restarted_with(fallbacks: str) -> dict:
        # The service as an operator restarts it: a new key, and the old one only in the environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE", "SECRET_KEY", "LOG_FORMAT"))}
        env |= {"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings",
                "DATABASE_URL": database_url_for_tests(), "SECRET_KEY": "a new key, long and random enough",
                "SECRET_KEY_FALLBACKS": fallbacks}
        done = subprocess.run([sys.executable, "-c", AFTER_ROTATING, manage], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    # Without the old key, the bounced address would be mailed again and the link refused.
    assert restarted_with("") == {"erased": "", "link": "invalid"}
    assert restarted_with(f"an even older key, {settings.SECRET_KEY}") == {"erased": "bounced",
                                                                            "link": "ada@example.org"}


def test_the_migration_takes_typed_addresses_out_of_sessions_written_before_the_cookie():
    only_address, address_and_more, other = SessionStore(), SessionStore(), SessionStore()
    only_address["alerts.sent_to"] = {"email": "ada@example.org", "purpose": "confirm", "q": "prisons"}
    address_and_more["alerts.sent_to"] = {"email": "bob@example.org"}
    address_and_more["_auth_user_id"] = other["_auth_user_id"] = "7"
    for session in (only_address, address_and_more, other):
        session.create()
    untouched = Session.objects.get(pk=other.session_key).session_data

    forget = importlib.import_module("alerts.migrations.0010_forget_addresses_in_sessions").forget_typed_addresses
    forget(apps, connection.schema_editor())

    assert not Session.objects.filter(pk=only_address.session_key).exists()
    assert SessionStore(address_and_more.session_key).load() == {"_auth_user_id": "7"}
    assert Session.objects.get(pk=other.session_key).session_data == untouched
    assert not any("example.org" in str(SessionStore().decode(data))
                   for data in Session.objects.values_list("session_data", flat=True))
