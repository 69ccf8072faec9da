"""Headless Chromium from the distribution, driven by Playwright, with axe-core for accessibility."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@contextmanager
def browser_page():
    # Playwright's sync API runs an event loop in this thread; the ORM calls tests make around it are safe.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"), args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 900})
            yield page
        finally:
            browser.close()


@contextmanager
def browser_page_closing_connections():
    """`browser_page` for a test whose database work runs while Playwright's event loop does: those queries
    have connections of their own, closed at the end so that the test database can be dropped."""
    from django.db import connections

    with browser_page() as page:
        try:
            yield page
        finally:
            connections.close_all()


def axe_violations(page) -> list[dict]:
    """axe-core's violations of WCAG 2.2 AA (and best practice) on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": [
        "wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice"]}})
    return [{"id": v["id"], "help": v["help"], "nodes": [n["html"] for n in v["nodes"]][:3]}
            for v in results.response["violations"]]


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def check_page(page, name: str, width: int) -> None:
    """A screenshot, then: nothing wider than the window, and no axe violations."""
    screenshot(page, f"{name}-{width}")
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    inner_width = page.evaluate("window.innerWidth")
    assert scroll_width <= inner_width, f"{name} at {width}px is {scroll_width}px wide"
    assert axe_violations(page) == [], f"{name} at {width}px"
