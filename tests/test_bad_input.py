"""Bad input never gives a 500 (issue 14 §3, §4), walked over every URL rule of the app:

* ids out of the database's range (or not written as ids) in a URL are not found (404), in a
  form or query string a 400 with a field error where there is a field to show it;
* a NUL byte in the path or the query string is a 400 before the gate (anonymous too), in a
  form field a 400 with a field error, in a webhook's body a 400; a sign-in attempt with a
  NUL counts toward the throttle like a wrong password.

On PostgreSQL an id past 2^31-1 or a NUL in a value raised DataError; on SQLite a huge id
raised OverflowError."""

from __future__ import annotations

import re
from typing import Any

import pytest
from flask import Flask, url_for
from sqlalchemy import func, select, update

from app.core.extensions import db
from app.core.inputs import MAX_ID, NUL_MESSAGE, HavenForm, IdConverter, coerce_id, parse_id
from app.core.security import PUBLIC_ENDPOINTS, allowed_roles
from app.models import AuditEvent, Case, LoginAttempt
from tests import factories
from tests.conftest import login_session
from tests.sms_support import ACCOUNT_SID, AUTH_TOKEN, inbound_params, new_sid, post_signed
from tests.test_authorization import build_url, walkable_rules

ROLES = ("admin", "supervisor", "caseworker", "provider")
NUL = "\x00"
NUL_TEXT = str(NUL_MESSAGE).encode()


@pytest.fixture
def people(app: Flask) -> dict[str, Any]:
    """One user of each role (as in the authorization walk)."""
    users = {
        "admin": factories.make_user("admin", organization=factories.make_org("operator")),
        "provider": factories.make_user("provider", organization=factories.make_org("provider")),
    }
    ngo = factories.make_org("ngo")
    users["supervisor"] = factories.make_user("supervisor", organization=ngo)
    users["caseworker"] = factories.make_user("caseworker", organization=ngo)
    db.session.commit()
    return users


def count(model: Any) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model)) or 0)


# --- ids ------------------------------------------------------------------------------------


def test_every_id_in_a_url_is_a_database_id(app: Flask) -> None:
    """Every URL variable that names a row goes through the one converter (a new route with
    ``<case_id>`` as a string, or a float, would bypass it)."""
    found = 0
    for rule in app.url_map.iter_rules():
        for name, converter in rule._converters.items():
            if name.endswith("_id"):
                assert isinstance(converter, IdConverter), f"{rule.rule}: <{name}>"
                found += 1
    assert found > 10


@pytest.mark.both_databases  # each database refuses different things
@pytest.mark.parametrize(
    "value",
    ["2147483648", "99999999999999999999", "9" * 5000, "0", "007", "\u0666", str(MAX_ID)],
    ids=["2^31", "20-digits", "5000-digits", "zero", "leading-zeros", "arabic-digit",
         "largest-id"],
)
def test_every_url_with_an_id_out_of_range_is_not_found(
    app: Flask, client: Any, people: Any, value: str
) -> None:
    problems = []
    for role, user in people.items():
        for rule, method in walkable_rules(app):
            if not rule.arguments or role not in (allowed_roles(rule.endpoint) or ()):
                continue
            url = re.sub(r"<int:\w+>", value, rule.rule)
            login_session(client, user)
            response = client.open(url, method=method, data={})
            if response.status_code != 404:
                problems.append(f"{role} {method} {url[:60]} -> {response.status_code}")
    assert problems == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", 1), (str(MAX_ID), MAX_ID), ("2147483648", None), ("0", None), ("-1", None),
     ("01", 1), ("\u0666", None), (" 1", None), ("1\x00", None), ("9" * 5000, None),
     (None, None), (1, None)],
)
def test_parse_id(raw: Any, expected: int | None) -> None:
    assert parse_id(raw) == expected


