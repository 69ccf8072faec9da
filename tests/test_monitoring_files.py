"""The monitoring an operator loads: Prometheus's alert rules and their unit tests, the example scrape
configuration and the Grafana dashboard. Prometheus's own promtool checks them; every metric they use is on
the app's real /metrics page; every rule says how bad it is and points at its section of the runbook."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils import timezone
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from alerts.models import EspState
from questions.models import Source
from tests.conftest import REQUIRE_SERVICES, ROOT

PROMETHEUS = ROOT / "config" / "prometheus"
RULES = PROMETHEUS / "rules.yml"
RULE_TESTS = PROMETHEUS / "rules_test.yml"
DASHBOARD = ROOT / "config" / "grafana" / "dashboard.json"
RUNBOOK = ROOT / "docs" / "operations.md"
TOKEN = "scrape-" + "m" * 32
# Series Prometheus makes itself, not the app.
FROM_PROMETHEUS = {"up"}


@pytest.fixture
def promtool() -> str:
    """Debian's prometheus package; the check is skipped without it, except in CI, where it must run."""
    path = shutil.which("promtool")
    if path is None:
        message = "needs promtool (apt-get install prometheus)"
        if REQUIRE_SERVICES:
            pytest.fail(message + " but REQUIRE_SERVICES=1")
        pytest.skip(message)
    return path


def run(promtool: str, *arguments: str, cwd=PROMETHEUS) -> str:
    result = subprocess.run([promtool, *arguments], cwd=cwd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# Reading the files. PyYAML is no dependency of the project: this reads the plain layout rules.yml keeps
# (each key on a line of its own, long text as a folded block), and promtool checks that Prometheus reads it so.


def rules() -> list[dict[str, str]]:
    """Each alert rule as its keys (alert, expr, for, severity, summary, description, runbook_url) and text."""
    found: list[dict[str, str]] = []
    lines = RULES.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = re.match(r"^(\s*)(?:- )?([a-z_]+):\s*(.*)$", lines[i])
        i += 1
        if not line:
            continue
        indent, key, value = len(line.group(1)), line.group(2), line.group(3)
        if value in (">-", ">", "|", "|-"):
            text = []
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > indent):
                text.append(lines[i].strip())
                i += 1
            value = " ".join(filter(None, text))
        if len(value) > 1 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key == "alert":
            found.append({})
        if found:
            found[-1][key] = value
    return found


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict) -> list[dict]:
    """Every panel, those inside collapsed rows too."""
    return [p for top in board["panels"] for p in [top, *top.get("panels", [])]]


def dashboard_expressions() -> list[str]:
    # Grafana's interval variable, as Prometheus would get it.
    return [t["expr"].replace("$__rate_interval", "5m") for p in panels(dashboard()) for t in p.get("targets", [])]


def metric_names(expression: str) -> set[str]:
    """The series names a PromQL expression reads: what is left once strings, label matchers, ranges, label
    lists and offsets are taken out, leaving out functions (a name before a parenthesis) and keywords."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expression)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+\w+", " ", text)
    names = set(re.findall(r"\b[a-zA-Z_:][\w:]*\b(?!\s*\()", text))
    return names - {"and", "or", "unless", "bool", "inf", "nan"}


def slug(heading: str) -> str:
    """A heading's anchor, as GitHub and most Markdown renderers make it."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_anchors() -> set[str]:
    return {slug(line.lstrip("#")) for line in RUNBOOK.read_text().splitlines() if line.startswith("#")}


# promtool's checks.


def test_the_rules_load_and_pass_their_unit_tests(promtool):
    assert f"SUCCESS: {len(rules())} rules found" in run(promtool, "check", "rules", RULES.name)
    assert "SUCCESS" in run(promtool, "test", "rules", RULE_TESTS.name)


def test_the_example_configuration_is_valid_and_scrapes_the_job_the_rules_name(promtool):
    run(promtool, "check", "config", "prometheus.yml")

    assert "job_name: written-question-alerts" in (PROMETHEUS / "prometheus.yml").read_text()
    about_the_scrape = [rule["expr"] for rule in rules() if "up" in metric_names(rule["expr"])]
    assert about_the_scrape and all('job="written-question-alerts"' in e for e in about_the_scrape)


def test_every_dashboard_query_is_valid_promql(promtool, tmp_path):
    # promtool has no query checker of its own: each query becomes a recording rule, which it parses.
    recorded = [f"      - record: dashboard_query_{n}\n        expr: {json.dumps(e)}\n"
                for n, e in enumerate(dashboard_expressions())]
    (tmp_path / "dashboard.yml").write_text("groups:\n  - name: dashboard\n    rules:\n" + "".join(recorded))

    assert f"SUCCESS: {len(recorded)} rules found" in run(promtool, "check", "rules", "dashboard.yml", cwd=tmp_path)


