from __future__ import annotations

from typing import Any

from flask import Response, jsonify, render_template, session
from flask_login import current_user
from sqlalchemy import text

from app import audit, cases, danger, safe_hours
from app.extensions import db
from app.main import bp
from app.security import ANY_ROLE, end_session, roles


@bp.get("/")
@roles(*ANY_ROLE)
def index() -> str:
    context: dict[str, Any] = {}
    if current_user.role in ("caseworker", "supervisor"):
        # Danger reports of the organization's cases, until one of them acknowledges each.
        pending = danger.pending_cases(current_user.organization_id)
        if pending:  # aliases on the page: a view of survivor data
            audit.record("case.danger_list", "organization", current_user.organization_id)
            db.session.commit()
        context["danger_cases"] = pending
        context["drafts"] = cases.drafts(current_user.organization_id)
    if current_user.role == "caseworker":
        # Cases whose old safe hours could not be read: no texts reach them until checked.
        context["safe_hours_checks"] = safe_hours.cases_to_check(current_user.organization_id)
    return render_template(f"main/home_{current_user.role}.html", **context)


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    try:
        db.session.execute(text("SELECT 1"))
        database = "ok"
    except Exception:  # noqa: BLE001 - health must answer, not raise
        db.session.rollback()
        database = "unavailable"
    status = 200 if database == "ok" else 503
    return jsonify(status="ok" if status == 200 else "degraded", database=database), status


@bp.post("/session/alive")
@roles(*ANY_ROLE)
def keepalive() -> tuple[str, int]:
    """The page reports that someone is using it (typing, tapping: a consent read aloud can
    take longer than the idle timeout without a request). The gate has just refreshed the
    session; nothing else happens. A session already expired gets no new life here."""
    return "", 204


@bp.route("/leave", methods=["GET", "POST"])
def leave() -> str:
    """Quick exit: ends the session and shows a page that says nothing about Haven."""
    end_session()
    session.clear()
    return render_template("main/leave.html")
