"""HTTP hardening: headers, generic errors, health, logs without PII."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from app.core.extensions import db
from tests import factories
from tests.conftest import login_session


def test_security_headers_on_every_page(client: Any) -> None:
    user = factories.make_user("caseworker")
    login_session(client, user)
    response = client.get("/")
    assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "form-action 'self'",
                      "script-src 'self'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "camera=()" in response.headers["Permissions-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert len(response.headers["X-Request-ID"]) == 16
    assert "Strict-Transport-Security" not in response.headers  # development/testing only


def test_pages_load_nothing_from_other_sites(client: Any) -> None:
    user = factories.make_user("caseworker")
    login_session(client, user)
    html = client.get("/").data.decode()
    for marker in ("http://", "https://", "//cdn", "<script>", " style=", "onclick="):
        assert marker not in html


def test_hsts_in_production(app_factory: Any) -> None:
    from app import create_app
    from config import ProductionConfig
    from tests.conftest import TEST_ENV

    env = dict(TEST_ENV, DATABASE_URL=app_factory().config["SQLALCHEMY_DATABASE_URI"])
    prod = create_app(ProductionConfig(env))
    with prod.app_context():
        try:
            response = prod.test_client().get("/healthz")
        finally:
            # Within this app context the request's session is not removed at teardown:
            # give its connection back, then close the pool (nothing may outlive the test).
            db.session.remove()
            db.engine.dispose()
    assert "max-age=" in response.headers["Strict-Transport-Security"]
    assert prod.config["SESSION_COOKIE_SECURE"] is True


def test_healthz_is_public_json_without_pii(client: Any) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.is_json
    assert set(response.get_json()) == {"status", "database"}


@pytest.mark.parametrize("path", ["/no-such-page", "/admin/users/999999999"])
def test_errors_are_generic(client: Any, path: str) -> None:
    admin = factories.make_user("admin")
    login_session(client, admin)
    response = client.get(path)
    assert response.status_code == 404
    body = response.data.decode()
    assert "Traceback" not in body and "werkzeug" not in body.lower()
    assert "This page does not exist" in body


def test_quick_exit_ends_the_session_and_shows_a_neutral_page(client: Any) -> None:
    user = factories.make_user("caseworker")
    login_session(client, user)
    response = client.get("/leave")
    assert response.status_code == 200
    assert b"Haven" not in response.data
    assert client.get("/").status_code == 302


def test_logs_carry_request_ids_and_no_credentials(
    client: Any, app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    user = factories.make_user("caseworker", username="log.checker")
    secret = "wrong-but-secret-password-99"
    with caplog.at_level(logging.DEBUG):
        client.post("/auth/login", data={"username": "log.checker", "password": secret})
        client.post("/auth/login", data={"username": user.username, "password": factories.PASSWORD})
        client.get("/no-such-page")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert secret not in text
    assert factories.PASSWORD not in text
    assert "log.checker" not in text


def test_favicon_is_a_neutral_cacheable_icon_for_everyone(client: Any, app: Any) -> None:
    """Browsers ask every page for /favicon.ico: answer with a blank icon (nothing in the tab
    names Haven), public and cacheable, instead of a 404 on every page."""
    import os
    import struct

    response = client.get("/favicon.ico", buffered=True)
    response.close()
    assert response.status_code == 200
    assert response.mimetype in ("image/vnd.microsoft.icon", "image/x-icon")
    assert "no-store" not in response.headers.get("Cache-Control", "")
    assert "max-age" in response.headers["Cache-Control"]
    assert "Set-Cookie" not in response.headers
    with open(os.path.join(app.static_folder, "favicon.ico"), "rb") as shipped:
        assert response.data == shipped.read()
    reserved, kind, count = struct.unpack("<HHH", response.data[:6])
    assert (reserved, kind, count) == (0, 1, 1)  # an ICO with one image
    width, height, _c, _r, _p, bits, _size, offset = struct.unpack("<BBBBHHII", response.data[6:22])
    assert (width, height, bits) == (16, 16, 32)
    pixels = response.data[offset + 40 : offset + 40 + 16 * 16 * 4]
    assert all(pixels[i + 3] == 0 for i in range(0, len(pixels), 4))  # fully transparent
    assert b"Haven" not in response.data and b"haven" not in response.data


def test_every_page_and_the_quick_exit_page_name_the_same_icon(client: Any) -> None:
    icon = b'<link rel="icon" href="/favicon.ico">'
    assert icon in client.get("/auth/login").data
    login_session(client, factories.make_user("caseworker"))
    for path in ("/", "/auth/language"):
        assert icon in client.get(path).data
    assert icon in client.get("/leave").data
