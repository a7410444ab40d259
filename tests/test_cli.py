"""`flask create-user` and `flask seed-demo` (DESIGN §7, issue 2 §3 and §8)."""

from __future__ import annotations

import os
import re

import pyotp
import pytest
from sqlalchemy import func, select

from app import create_app
from app.cases import workqueue
from app.core.extensions import db
from app.models import ROLES, AuditEvent, Case, Organization, Service, User
from app.models.accounts import ORG_KINDS
from app.models.base import utcnow
from config import ProductionConfig
from tests import factories
from tests.conftest import TEST_ENV

STRONG = "amber-lantern-quiet-58"


def _counts() -> dict[str, int]:
    counts = {}
    for table in db.metadata.sorted_tables:
        counts[table.name] = db.session.scalar(select(func.count()).select_from(table))
    db.session.commit()
    return counts


def _create_user(app, *args: str, input: str | None = None):
    return app.test_cli_runner().invoke(args=["create-user", *args], input=input)


@pytest.fixture
def org(app):
    org = factories.make_org("ngo", name="Safe Harbor Network")
    db.session.commit()
    return org


def _login(client, username: str, password: str):
    return client.post("/auth/login", data={"username": username, "password": password})


# --- create-user -------------------------------------------------------------------------


def test_create_user_prints_a_generated_password_once_and_it_works(app, client, org):
    result = _create_user(
        app, "--username", "nadia", "--role", "caseworker", "--organization", "safe harbor network"
    )
    assert result.exit_code == 0, result.output
    assert "Created caseworker 'nadia' in Safe Harbor Network." in result.output
    match = re.search(r"Password \(shown once\): (\S+)", result.output)
    assert match
    password = match.group(1)
    assert len(password) >= 20 and result.output.count(password) == 1

    user = db.session.scalar(select(User).where(User.username == "nadia"))
    assert user.role == "caseworker" and user.organization_id == org.id
    assert password not in user.password_hash
    assert (
        db.session.scalar(
            select(func.count()).where(
                AuditEvent.action == "user.create", AuditEvent.object_id == str(user.id)
            )
        )
        == 1
    )
    db.session.commit()

    response = _login(client, "nadia", password)
    assert response.status_code == 302
    assert response.headers["Location"] == "/"
    assert _login(app.test_client(), "nadia", password + "x").status_code == 401


def test_create_user_generates_a_different_password_each_time(app, org):
    outputs = [
        _create_user(
            app, "--username", name, "--role", "provider", "--organization", org.name
        ).output
        for name in ("p-one", "p-two")
    ]
    passwords = [re.search(r"shown once\): (\S+)", out).group(1) for out in outputs]
    assert passwords[0] != passwords[1]


def test_create_user_with_password_from_stdin(app, client, org):
    result = _create_user(
        app,
        "--username",
        "omar",
        "--role",
        "caseworker",
        "--organization",
        org.name,
        "--password-stdin",
        input=STRONG + "\n",
    )
    assert result.exit_code == 0, result.output
    assert STRONG not in result.output and "shown once" not in result.output
    db.session.commit()
    assert _login(client, "omar", STRONG).status_code == 302


def test_create_admin_is_told_about_two_step_sign_in(app):
    operator = factories.make_org("operator", name="Haven Ops")
    db.session.commit()
    result = _create_user(
        app, "--username", "root2", "--role", "admin", "--organization", operator.name
    )
    assert result.exit_code == 0, result.output
    assert "Two-step sign-in will be set up at the first sign-in." in result.output
    user = db.session.scalar(select(User).where(User.username == "root2"))
    assert user.totp_secret is None and user.totp_required


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short-pw", "too short"),
        ("", "too short"),
        ("my-name-is-omar-ok", "contains username"),
        ("password1234", "too common"),
        ("aaaaaaaaaaaaaaaa", "too common"),
        ("x" * 300, "too long"),
    ],
)
def test_create_user_refuses_weak_passwords_and_creates_nothing(app, org, password, reason):
    before = _counts()
    result = _create_user(
        app,
        "--username",
        "omar",
        "--role",
        "caseworker",
        "--organization",
        org.name,
        "--password-stdin",
        input=password + "\n",
    )
    assert result.exit_code == 1
    assert f"Password refused: {reason}." in result.output
    if len(password) >= 6:
        assert password not in result.output
    assert _counts() == before


def test_create_user_refuses_an_unknown_organization(app, org):
    before = _counts()
    result = _create_user(
        app, "--username", "omar", "--role", "caseworker", "--organization", "Nowhere Org"
    )
    assert result.exit_code == 1
    assert "No organization with that name." in result.output
    assert "shown once" not in result.output
    assert _counts() == before


@pytest.mark.parametrize("username", ["nadia", "NADIA", " nadia "])
def test_create_user_refuses_a_duplicate_username(app, org, username):
    factories.make_user("caseworker", organization=org, username="nadia")
    db.session.commit()
    before = _counts()
    result = _create_user(
        app, "--username", username, "--role", "provider", "--organization", org.name
    )
    assert result.exit_code == 1
    assert "That username is taken." in result.output
    assert "shown once" not in result.output
    assert _counts() == before


@pytest.mark.parametrize(
    "username", ["", "  ", "ab", "x" * 65, "bad name", "zoë", "a/b", "ann\nbob"]
)
def test_create_user_refuses_malformed_usernames(app, org, username):
    before = _counts()
    result = _create_user(
        app, "--username", username, "--role", "caseworker", "--organization", org.name
    )
    assert result.exit_code == 1, result.output
    assert "Usernames are 3 to 64 letters" in result.output
    assert _counts() == before


