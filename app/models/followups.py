"""Follow-ups (issue 16, DESIGN §2): a structured record of one contact about a case — the
day, the kind of contact, its outcome from a list, the day of the next one — and at most a
short note, sealed with the case's own data key (so erasure's crypto-shredding covers it).

No narrative: the note is capped at ``NOTE_MAX`` characters and the form reminds the
caseworker to write only what the next contact needs. Rows are deleted with their case
(``app.cases.followups.delete_for_cases``, called by the erasure pipeline).
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import CheckConstraint, Date, ForeignKey, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.crypto import sealed
from app.core.extensions import db
from app.models.base import UTCDateTime, utcnow
from app.models.keys import DataKey

FOLLOW_UP_KINDS = ("call", "meeting", "message", "provider_contact")
FOLLOW_UP_OUTCOMES = (
    "reached",
    "not_reached",
    "needs_met",
    "needs_changed",
    "rescheduled",
)
NOTE_MAX = 280


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


class FollowUp(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "follow_up"
    __table_args__ = (
        CheckConstraint(f"kind IN {_in(FOLLOW_UP_KINDS)}", name="kind"),
        CheckConstraint(f"outcome IN {_in(FOLLOW_UP_OUTCOMES)}", name="outcome"),
        # The work queue: the newest follow-up per case and the day it asks for the next.
        Index("ix_follow_up_case_id_id", "case_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("survivor_case.id", ondelete="CASCADE"))
    recorded_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    occurred_on: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(20))
    next_on: Mapped[date | None] = mapped_column(Date, index=True)
    data_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_key.id", ondelete="SET NULL"), index=True
    )
    data_key: Mapped[DataKey | None] = relationship()
    note_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    note = sealed[str]("note_enc")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    recorded_by = relationship("User")
