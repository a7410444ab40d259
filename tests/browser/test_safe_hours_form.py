"""Safe hours on the tablet (issue 13): weekday boxes with shortcuts and time fields, typed
with the on-screen keyboard, in English and Arabic; a wrong row comes back with its error
(axe-clean); her rules are then shown next to her phone on the case page."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.extensions import db
from tests import factories
from tests.browser.support import blocking, run_axe, sign_in, small_targets, submit

pytestmark = pytest.mark.browser

BROWSER_LOCALE = {"en": "en-US", "ar": "ar"}


@pytest.mark.parametrize("ui", list(BROWSER_LOCALE))
def test_safe_hours_on_the_tablet(
    contexts: Any, live: Any, world: Any, new_caseworker: Any, ui: str
) -> None:
    def build() -> int:
        from app.models import Area, Organization

        area = db.session.get(Area, world.area_id)
        case = factories.make_case(db.session.get(Organization, world.ngo_id), area=area)
        case.no_voicemail = True
        return int(case.id)

    case_id = live.seed(build)
    page = contexts.new(locale=BROWSER_LOCALE[ui]).new_page()
    sign_in(page, new_caseworker())
    page.goto(f"/cases/{case_id}/profile")

    first = page.locator("[data-safe-window]").first
    shortcut = first.locator("button[data-days='0,1,2,3,4']")
    assert shortcut.is_visible(), "the weekday shortcut shows when JavaScript runs"
    shortcut.tap()
    days = first.locator("input[type=checkbox]")
    assert [days.nth(i).is_checked() for i in range(7)] == [True] * 5 + [False] * 2
    start, end = first.locator("input[type=time]").first, first.locator("input[type=time]").last
    start.fill("18:00")
    end.fill("21:30")
    # A second row with a day but no times comes back with its errors.
    second = page.locator("[data-safe-window]").nth(1)
    second.locator("input[type=checkbox]").nth(5).tap()
    page.fill("#timezone", "Europe/Paris")
    submit(page, "main form.intake-form")
    page.wait_for_load_state()
    assert page.locator("[data-safe-window] .error").count() == 2
    assert second.locator("input[aria-invalid=true]").count() == 2
    assert start.input_value() == "18:00", "what was typed is kept"
    assert not blocking(run_axe(page)), "the form with errors stays accessible"
    assert not small_targets(page)

    second.locator("input[type=checkbox]").nth(5).tap()  # untick: the row is empty again
    submit(page, "main form.intake-form")
    page.wait_for_url(f"**/cases/{case_id}/needs")
    page.goto(f"/cases/{case_id}")
    rules = page.locator(".contact-rules").first
    text = rules.inner_text()
    assert "Europe/Paris" in text
    assert ("Mon–Fri" in text and "6:00" in text) if ui == "en" else ("الاثنين" in text)
    assert rules.locator(".rule-stop").count() == 1  # no voicemail
    page.context.close()