def test_create_user_refuses_an_unknown_role(app, org):
    before = _counts()
    result = _create_user(
        app, "--username", "x1", "--role", "superuser", "--organization", org.name
    )
    assert result.exit_code == 2
    assert _counts() == before


# --- seed-demo -----------------------------------------------------------------------------


def _credentials(output: str) -> dict[str, tuple[str, str | None]]:
    found = {}
    for line in output.splitlines():
        match = re.match(r"\s+(\S+)\s+\S+\s+.*?password: (\S+)(?:\s+TOTP secret: (\S+))?", line)
        if match:
            found[match.group(1)] = (match.group(2), match.group(3))
    return found


def test_seed_demo_loads_every_kind_and_role_and_is_idempotent(app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output

    kinds = set(db.session.scalars(select(Organization.kind)))
    roles = set(db.session.scalars(select(User.role)))
    assert kinds == set(ORG_KINDS)
    assert roles == set(ROLES)
    # The demo's directory and cases are seeded by the same command (app/core/cli.py).
    assert db.session.scalar(select(func.count(Service.id)))
    assert set(db.session.scalars(select(Case.channel))) == {"tablet", "sms"}
    credentials = _credentials(result.output)
    usernames = set(db.session.scalars(select(User.username)))
    assert set(credentials) == usernames
    for username, (password, totp) in credentials.items():
        assert result.output.count(password) == 1
        user = db.session.scalar(select(User).where(User.username == username))
        assert (totp is not None) == user.totp_required
        if totp:
            assert user.totp_secret == totp
    db.session.commit()

    before = _counts()
    again = runner.invoke(args=["seed-demo"])
    assert again.exit_code == 0, again.output
    assert "nothing changed" in again.output
    assert "password:" not in again.output
    assert _counts() == before


def test_seed_demo_gives_the_caseworker_a_realistic_queue(app):
    """`make demo` opens on a queue: the demo caseworker's own case with a follow-up due,
    the hotline case waiting unassigned; the supervisor sees it and her load."""
    result = app.test_cli_runner().invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    worker = db.session.scalar(select(User).where(User.username == "caseworker"))
    assigned = dict(db.session.execute(select(Case.channel, Case.assigned_to_id)).all())
    assert assigned == {"tablet": worker.id, "sms": None}
    now = utcnow()
    thresholds = workqueue.Thresholds.from_config(app.config)
    queue = workqueue.build(worker.organization_id, user_id=worker.id, now=now,
                            thresholds=thresholds)
    assert [item.kind for item in queue.items] == ["new_sms", "follow_up"]
    team = workqueue.build(worker.organization_id, user_id=None, now=now,
                           thresholds=thresholds, supervisor=True)
    assert team.unassigned == 1 and ("caseworker", 1) in team.load


def test_seed_demo_users_can_sign_in_with_the_printed_credentials(app):
    result = app.test_cli_runner().invoke(args=["seed-demo"])
    credentials = _credentials(result.output)
    db.session.commit()

    caseworker = db.session.scalar(select(User).where(User.role == "caseworker"))
    password, _ = credentials[caseworker.username]
    response = _login(app.test_client(), caseworker.username, password)
    assert response.status_code == 302 and response.headers["Location"] == "/"

    admin = db.session.scalar(select(User).where(User.role == "admin"))
    password, secret = credentials[admin.username]
    client = app.test_client()
    response = _login(client, admin.username, password)
    assert response.headers["Location"].endswith("/auth/verify")
    db.session.commit()
    response = client.post("/auth/verify", data={"code": pyotp.TOTP(secret).now()})
    assert response.status_code == 302 and response.headers["Location"] == "/"


def test_seed_demo_refuses_in_production(app, database_url):
    env = dict(TEST_ENV, HAVEN_ENV="production", DATABASE_URL=database_url)
    production = create_app(ProductionConfig(env))
    try:
        with production.app_context():
            result = production.test_cli_runner().invoke(args=["seed-demo"])
            assert result.exit_code == 1
            assert "seed-demo is for development only." in result.output
            assert "password" not in result.output
            assert db.session.scalar(select(func.count(User.id))) == 0
            assert db.session.scalar(select(func.count(Organization.id))) == 0
            db.session.remove()
    finally:
        with production.app_context():
            db.engine.dispose()


@pytest.mark.parametrize(
    ("env", "said"),
    [({"HAVEN_DEMO_URL": "http://127.0.0.1:8123"}, "Sign in at http://127.0.0.1:8123 with"),
     ({}, "Sign in with")],
)
def test_seed_demo_names_the_address_make_demo_serves_or_none(app, env, said):
    """The address comes from the Makefile (HAVEN_DEMO_URL), which also starts the server
    there; without it no address is guessed (it used to print port 5000 whatever)."""
    result = app.test_cli_runner().invoke(args=["seed-demo"], env=env)
    assert result.exit_code == 0, result.output
    assert said in result.output
    if not env:
        assert "http" not in result.output and "5000" not in result.output


def test_make_demo_serves_where_seed_demo_says():
    with open(os.path.join(os.path.dirname(os.path.dirname(__file__)), "Makefile")) as f:
        makefile = f.read()
    demo = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "HAVEN_DEMO_URL=http://$(DEMO_HOST):$(DEMO_PORT) $(FLASK) seed-demo" in demo
    assert "$(FLASK) run --host $(DEMO_HOST) --port $(DEMO_PORT)" in demo
