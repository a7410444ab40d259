from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    render_template,
    send_from_directory,
    session,
)
from flask_login import current_user
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from app.cases import danger, workqueue
from app.cases import service as cases
from app.consent import safe_hours
from app.core import audit
from app.core.extensions import db
from app.core.security import ANY_ROLE, end_session, roles
from app.main.queue_labels import workqueue_labels
from app.models.base import utcnow

bp = Blueprint("main", __name__)
STAFF_ROLES = ("caseworker", "supervisor")


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
        supervisor = current_user.role == "supervisor"
        queue = workqueue.build(
            current_user.organization_id,
            user_id=None if supervisor else current_user.id,
            now=utcnow(),
            thresholds=workqueue.Thresholds.from_config(current_app.config),
            danger_cases=pending,
            supervisor=supervisor,
        )
        context["queue"] = queue
        context["queue_labels"] = workqueue_labels()
    if current_user.role == "caseworker":
        # Cases whose old safe hours could not be read: no texts reach them until checked.
        context["safe_hours_checks"] = safe_hours.cases_to_check(current_user.organization_id)
    return render_template(f"main/home_{current_user.role}.html", **context)


@bp.app_context_processor
def navigation_counts() -> dict[str, Any]:
    """The work queue's count next to Home, on every page a caseworker or supervisor sees
    (issue 16): one query of counts (``workqueue.nav_count``), for signed-in staff only, of
    their own organization. Registered here, beside the home page it counts, because core
    (templating) sits below the features and must not import them."""
    if not current_user.is_authenticated or current_user.role not in STAFF_ROLES:
        return {}
    supervisor = current_user.role == "supervisor"
    try:
        count = workqueue.nav_count(
            current_user.organization_id,
            user_id=None if supervisor else current_user.id,
            now=utcnow(),
            thresholds=workqueue.Thresholds.from_config(current_app.config),
            supervisor=supervisor,
        )
    except SQLAlchemyError:  # an error page must still render when the database is away
        db.session.rollback()
        return {}
    return {"nav_counts": {"main.index": count}}


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


@bp.get("/favicon.ico")
def favicon() -> Response:
    """The icon every browser asks for: a blank one, the same on every page and on the quick
    exit's page, so the tab shows nothing that names Haven. Public and cacheable."""
    assert current_app.static_folder is not None
    return send_from_directory(
        current_app.static_folder, "favicon.ico", mimetype="image/x-icon", max_age=86400
    )


@bp.post("/session/alive")
@roles(*ANY_ROLE)
def keepalive() -> tuple[str, int]:
    """The page reports that someone is using it (typing, tapping: a consent read aloud can
    take longer than the idle timeout without a request). The gate has just refreshed the
    session; nothing else happens. A session already expired gets no new life here."""
    return "", 204


@bp.route("/leave", methods=["GET", "POST"])
def leave() -> str:
    """Quick exit: ends the session (in this browser, then on the server) and shows a page
    that says nothing about Haven. It never fails: if the database cannot be reached, the
    browser has forgotten the session anyway, and the server's copy expires."""
    try:
        end_session()
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()
        current_app.logger.warning("quick exit: the session could not be ended on the server")
    session.clear()
    return render_template("main/leave.html")
