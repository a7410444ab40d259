"""The caseworker's day (issue 16), in a browser at 768×1024, in English and in Arabic.

A hotline case reports danger and tops the supervisor's queue → the supervisor assigns it →
the caseworker records a follow-up → refers her to a shelter, which declines → the declined
referral is in her queue → re-referred from there to the next match → accepted → no arrival:
escalated to the supervisor's queue → arrived → completed → the case is closed with a reason.
Every page on the way is checked: axe (no serious or critical violation), tap targets of at
least 44 px, at most 150 KB transferred.

The server runs on real time: "no arrival for three days" is made by moving the acceptance
time of the referral back in the database (the queue's thresholds themselves are tested on an
injected clock in tests/test_workday.py).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from app.core.extensions import db
from tests import factories
from tests.browser.support import (
    PAGE_BUDGET_BYTES,
    blocking,
    load_measured,
    person,
    run_axe,
    screenshot,
    sign_in,
    small_targets,
    submit,
)

pytestmark = pytest.mark.browser

BROWSER_LOCALE = {"en": "en-US", "ar": "ar"}


class Checks:
    """Axe, tap targets and page weight of every page the journey opens."""

    def __init__(self, ui: str) -> None:
        self.ui = ui
        self.failures: list[str] = []
        self.pages = 0
        self.weights: list[str] = []

    def goto(self, page: Any, url: str, name: str) -> None:
        weight = load_measured(page, url)
        self.check(page, name, weight.total)

    def after(self, page: Any, action: Any, name: str) -> None:
        weight = load_measured(page, action)
        self.check(page, name, weight.total)

    def check(self, page: Any, name: str, total: int) -> None:
        self.pages += 1
        self.weights.append(f"{name} [{self.ui}] {total / 1024:.1f} KB")
        if total > PAGE_BUDGET_BYTES:
            self.failures.append(f"{name} [{self.ui}]: {total} bytes")
        for target in small_targets(page):
            self.failures.append(f"{name} [{self.ui}]: tap target under 44 px: {target}")
        for v in blocking(run_axe(page)):
            self.failures.append(f"{name} [{self.ui}]: axe {v['impact']} {v['id']}: {v['help']} "
                                 f"{v['targets']}")
        screenshot(page, f"day-{name}-{self.ui}")


def _seed_day(live: Any, world: Any, tag: str) -> dict[str, Any]:
    """A hotline case in danger (store and share consents, a shelter need, no caseworker
    yet) and a second shelter in the area with its own provider user."""

    def build() -> dict[str, Any]:
        from app.models import Area, Organization
        from app.models.base import utcnow

        ngo = db.session.get(Organization, world.ngo_id)
        area = db.session.get(Area, world.area_id)
        # As the hotline leaves it: consent by SMS, no profile yet, danger reported.
        case = factories.make_case(ngo, channel="sms", alias=None, phone=None, note=None,
                                   area=area, needs={"shelter": "immediate"},
                                   danger_reported_at=utcnow())
        case.profile_completed_at = None
        other_org = factories.make_org("provider", name=f"Second Harbour {tag}")
        second = factories.make_service(
            other_org, category="shelter", name=f"Harbour House {tag}", areas=[area],
            languages="en,es,ar", beds_total=20, beds_available=10,
        )
        return {"case_id": case.id, "reference": case.reference, "second_service": second.id,
                "second_org": other_org.id}

    return live.seed(build)


def _second_provider(live: Any, org_id: int, ui: str) -> Any:
    """A fresh user of the second shelter's organization (a TOTP code counts once per user)."""

    def build() -> Any:
        from app.models import Organization

        user = factories.make_user("provider", db.session.get(Organization, org_id), totp=True)
        user.locale = ui
        return person(user)

    return live.seed(build)


def _referral(live: Any, case_id: int, service_id: int) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        from app.models import Referral

        r = db.session.scalar(select(Referral).where(Referral.case_id == case_id,
                                                     Referral.service_id == service_id)
                              .order_by(Referral.id.desc()))
        assert r is not None
        return {"id": r.id, "code": r.code, "status": r.status}

    return live.seed(read)


def _accepted_days_ago(live: Any, referral_id: int, days: int) -> None:
    def shift() -> None:
        from app.models import Referral

        r = db.session.get(Referral, referral_id)
        assert r is not None and r.responded_at is not None
        r.responded_at = r.responded_at - timedelta(days=days)

    live.seed(shift)


def _case(live: Any, case_id: int) -> dict[str, Any]:
    def read() -> dict[str, Any]:
        from app.models import Case, FollowUp

        c = db.session.get(Case, case_id)
        assert c is not None
        return {"assigned_to_id": c.assigned_to_id, "status": c.status,
                "close_reason": c.close_reason,
                "follow_ups": [(f.kind, f.outcome) for f in
                               db.session.scalars(select(FollowUp).where(
                                   FollowUp.case_id == case_id))]}

    return live.seed(read)


def _provider_answers(contexts: Any, ui: str, who: Any, code: str, act: Any,
                      tab: str = "waiting") -> None:
    page = contexts.new(locale=BROWSER_LOCALE[ui]).new_page()
    sign_in(page, who)
    page.goto(f"/provider/?tab={tab}")
    page.locator(".portal-item", has_text=code).tap()
    page.wait_for_url(re.compile(r".*/provider/referrals/\d+$"))
    act(page)
    page.context.close()


def _decline(page: Any) -> None:
    page.locator("input[name=reason][value=full]").tap()
    with page.expect_navigation():
        page.locator("form[action$='/decline'] [type=submit]").tap()
    assert page.locator(".badge.referral-declined").count() == 1