def test_coerce_id_refuses_out_of_range_with_a_value_error() -> None:
    assert coerce_id(0) == 0 and coerce_id("0") == 0 and coerce_id(MAX_ID) == MAX_ID
    for bad in ("2147483648", 2**31, -1, "abc", "", True, None):
        with pytest.raises(ValueError, match="not an id"):
            coerce_id(bad)


@pytest.fixture
def caseworker_with_case(client: Any) -> tuple[Any, Any, Any]:
    user = factories.make_user("caseworker")
    case = factories.make_case(user.organization, needs={"legal": "soon"})
    service = factories.make_service(category="legal")
    db.session.commit()
    login_session(client, user)
    return user, case, service


@pytest.mark.both_databases  # each database refuses different things
@pytest.mark.parametrize("step", ["preview", "send"])
@pytest.mark.parametrize("bad", ["2147483648", "99999999999999999999", "9" * 5000, "x"])
def test_chosen_services_out_of_range_are_a_400(
    client: Any, caseworker_with_case: Any, step: str, bad: str
) -> None:
    _user, case, service = caseworker_with_case
    response = client.post(
        f"/referrals/cases/{case.id}/{step}", data={"services": [str(service.id), bad]}
    )
    assert response.status_code == 400


@pytest.mark.both_databases  # each database refuses different things
@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/directory/?area_id=2147483648", 400),
        ("/directory/?area_id=99999999999999999999", 400),
        ("/directory/?area_id=abc", 400),
        ("/directory/?area_id=0", 200),
        ("/directory/?area_id=", 200),
        ("/cases/?page=" + "9" * 5000, 200),
        ("/cases/?page=99999999999999999999", 200),
    ],
)
def test_ids_and_numbers_in_query_strings(
    client: Any, caseworker_with_case: Any, path: str, status: int
) -> None:
    assert client.get(path).status_code == status


@pytest.mark.both_databases  # each database refuses different things
def test_a_preselected_service_out_of_range_is_a_400(
    client: Any, caseworker_with_case: Any
) -> None:
    _user, case, _service = caseworker_with_case
    response = client.get(f"/referrals/cases/{case.id}/new?service_id=99999999999999999999")
    assert response.status_code == 400


@pytest.mark.both_databases  # each database refuses different things
@pytest.mark.parametrize(
    ("role", "path", "field"),
    [
        ("admin", "/admin/users/new", "organization_id"),
        ("admin", "/directory/services/new", "organization_id"),
        ("admin", "/directory/services/new", "areas"),
        ("admin", "/directory/areas/new", "parent_id"),
        ("caseworker", "/directory/match", "area_id"),
    ],
)
@pytest.mark.parametrize("bad", ["2147483648", "99999999999999999999"])
def test_id_fields_refuse_out_of_range_with_a_field_error(
    client: Any, role: str, path: str, field: str, bad: str
) -> None:
    login_session(client, factories.make_user(role))
    response = client.post(path, data={field: bad})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert re.search(rf'id="{field}-error"', page) or re.search(
        rf'<[^>]*id="{field}"[^>]*aria-invalid="true"', page
    ), page


# --- NUL bytes ------------------------------------------------------------------------------


def test_every_form_is_a_haven_form(app: Flask) -> None:
    """The NUL check lives in HavenForm: a form built on FlaskForm directly would let a NUL
    through to its validators and the database."""
    from flask_wtf import FlaskForm

    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    forms = [c for c in subclasses(FlaskForm) if c.__module__.startswith("app.")]
    assert len(forms) > 15
    assert [f"{c.__module__}.{c.__name__}" for c in forms if not issubclass(c, HavenForm)] == []


