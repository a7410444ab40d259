"""Figures for supervisors (their organization) and admins (all organizations): the
de-identified tables of ``app.figures`` with small cells suppressed, as a page with SVG
charts and as CSV."""

from __future__ import annotations

import csv
import io
from typing import Any

from flask import Blueprint, Response, abort, render_template, request
from flask_babel import gettext as _
from flask_login import current_user

from app.consent.service import SCOPE_LABELS
from app.core import audit
from app.core.extensions import db
from app.core.security import roles
from app.reports import figures
from app.retention.service import open_tasks

bp = Blueprint("reports", __name__)

TABLES = {
    "cases": figures.cases_by_month,
    "needs": figures.needs_by_month,
    "referrals": figures.referrals_by_outcome,
    "answer_times": figures.answer_times,
    "close_reasons": figures.close_reasons,
}


def _scope() -> int | None:
    """Supervisors: their organization. Admins: every organization (None)."""
    return None if current_user.role == "admin" else current_user.organization_id


@bp.get("/")
@roles("supervisor", "admin")
def index() -> Any:
    scope = _scope()
    tables = figures.all_tables(scope)
    occupancy = figures.bed_occupancy()
    audit.record("reports.view", "organization", scope or None)
    db.session.commit()
    return render_template(
        "reports/index.html",
        tables=tables,
        occupancy=occupancy,
        charts={t.key: figures.table_chart(t) for t in tables},
        occupancy_chart=figures.occupancy_chart(occupancy, _("Shelter bed occupancy")),
        all_organizations=scope is None,
        threshold=figures.THRESHOLD,
    )


@bp.get("/export.csv")
@roles("supervisor", "admin")
def export_csv() -> Response:
    name = request.args.get("table", "cases")
    maker = TABLES.get(name)
    if maker is None:
        abort(404)
    scope = _scope()
    table = maker(scope)  # type: ignore[operator]
    out = io.StringIO()
    writer = csv.writer(out)
    for row in figures.csv_rows(table):
        writer.writerow(row)
    audit.record("reports.export", "organization", scope or None)
    db.session.commit()
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={
            "Content-Disposition": f'attachment; filename="haven-{name}.csv"',
            "Cache-Control": "no-store",
        },
    )


@bp.app_template_global("consent_tasks")
def consent_tasks() -> list[Any]:
    """Open re-ask tasks of the signed-in staff member's organization (home page)."""

    if not current_user.is_authenticated or current_user.role not in ("caseworker", "supervisor"):
        return []
    return open_tasks(current_user.organization_id, limit=20)


@bp.app_context_processor
def _labels() -> dict[str, Any]:
    return {"scope_labels": SCOPE_LABELS}