def _accept(page: Any) -> None:
    with page.expect_navigation():
        page.locator("form[action$='/accept'] [type=submit]").tap()
    assert page.locator(".badge.referral-accepted").count() == 1


def _outcome(value: str) -> Any:
    def act(page: Any) -> None:
        page.locator(f"input[name=outcome][value={value}]").tap()
        with page.expect_navigation():
            page.locator("form[action$='/outcome'] [type=submit]").tap()
        assert page.locator(f".badge.referral-{value}").count() == 1

    return act


def _navigating(page: Any, act: Any) -> None:
    with page.expect_navigation():
        act()


def _send_referral(page: Any, case_id: int, service_id: int, org_id: int) -> None:
    page.locator(f"input[name=services][value='{service_id}']").tap()
    submit(page, "main form")
    page.wait_for_url(f"**/referrals/cases/{case_id}/preview")
    page.locator(f"input[name=method_{org_id}][value=verbal]").tap()
    submit(page, "main form.intake-form")
    page.wait_for_url(f"**/cases/{case_id}")


@pytest.mark.parametrize("ui", ["en", "ar"])
def test_a_day_of_casework(contexts: Any, live: Any, world: Any, new_caseworker: Any,
                           new_provider: Any, ui: str) -> None:
    day = _seed_day(live, world, ui)
    case_id, reference = day["case_id"], day["reference"]
    checks = Checks(ui)
    supervisor = new_caseworker(locale=ui, role="supervisor")
    caseworker = new_caseworker(locale=ui)

    # The hotline case reports danger: at the top of the supervisor's home page.
    boss = contexts.new(locale=BROWSER_LOCALE[ui]).new_page()
    sign_in(boss, supervisor)
    checks.goto(boss, "/", "supervisor-home")
    # Danger reports come first on the page, before the rest of the queue.
    top = boss.locator("main section.danger-alerts, main section.work-queue").first
    assert top.get_attribute("class") == "danger-alerts" and reference in top.inner_text()
    assert boss.locator("nav .count").count() == 1

    # The supervisor assigns it to the caseworker.
    checks.goto(boss, f"/cases/{case_id}", "case-unassigned")
    boss.select_option("#assignee", str(caseworker.id))
    with boss.expect_navigation():
        boss.locator("form.assign-form [type=submit]").tap()
    assert _case(live, case_id)["assigned_to_id"] == caseworker.id

    # The caseworker records a follow-up.
    page = contexts.new(locale=BROWSER_LOCALE[ui]).new_page()
    sign_in(page, caseworker)
    checks.goto(page, "/", "caseworker-home")
    assert reference in page.locator("main").inner_text()
    checks.goto(page, f"/cases/{case_id}/follow-up", "follow-up")
    assert page.locator("#note").get_attribute("maxlength") == "280"
    page.locator("input[name=kind][value=call]").tap()
    page.select_option("#outcome", "reached")
    page.fill("#note", "Call back after six")
    checks.after(page, lambda: submit(page, "main form"), "case-with-follow-up")
    assert page.url.endswith(f"/cases/{case_id}")
    assert "Call back after six" in page.locator("main").inner_text()
    assert _case(live, case_id)["follow_ups"] == [("call", "reached")]

    # She refers her to the shelter, which declines.
    page.goto(f"/referrals/cases/{case_id}/new")
    _send_referral(page, case_id, world.service_id, world.provider_org_id)
    first_referral = _referral(live, case_id, world.service_id)
    _provider_answers(contexts, ui, new_provider(locale=ui), first_referral["code"], _decline)

    # The declined referral is in her queue; re-referred from there to the next match.
    checks.goto(page, "/", "home-declined")
    item = page.locator("li.queue-declined", has_text=reference)
    assert item.count() == 1
    checks.after(page, lambda: _navigating(page, item.locator("a.button").tap), "re-refer")
    page.wait_for_url(f"**/referrals/cases/{case_id}/new")
    _send_referral(page, case_id, day["second_service"], day["second_org"])
    page.goto("/")
    assert page.locator("li.queue-declined").count() == 0

    # Accepted; no arrival for three days: escalated, on the supervisor's queue too.
    second = _referral(live, case_id, day["second_service"])
    _provider_answers(contexts, ui, _second_provider(live, day["second_org"], ui),
                      second["code"], _accept)
    _accepted_days_ago(live, second["id"], 3)
    checks.goto(boss, "/", "supervisor-escalated")
    assert boss.locator("li.queue-escalated", has_text=reference).count() == 1
    page.goto("/")
    assert page.locator("li.queue-escalated", has_text=reference).count() == 1

    # Arrived, then completed: nothing left to chase.
    for outcome in ("arrived", "completed"):
        _provider_answers(contexts, ui, _second_provider(live, day["second_org"], ui),
                          second["code"], _outcome(outcome), tab="active")
    page.goto("/")
    assert page.locator("li.queue-escalated, li.queue-no_arrival").count() == 0

    # The case is closed with a reason, after confirmation.
    checks.goto(page, f"/cases/{case_id}/close", "close")
    checks.after(page, lambda: submit(page, "main form"), "close-refused")
    assert page.locator(".error").count() >= 1  # no reason chosen: asked again
    assert _case(live, case_id)["status"] == "open"
    page.locator("input[name=reason][value=goals_met]").tap()
    checks.after(page, lambda: submit(page, "main form"), "case-closed")
    assert page.url.endswith(f"/cases/{case_id}")
    stored = _case(live, case_id)
    assert (stored["status"], stored["close_reason"]) == ("closed", "goals_met")

    print("\n".join(checks.weights))  # shown with -s: the pages' weights
    assert checks.pages >= 10
    assert checks.failures == []
    contexts.recorder.check()
