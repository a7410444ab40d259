"""The endpoint walk: every registered endpoint, as anonymous, as each role, and as a user of
another organization. New endpoints join automatically because the walk reads `app.url_map`;
an endpoint whose URL names an unknown object fails until `tests/objects.py` knows it."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from werkzeug.routing import Rule

from app.core.extensions import db
from app.core.security import PUBLIC_ENDPOINTS, allowed_roles
from tests import factories
from tests.conftest import login_session
from tests.objects import OBJECT_FACTORIES

ROLES = ("admin", "supervisor", "caseworker", "provider")
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Endpoints whose job is to end the session: a redirect to sign-in is their success.
SIGN_OUT_ENDPOINTS = {"auth.logout"}


def walkable_rules(app: Flask) -> list[tuple[Rule, str]]:
    return [
        (rule, method)
        for rule in app.url_map.iter_rules()
        for method in sorted((rule.methods or set()) & set(METHODS))
    ]


def build_url(app: Flask, rule: Rule, org: Any) -> str:
    """URL for ``rule`` whose objects belong to ``org``."""
    values = {}
    for name in rule.arguments:
        factory = OBJECT_FACTORIES.get(name)
        if factory is None:
            raise LookupError(f"{rule.endpoint}: add '{name}' to tests/objects.py")
        values[name] = factory.make(org)
    db.session.commit()
    with app.test_request_context():
        from flask import url_for

        return url_for(rule.endpoint, **values)


def request(client: Any, method: str, url: str) -> Any:
    return client.open(url, method=method, data={}, follow_redirects=False)


@pytest.fixture
def people(app: Flask) -> dict[str, Any]:
    ngo = factories.make_org("ngo")
    provider_org = factories.make_org("provider")
    operator = factories.make_org("operator")
    users = {
        "admin": factories.make_user("admin", organization=operator),
        "supervisor": factories.make_user("supervisor", organization=ngo),
        "caseworker": factories.make_user("caseworker", organization=ngo),
        "provider": factories.make_user("provider", organization=provider_org),
    }
    db.session.commit()
    return users


def test_every_endpoint_is_public_or_declares_roles(app: Flask) -> None:
    undeclared = [
        rule.endpoint
        for rule, _ in walkable_rules(app)
        if rule.endpoint not in PUBLIC_ENDPOINTS and not allowed_roles(rule.endpoint)
    ]
    # Not a failure of the gate (it refuses them to everyone), but a view nobody can use
    # is a bug: declare its roles.
    assert undeclared == []


def test_public_allowlist_is_small_and_exact(app: Flask) -> None:
    registered = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert registered >= {"static", "main.healthz", "main.leave", "auth.login"}
    assert PUBLIC_ENDPOINTS - registered <= {"sms.inbound", "sms.status"}


def test_anonymous_is_sent_to_sign_in_everywhere(app: Flask, client: Any, people: Any) -> None:
    org = people["caseworker"].organization
    problems = []
    for rule, method in walkable_rules(app):
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        url = build_url(app, rule, org)
        response = request(client, method, url)
        if method == "GET":
            ok = response.status_code == 302 and "/auth/login" in response.headers["Location"]
        else:
            ok = response.status_code == 401
        if not ok:
            problems.append(f"{method} {rule.rule} -> {response.status_code}")
    assert problems == []


@pytest.mark.parametrize("role", ROLES)
def test_each_role_gets_exactly_its_endpoints(
    app: Flask, client: Any, people: Any, role: str
) -> None:
    user = people[role]
    problems = []
    checked = 0
    for rule, method in walkable_rules(app):
        if rule.endpoint in PUBLIC_ENDPOINTS:
            continue
        url = build_url(app, rule, user.organization)
        login_session(client, user)
        response = request(client, method, url)
        allowed = role in (allowed_roles(rule.endpoint) or ())
        status = response.status_code
        if status >= 500:
            problems.append(f"{method} {rule.rule} -> {status} (server error)")
        elif allowed and status in (401, 403):
            problems.append(f"{method} {rule.rule} -> {status}, but {role} is allowed")
        elif (
            allowed
            and status == 302
            and "/auth/login" in response.headers["Location"]
            and rule.endpoint not in SIGN_OUT_ENDPOINTS
        ):
            problems.append(f"{method} {rule.rule} -> sign-in redirect, but {role} is allowed")
        elif not allowed and status != 403:
            problems.append(f"{method} {rule.rule} -> {status}, expected 403 for {role}")
        checked += 1
    assert checked > 0
    assert problems == [], "\n".join(problems)


@pytest.mark.parametrize("role", ROLES)
def test_objects_of_another_organization_answer_404(
    app: Flask, client: Any, people: Any, role: str
) -> None:
    user = people[role]
    other = factories.make_org(user.organization.kind)
    db.session.commit()
    problems = []
    for rule, method in walkable_rules(app):
        if rule.endpoint in PUBLIC_ENDPOINTS or not rule.arguments:
            continue
        if role not in (allowed_roles(rule.endpoint) or ()):
            continue
        if not any(OBJECT_FACTORIES[name].scoped_for(role) for name in rule.arguments):
            continue
        url = build_url(app, rule, other)
        login_session(client, user)
        response = request(client, method, url)
        if response.status_code != 404:
            problems.append(f"{method} {rule.rule} -> {response.status_code}, expected 404")
    assert problems == []


def test_a_view_without_declared_roles_is_refused_to_everyone(app_factory: Any) -> None:
    """Deny by default: register an undeclared view on a fresh app and try every role."""
    app = app_factory()

    @app.get("/undeclared")
    def undeclared() -> str:
        return "should never be served"

    with app.app_context():
        users = [factories.make_user(role) for role in ROLES]
        db.session.commit()
        client = app.test_client()
        for user in users:
            login_session(client, user)
            assert client.get("/undeclared").status_code == 403
        client = app.test_client()
        assert client.get("/undeclared").status_code == 302
