"""End-to-end journeys on a 768×1024 touch screen, in English and in Arabic.

A caseworker of an NGO that requires two-step sign-in signs in (password + TOTP), records
the survivor's consent in the survivor's own language (not the interface language), completes
the minimal profile and the needs, sees the services matching the case and sends a referral
with the survivor's release; the provider, in a second browser context, accepts it; the
caseworker sees the acceptance (and the survivor's text is queued in the survivor's language);
then one tap on quick exit. The idle lock is proven twice: the page's own timer (JavaScript)
and the server's idle timeout (JavaScript off). Every request of every journey is recorded:
anything that leaves the Haven server fails the test.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any

import pytest

from app.core.extensions import db
from tests.browser.support import SHORT_IDLE_SECONDS, html_lang_dir, sign_in, submit

pytestmark = pytest.mark.browser

# interface locale (the browser's Accept-Language) -> the survivor's language in the journey
JOURNEYS = {"en": "ar", "ar": "es"}
BROWSER_LOCALE = {"en": "en-US", "ar": "ar"}
REFERENCE = re.compile(r"[A-Z0-9]{3}-[A-Z0-9]{3}")


def _case_by_reference(live: Any, reference: str) -> Any:
    from sqlalchemy import select

    from app.models import Case

    with live.app.app_context():
        case = db.session.scalar(select(Case).where(Case.reference == reference))
        assert case is not None
        found = {
            "id": case.id,
            "language": case.language,
            "alias": case.alias,
            "phone": case.phone,
            "consent_languages": sorted({c.language for c in case.consents}),
            "granted": sorted(c.scope for c in case.consents if c.granted),
            "needs": {n.category: n.urgency for n in case.needs},
        }
        db.session.remove()
        return found


def _survivor_messages(live: Any, case_id: int) -> list[tuple[str, str]]:
    from sqlalchemy import select

    from app.models import Message

    with live.app.app_context():
        rows = db.session.scalars(
            select(Message).where(Message.case_id == case_id, Message.audience == "survivor")
        ).all()
        found = [(m.template_key, m.language) for m in rows]
        db.session.remove()
        return found


def assert_no_haven_data(page: Any, *secrets: str) -> None:
    """What is on screen now says nothing about the survivor or the case."""
    body = page.locator("body").inner_text()
    for secret in secrets:
        assert secret not in body, f"{secret!r} is still on screen at {page.url}"


@pytest.mark.parametrize("ui", list(JOURNEYS))
def test_caseworker_journey(
    contexts: Any, live: Any, world: Any, new_caseworker: Any, new_provider: Any, ui: str
) -> None:
    survivor_language = JOURNEYS[ui]
    context = contexts.new(locale=BROWSER_LOCALE[ui])
    page = context.new_page()

    # Sign in: password, then the code (the NGO requires two-step sign-in).
    caseworker = new_caseworker()
    sign_in(page, caseworker)
    assert page.url == live.url + "/"
    assert html_lang_dir(page) == (ui, "rtl" if ui == "ar" else "ltr")

    # Consent first, in the survivor's language; the interface keeps its own.
    page.locator("main a[href='/cases/new']").tap()
    page.wait_for_url("**/cases/new")
    page.select_option("#survivor-lang", survivor_language)
    page.locator("form.language-picker [type=submit]").tap()
    page.wait_for_url(f"**/cases/new?lang={survivor_language}")
    assert html_lang_dir(page) == (ui, "rtl" if ui == "ar" else "ltr")
    texts = page.locator(".consent-text")
    assert texts.count() >= 3
    for i in range(texts.count()):
        assert texts.nth(i).get_attribute("lang") == survivor_language
    assert texts.first.get_attribute("dir") == ("rtl" if survivor_language == "ar" else "ltr")
    progress = page.locator("[aria-label] .step[aria-current=step]")
    assert progress.count() == 1, "the intake shows which step of three this is"
    for scope in ("store", "contact_sms", "share_shelter"):
        page.locator(f"input[name=scope_{scope}][value=yes]").tap()
    page.locator("input[name=method][value=verbal]").tap()
    submit(page, "main form.intake-form")

    # Minimal profile: the survivor's language comes along; input types suit the keyboard.
    page.wait_for_url(re.compile(r".*/cases/\d+/profile$"))
    assert page.locator(".step[aria-current=step]").count() == 1
    assert page.locator("#language").input_value() == survivor_language
    assert page.locator("#phone").get_attribute("type") == "tel"
    assert page.locator("#children_accompanying").get_attribute("inputmode") == "numeric"
    reference = REFERENCE.search(page.locator("main").inner_text())
    assert reference, "the profile step shows the case reference"
    page.fill("#alias", "Amal")
    page.fill("#phone", "+1 415 555 0134")
    page.select_option("#age_band", "25_34")
    page.select_option("#area_id", str(world.area_id))
    submit(page, "main form.intake-form")

    # Needs.
    page.wait_for_url(re.compile(r".*/cases/\d+/needs$"))
    page.select_option("#need_shelter", "immediate")
    submit(page, "main form.intake-form")
    page.wait_for_url(re.compile(r".*/cases/\d+$"))
    assert page.locator(".flash-success").count() == 1
    assert "Amal" in page.locator("main").inner_text()

    stored = _case_by_reference(live, reference.group(0))
    assert stored["language"] == survivor_language
    assert stored["consent_languages"] == [survivor_language]
    assert {"store", "contact_sms", "share_shelter"} <= set(stored["granted"])
    assert stored["needs"] == {"shelter": "immediate"}
    assert stored["phone"] == "+14155550134"

    # Matching services for the case, then a referral (with the survivor's release).
    page.locator(f"a[href='/referrals/cases/{stored['id']}/new']").tap()
    results = page.locator(".match-list .match")
    results.first.wait_for()
    assert world.service_name in results.first.inner_text()
    page.locator(f"input[name=services][value='{world.service_id}']").tap()
    submit(page, "main form")
    page.wait_for_url(f"**/referrals/cases/{stored['id']}/preview")
    assert "Amal" not in page.locator("main").inner_text(), "no identity without consent"
    page.locator(f"input[name=method_{world.provider_org_id}][value=verbal]").tap()
    submit(page, "main form.intake-form")
    page.wait_for_url(f"**/cases/{stored['id']}")
    sent = REFERENCE.search(page.locator(".flash-success").inner_text())
    assert sent, "the caseworker is told the referral code"
    code = sent.group(0)
    row = page.locator("#referrals tr", has_text=code)
    assert row.locator(".badge.referral-pending").count() == 1

    # The provider, on another device (a second browser context), accepts it.
    # Their browser asks for the other language; their own language setting wins.
    other = "ar" if ui == "en" else "en-US"
    provider_page = contexts.new(locale=other).new_page()
    sign_in(provider_page, new_provider(locale=ui))
    assert html_lang_dir(provider_page) == (ui, "rtl" if ui == "ar" else "ltr")
    provider_page.locator("main a[href='/provider/']").tap()
    provider_page.locator(".portal-item", has_text=code).tap()
    provider_page.wait_for_url(re.compile(r".*/provider/referrals/\d+$"))
    assert "Amal" not in provider_page.locator("main").inner_text()
    with provider_page.expect_navigation():
        provider_page.locator("form[action$='/accept'] [type=submit]").tap()
    assert provider_page.locator(".flash-success").count() == 1
    assert provider_page.locator(".badge.referral-accepted").count() == 1

    # The caseworker sees the acceptance; the survivor's text is queued in their language.
    page.reload()
    row = page.locator("#referrals tr", has_text=code)
    assert row.locator(".badge.referral-accepted").count() == 1
    assert _survivor_messages(live, stored["id"]) == [
        ("survivor.referral_accepted", survivor_language)
    ]

    # Back to the case, then one tap on quick exit: a neutral page, the session is over,
    # and Back does not bring the case back.
    page.goto(f"/cases/{stored['id']}")
    assert "Amal" in page.locator("main").inner_text()
    page.locator("[data-quick-exit]").tap()
    page.wait_for_url("**/leave")
    assert page.title() == "Weather"
    assert_no_haven_data(page, "Amal", reference.group(0), "Haven")
    page.go_back()
    page.wait_for_load_state("load")
    # (The browser may re-post the form before the case page: the server refuses it.)
    assert_no_haven_data(page, "Amal", reference.group(0), code, "+1 415", world.service_name)
    page.goto(f"/cases/{stored['id']}")
    assert "/auth/login" in page.url, "the quick exit ended the session"
    assert_no_haven_data(page, "Amal", reference.group(0))
    contexts.recorder.check()


def test_idle_lock_in_the_page(contexts: Any, live: Any, new_caseworker: Any) -> None:
    """While someone works in a long form (no request, only taps and keys) neither the page
    nor the server locks; once nobody touches it, the page's own timer (read from the page:
    the server's idle timeout) leaves for the neutral page by itself, and nothing of Haven
    comes back."""
    context = contexts.new(base_url=live.short_url)
    page = context.new_page()
    sign_in(page, new_caseworker())
    page.goto("/cases/new")
    assert page.locator("body").get_attribute("data-idle-seconds") == str(SHORT_IDLE_SECONDS)
    page.locator("input[name=scope_store][value=yes]").tap()
    page.locator("input[name=method][value=verbal]").tap()
    working_until = time.monotonic() + SHORT_IDLE_SECONDS * 1.5
    while time.monotonic() < working_until:
        page.keyboard.press("Shift")  # reading, scrolling, typing: activity without requests
        page.wait_for_timeout(700)
    assert page.url.endswith("/cases/new"), "locked while someone was working"
    submit(page, "main form.intake-form")
    page.wait_for_url(re.compile(r".*/cases/\d+/profile$"))  # the server kept the session

    # Now nobody touches the page: its clock (Playwright's, paused) is moved on instead of
    # waiting. Not a moment before the timeout, and at the timeout, it leaves by itself.
    page.clock.install()
    page.clock.pause_at(datetime.now() + timedelta(minutes=1))
    page.reload()
    page.wait_for_load_state("load")
    # (The Navigation API's event is synchronous: a navigation the timer started is seen at
    # once, before the next page commits.)
    page.evaluate(
        "() => { window.leftFor = null;"
        " navigation.addEventListener('navigate', e => { window.leftFor = e.destination.url; }); }"
    )
    page.clock.run_for(SHORT_IDLE_SECONDS * 1000 - 500)
    assert page.evaluate("window.leftFor") is None, "locked before the timeout"
    page.clock.run_for(1000)
    page.wait_for_url("**/leave?locked=1")
    assert page.title() == "Weather"
    assert page.locator("a[href='/auth/login']").count() == 1
    page.go_back()
    page.wait_for_load_state("load")
    assert "/cases/" not in page.url or "/auth/login" in page.url, page.url
    page.goto("/cases/")
    assert "/auth/login" in page.url, "the lock ended the session"
    contexts.recorder.check()


def test_idle_timeout_on_the_server(contexts: Any, live: Any, new_caseworker: Any) -> None:
    """With JavaScript off (no page timer), the server still ends an idle session."""
    context = contexts.new(base_url=live.short_url, java_script_enabled=False)
    page = context.new_page()
    sign_in(page, new_caseworker())
    page.goto("/cases/")
    assert "/cases/" in page.url
    time.sleep(SHORT_IDLE_SECONDS + 1)
    page.goto("/cases/")
    assert "/auth/login" in page.url, "an idle session was not ended by the server"
    assert page.locator(".flash").count() == 1
    page.goto("/")
    assert "/auth/login" in page.url
    contexts.recorder.check()


def test_written_consent_signed_on_the_tablet(
    contexts: Any, live: Any, new_caseworker: Any
) -> None:
    """The signature pad works with a finger-like pointer in Arabic (mirrored) layout, and the
    signature is stored with every consent record of the step; an unsigned written consent is
    sent back with the error next to the pad."""
    page = contexts.new(locale="ar").new_page()
    sign_in(page, new_caseworker())
    page.goto("/cases/new?lang=ar")
    page.locator("input[name=scope_store][value=yes]").tap()
    page.locator("input[name=method][value=written]").tap()
    submit(page, "main form.intake-form")
    assert page.locator("[data-signature-pad] .error").count() == 1, "unsigned is refused"

    page.locator("input[name=scope_store][value=yes]").tap()
    page.locator("input[name=method][value=written]").tap()
    canvas = page.locator("[data-signature-canvas]")
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    assert box and box["width"] >= 300, "a signature box wide enough for a finger"
    page.mouse.move(box["x"] + 40, box["y"] + box["height"] / 2)
    page.mouse.down()
    for step in range(1, 12):
        page.mouse.move(box["x"] + 40 + step * 20, box["y"] + box["height"] / 2 + (-1) ** step * 15)
    page.mouse.up()
    assert page.locator("[data-signature-input]").input_value().startswith("data:image/png")
    submit(page, "main form.intake-form")
    page.wait_for_url(re.compile(r".*/cases/\d+/profile$"))
    reference = REFERENCE.search(page.locator("main").inner_text())
    assert reference

    from sqlalchemy import select

    from app.models import Case

    with live.app.app_context():
        case = db.session.scalar(select(Case).where(Case.reference == reference.group(0)))
        assert case is not None
        assert case.consents and all(c.signature_id is not None for c in case.consents)
        assert {c.method for c in case.consents} == {"written"}
        db.session.remove()
    contexts.recorder.check()
