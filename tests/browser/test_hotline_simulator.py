"""The hotline simulator in a browser (issue 18): a caseworker drives a whole SMS
conversation through /dev/hotline, in English and in Arabic, and finds the case in the SMS
intake queue. Every message goes through the real, signed webhook."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from app.core.extensions import db
from tests.browser.support import sign_in, submit

pytestmark = pytest.mark.browser
REFERENCE = re.compile(r"[A-Z0-9]{3}-[A-Z0-9]{3}")
TOKEN = "browser-simulator-token-" + "7" * 16
# (language digit, "yes" in that language, a phone number of the conversation)
CONVERSATIONS = {"en": ("1", "yes", "+14155550161"), "ar": ("4", "نعم", "+14155550162")}


@pytest.fixture
def signing_token(live: Any) -> Iterator[None]:
    """The served app signs like a development .env: a TWILIO_AUTH_TOKEN of its own."""
    before = live.app.config.get("TWILIO_AUTH_TOKEN")
    live.app.config["TWILIO_AUTH_TOKEN"] = TOKEN
    yield
    live.app.config["TWILIO_AUTH_TOKEN"] = before


def replies(page: Any) -> str:
    return str(page.locator("#replies").inner_text())


def send(page: Any, text: str) -> str:
    page.fill("#message", text)
    submit(page, "main form.phone")
    page.locator("#replies").wait_for()
    return replies(page)


@pytest.mark.parametrize("language", list(CONVERSATIONS))
def test_a_whole_conversation_through_the_simulator(
    contexts: Any, live: Any, world: Any, new_caseworker: Any, signing_token: None,
    language: str,
) -> None:
    digit, yes, number = CONVERSATIONS[language]
    page = contexts.new().new_page()
    sign_in(page, new_caseworker())
    page.goto("/dev/hotline")
    page.fill("#number", number)
    page.select_option("#channel", "sms")
    first = send(page, "hello")
    assert "1 English" in first
    assert re.search(r"segments?, (GSM-7|UCS-2)", first)
    consent_text = send(page, digit)
    if language == "ar":
        assert re.search(r"[\u0600-\u06FF]", consent_text), consent_text
        assert "UCS-2" in consent_text
    else:
        assert "YES" in consent_text
    send(page, yes)
    after_needs = send(page, "1")
    if REFERENCE.search(after_needs) is None:  # the area menu first
        after_needs = send(page, "1")
    reference = REFERENCE.search(after_needs)
    assert reference, after_needs
    page.goto("/cases/?tab=sms")
    assert reference.group(0) in page.locator("main").inner_text()

    from sqlalchemy import select

    from app.models import Case

    with live.app.app_context():
        case = db.session.scalar(select(Case).where(Case.reference == reference.group(0)))
        assert case is not None and case.language == language and case.channel == "sms"
        db.session.remove()
    contexts.recorder.check()
