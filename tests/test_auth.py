"""Sign-in, throttling, TOTP, session lifetime, password changes and safe redirects."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.extensions import db
from app.models import AuditEvent, LoginAttempt, User, utcnow
from tests import factories
from tests.conftest import AuthActions, login_session


def count(model: Any) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


def actions() -> list[str]:
    return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))


# --- password sign-in -----------------------------------------------------------------


def test_caseworker_signs_in_without_totp_and_is_audited(client: Any, auth: AuthActions) -> None:
    user = factories.make_user("caseworker")
    response = auth.login(user)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert client.get("/").status_code == 200
    assert "auth.login" in actions()


def test_real_configurations_hash_with_rfc_9106_and_upgrade_weaker_hashes(
    app: Any, app_factory: Any
) -> None:
    # Tests hash with argon2's CHEAPEST profile (config.TestingConfig); a hash made that way
    # (or with an older, weaker profile) is replaced at the next sign-in under the real one.
    user = factories.make_user("caseworker")
    db.session.commit()
    assert "$argon2id$v=19$m=8,t=1,p=1$" in user.password_hash
    real = app_factory(ARGON2_PROFILE="RFC_9106_LOW_MEMORY")
    wrong = real.test_client().post(
        "/auth/login", data={"username": user.username, "password": "not the password!"}
    )
    assert wrong.status_code == 401 and b"Wrong username or password." in wrong.data
    db.session.refresh(user)
    assert "m=8,t=1,p=1" in user.password_hash  # a wrong password changes nothing
    response = AuthActions(real.test_client()).login(user)
    assert response.status_code == 302 and response.headers["Location"] == "/"
    db.session.refresh(user)
    assert user.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    # ...and the upgraded hash still signs in, with the test profile as with the real one.
    assert AuthActions(real.test_client()).login(user).status_code == 302


@pytest.mark.parametrize(
    ("username", "password"),
    [("caseworker-x", "wrong password!!"), ("nobody-here", factories.PASSWORD)],
    ids=["wrong-password", "unknown-user"],
)
def test_failed_sign_in_gets_one_clear_message(
    client: Any, username: str, password: str
) -> None:
    factories.make_user("caseworker", username="caseworker-x")
    response = client.post("/auth/login", data={"username": username, "password": password})
    assert response.status_code == 401
    assert b"Wrong username or password." in response.data
    assert client.get("/").status_code == 302  # still signed out
    assert "auth.login_failed" in actions()


def test_inactive_user_cannot_sign_in(client: Any) -> None:
    user = factories.make_user("caseworker")
    user.active = False
    response = client.post(
        "/auth/login", data={"username": user.username, "password": factories.PASSWORD}
    )
    assert response.status_code == 401


def test_account_locks_after_five_failures_even_with_the_right_password(
    client: Any, app_factory: Any
) -> None:
    user = factories.make_user("caseworker")
    for _ in range(5):
        response = client.post(
            "/auth/login", data={"username": user.username, "password": "not the password"}
        )
        assert response.status_code == 401
    response = client.post(
        "/auth/login", data={"username": user.username, "password": factories.PASSWORD}
    )
    assert response.status_code == 429
    assert b"Too many failed sign-in attempts" in response.data
    assert "auth.lockout" in actions()
    # The lock lives in the database: another process (another app) sees it too.
    username = user.username
    db.session.commit()  # end this session's transaction before the other "process" writes
    other = app_factory()
    with other.app_context():
        response = other.test_client().post(
            "/auth/login", data={"username": username, "password": factories.PASSWORD}
        )
    assert response.status_code == 429


@pytest.mark.parametrize(("minutes", "said"), [(30, b"Wait 30 minutes"), (1, b"Wait 1 minute ")])
def test_lockout_message_gives_the_configured_window(
    app_factory: Any, minutes: int, said: bytes
) -> None:
    """The message tells the real wait (HAVEN_LOGIN_WINDOW_MINUTES), not a fixed 15."""
    app = app_factory(LOGIN_WINDOW=timedelta(minutes=minutes))
    with app.app_context():
        user = factories.make_user("caseworker")
        username = user.username
        db.session.commit()
        client = app.test_client()
        for _ in range(5):
            client.post("/auth/login", data={"username": username, "password": "wrong one"})
        response = client.post(
            "/auth/login", data={"username": username, "password": factories.PASSWORD}
        )
        assert response.status_code == 429
        assert said in response.data and b"15 minutes" not in response.data
        db.session.remove()


def test_lock_expires_after_the_window(client: Any) -> None:
    user = factories.make_user("caseworker")
    for _ in range(5):
        client.post("/auth/login", data={"username": user.username, "password": "nope nope nope"})
    # Age the failures past the 15-minute window.
    for attempt in db.session.scalars(select(LoginAttempt)):
        attempt.at = utcnow() - timedelta(minutes=16)
    db.session.commit()
    response = client.post(
        "/auth/login", data={"username": user.username, "password": factories.PASSWORD}
    )
    assert response.status_code == 302


def _attempt(client: Any, username: str, password: str, address: str = "192.0.2.10") -> Any:
    return client.post(
        "/auth/login",
        data={"username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_failures_from_a_shared_address_do_not_lock_other_accounts(client: Any) -> None:
    """An office behind one address: five people each mistype once (or someone guesses five
    usernames). Nobody who has not failed is locked out; the per-address limit is a ceiling
    far above the per-account one."""
    staff = [factories.make_user("caseworker") for _ in range(5)]
    db.session.commit()
    for user in staff:
        assert _attempt(client, user.username, "a typo, sorry").status_code == 401
    for n in range(5):
        assert _attempt(client, f"guess{n}", "whatever12345").status_code == 401
    for user in [*staff, factories.make_user("caseworker")]:
        assert _attempt(client, user.username, factories.PASSWORD).status_code == 302
        client.post("/auth/logout")


@pytest.fixture
def low_ceiling(app_factory: Any) -> Any:
    """An app whose per-address ceiling is 8 failures (the default is 50)."""
    app = app_factory(LOGIN_ADDRESS_MAX_FAILURES=8)
    with app.app_context():
        yield app
        db.session.remove()


def test_over_the_address_ceiling_only_accounts_that_failed_are_refused(
    low_ceiling: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = low_ceiling.test_client()
    failed_once, untouched = factories.make_user("caseworker"), factories.make_user("caseworker")
    db.session.commit()
    assert _attempt(client, failed_once.username, "wrong password 1").status_code == 401
    assert _attempt(client, "ghost-user", "wrong password 2").status_code == 401
    with caplog.at_level("WARNING"):
        for n in range(6):
            assert _attempt(client, f"spray{n}", "Winter2025!!").status_code == 401
    # 8 failures from 192.0.2.10: the ceiling. A correct password for an account that failed
    # here is refused; an account with no failure signs in.
    assert _attempt(client, failed_once.username, factories.PASSWORD).status_code == 429
    assert _attempt(client, untouched.username, factories.PASSWORD).status_code == 302
    client.post("/auth/logout")
    # No user enumeration: an unknown name is treated exactly like an existing account.
    assert _attempt(client, "never-tried", "a guess 12345").status_code == 401
    assert _attempt(client, "never-tried", "a guess 12345").status_code == 429
    assert _attempt(client, "ghost-user", "a guess 12345").status_code == 429
    # Another address is not affected by this one's ceiling.
    response = _attempt(client, failed_once.username, factories.PASSWORD, address="198.51.100.7")
    assert response.status_code == 302
    # The operator is told once, without the address: the audit trail and the log (whose
    # request id matches the proxy's access log).
    assert actions().count("auth.address_limit") == 1
    warnings = [r.getMessage() for r in caplog.records if "address" in r.getMessage()]
    assert len(warnings) == 1 and "192.0.2.10" not in warnings[0]


def test_the_address_ceiling_is_configurable() -> None:
    from config import ProductionConfig, TestingConfig
    from tests.conftest import TEST_ENV

    assert TestingConfig(TEST_ENV).LOGIN_ADDRESS_MAX_FAILURES == 50
    env = dict(TEST_ENV, HAVEN_LOGIN_ADDRESS_MAX_FAILURES="200")
    assert TestingConfig(env).LOGIN_ADDRESS_MAX_FAILURES == 200
    low = dict(TEST_ENV, HAVEN_ENV="production", DATABASE_URL="postgresql://h@db/h",
               HAVEN_LOGIN_ADDRESS_MAX_FAILURES="3")
    assert any("HAVEN_LOGIN_ADDRESS_MAX_FAILURES" in p for p in ProductionConfig(low).problems())


def test_throttle_keys_hold_no_username_or_address(client: Any) -> None:
    client.post("/auth/login", data={"username": "someone.named", "password": "x" * 12})
    rows = db.session.scalars(select(LoginAttempt)).all()
    assert rows
    for row in rows:
        assert "someone" not in row.account_key and "127.0.0.1" not in row.client_key
        assert len(row.account_key) == 64


# --- TOTP -------------------------------------------------------------------------------


def test_admin_needs_a_totp_code(client: Any) -> None:
    admin = factories.make_user("admin")
    response = client.post(
        "/auth/login", data={"username": admin.username, "password": factories.PASSWORD}
    )
    assert response.status_code == 302
    assert response.headers["Location"].endswith("/auth/verify")
    assert client.get("/admin/users").status_code == 302  # not signed in yet
    response = client.post("/auth/verify", data={"code": factories.totp_code(admin)})
    assert response.status_code == 302
    assert client.get("/admin/users").status_code == 200


def test_wrong_totp_code_is_refused(client: Any) -> None:
    admin = factories.make_user("admin")
    client.post("/auth/login", data={"username": admin.username, "password": factories.PASSWORD})
    good = factories.totp_code(admin)
    bad = f"{(int(good) + 1) % 1_000_000:06d}"
    response = client.post("/auth/verify", data={"code": bad})
    assert response.status_code == 400
    assert b"That code is not right" in response.data
    assert client.get("/admin/users").status_code == 302


def test_totp_code_cannot_be_replayed(app_factory: Any) -> None:
    app = app_factory()
    with app.app_context():
        admin = factories.make_user("admin")
        db.session.commit()
        code = factories.totp_code(admin)
        first, second = app.test_client(), app.test_client()
        for c in (first, second):
            c.post("/auth/login", data={"username": admin.username, "password": factories.PASSWORD})
        assert first.post("/auth/verify", data={"code": code}).status_code == 302
        response = second.post("/auth/verify", data={"code": code})
        assert response.status_code == 400
        assert b"already used" in response.data
        assert second.get("/admin/users").status_code == 302


def test_required_totp_is_enrolled_at_first_sign_in_with_a_server_side_qr(client: Any) -> None:
    supervisor = factories.make_user("supervisor", totp=False)
    response = client.post(
        "/auth/login", data={"username": supervisor.username, "password": factories.PASSWORD}
    )
    assert response.headers["Location"].endswith("/auth/enroll")
    page = client.get("/auth/enroll")
    assert page.status_code == 200
    assert b"<svg" in page.data  # rendered on the server, no third-party QR service
    import re

    import pyotp

    secret = re.search(rb'class="secret" dir="ltr">([A-Z2-7]+)<', page.data)
    assert secret
    response = client.post(
        "/auth/enroll", data={"code": pyotp.TOTP(secret.group(1).decode()).now()}
    )
    assert response.status_code == 302
    assert client.get("/audit" if False else "/admin/audit").status_code == 200
    db.session.expire_all()
    assert db.session.get(User, supervisor.id).totp_enrolled


def test_enrolment_cannot_replace_an_existing_second_factor(client: Any) -> None:
    admin = factories.make_user("admin")
    client.post("/auth/login", data={"username": admin.username, "password": factories.PASSWORD})
    response = client.get("/auth/enroll")
    assert response.status_code == 302
    assert client.get("/admin/users").status_code == 302


def test_organization_can_require_totp_for_caseworkers(client: Any) -> None:
    org = factories.make_org("ngo", totp_required=True)
    user = factories.make_user("caseworker", organization=org, totp=False)
    response = client.post(
        "/auth/login", data={"username": user.username, "password": factories.PASSWORD}
    )
    assert response.headers["Location"].endswith("/auth/enroll")


# --- sessions ---------------------------------------------------------------------------


def test_idle_session_is_signed_out(client: Any) -> None:
    user = factories.make_user("caseworker")
    login_session(client, user)
    assert client.get("/").status_code == 200
    with client.session_transaction() as sess:
        sess["seen"] = time.time() - 16 * 60
    response = client.get("/")
    assert response.status_code == 302
    assert "/auth/login" in response.headers["Location"]
    assert client.get("/").status_code == 302
    assert "auth.session_expired" in actions()


def test_activity_keeps_the_session_alive(client: Any) -> None:
    user = factories.make_user("caseworker")
    login_session(client, user)
    with client.session_transaction() as sess:
        sess["seen"] = time.time() - 14 * 60
    assert client.get("/").status_code == 200


def test_absolute_lifetime_ends_even_an_active_session(client: Any) -> None:
    user = factories.make_user("caseworker")
    login_session(client, user)
    with client.session_transaction() as sess:
        sess["started"] = time.time() - 13 * 3600
    assert client.get("/").status_code == 302


def test_session_cookie_flags(client: Any, auth: AuthActions) -> None:
    user = factories.make_user("caseworker")
    response = auth.login(user)
    cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie


def test_password_change_ends_other_sessions(app: Any) -> None:
    user = factories.make_user("caseworker")
    db.session.commit()
    tablet, phone = app.test_client(), app.test_client()
    login_session(tablet, user)
    login_session(phone, user)
    new_password = "violet-harbor-lantern-82"
    response = tablet.post(
        "/auth/password",
        data={"current": factories.PASSWORD, "new": new_password, "confirm": new_password},
    )
    assert response.status_code == 302
    assert tablet.get("/").status_code == 200  # this session continues
    assert phone.get("/").status_code == 302  # the other one ended
    assert "user.password_change" in actions()
    fresh = app.test_client()
    assert AuthActions(fresh).login(user, password=new_password).status_code == 302


@pytest.mark.parametrize(
    ("new", "message"),
    [
        ("short", b"at least 12"),
        ("password1234", b"too common"),
        ("my-{username}-forever", b"must not contain the username"),
    ],
)
def test_password_policy(client: Any, new: str, message: bytes) -> None:
    user = factories.make_user("caseworker")
    login_session(client, user)
    new = new.format(username=user.username)
    response = client.post(
        "/auth/password", data={"current": factories.PASSWORD, "new": new, "confirm": new}
    )
    assert response.status_code == 400
    assert message in response.data
    db.session.expire_all()
    assert AuthActions(client).login(user).status_code == 302  # old password still works


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/admin/audit", "/admin/audit"),
        ("https://evil.example/", "/"),
        ("//evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
    ],
)
def test_next_redirects_stay_on_site(client: Any, target: str, expected: str) -> None:
    user = factories.make_user("supervisor", totp=False)
    user.role = "caseworker"
    db.session.commit()
    response = client.post(
        "/auth/login",
        data={"username": user.username, "password": factories.PASSWORD, "next": target},
    )
    assert response.status_code == 302
    assert response.headers["Location"] == expected


def test_logout_ends_the_session(client: Any, auth: AuthActions) -> None:
    user = factories.make_user("caseworker")
    auth.login(user)
    assert auth.logout().status_code == 302
    assert client.get("/").status_code == 302
    assert "auth.logout" in actions()


# --- bad input --------------------------------------------------------------------------


def test_tampered_session_cookie_is_anonymous(client: Any, auth: AuthActions) -> None:
    user = factories.make_user("caseworker")
    auth.login(user)
    cookie = client.get_cookie("haven_session")
    assert cookie is not None
    value = cookie.value
    tampered = value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB")
    client.set_cookie("haven_session", tampered)
    response = client.get("/")
    assert response.status_code == 302
    assert "/auth/login" in response.headers["Location"]


def test_missing_csrf_token_is_refused_and_changes_nothing(app_factory: Any) -> None:
    app = app_factory(WTF_CSRF_ENABLED=True)
    with app.app_context():
        user = factories.make_user("caseworker")
        db.session.commit()
        before = count(LoginAttempt)
        response = app.test_client().post(
            "/auth/login", data={"username": user.username, "password": factories.PASSWORD}
        )
        assert response.status_code == 400
        assert b"reload the page" in response.data
        assert count(LoginAttempt) == before


def test_csrf_token_from_the_form_is_accepted(app_factory: Any) -> None:
    import re

    app = app_factory(WTF_CSRF_ENABLED=True)
    with app.app_context():
        user = factories.make_user("caseworker")
        db.session.commit()
        client = app.test_client()
        page = client.get("/auth/login")
        token = re.search(rb'name="csrf_token" type="hidden" value="([^"]+)"', page.data)
        assert token
        response = client.post(
            "/auth/login",
            data={
                "username": user.username,
                "password": factories.PASSWORD,
                "csrf_token": token.group(1).decode(),
            },
        )
        assert response.status_code == 302


def test_overlong_and_non_utf8_fields_get_a_clear_answer(client: Any) -> None:
    response = client.post("/auth/login", data={"username": "u" * 5000, "password": "p" * 5000})
    assert response.status_code == 400
    assert b"Field cannot be longer" in response.data or b"longer than" in response.data
    raw = b"username=%FF%FE%80abc&password=%C3%28xxxxxxxxxxxx"
    response = client.post(
        "/auth/login", data=raw, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code in (400, 401)
    response = client.post(
        "/auth/login", data="x=" + "a" * (2 * 1024 * 1024),
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 413
    assert count(User) == 0


def test_empty_login_form_re_renders_with_errors(client: Any) -> None:
    response = client.post("/auth/login", data={})
    assert response.status_code == 400
    assert b"This field is required." in response.data


@pytest.mark.parametrize(
    ("role", "page"),
    [("caseworker", "/auth/password"), ("admin", "/admin/users/new")],
)
def test_password_hint_gives_the_policy_length(
    client: Any, monkeypatch: pytest.MonkeyPatch, role: str, page: str
) -> None:
    # The hint is derived from the policy, not written beside it: change one, the other follows.
    from app.auth import accounts

    monkeypatch.setattr(accounts, "MIN_PASSWORD_LENGTH", 14)
    login_session(client, factories.make_user(role))
    response = client.get(page)
    assert response.status_code == 200
    assert b"At least 14 characters." in response.data
    assert b"At least 12 characters" not in response.data
