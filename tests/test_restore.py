"""A backup restored as docs/operations.md says: pg_dump in the custom format, pg_restore into a fresh
database, migrate, and the site served from it shows what was there."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from urllib.parse import quote

import environ
import pytest
import requests
from django.db import connection
from django.utils import timezone

from alerts import tokens
from alerts.models import Subscriber, Subscription
from questions.models import Question
from questions.search import canonical, parse
from tests.conftest import ROOT, WebServer, database_url_for_tests

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def run(*command: str, env: dict[str, str] | None = None) -> str:
    # The password, where the server asks for one, for the tools given the server rather than a URL.
    env = dict(env or os.environ, PGPASSWORD=connection.settings_dict.get("PASSWORD") or "")
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def fresh_database():
    """The URL of a database that does not exist yet, named after the one the tests were given; dropped
    afterwards, whatever the test made of it."""
    given = environ.Env.db_url_config(os.environ["DATABASE_URL"])["NAME"]
    name = f"{given}_restored_{os.getpid()}"
    s = connection.settings_dict
    server = ["--host", s["HOST"] or "127.0.0.1", "--port", str(s["PORT"] or 5432), "--username", s["USER"]]
    run("dropdb", *server, "--if-exists", "--force", name)
    yield server, name, database_url_for_tests().rsplit("/", 1)[0] + "/" + name
    run("dropdb", *server, "--if-exists", "--force", name)


def test_a_dump_restored_into_a_fresh_database_serves_the_site(fresh_database, tmp_path):
    server, name, restored_url = fresh_database
    now = timezone.now()
    question = Question.objects.create(
        external_id="1900123", uin="HL4521", heading="Prison officers: recruitment in Wales",
        question_text="To ask His Majesty's Government how many prison officers were recruited in Wales.",
        asking_member_name="Baroness Example", date_tabled=dt.date(2026, 11, 20))
    question.refresh_search_text()
    question.save()
    ada = Subscriber.objects.create(email="ada@example.org", confirmed_at=now)
    Subscription.objects.create(subscriber=ada, query="prison officers", confirmed_at=now,
                                canonical_query=canonical(parse("prison officers")))
    dump = tmp_path / "alerts.dump"

    run("pg_dump", "-Fc", f"--dbname={database_url_for_tests()}", f"--file={dump}")
    run("createdb", *server, name)
    run("pg_restore", "--no-owner", "--exit-on-error", f"--dbname={restored_url}", str(dump))
    env = dict(os.environ, DATABASE_URL=restored_url, PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    # The dump is of this release: migrate finds nothing to do, and its tables are all there.
    assert "No migrations to apply." in run(sys.executable, "manage.py", "migrate", "--no-input", env=env)

    web = WebServer(env, tmp_path / "gunicorn.log")
    try:
        web.start()
        home = requests.get(web.url + "/", timeout=30)
        page = requests.get(web.url + question.get_absolute_url(), timeout=30)
        found = requests.get(web.url + "/?q=" + quote("prison officers"), timeout=30)
        manage = requests.get(web.url + f"/alerts/manage/{tokens.make(ada, tokens.MANAGE)}/", timeout=30)
    finally:
        web.stop()

    assert home.status_code == 200 and "Prison officers: recruitment in Wales" in home.text
    assert page.status_code == 200 and "Prison officers: recruitment in Wales" in page.text
    assert "HL4521" in page.text and "Baroness Example" in page.text
    # Its search index came back with it, and the subscriber with their alert.
    assert found.status_code == 200 and "Prison officers: recruitment in Wales" in found.text
    assert manage.status_code == 200 and "prison officers" in manage.text
