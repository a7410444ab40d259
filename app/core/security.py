"""Deny-by-default access control, session lifetime and HTTP hardening.

One ``before_request`` gate decides every request (SecureDrop style):

* endpoints in ``PUBLIC_ENDPOINTS`` are open to anyone;
* every other endpoint needs a logged-in user whose role the view declared with ``@roles``;
* a view that declared no roles is refused to everyone (deny by default).

Object-level checks (another organization's case, user, referral) are done by ``get_or_404``,
the one org-scoped lookup every view uses; it answers 404 so that ids of other organizations
are not confirmed.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from flask import (
    Flask,
    abort,
    current_app,
    flash,
    g,
    has_request_context,
    redirect,
    request,
    session,
    url_for,
)
from flask import Response as FlaskResponse
from flask.sessions import SecureCookieSessionInterface
from flask_babel import gettext as _
from flask_login import current_user, login_user, logout_user
from sqlalchemy import select
from werkzeug.wrappers import Response

from app.auth import accounts
from app.core import audit
from app.core.extensions import db
from app.core.inputs import NUL, has_nul
from app.models import ROLES, User

# The read-only HSDS API (app/hsds_api): anonymous, public directory data only.
HSDS_API_ENDPOINTS = frozenset(
    {
        "hsds_api.meta",
        "hsds_api.services",
        "hsds_api.service",
        "hsds_api.organizations",
        "hsds_api.organization",
        "hsds_api.taxonomies",
        "hsds_api.taxonomy",
        "hsds_api.taxonomy_terms",
        "hsds_api.taxonomy_term",
        "hsds_api.service_at_locations",
        "hsds_api.service_at_location",
    }
)
PUBLIC_ENDPOINTS = HSDS_API_ENDPOINTS | frozenset(
    {
        "static",
        "main.favicon",
        "main.healthz",
        "main.leave",
        "auth.login",
        "auth.second_factor",
        "auth.enroll_totp",
        "sms.inbound",
        "sms.status",
        "voice.inbound",
        "voice.step",
        "voice.status",
    }
)
# Public endpoints that check every body field they read themselves, so a NUL byte there is
# not the bare 400 of `refuse_nul_bytes`: the sign-in forms (a field error, and an attempt
# counted like a wrong password) and the SMS webhook (its sender and SID are checked; a NUL
# in a survivor's text, which is parsed and never stored, is answered like any garbage: a
# survivor always gets a reply).
PUBLIC_BODY_CHECKED = frozenset(
    {"auth.login", "auth.second_factor", "auth.enroll_totp", "sms.inbound"}
)
# Public files that hold nothing personal: the browser may cache them.
CACHEABLE_ENDPOINTS = frozenset({"static", "main.favicon"}) | HSDS_API_ENDPOINTS
# Endpoints a logged-in user may reach whatever their role (no survivor data behind them).
ANY_ROLE = tuple(ROLES)

F = TypeVar("F", bound=Callable[..., Any])


def roles(*allowed: str) -> Callable[[F], F]:
    """Declare which roles may call a view. Views without it are refused to everyone."""
    unknown = set(allowed) - set(ROLES)
    if unknown or not allowed:
        raise ValueError(f"unknown roles: {sorted(unknown)}")

    def mark(view: F) -> F:
        view.haven_roles = frozenset(allowed)  # type: ignore[attr-defined]
        return view

    return mark


def allowed_roles(endpoint: str) -> frozenset[str] | None:
    """None for public endpoints; the declared roles (maybe empty) otherwise."""
    if endpoint in PUBLIC_ENDPOINTS:
        return None
    view = current_app.view_functions.get(endpoint)
    return frozenset(getattr(view, "haven_roles", frozenset()))


def is_safe_next(target: str | None) -> bool:
    """Only same-site relative paths: no scheme, no host, no backslash tricks."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return False
    if "\\" in target or any(ord(c) < 32 for c in target):
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def _session_expired(now: float) -> bool:
    idle = current_app.config["IDLE_TIMEOUT"].total_seconds()
    absolute = current_app.config["SESSION_ABSOLUTE_LIFETIME"].total_seconds()
    seen = session.get("seen")
    started = session.get("started")
    if not isinstance(seen, (int, float)) or not isinstance(started, (int, float)):
        return True
    return now - seen > idle or now - started > absolute


def start_session(user: User) -> None:
    """Sign ``user`` in on this browser: a new server-side session (``app.accounts``) whose
    random id only this browser's cookie carries. The caller commits."""
    session_id = accounts.open_session(user.id, current_app.config["SESSION_ABSOLUTE_LIFETIME"])
    session.clear()
    login_user(user)
    session["_user_id"] = session_id  # Flask-Login's key: what `_load_user` is given
    now = time.time()
    session["started"] = now
    session["seen"] = now


