"""Every setting the code reads from the environment is in README's configuration table, so an operator can
find each one without reading the code."""

from __future__ import annotations

import re

from tests.conftest import ROOT

# `env.int("NAME", ...)`, `env.db("NAME")`, `env("NAME")` and `os.environ.get("NAME")`, wherever the project reads one.
READS = re.compile(r'\b(?:(?:env|Env\(\))(?:\.\w+)?|os\.environ\.get|os\.getenv)\(\s*"([A-Z][A-Z0-9_]+)"')
# The first cell of a row of README's tables: one name or several, each in backticks.
ROW = re.compile(r"^\| ((?:`[A-Z][A-Z0-9_]+`(?:, )?)+) \|", re.MULTILINE)
# Read by the libraries or the shell rather than documented as ours.
NOT_OURS = {"DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE"}


def settings_read() -> set[str]:
    names: set[str] = set()
    for path in [*ROOT.glob("config/*.py"), *ROOT.glob("alerts/**/*.py"), *ROOT.glob("questions/**/*.py")]:
        names |= set(READS.findall(path.read_text(encoding="utf-8")))
    return names - NOT_OURS


def settings_documented() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    return {name for cell in ROW.findall(readme) for name in re.findall(r"`([A-Z0-9_]+)`", cell)}


def test_the_reader_finds_the_settings_it_should():
    # The pattern must see the kinds of reads the settings module makes, or the test below proves nothing.
    found = settings_read()
    assert {"DATABASE_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG", "REDIS_TIMEOUT"} <= found
    assert len(found) > 60


def test_every_setting_read_is_in_the_readme_table():
    missing = sorted(settings_read() - settings_documented())
    assert missing == [], f"settings read but not in README's table: {missing}"
