"""Sessions end on the server (issue 14 §1). A session cookie copied before sign-out or the
quick exit (same address, same browser) must get the sign-in page afterwards; it used to
open every page, and each use extended it up to the 12-hour limit. Each sign-in is a
server-side session (``user_session``: a keyed hash of a random id the cookie carries);
sign-out, quick exit, idle and absolute expiry end it, and a password change or an
administrator's change of access ends all of the user's others. A second device keeps its
own session when the first signs out."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select, update

from app.core.extensions import db
from app.models import User, UserSession, utcnow
from tests import factories
from tests.conftest import AuthActions, login_session
from tests.sms_support import scan_database


def live_sessions(user: User | None = None) -> int:
    query = select(func.count(UserSession.id))
    if user is not None:
        query = query.where(UserSession.user_id == user.id)
    return int(db.session.scalar(query) or 0)


def copy_of(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another browser holding a copy of ``client``'s session cookie (same address and user
    agent, so Flask-Login's session protection sees the same browser)."""
    cookie = client.get_cookie("haven_session")
    assert cookie is not None
    other = app.test_client()
    other.set_cookie("haven_session", cookie.value)
    return other


def signs_in_page(response: Any) -> bool:
    return response.status_code == 302 and "/auth/login" in response.headers["Location"]


@pytest.fixture
def caseworker(app: Flask) -> User:
    user = factories.make_user("caseworker")
    db.session.commit()
    return user


def test_a_cookie_copied_before_sign_out_gets_the_sign_in_page(
    app: Flask, client: FlaskClient, auth: AuthActions, caseworker: User
) -> None:
    assert auth.login(caseworker).status_code == 302
    assert client.get("/cases/").status_code == 200
    copy = copy_of(app, client)
    assert copy.get("/cases/").status_code == 200  # the copy works while the session lives
    assert signs_in_page(auth.logout())
    assert signs_in_page(copy.get("/cases/"))
    assert copy.post("/session/alive").status_code == 401
    assert live_sessions(caseworker) == 0


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_cookie_copied_before_the_quick_exit_gets_the_sign_in_page(
    app: Flask, client: FlaskClient, auth: AuthActions, caseworker: User, method: str
) -> None:
    auth.login(caseworker)
    copy = copy_of(app, client)
    response = client.open("/leave", method=method)
    assert response.status_code == 200 and b"Weather" in response.data
    assert signs_in_page(copy.get("/cases/"))
    assert signs_in_page(client.get("/cases/"))
    assert live_sessions(caseworker) == 0


def test_a_second_device_keeps_its_session_when_the_first_signs_out(
    app: Flask, caseworker: User
) -> None:
    tablet, phone = app.test_client(), app.test_client()
    AuthActions(tablet).login(caseworker)
    AuthActions(phone).login(caseworker)
    assert live_sessions(caseworker) == 2
    AuthActions(tablet).logout()
    assert signs_in_page(tablet.get("/cases/"))
    assert phone.get("/cases/").status_code == 200
    assert live_sessions(caseworker) == 1
    phone.get("/leave")
    assert signs_in_page(phone.get("/cases/"))
    assert live_sessions(caseworker) == 0


def test_idle_expiry_ends_the_session_for_every_copy(
    app: Flask, client: FlaskClient, auth: AuthActions, caseworker: User
) -> None:
    auth.login(caseworker)
    copy = copy_of(app, client)
    with client.session_transaction() as sess:
        sess["seen"] = time.time() - 16 * 60
    assert signs_in_page(client.get("/cases/"))  # the tablet locked itself...
    assert signs_in_page(copy.get("/cases/"))  # ...and the copy is dead with it
    assert live_sessions(caseworker) == 0


def test_the_absolute_lifetime_ends_the_session_on_the_server(
    app: Flask, client: FlaskClient, auth: AuthActions, caseworker: User
) -> None:
    auth.login(caseworker)
    copy = copy_of(app, client)
    with client.session_transaction() as sess:
        sess["started"] = time.time() - 13 * 3600
    assert signs_in_page(client.get("/cases/"))
    assert signs_in_page(copy.get("/cases/"))
    assert live_sessions(caseworker) == 0


