"""The focus indicator, met by keyboard on every focusable element of the public pages, stands out by 3:1 or more
(WCAG 2.2, 1.4.11 and 2.4.13) from what is around it and from the element itself, on a desktop and a phone."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core import mail
from django.core.management import call_command

from tests.browser import browser_page, check_page
from tests.conftest import FIXTURES

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE, DESKTOP = 375, 1280

# What the browser computes for the focused element: each ring of its indicator, and the colours it sits on and
# touches, read beside each side of the indicator (elementsFromPoint: what is painted there, however the element
# is positioned) and on the element itself.
FOCUSED = """() => {
  const element = document.activeElement;
  if (!element || element === document.body) return null;
  const rgba = text => {
    const m = /rgba?\\(([^)]*)\\)/.exec(text || "");
    if (!m) return null;
    const [r, g, b, a = 1] = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [r, g, b, a];
  };
  const opaqueBackground = node => {
    for (let n = node; n; n = n.parentElement) {
      const colour = rgba(getComputedStyle(n).backgroundColor);
      if (colour && colour[3] === 1) return colour;
    }
    return [255, 255, 255, 1];  // the canvas
  };
  const style = getComputedStyle(element);
  const rings = [];
  if (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2) rings.push(rgba(style.outlineColor));
  for (const shadow of style.boxShadow === "none" ? [] : style.boxShadow.split(/,(?![^(]*\\))/)) {
    const spread = shadow.replace(/rgba?\\([^)]*\\)/, "").trim().split(/\\s+/).map(parseFloat);
    if (spread.length >= 4 && spread[3] >= 2) rings.push(rgba(shadow));
  }
  const box = element.getBoundingClientRect();
  const reach = (parseFloat(style.outlineOffset) || 0) + (parseFloat(style.outlineWidth) || 0) + 3;
  const points = [[box.left - reach, box.top + box.height / 2], [box.right + reach, box.top + box.height / 2],
                  [box.left + box.width / 2, box.top - reach], [box.left + box.width / 2, box.bottom + reach]];
  const around = [];
  for (const [x, y] of points) {
    if (x < 0 || y < 0 || x >= innerWidth || y >= innerHeight) continue;
    const behind = document.elementsFromPoint(x, y).find(n => n !== element && !element.contains(n));
    if (behind) around.push(opaqueBackground(behind));
  }
  if (!around.length) around.push(opaqueBackground(element.parentElement));
  const own = [opaqueBackground(element)];
  if (parseFloat(style.borderTopWidth) >= 1) own.push(rgba(style.borderTopColor));
  return {name: (element.outerHTML || "").slice(0, 120), rings, around, own};
}"""


def luminance(colour: list[float]) -> float:
    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(value) for value in colour[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: list[float], b: list[float]) -> float:
    lighter, darker = sorted((luminance(a), luminance(b)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def check_focus(page, where: str) -> str:
    """The focused element's indicator: rings of solid colour, one of them apart from each colour around the
    element and on it. Returns what was focused."""
    focused = page.evaluate(FOCUSED)
    assert focused, f"{where}: nothing has the focus"
    name, rings = focused["name"], focused["rings"]
    assert rings and all(ring[3] == 1 for ring in rings), f"{where}: {name} shows {rings}"
    for colour in focused["around"] + focused["own"]:
        best = max(contrast(ring, colour) for ring in rings)
        assert best >= 3, f"{where}: {name}'s indicator {rings} is {best:.2f}:1 against {colour}"
    return name


def tab_through(page, where: str) -> int:
    """Tab from the top of the page to its end, checking each element the focus lands on; how many there were."""
    page.keyboard.press("Tab")
    first = check_focus(page, where)
    seen = [first]
    for _ in range(300):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement === document.body"):
            break
        name = check_focus(page, where)
        if name == first:
            break
        seen.append(name)
    return len(seen)


@pytest.fixture
def archive():
    call_command("import_questions", str(FIXTURES / "seed_questions.json"), stdout=StringIO())


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_the_focus_indicator_stands_out_on_every_element_of_every_page(live_server, archive, settings, width):
    settings.SITE_URL = live_server.url
    with browser_page() as page:
        page.set_viewport_size({"width": width, "height": 812})

        page.goto(f"{live_server.url}/?q=police")
        assert page.get_by_role("heading", level=2, name="Police: Artificial Intelligence").count() >= 1
        check_page(page, "focus-search", width)
        # The skip link, the header's links, the search form, the results' links, the footer.
        assert tab_through(page, f"search at {width}px") > 10
        check_page(page, "focus-search-tabbed", width)

        page.goto(f"{live_server.url}/questions/seed-1/")
        assert page.get_by_role("heading", level=1).inner_text() == "Police: Artificial Intelligence"
        assert tab_through(page, f"question at {width}px") > 5
        check_page(page, "focus-question", width)

        page.goto(f"{live_server.url}/alerts/new/?q=police")
        page.get_by_label("Your email address").fill("not an address")
        page.get_by_role("button", name="Email me a link to confirm").click()
        page.wait_for_load_state()
        # The error summary has the focus as the page loads, and shows it.
        assert page.evaluate("document.activeElement.className") == "error-summary"
        check_focus(page, f"signup's error summary at {width}px")
        check_page(page, "focus-signup-error", width)
        assert tab_through(page, f"signup with an error at {width}px") > 5
        check_page(page, "focus-signup-error-tabbed", width)

        page.get_by_label("Your email address").fill(f"focus-{width}@example.org")
        page.get_by_role("button", name="Email me a link to confirm").click()
        page.wait_for_load_state()
        confirm_url = re.search(r"(http://\S+/alerts/confirm/\S+)", mail.outbox[-1].body).group(1)
        page.goto(confirm_url)
        page.get_by_role("button", name="Confirm my alert").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "My alerts"
        assert tab_through(page, f"manage at {width}px") > 5
        check_page(page, "focus-manage", width)

