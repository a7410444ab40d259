"""Interface languages, page by page (SecureDrop style: every page in every locale).

* Each page says its language and direction on <html> (``lang``, ``dir="rtl"`` for Arabic)
  and has a translated title.
* The interface language is the user's preference, then the browser's Accept-Language.
* The survivor's language is separate: it drives the consent texts, the consent records and
  the text messages, whatever the caseworker's interface language is.
"""

from __future__ import annotations

import re
from html import unescape as html_unescape
from typing import Any

import pytest
from flask_babel import force_locale
from flask_babel import gettext as _
from sqlalchemy import select

from app.core.extensions import db
from app.models import Case, Consent
from app.sms import messaging
from tests import factories
from tests.conftest import login_session

LOCALES = ["en", "es", "fr", "ar"]
HTML_TAG = re.compile(r'<html lang="([^"]+)" dir="([^"]+)">')
TITLE = re.compile(r"<title>(.*?)</title>", re.S)


def page_language(html: str) -> tuple[str, str, str]:
    tag = HTML_TAG.search(html)
    title = TITLE.search(html)
    assert tag and title, "every page has <html lang dir> and a <title>"
    return tag.group(1), tag.group(2), title.group(1).strip()


def expected_title(locale: str, *parts: str) -> str:
    """The title as the page builds it (``<page> – Haven``), translated into ``locale``."""
    with force_locale(locale):
        return " – ".join(_(p) for p in parts)


def check(html: str, locale: str, *title_parts: str) -> None:
    lang, direction, title = page_language(html)
    assert lang == locale
    assert direction == ("rtl" if locale == "ar" else "ltr")
    assert html_unescape(title) == expected_title(locale, *title_parts)
    if locale != "en":
        # A real translation, not the English text again.
        assert expected_title(locale, *title_parts) != expected_title("en", *title_parts)


@pytest.mark.parametrize("locale", LOCALES)
def test_login_page_in_the_browsers_language(client: Any, locale: str) -> None:
    response = client.get("/auth/login", headers={"Accept-Language": f"{locale},en;q=0.5"})
    assert response.status_code == 200
    check(response.get_data(as_text=True), locale, "Sign in", "Haven")


@pytest.mark.parametrize("locale", LOCALES)
def test_login_errors_in_the_browsers_language(client: Any, locale: str) -> None:
    response = client.post(
        "/auth/login",
        data={"username": "nobody", "password": "wrong-password-123"},
        headers={"Accept-Language": locale},
    )
    html = response.get_data(as_text=True)
    check(html, locale, "Sign in", "Haven")
    with force_locale(locale):
        message = _("Wrong username or password.")
    from markupsafe import escape

    assert str(escape(message)) in html


def test_unknown_browser_language_falls_back_to_english(client: Any) -> None:
    response = client.get("/auth/login", headers={"Accept-Language": "de-DE,de;q=0.9"})
    check(response.get_data(as_text=True), "en", "Sign in", "Haven")


@pytest.mark.parametrize("locale", LOCALES)
def test_main_pages_in_the_users_language(app: Any, client: Any, locale: str) -> None:
    """The user's preference wins over the browser (which asks for another language)."""
    org = factories.make_org("ngo")
    user = factories.make_user("caseworker", org)
    user.locale = locale
    case = factories.make_case(org)
    service = factories.make_service()
    db.session.commit()
    login_session(client, user)
    browser = "fr" if locale != "fr" else "es"
    pages = [
        ("/", ("Home", "Haven")),
        ("/cases/", ("Cases", "Haven")),
        ("/cases/new", ("New intake: consent", "Haven")),
        (f"/cases/{case.id}/profile", ("Profile", "Haven")),
        (f"/cases/{case.id}/needs", ("Needs", "Haven")),
        (f"/cases/{case.id}/consent", None),
        (f"/cases/{case.id}", None),
        ("/cases/anonymous", None),
        ("/directory/", None),
        (f"/directory/services/{service.id}", None),
        ("/directory/match", ("Find services", "Haven")),
        ("/auth/language", ("Language", "Haven")),
        ("/auth/password", None),
    ]
    for path, title in pages:
        response = client.get(path, headers={"Accept-Language": browser})
        assert response.status_code == 200, path
        html = response.get_data(as_text=True)
        if title:
            check(html, locale, *title)
        else:
            lang, direction, _title = page_language(html)
            assert (lang, direction) == (locale, "rtl" if locale == "ar" else "ltr"), path


def test_preference_changed_on_the_language_page(app: Any, client: Any) -> None:
    user = factories.make_user("caseworker")
    db.session.commit()
    login_session(client, user)
    response = client.post("/auth/language", data={"locale": "ar"}, follow_redirects=True)
    assert page_language(response.get_data(as_text=True))[:2] == ("ar", "rtl")
    response = client.get("/", headers={"Accept-Language": "en"})
    assert page_language(response.get_data(as_text=True))[:2] == ("ar", "rtl")


# --- the survivor's language is not the interface language --------------------------------


def _consent_form(language: str, token: str) -> dict[str, str]:
    from app.consent import service as consent

    data = {
        "token": token,
        "language": language,
        "text_version": consent.CURRENT_VERSION,
        "method": "verbal",
        "scope_store": "yes",
        "scope_contact_sms": "yes",
    }
    for scope in (
        "share_shelter",
        "share_legal",
        "share_medical",
        "share_psychosocial",
        "share_other",
        "share_identity",
        "explicit_wording",
    ):
        data[f"scope_{scope}"] = "no"
    return data


