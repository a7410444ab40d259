"""The idle lock warns before locking (issue 16): a minute before, with a 'Stay signed in'
button that keeps the session, reachable by keyboard (it takes the focus), announced through
a live region, its words from the page (gettext, not the script), a tap target of at least
44 px, axe clean. Playwright's fake clock runs the page's timers: no real waiting."""

from __future__ import annotations

from typing import Any

from tests.browser.support import blocking, run_axe, sign_in, small_targets

IDLE = 15 * 60  # the main test server's HAVEN_IDLE_MINUTES default
WARN = 60


def _open_case_list(contexts: Any, new_caseworker: Any, locale: str = "en-US") -> Any:
    page = contexts.new(locale=locale).new_page()
    page.clock.install()
    sign_in(page, new_caseworker())
    page.goto("/cases/")
    assert page.locator("body").get_attribute("data-idle-warn-seconds") == str(WARN)
    return page


def test_warning_a_minute_before_the_lock_and_stay_signed_in(
    contexts: Any, live: Any, new_caseworker: Any
) -> None:
    page = _open_case_list(contexts, new_caseworker)
    warning = page.locator("#idle-warning")
    live_region = page.locator("#idle-live")
    assert warning.is_hidden() and live_region.inner_text() == ""
    assert live_region.get_attribute("aria-live") == "assertive"

    page.clock.run_for((IDLE - WARN - 1) * 1000)
    assert warning.is_hidden(), "warned too early"
    page.clock.run_for(2000)
    assert warning.is_visible(), "no warning a minute before the lock"
    assert "lock in 60 seconds" in live_region.inner_text()
    stay = page.locator("#idle-stay")
    assert stay.inner_text() == "Stay signed in"
    assert page.evaluate("() => document.activeElement.id") == "idle-stay"
    box = stay.bounding_box()
    assert box and box["height"] >= 44 and box["width"] >= 44
    assert small_targets(page) == []
    assert blocking(run_axe(page)) == []

    with page.expect_request("**/session/alive") as alive:
        page.keyboard.press("Enter")  # the keyboard alone keeps the session
    assert alive.value.method == "POST"
    assert warning.is_hidden() and live_region.inner_text() == ""
    page.clock.run_for((WARN + 5) * 1000)
    assert page.url.endswith("/cases/"), "locked after 'Stay signed in'"

    page.clock.run_for((IDLE - WARN - (WARN + 5) + 1) * 1000)  # the timer started at Enter
    assert warning.is_visible(), "no warning before the second lock"
    with page.expect_navigation(url="**/leave?locked=1"):
        page.clock.run_for(WARN * 1000)
    assert page.title() == "Weather"
    contexts.recorder.check()