@pytest.mark.parametrize("query", ["q=%00", "x=a%00b", "%00=1", "next=/%00"])
def test_a_nul_in_the_query_string_is_a_400_everywhere_even_signed_out(
    app: Flask, client: Any, people: Any, query: str
) -> None:
    problems = []
    for who in (None, *ROLES):
        for rule, method in walkable_rules(app):
            if who is not None and who not in (allowed_roles(rule.endpoint) or ()):
                continue
            if rule.endpoint == "static":
                url = "/static/haven.css"
            else:
                url = build_url(app, rule, people["caseworker" if who is None else who]
                                .organization)
            if who is None:
                client.delete_cookie("haven_session")
            else:
                login_session(client, people[who])
            response = client.open(f"{url}?{query}", method=method, data={})
            if response.status_code != 400:
                problems.append(f"{who} {method} {url}?{query} -> {response.status_code}")
    assert problems == []


def test_a_nul_in_the_path_is_refused(client: Any) -> None:
    assert client.get("/static/haven%00.css").status_code in (400, 404)
    assert client.get("/directory/%00").status_code in (400, 404)
    assert client.get("/cases/1%00").status_code in (400, 404)


def _field_names(page: str) -> set[str]:
    names = set(re.findall(r'<(?:input|select|textarea|button)[^>]*\bname="([^"]+)"', page))
    return names - {"csrf_token"}


def _form_pages(app: Flask) -> list[str]:
    """Endpoints that show a form (GET) and take it back (POST) on the same URL."""
    return sorted(
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if {"GET", "POST"} <= (rule.methods or set())
    )


def _draft_url(app: Flask, organization: Any) -> str:
    """The discard page shows its form for a draft only (consent, no profile yet)."""
    case = factories.make_case(organization, alias=None, phone=None, note=None, needs={})
    db.session.execute(
        update(Case).where(Case.id == case.id).values(profile_completed_at=None, area_id=None)
    )
    db.session.commit()
    with app.test_request_context():
        return url_for("intake.discard_draft", case_id=case.id)


def test_every_form_field_refuses_a_nul_with_a_field_error(
    app: Flask, client: Any, people: Any
) -> None:
    """Each page with a form: its fields (read from the page itself) sent back holding a NUL
    give the page again, 400, with the field error, and nothing is stored."""
    pages = _form_pages(app)
    assert len(pages) >= 15
    problems = []
    for endpoint in pages:
        if endpoint in ("auth.second_factor", "main.leave"):
            continue  # tested below (needs a pending sign-in); quick exit has no form
        rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
        roles = allowed_roles(endpoint)
        if endpoint in PUBLIC_ENDPOINTS:
            who = None if endpoint == "auth.login" else people["caseworker"]
        else:
            who = next(people[r] for r in ROLES if r in (roles or ()))
        url = build_url(app, rule, (who or people["caseworker"]).organization)
        if endpoint == "intake.discard_draft":
            url = _draft_url(app, (who or people["caseworker"]).organization)
        client.delete_cookie("haven_session")
        if who is not None:
            login_session(client, who)
        page = client.get(url)
        if page.status_code != 200:
            problems.append(f"GET {url} -> {page.status_code}")
            continue
        names = _field_names(page.get_data(as_text=True)) - {"logout"}
        if not names:  # a confirmation button only (e.g. discard a draft): nothing to type in
            continue
        before = count(AuditEvent)
        response = client.post(url, data=dict.fromkeys(names, f"a{NUL}b"))
        body = response.get_data()
        if response.status_code != 400 or NUL_TEXT not in body:
            problems.append(f"POST {url} {sorted(names)} -> {response.status_code}")
        elif endpoint != "auth.login" and count(AuditEvent) != before:
            problems.append(f"POST {url} changed something")
    assert problems == [], "\n".join(problems)


@pytest.mark.both_databases  # each database refuses different things
def test_every_post_endpoint_survives_nul_in_every_field(
    app: Flask, client: Any, people: Any
) -> None:
    """Every POST endpoint, as each role allowed on it, with every field name any form has
    (and the referral steps' services) holding a NUL: never a server error."""
    from wtforms.fields.core import UnboundField

    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    names = {"services", "token", "next"}
    for form in subclasses(HavenForm):
        names |= {n for n in dir(form) if isinstance(getattr(form, n, None), UnboundField)}
    data = dict.fromkeys(names, f"x{NUL}")
    problems = []
    for role in ROLES:
        for rule, method in walkable_rules(app):
            if method != "POST" or role not in (allowed_roles(rule.endpoint) or ()):
                continue
            url = build_url(app, rule, people[role].organization)
            login_session(client, people[role])
            response = client.post(url, data=data)
            if response.status_code >= 500:
                problems.append(f"{role} POST {url} -> {response.status_code}")
    assert problems == []


