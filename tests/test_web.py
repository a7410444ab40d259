"""HTTP hardening: headers, generic errors, health, logs without PII."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from app.extensions import db
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