def end_session() -> None:
    """Sign this browser out, in the cookie first (whatever happens next) and then on the
    server, so a copy of the cookie opens nothing. The caller commits."""
    session_id = session.get("_user_id")
    logout_user()
    session.clear()
    accounts.close_session(session_id)


def gate() -> Response | None:
    endpoint = request.endpoint
    if endpoint is None:  # no route matched: let routing answer 404/405
        return None
    if endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return _to_login()
    now = time.time()
    if _session_expired(now):
        audit.record("auth.session_expired", "user", current_user.id)
        end_session()
        db.session.commit()
        flash(_("You were signed out after a period of inactivity."), "info")
        return _to_login()
    session["seen"] = now
    allowed = allowed_roles(endpoint) or frozenset()
    if current_user.role not in allowed:
        abort(403)
    return None


def _to_login() -> Response:
    if request.method == "GET":
        target = request.full_path.rstrip("?")
        nxt = target if is_safe_next(target) else None
        return redirect(url_for("auth.login", next=nxt))
    abort(401)


Row = TypeVar("Row")


def get_or_404(
    model: type[Row], object_id: int, org_column: Any, *where: Any, join: Any = None
) -> Row:
    """The ``model`` row with this id whose ``org_column`` is the signed-in user's
    organization (and that meets every ``where``), else 404 — the same answer as an id that
    does not exist. ``org_column=None`` only where the role may see every organization's
    rows (admins; the directory for staff). ``join``: ``(model, onclause)`` when the
    organization is on another table."""
    query = select(model).where(model.id == object_id, *where)  # type: ignore[attr-defined]
    if join is not None:
        query = query.join(*join)
    if org_column is not None:
        query = query.where(org_column == current_user.organization_id)
    row = db.session.scalar(query)
    if row is None:
        abort(404)
    return row


def assign_request_id() -> None:
    g.request_id = secrets.token_hex(8)


def checks_its_body(endpoint: str) -> bool:
    """Whether the endpoint's view reads a form body only through forms (``HavenForm``),
    the id parsers of ``app.inputs`` or its own checks: every signed-in view, and
    ``PUBLIC_BODY_CHECKED``. The other public endpoints get the guard's 400."""
    return endpoint not in PUBLIC_ENDPOINTS or endpoint in PUBLIC_BODY_CHECKED


def refuse_nul_bytes() -> None:
    """Before the gate and CSRF, so it covers anonymous requests and no database call ever
    sees a NUL (PostgreSQL text cannot hold one: it was a DataError, a 500): 400 for a NUL
    in the path or query string of any request, or in the form body of an endpoint that
    does not check its body itself. Forms refuse it with a field error (``HavenForm``)."""
    if NUL in request.path or has_nul(
        part for pair in request.args.items(multi=True) for part in pair
    ):
        abort(400)
    if request.endpoint is None or checks_its_body(request.endpoint):
        return
    if has_nul(part for pair in request.form.items(multi=True) for part in pair):
        abort(400)


CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def security_headers(response: Response) -> Response:
    headers = response.headers
    headers.setdefault("Content-Security-Policy", CSP)
    headers["Referrer-Policy"] = "no-referrer"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["X-Frame-Options"] = "DENY"
    headers["Cross-Origin-Opener-Policy"] = "same-origin"
    headers["Cross-Origin-Resource-Policy"] = "same-origin"
    headers["Permissions-Policy"] = (
        "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()"
    )
    if request.endpoint not in CACHEABLE_ENDPOINTS:
        # Shared tablets: no page may come back from the browser cache or history.
        headers["Cache-Control"] = "no-store"
        headers["Pragma"] = "no-cache"
    if current_app.config.get("HAVEN_ENV") == "production":
        headers["Strict-Transport-Security"] = "max-age=63072000; includeSubDomains"
    if "request_id" in g:
        headers["X-Request-ID"] = g.request_id
    return response


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = g.get("request_id", "-") if has_request_context() else "-"
        return True


class CookielessSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, except that the anonymous open-data endpoints
    (``HSDS_API_ENDPOINTS``) never set or refresh a cookie, whatever the request carried."""

    def save_session(self, app: Flask, session: Any, response: FlaskResponse) -> None:
        if request.endpoint in HSDS_API_ENDPOINTS:
            return
        super().save_session(app, session, response)


def init_app(app: Flask) -> None:
    app.session_interface = CookielessSessions()
    # Order matters: the request id first, so even refused requests are traced; then NUL
    # bytes, refused before anything (the gate loads the user) touches the database.
    app.before_request(assign_request_id)
    app.before_request(refuse_nul_bytes)
    app.before_request(gate)
    app.after_request(security_headers)