@pytest.mark.parametrize("field", ["username", "password"])
def test_a_nul_at_sign_in_is_a_field_error_and_counts_as_a_failure(
    client: Any, field: str
) -> None:
    user = factories.make_user("caseworker")
    db.session.commit()
    data = {"username": user.username, "password": factories.PASSWORD}
    data[field] = data[field][:3] + NUL + data[field][3:]
    response = client.post("/auth/login", data=data)
    assert response.status_code == 400
    assert NUL_TEXT in response.data
    assert count(LoginAttempt) == 1
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.action == "auth.login_failed")) == 1


def test_nul_attempts_lock_the_account_like_wrong_passwords(client: Any) -> None:
    user = factories.make_user("caseworker")
    db.session.commit()
    for _ in range(5):
        response = client.post(
            "/auth/login", data={"username": user.username, "password": f"guess{NUL}word"}
        )
        assert response.status_code == 400
    response = client.post(
        "/auth/login", data={"username": user.username, "password": factories.PASSWORD}
    )
    assert response.status_code == 429


def test_a_nul_in_the_second_factor_is_a_field_error_and_counts(client: Any) -> None:
    admin = factories.make_user("admin")
    db.session.commit()
    client.post("/auth/login", data={"username": admin.username, "password": factories.PASSWORD})
    before = count(LoginAttempt)
    response = client.post("/auth/verify", data={"code": f"123{NUL}456"})
    assert response.status_code == 400
    assert NUL_TEXT in response.data
    assert count(LoginAttempt) == before + 1


@pytest.fixture
def sms_client(app_factory: Any) -> Any:
    app = app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID)
    with app.app_context():
        factories.make_org("ngo", name="Hotline NGO")
        db.session.commit()
        yield app.test_client()
        db.session.remove()


@pytest.mark.both_databases  # each database refuses different things
@pytest.mark.parametrize("field", ["From", "MessageSid"])
def test_a_nul_in_the_sender_or_sid_of_an_inbound_sms_is_a_400(
    sms_client: Any, field: str
) -> None:
    params = inbound_params("+14155550123", "hello")
    params[field] = params[field][:4] + NUL + params[field][4:]
    response = post_signed(sms_client, "/sms/inbound", params)
    assert response.status_code == 400
    assert db.session.scalar(select(func.count(AuditEvent.id))) == 0


@pytest.mark.both_databases  # each database refuses different things
@pytest.mark.parametrize("field", ["Body", "To", "Extra\x00Key"])
def test_a_nul_in_a_survivors_text_is_answered_like_any_garbage(
    sms_client: Any, field: str
) -> None:
    """A survivor always gets a reply: the text is parsed in memory and never stored, so a
    NUL in it (or in fields the webhook does not read) is no reason for silence."""
    from app.sms import messaging

    params = inbound_params("+14155550123", "hello")
    params[field] = params.get(field, "1")[:2] + NUL + params.get(field, "1")[2:]
    response = post_signed(sms_client, "/sms/inbound", params)
    assert response.status_code == 200
    assert response.content_type.startswith("text/xml")
    assert messaging.render("hotline.language_menu", "en", {}).encode() in response.data


def test_a_nul_in_a_status_callback_is_a_400(sms_client: Any) -> None:
    params = {"MessageSid": new_sid(), "MessageStatus": f"deliv{NUL}ered", "ErrorCode": ""}
    assert post_signed(sms_client, "/sms/status", params).status_code == 400
