"""Every main page, signed in as each role, in English and in Arabic, at tablet size:

* axe-core finds no ``serious`` or ``critical`` violation;
* the page says its language and direction (``lang``/``dir`` on <html>);
* everything it transfers (HTML, CSS, JS, images, redirects) stays under 150 KB;
* no request leaves the Haven server, no CSP violation, no JavaScript error;
* a screenshot at 768×1024 and at 1024×768 lands in test-output/screenshots/ for people to
  look at. Figures are printed (run with ``-s``) and written to
  test-output/page-report-<locale>-<role>.txt.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from app.core.extensions import db
from app.models import utcnow
from tests import factories
from tests.browser.support import (
    PAGE_BUDGET_BYTES,
    ROOT,
    TABLET,
    TABLET_LANDSCAPE,
    Person,
    blocking,
    layout_shift,
    load_measured,
    person,
    run_axe,
    screenshot,
    sign_in,
    small_targets,
)

pytestmark = pytest.mark.browser

LOCALES = {"en": "en-US", "ar": "ar"}
PHONE = {"width": 390, "height": 844}
PHONE_PAGES = {"login", "home-provider", "provider-referrals", "provider-referral"}
MAX_LAYOUT_SHIFT = 0.1  # "good" cumulative layout shift (web.dev)
# Pages also shot at 1024×768 (the tablet turned): the caseworkers' and providers' own.
LANDSCAPE = {
    "login",
    "home-caseworker",
    "cases",
    "intake-consent",
    "intake-profile",
    "intake-needs",
    "case",
    "refer-choose",
    "refer-preview",
    "case-referred",
    "match-results",
    "provider-referrals",
    "provider-referral",
}


@pytest.fixture(scope="module")
def people(live: Any, world: Any) -> dict[str, Any]:
    """A user of every role (TOTP enrolled) and an open case of the caseworkers' NGO whose
    survivor reported danger on the hotline (so the home pages and the case page show the
    report and its acknowledge button)."""

    def build() -> dict[str, Any]:
        from app.models import Area, Organization, Service

        ngo = db.session.get(Organization, world.ngo_id)
        area = db.session.get(Area, world.area_id)
        cases = {
            locale: factories.make_case(
                ngo, alias="Rosa", area=area, needs={"shelter": "immediate", "legal": "soon"},
                danger_reported_at=utcnow(),
            ).id
            for locale in LOCALES
        }
        # An intake left after the consent step (shown on the home page and its own tab).
        from tests.test_drafts import make_draft

        drafts = {locale: make_draft(ngo, at=utcnow()).id for locale in LOCALES}
        operator = factories.make_org("operator", name="Haven operator")
        provider_org = db.session.get(Organization, world.provider_org_id)
        # A referral waiting in the provider's portal (another case of the NGO's), so that
        # the provider's pages do not depend on the caseworker's test having run first.
        service = db.session.get(Service, world.service_id)
        for _locale in LOCALES:
            factories.make_referral(
                factories.make_case(ngo, alias="Ana", area=area, needs={"shelter": "immediate"}),
                service,
            )
        return {
            "case_ids": cases,
            "draft_ids": drafts,
            "users": {
                locale: {
                    "caseworker": person(factories.make_user("caseworker", ngo, totp=True)),
                    "supervisor": person(factories.make_user("supervisor", ngo)),
                    "provider": person(factories.make_user("provider", provider_org, totp=True)),
                    "admin": person(factories.make_user("admin", operator)),
                    # No second factor yet, in an NGO that requires one: enrolment first.
                    "enrolling": person(factories.make_user("caseworker", ngo, totp=False)),
                }
                for locale in LOCALES
            },
        }

    return live.seed(build)  # type: ignore[no-any-return]


def _then(page: Any, path: str | None, fill: Callable[[], Any], act: Callable[[], Any]) -> Any:
    """A page reached by an action (a form post, a tap): go to ``path`` and ``fill`` first
    (not measured), then ``act`` (measured)."""

    def measured() -> None:
        with page.expect_navigation():
            act()

    def prepare() -> Callable[[], None]:
        if path:
            page.goto(path)
        fill()
        return measured

    return prepare


def _post(page: Any, path: str | None, fill: Callable[[], Any], form: str) -> Any:
    return _then(page, path, fill, lambda: page.locator(f"{form} [type=submit]").first.click())


def pages_for(
    role: str, world: Any, case_id: int, page: Any, draft_id: int = 0
) -> list[tuple[str, Any]]:
    common = [("language", "/auth/language"), ("password", "/auth/password")]
    if role == "caseworker":

        def criteria() -> None:
            page.check("input[name=categories][value=shelter]")
            page.select_option("#area_id", str(world.area_id))

        choose = f"/referrals/cases/{case_id}/new"
        return [
            ("home-caseworker", "/"),
            ("cases", "/cases/"),
            ("cases-drafts", "/cases/?tab=drafts"),
            ("cases-search", _post(page, "/cases/", lambda: page.fill("#q", "a"),
                                   "main form[role=search]")),
            ("case-discard", f"/cases/{draft_id}/discard"),
            ("intake-consent", "/cases/new"),
            ("intake-profile", f"/cases/{case_id}/profile"),
            ("intake-needs", f"/cases/{case_id}/needs"),
            ("case", f"/cases/{case_id}"),
            ("case-consent", f"/cases/{case_id}/consent"),
            ("case-export", f"/cases/{case_id}/export"),
            ("case-erase", f"/cases/{case_id}/erase"),
            ("intake-anonymous", "/cases/anonymous"),
            ("directory", "/directory/"),
            ("service", f"/directory/services/{world.service_id}"),
            ("match", "/directory/match"),
            ("match-results", _post(page, "/directory/match", criteria, "main form.match-form")),
            ("refer-choose", choose),
            (
                "refer-preview",
                _post(
                    page,
                    choose,
                    lambda: page.check(f"input[name=services][value='{world.service_id}']"),
                    "main form[action$='/preview']",
                ),
            ),
            (
                "case-referred",
                _post(
                    page,
                    None,
                    lambda: page.check(f"input[name=method_{world.provider_org_id}][value=verbal]"),
                    "main form.intake-form",
                ),
            ),
            ("case-export-referred", f"/cases/{case_id}/export"),
            ("referrals-waiting", "/referrals/"),
            *common,
        ]
    if role == "supervisor":
        return [
            ("home-supervisor", "/"),
            ("audit-supervisor", "/admin/audit"),
            ("figures", "/reports/"),
        ]
    if role == "provider":
        return [
            ("home-provider", "/"),
            ("provider-referrals", "/provider/"),
            (
                "provider-referral",
                _then(
                    page,
                    "/provider/",
                    lambda: None,
                    lambda: page.locator(".portal-item").first.click(),
                ),
            ),
            ("service-edit", f"/directory/services/{world.service_id}/edit"),
        ]
    return [
        ("home-admin", "/"),
        ("users", "/admin/users"),
        ("organizations", "/admin/organizations"),
        ("organization-settings", f"/admin/organizations/{world.ngo_id}"),
        ("areas", "/directory/areas"),
        ("service-new", "/directory/services/new"),
        ("audit", "/admin/audit"),
        ("figures-admin", "/reports/"),
    ]


# What check_page asks of the DOM, in one round trip to the browser instead of seven.
_PAGE_FACTS_JS = """() => {
  const exit = document.querySelectorAll('[data-quick-exit]');
  let box = null;
  if (exit.length === 1) {
    const r = exit[0].getBoundingClientRect();
    if (r.width > 0 && r.height > 0) box = {y: r.top, height: r.height};  // in the viewport
  }
  return {
    exit: box,
    signed_in: document.querySelector("form[action='/auth/logout']") !== null,
    idle_lock: document.querySelector('body[data-idle-seconds][data-lock-url]') !== null,
    number_without_pad: document.querySelectorAll(
      'input[type=number]:not([inputmode=numeric])').length,
    phone_not_tel: document.querySelectorAll('input[name*=phone]:not([type=tel])').length,
    lang: document.documentElement.lang,
    dir: document.documentElement.dir,
  };
}"""


def check_page(
    page: Any,
    name: str,
    target: Any,
    locale: str,
    report: list[str],
    failures: list[str],
    landscape: bool = True,
) -> None:
    weight = load_measured(page, target)
    shift = layout_shift(page)
    if shift > MAX_LAYOUT_SHIFT:
        failures.append(f"{name} [{locale}]: layout shift {shift:.3f} while loading")
    facts = page.evaluate(_PAGE_FACTS_JS)
    exit_box = facts["exit"]
    if not exit_box or exit_box["y"] < 0 or exit_box["y"] + exit_box["height"] > 200:
        failures.append(f"{name} [{locale}]: quick exit not at the top of the screen")
    if facts["signed_in"] and not facts["idle_lock"]:
        failures.append(f"{name} [{locale}]: no idle lock on a signed-in page")
    # The on-screen keyboard fits the field: a number pad for numbers, a phone pad for phones.
    if facts["number_without_pad"]:
        failures.append(f"{name} [{locale}]: a number field without inputmode=numeric")
    if facts["phone_not_tel"]:
        failures.append(f"{name} [{locale}]: a phone field that is not type=tel")
    lang, direction = facts["lang"], facts["dir"]
    expected_dir = "rtl" if locale == "ar" else "ltr"
    if (lang, direction) != (locale, expected_dir):
        failures.append(f"{name}: <html lang={lang!r} dir={direction!r}>")
    if weight.total > PAGE_BUDGET_BYTES:
        failures.append(f"{name}: {weight.total} bytes transferred (budget {PAGE_BUDGET_BYTES})")
    shot = screenshot(page, f"{name}-{locale}-768x1024")
    if landscape:
        page.set_viewport_size(TABLET_LANDSCAPE)
        screenshot(page, f"{name}-{locale}-1024x768")
        page.set_viewport_size(TABLET)
    if name in PHONE_PAGES:
        # Providers answer on their phones too.
        page.set_viewport_size(PHONE)
        screenshot(page, f"{name}-{locale}-390x844")
        failures.extend(f"{name} [{locale}] on a phone: tap target under 44 px: {target}"
                        for target in small_targets(page))
        page.set_viewport_size(TABLET)
    violations = run_axe(page)
    failures.extend(f"{name} [{locale}]: tap target under 44 px: {target}"
                    for target in small_targets(page))
    failures.extend(
        f"{name} [{locale}]: axe {v['impact']} {v['id']}: {v['help']} "
        f"({v['count']}x, e.g. {v['targets']})"
        for v in blocking(violations)
    )
    others = ", ".join(f"{v['id']}({v['impact']})" for v in violations) or "none"
    kinds = " ".join(f"{k}={n}" for k, n in sorted(weight.by_type.items()))
    report.append(
        f"{name:18} {weight.total / 1024:6.1f} KB  ({weight.requests} requests: {kinds})"
        f"  CLS {shift:.3f}"
        f"  axe: {others}  [{os.path.basename(shot)}]"
    )


GROUPS = ("anonymous", "caseworker", "provider", "supervisor", "admin")


def check_anonymous_pages(
    contexts: Any, people: dict[str, Any], locale: str, report: list[str], failures: list[str]
) -> None:
    """Sign-in, the second step, TOTP enrolment and the neutral quick-exit page."""
    page = contexts.new(locale=LOCALES[locale]).new_page()
    check_page(page, "login", "/auth/login", locale, report, failures, landscape=True)
    who: Person = people["users"][locale]["caseworker"]
    page.fill("#username", who.username)
    page.fill("#password", factories.PASSWORD)
    page.locator("main form [type=submit]").click()
    page.wait_for_url("**/auth/verify")
    check_page(page, "totp", "/auth/verify", locale, report, failures, landscape=False)
    page.context.close()
    page = contexts.new(locale=LOCALES[locale]).new_page()
    page.goto("/auth/login")
    page.fill("#username", people["users"][locale]["enrolling"].username)
    page.fill("#password", factories.PASSWORD)
    page.locator("main form [type=submit]").click()
    page.wait_for_url("**/auth/enroll")
    check_page(page, "totp-enroll", "/auth/enroll", locale, report, failures, landscape=False)
    page.context.close()

    page = contexts.new(locale=LOCALES[locale]).new_page()
    weight = load_measured(page, "/leave")
    report.append(f"{'leave':18} {weight.total / 1024:6.1f} KB  (neutral page, lang=en by design)")
    screenshot(page, f"leave-{locale}-768x1024")
    failures.extend(f"leave [{locale}]: axe {v['impact']} {v['id']}: {v['help']}"
                    for v in blocking(run_axe(page)))
    page.context.close()


# One test per locale and role (not one per locale): each is 5-30 s in a browser, and
# pytest-xdist can then share them out between its workers.
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("locale", list(LOCALES))
def test_main_pages(
    contexts: Any, live: Any, world: Any, people: dict[str, Any], locale: str, group: str
) -> None:
    report: list[str] = []
    failures: list[str] = []
    if group == "anonymous":
        check_anonymous_pages(contexts, people, locale, report, failures)
        expected = 4
    else:
        page = contexts.new(locale=LOCALES[locale]).new_page()
        sign_in(page, people["users"][locale][group])
        pages = pages_for(
            group, world, people["case_ids"][locale], page, people["draft_ids"][locale]
        )
        for name, target in pages:
            if callable(target):
                target = target()  # prepare (fill a form): not part of the weight
            check_page(page, name, target, locale, report, failures, name in LANDSCAPE)
        page.context.close()
        expected = len(pages)

    out = os.path.join(ROOT, "test-output", f"page-report-{locale}-{group}.txt")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("\n".join(report) + "\n")
    print(f"\n[{locale}, {group}] page weights and axe results:\n" + "\n".join(report))
    assert len(report) == expected, "a page was left out of the report"
    contexts.recorder.check()
    assert not failures, "\n".join(failures)