def test_consent_texts_follow_the_survivor_not_the_interface(app: Any, client: Any) -> None:
    from app.consent import service as consent

    user = factories.make_user("caseworker")
    user.locale = "ar"
    db.session.commit()
    login_session(client, user)

    # Arabic interface, Spanish survivor: the page stays Arabic, the consent texts are Spanish.
    html = client.get("/cases/new?lang=es").get_data(as_text=True)
    assert page_language(html)[:2] == ("ar", "rtl")
    spanish, shown = consent.texts_for("es")
    assert shown == "es"
    english, _shown = consent.texts_for("en")
    assert spanish["store"] != english["store"]
    from markupsafe import escape

    assert str(escape(spanish["store"])) in html
    assert html.count('class="consent-text" lang="es" dir="ltr"') >= len(spanish) - 1

    # Nothing chosen yet: the survivor's language starts as the interface language.
    html = client.get("/cases/new").get_data(as_text=True)
    assert 'class="consent-text" lang="ar" dir="rtl"' in html

    response = client.post("/cases/new", data=_consent_form("es", "tok_" + "s" * 30))
    assert response.status_code == 302
    case = db.session.scalar(select(Case))
    assert case.language == "es"
    assert {c.language for c in db.session.scalars(select(Consent))} == {"es"}


def test_text_messages_follow_the_survivors_language(app: Any) -> None:
    """A message to a survivor is in the case's language, even when the person causing it
    works in another interface language and names no language."""
    case = factories.make_case()
    case.language = "es"
    db.session.flush()
    with app.test_request_context(headers={"Accept-Language": "ar"}), force_locale("ar"):
        message = messaging.enqueue(
            "survivor.update", params={"reference": case.reference}, case=case
        )
    assert message is not None
    assert message.language == "es"
    body = messaging.render(message.template_key, message.language, message.params)
    with force_locale("es"):
        expected = _(
            "Haven: there is news about your request %(reference)s. We will contact you soon.",
            reference=case.reference,
        )
    assert body == messaging.fit(expected)
    assert body != messaging.render("survivor.update", "ar", message.params)
    assert body != messaging.render("survivor.update", "en", message.params)


@pytest.mark.parametrize("locale", ["en", "ar"])
def test_dates_and_phone_numbers_follow_the_locale(app: Any, client: Any, locale: str) -> None:
    from babel.dates import format_date

    org = factories.make_org("ngo")
    user = factories.make_user("caseworker", org)
    user.locale = locale
    case = factories.make_case(org, phone="+14155550123")
    db.session.commit()
    login_session(client, user)
    html = client.get("/cases/?tab=open").get_data(as_text=True)
    assert format_date(case.created_at, "medium", locale=locale) in html
    assert case.created_at.strftime("%Y-%m-%d") not in html
    # A phone number inside a sentence keeps its left-to-right order in Arabic.
    for path in (f"/cases/{case.id}/needs", f"/cases/{case.id}"):
        html = client.get(path).get_data(as_text=True)
        assert '<bdi dir="ltr">+1 415-555-0123</bdi>' in html, path
    # Consent "until" dates on the case page, per locale.
    record = next(c for c in case.consents if c.scope == "store")
    assert format_date(record.expires_at, "medium", locale=locale) in html
    assert record.expires_at.strftime("%Y-%m-%d") not in html


def test_hints_and_errors_are_tied_to_their_fields(app: Any, client: Any) -> None:
    """Screen readers read a field's hint (and its error) with the field."""
    org = factories.make_org("ngo")
    user = factories.make_user("caseworker", org)
    case = factories.make_case(org)
    db.session.commit()
    login_session(client, user)
    html = client.get(f"/cases/{case.id}/profile").get_data(as_text=True)
    assert re.search(r'<input[^>]*aria-describedby="phone-hint"[^>]*id="phone"', html)
    response = client.post(f"/cases/{case.id}/profile", data={"phone": "not a phone"})
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert re.search(
        r'<input[^>]*aria-describedby="phone-hint phone-error"[^>]*aria-invalid="true"', html
    )
    assert 'id="phone-error"' in html and 'id="phone-hint"' in html


def test_stylesheets_use_logical_properties_so_arabic_mirrors() -> None:
    """margin-left, padding-right, text-align: left ... do not flip in right-to-left pages;
    the inline-start/end forms do."""
    import os

    static = os.path.join(os.path.dirname(os.path.dirname(__file__)), "app", "static")
    physical = re.compile(
        r"(?:margin|padding|border)-(?:left|right)\b|(?<![-\w])(?:left|right)\s*:"
        r"|text-align\s*:\s*(?:left|right)|float\s*:\s*(?:left|right)"
    )
    found = []
    for name in sorted(os.listdir(static)):
        if name.endswith(".css") and name != "leave.css":  # (the neutral page has no RTL)
            with open(os.path.join(static, name), encoding="utf-8") as fh:
                for number, line in enumerate(fh, 1):
                    if physical.search(line):
                        found.append(f"{name}:{number}: {line.strip()}")
    assert found == [], "use logical properties:\n" + "\n".join(found)