def test_a_password_change_ends_the_other_sessions_and_keeps_this_one(
    app: Flask, caseworker: User
) -> None:
    tablet, phone = app.test_client(), app.test_client()
    AuthActions(tablet).login(caseworker)
    AuthActions(phone).login(caseworker)
    with tablet.session_transaction() as sess:
        started = sess["started"]
    new = "violet-harbor-lantern-82"
    response = tablet.post(
        "/auth/password", data={"current": factories.PASSWORD, "new": new, "confirm": new}
    )
    assert response.status_code == 302
    assert tablet.get("/cases/").status_code == 200
    assert signs_in_page(phone.get("/cases/"))
    assert live_sessions(caseworker) == 1
    # The session kept is the same one: a password change does not restart its lifetime.
    with tablet.session_transaction() as sess:
        assert sess["started"] == started


@pytest.mark.parametrize("change", ["deactivate", "role", "password"])
def test_an_administrators_change_of_access_ends_every_session_of_the_user(
    app: Flask, caseworker: User, change: str
) -> None:
    admin = factories.make_user("admin")
    db.session.commit()
    victim = app.test_client()
    AuthActions(victim).login(caseworker)
    assert victim.get("/cases/").status_code == 200
    console = app.test_client()
    login_session(console, admin)
    data = {
        "organization_id": caseworker.organization_id,
        "role": "supervisor" if change == "role" else "caseworker",
        "active": "" if change == "deactivate" else "y",
        "new_password": "violet-harbor-lantern-82" if change == "password" else "",
    }
    if data["active"] == "":
        del data["active"]
    assert console.post(f"/admin/users/{caseworker.id}", data=data).status_code == 302
    assert signs_in_page(victim.get("/cases/"))
    assert live_sessions(caseworker) == 0
    assert console.get("/admin/users").status_code == 200  # the admin's own session lives


def test_the_session_id_is_stored_only_as_a_keyed_hash(
    app: Flask, client: FlaskClient, auth: AuthActions, caseworker: User
) -> None:
    auth.login(caseworker)
    with client.session_transaction() as sess:
        handle = sess["_user_id"]
    assert isinstance(handle, str) and len(handle) >= 43  # 256 random bits
    assert str(caseworker.id) != handle and ":" not in handle
    assert scan_database(app, [handle]) == []
    [row] = db.session.scalars(select(UserSession)).all()
    assert len(row.key_hash) == 64 and row.user_id == caseworker.id


@pytest.mark.parametrize(
    "forged", ["1", "1:0123456789abcdef0123456789abcdef", "x" * 43, "", "\u00e9" * 43]
)
def test_a_session_id_that_names_no_session_is_anonymous(
    client: FlaskClient, caseworker: User, forged: str
) -> None:
    login_session(client, caseworker)
    with client.session_transaction() as sess:
        sess["_user_id"] = forged
    assert signs_in_page(client.get("/cases/"))


def test_sessions_past_their_lifetime_are_deleted_at_the_next_sign_in(
    app: Flask, auth: AuthActions, caseworker: User
) -> None:
    other = factories.make_user("caseworker")
    db.session.commit()
    AuthActions(app.test_client()).login(other)  # walked away without signing out
    db.session.execute(update(UserSession).values(created_at=utcnow() - timedelta(hours=13)))
    db.session.commit()
    assert live_sessions(other) == 1
    auth.login(caseworker)
    assert live_sessions(other) == 0 and live_sessions(caseworker) == 1


def test_the_quick_exit_works_even_when_the_database_does_not(
    app: Flask, app_factory: Any, client: FlaskClient, auth: AuthActions, caseworker: User
) -> None:
    """Quick exit is a safety feature: with the database unreachable it still shows the
    neutral page and the browser forgets the session (the server's copy expires)."""
    auth.login(caseworker)
    broken = app_factory(SQLALCHEMY_DATABASE_URI="postgresql+psycopg://haven@127.0.0.1:1/haven")
    with broken.app_context():
        tablet = copy_of(broken, client)
        response = tablet.get("/leave")
        assert response.status_code == 200 and b"Weather" in response.data
        assert tablet.get_cookie("haven_session") is None
