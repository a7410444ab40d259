"""Follow-ups (issue 16): structured contact records on a case, not narratives.

A follow-up is the day of a contact, its kind (call, meeting, message, provider contact),
its outcome from a list, the day of the next follow-up, and optionally a short note (at most
``NOTE_MAX`` characters) sealed with the case's data key. The newest follow-up of a case
decides when the next one is due (``app.cases.workqueue`` reads ``next_on``).

Recording one needs an open case with ``store`` consent: the note is survivor data. The
survivor's export includes every follow-up (``export``); both erasure paths delete them
(``delete_for_cases``, called explicitly by ``app.cases.erase_case`` and
the retention path, one pipeline) before the case's key goes.

Domain functions flush, never commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, select

from app.consent.service import has_consent
from app.core import audit
from app.core.crypto import new_data_key
from app.core.extensions import db
from app.models.base import utcnow
from app.models.cases import Case
from app.models.followups import FOLLOW_UP_KINDS, FOLLOW_UP_OUTCOMES, NOTE_MAX, FollowUp

__all__ = [
    "FOLLOW_UP_KINDS",
    "FOLLOW_UP_OUTCOMES",
    "KIND_LABELS",
    "NOTE_MAX",
    "OUTCOME_LABELS",
    "FollowUpError",
    "FollowUpSpec",
    "delete_for_cases",
    "export",
    "for_case",
    "record",
]

KIND_LABELS = {
    "call": _l("Call"),
    "meeting": _l("Meeting"),
    "message": _l("Message"),
    "provider_contact": _l("Contact with a provider"),
}
OUTCOME_LABELS = {
    "reached": _l("Reached, nothing new"),
    "not_reached": _l("Not reached"),
    "needs_met": _l("Needs met"),
    "needs_changed": _l("Needs changed"),
    "rescheduled": _l("Rescheduled"),
}
# How far back or ahead a follow-up's days may be: a typo (year 2062) is refused.
MAX_DAYS_BACK = 366
MAX_DAYS_AHEAD = 366


class FollowUpError(ValueError):
    """A follow-up that may not be recorded; ``message`` is translated for the user."""

    def __init__(self, message: Any) -> None:
        self.message = message
        super().__init__(type(self).__name__)


@dataclass(frozen=True)
class FollowUpSpec:
    occurred_on: date
    kind: str
    outcome: str
    next_on: date | None = None
    note: str | None = None


def check(spec: FollowUpSpec, today: date) -> None:
    """Raise ``FollowUpError`` unless ``spec`` is a follow-up that can be recorded on
    ``today`` (the one rule the form and any other path share)."""
    if spec.kind not in FOLLOW_UP_KINDS:
        raise FollowUpError(_l("Choose the kind of contact."))
    if spec.outcome not in FOLLOW_UP_OUTCOMES:
        raise FollowUpError(_l("Choose the outcome."))
    if spec.occurred_on > today:
        raise FollowUpError(_l("The day of the contact is in the future."))
    if (today - spec.occurred_on).days > MAX_DAYS_BACK:
        raise FollowUpError(_l("The day of the contact is more than a year ago."))
    if spec.next_on is not None:
        if spec.next_on < spec.occurred_on:
            raise FollowUpError(_l("The next follow-up cannot be before this one."))
        if (spec.next_on - today).days > MAX_DAYS_AHEAD:
            raise FollowUpError(_l("The next follow-up is more than a year away."))
    if spec.note is not None and len(spec.note) > NOTE_MAX:
        raise FollowUpError(_l("The note is longer than %(max)d characters.", max=NOTE_MAX))


def record(
    case: Case, spec: FollowUpSpec, actor_id: int | None, *, at: datetime | None = None
) -> FollowUp:
    """Record a follow-up on an open case with ``store`` consent (audited
    ``case.follow_up``; the note never reaches the audit trail or a log)."""
    at = at or utcnow()
    if case.status != "open":
        raise FollowUpError(_l("Follow-ups are recorded on open cases only."))
    if not has_consent(case, "store", at):
        raise FollowUpError(_l("There is no current consent to keep this record."))
    check(spec, at.date())
    note = (spec.note or "").strip() or None
    if case.data_key is None:
        case.data_key = new_data_key()
        db.session.flush()
    follow_up = FollowUp(
        case_id=case.id,
        recorded_by_id=actor_id,
        occurred_on=spec.occurred_on,
        kind=spec.kind,
        outcome=spec.outcome,
        next_on=spec.next_on,
        data_key=case.data_key,
        created_at=at,
    )
    follow_up.note = note
    db.session.add(follow_up)
    db.session.flush()
    audit.record("case.follow_up", "case", case.id, actor_user_id=actor_id)
    return follow_up


def for_case(case: Case) -> list[FollowUp]:
    """The case's follow-ups, newest first (the case timeline)."""
    return list(
        db.session.scalars(
            select(FollowUp)
            .where(FollowUp.case_id == case.id)
            .order_by(FollowUp.occurred_on.desc(), FollowUp.id.desc())
        )
    )


def export(case: Case) -> list[dict[str, Any]]:
    """Every follow-up, for the survivor's export (oldest first), note included."""
    return [
        {
            "occurred_on": f.occurred_on.isoformat(),
            "kind": f.kind,
            "outcome": f.outcome,
            "next_on": f.next_on.isoformat() if f.next_on else None,
            "note": f.note,
            "recorded_at": f.created_at.isoformat(),
        }
        for f in reversed(for_case(case))
    ]


def delete_for_cases(case_ids: Sequence[int]) -> None:
    """Erasure: the cases' follow-ups go, before their key (their notes are sealed with
    it). Bulk, for both erasure paths."""
    if case_ids:
        db.session.execute(
            delete(FollowUp)
            .where(FollowUp.case_id.in_(list(case_ids)))
            .execution_options(synchronize_session=False)
        )
