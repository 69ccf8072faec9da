"""Signing up for a search that matches too much, in a real browser: the warning beside the button, the
daily digest offered instead of "As it happens", and a narrower search that clears both, with axe-core on
the warning's page at a desktop's width and a phone's."""

from __future__ import annotations

import pytest

from tests.browser import browser_page, check_page

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE, DESKTOP = 375, 1280


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_a_broad_search_is_warned_about_before_signing_up_and_narrowing_it_clears_the_warning(
        live_server, busy_archive, width):
    with browser_page() as page:
        page.set_viewport_size({"width": width, "height": 812})
        page.goto(f"{live_server.url}/?q=government")
        page.get_by_role("link", name="Email me when new questions match this search").click()
        page.wait_for_load_state()

        broad = page.locator(".caution", has_text="This search is very broad")
        assert broad.is_visible()
        assert "It matches 36% of all the questions we hold (112 of 312)" in broad.inner_text()
        often = page.locator(".caution", has_text="“As it happens” could email you many times a day")
        assert "up to about 5 emails a day" in often.inner_text()
        assert "Daily digest: about 7 emails a week" in page.locator(".preview").inner_text()
        check_page(page, "volume-broad", width)

        page.get_by_label("Daily digest").check()
        page.get_by_role("button", name="Preview this search").click()
        page.wait_for_load_state()
        assert broad.is_visible() and often.count() == 0
        assert "Daily digest: about 7 emails a week (your choice)" in page.locator(".preview").inner_text()

        assert broad.get_by_role("link", name="How to search").get_attribute("href") == "/help/"

        page.get_by_label("Search", exact=True).fill("hedgehogs")
        page.get_by_role("button", name="Preview this search").click()
        page.wait_for_load_state()
        assert page.locator(".caution").count() == 0
        assert "Daily digest: about 3 emails a week (your choice)" in page.locator(".preview").inner_text()