# What each file holds.


def test_every_rule_says_how_bad_it_is_what_it_means_and_where_its_runbook_is():
    anchors = runbook_anchors()
    assert len(rules()) >= 12

    for rule in rules():
        name = rule["alert"]
        assert rule.get("severity") in ("page", "ticket"), name
        assert rule.get("summary") and rule.get("description"), name
        path, _, anchor = rule.get("runbook_url", "").partition("#")
        assert path == "docs/operations.md" and anchor == slug(name), name
        assert anchor in anchors, f"{name}: no heading '{name}' in docs/operations.md"


def test_every_rule_has_a_unit_test_where_it_fires_and_one_where_it_does_not():
    tested = re.findall(r"alertname: (\w+),?\s+exp_alerts:\s*(\S*)", RULE_TESTS.read_text())
    fires = {name for name, expected in tested if not expected.startswith("[]")}
    quiet = {name for name, expected in tested if expected.startswith("[]")}

    names = {rule["alert"] for rule in rules()}
    assert names - fires == set()
    assert names - quiet == set()
    assert (fires | quiet) - names == set()  # no test of a rule that is gone


def test_the_runbooks_own_links_lead_somewhere():
    links = set(re.findall(r"\]\(#([^)]+)\)", RUNBOOK.read_text()))

    assert links and links - runbook_anchors() == set()


def test_the_dashboard_shows_the_pipeline_from_polls_to_inboxes_and_the_web():
    board = dashboard()
    ids = [p["id"] for p in panels(board)]
    used = set().union(*map(metric_names, dashboard_expressions()))

    assert len(ids) == len(set(ids))
    assert board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == ("datasource", "prometheus")
    for panel in panels(board):
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert panel["targets"] and all(t["datasource"] == panel["datasource"] for t in panel["targets"])
    assert {
        "wqa_polls_total", "wqa_events_stored_total", "wqa_unmatched_events", "wqa_match_run_seconds_bucket",
        "wqa_matches_total", "wqa_deliveries", "wqa_oldest_due_delivery_age_seconds", "wqa_emails_total",
        "wqa_esp_errors_total", "wqa_esp_down", "wqa_canary_healthy", "wqa_canary_last_seconds",
        "wqa_digest_runs_late", "wqa_http_requests_total", "wqa_http_request_duration_seconds_bucket",
        "wqa_celery_queue_length",
    } <= used


# The metrics they use are the app's.


def count_something_in_every_metric() -> None:
    """A process's counters and histograms appear on the page once it has counted something: give each of the
    app's a sample (a label of "probe" where it takes labels), as a day's work would."""
    for module in list(sys.modules.values()):
        if not getattr(module, "__name__", "").startswith(("alerts.", "questions.", "config.")):
            continue
        for metric in list(vars(module).values()):
            if isinstance(metric, MetricWrapperBase) and metric._labelnames:
                metric.labels(*["probe"] * len(metric._labelnames))


def this_process_only(tmp_path) -> Path:
    """A metrics folder holding this process's files alone: what earlier processes left in the shared one
    must not stand in for a metric this code no longer has."""
    folder = tmp_path / "metrics"
    folder.mkdir()
    mine = f"{socket.gethostname().replace('_', '-')}-{os.getpid()}"
    for path in Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]).glob(f"*_{mine}.db"):
        shutil.copy(path, folder)
    return folder


@pytest.mark.django_db
def test_every_metric_the_rules_and_the_dashboard_use_is_on_the_metrics_page(client, settings, tmp_path):
    settings.METRICS_TOKEN = TOKEN
    settings.CANARY_EMAIL = "canary@example.org"  # its gauges are there only with a canary
    Source.objects.create(name="A feed", kind=Source.Kind.FEED, url="http://127.0.0.1:9/",
                          last_success_at=timezone.now())
    EspState.objects.create(esp="postmark")
    assert client.get("/").status_code == 200  # a page through the site's middleware and views
    count_something_in_every_metric()
    settings.METRICS_DIR = this_process_only(tmp_path)

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")

    assert response.status_code == 200
    exported = {sample.name for family in text_string_to_metric_families(response.content.decode())
                for sample in family.samples}
    used = set().union(*(metric_names(rule["expr"]) for rule in rules()),
                       *map(metric_names, dashboard_expressions())) - FROM_PROMETHEUS
    missing = sorted(used - exported)
    assert missing == [], f"used in config/prometheus or config/grafana but not on /metrics: {missing}"


def test_reading_names_out_of_promql():
    expression = ('histogram_quantile(0.95, sum by (job, le) (rate(wqa_x_bucket{route!~".*(a|b)"}[5m]))) > 2 '
                  'and on (job) wqa_y unless wqa_z offset 5m or absent(up{job="j"})')

    assert metric_names(expression) == {"wqa_x_bucket", "wqa_y", "wqa_z", "up"}
