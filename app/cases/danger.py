"""Danger reports (issue 13 item 5): a survivor who tells the hotline she is in danger gets
the emergency number first (``app.hotline``), and her case is flagged here with the time of
the report, so that every caseworker and supervisor of the case's organization sees it at the
top of the home page and of the SMS queue until one of them acknowledges it.

* ``report`` flags a case: the time of the first report not yet acknowledged is kept (the
  case has been waiting since then; each later report is still audited); a report after an
  acknowledgement flags the case again with the new time.
* ``acknowledge`` records who took it up and when, for the report the caseworker saw: a
  double tap changes nothing, and a report newer than the one on their screen raises
  ``NewerDangerReport`` instead of being acknowledged unseen.

Both write with one conditional UPDATE, so that a report and an acknowledgement racing each
other on PostgreSQL cannot lose either (the second re-reads the row the first committed).
Before consent there is no case: the hotline keeps the time on its session and calls
``report`` when consent creates the case. Flush only; the caller commits.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, literal, select, update
from sqlalchemy import case as sql_case
from sqlalchemy.orm import selectinload

from app.core import audit
from app.core.extensions import db
from app.models.base import UTCDateTime, utcnow
from app.models.cases import Case

_DANGER_COLUMNS = ["danger_reported_at", "danger_acknowledged_at", "danger_acknowledged_by_id"]
HOME_LIMIT = 50


class NewerDangerReport(Exception):
    """The case was reported in danger again after the report the caseworker acknowledged:
    they must see the new one first."""


def pending_clause() -> Any:
    """SQL: reported and not acknowledged."""
    return and_(Case.danger_reported_at.is_not(None), Case.danger_acknowledged_at.is_(None))


def is_pending(case: Case) -> bool:
    return case.danger_reported_at is not None and case.danger_acknowledged_at is None


def report(case: Case, at: datetime) -> None:
    """The survivor of ``case`` reported danger at ``at`` (audited ``case.danger_report``)."""
    db.session.execute(
        update(Case)
        .where(Case.id == case.id)
        .values(
            danger_reported_at=sql_case(
                (pending_clause(), Case.danger_reported_at),
                else_=literal(at, UTCDateTime()),
            ),
            danger_acknowledged_at=None,
            danger_acknowledged_by_id=None,
        )
        .execution_options(synchronize_session=False)
    )
    db.session.expire(case, _DANGER_COLUMNS)
    audit.record("case.danger_report", "case", case.id)


def acknowledge(
    case: Case, actor_id: int, *, seen: datetime, at: datetime | None = None
) -> bool:
    """``actor_id`` acknowledges the danger report of ``seen`` (the report time shown to
    them). True when acknowledged now (audited ``case.danger_acknowledge``); False when
    there was nothing to acknowledge (already acknowledged: a double tap, or by a colleague).
    Raises ``NewerDangerReport`` when the pending report is not the one they saw."""
    result = db.session.execute(
        update(Case)
        .where(
            Case.id == case.id,
            Case.danger_reported_at == literal(seen, UTCDateTime()),
            Case.danger_acknowledged_at.is_(None),
        )
        .values(danger_acknowledged_at=at or utcnow(), danger_acknowledged_by_id=actor_id)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(case, _DANGER_COLUMNS)
    if result.rowcount == 1:  # type: ignore[attr-defined]
        audit.record("case.danger_acknowledge", "case", case.id)
        return True
    if is_pending(case):
        raise NewerDangerReport
    return False


def pending_cases(organization_id: int, limit: int = HOME_LIMIT) -> list[Case]:
    """The organization's open cases in danger not yet acknowledged, longest waiting first."""
    return list(
        db.session.scalars(
            select(Case)
            .where(Case.organization_id == organization_id, Case.status == "open",
                   pending_clause())
            .options(selectinload(Case.data_key))
            .order_by(Case.danger_reported_at, Case.id)
            .limit(limit)
        )
    )
