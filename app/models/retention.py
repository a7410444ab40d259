"""Retention (DESIGN §5): the run lock, the run log, the caseworkers' re-ask tasks, and the
de-identified figures that outlive erased cases besides ``CaseStatistic``.

Nothing here holds a name, a phone number, a blind index or free text.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Date, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.extensions import db
from app.models.base import UTCDateTime, utcnow


class JobLock(db.Model):  # type: ignore[name-defined,misc]
    """One row per exclusive job (``retention``). Taken by a conditional UPDATE (free or
    expired), renewed after every batch, released at the end. A run that dies keeps it
    until ``expires_at``; then the next run takes over and finishes the work."""

    __tablename__ = "job_lock"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    owner: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    acquired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class RetentionRun(db.Model):  # type: ignore[name-defined,misc]
    """One real retention run: per-rule counts (numbers only). The audit summary event
    points here (audit events hold ids, not figures)."""

    __tablename__ = "retention_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    as_of: Mapped[datetime] = mapped_column(UTCDateTime())  # the run's "now" (--now)
    counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)


class ConsentTask(db.Model):  # type: ignore[name-defined,misc]
    """A consent grant expired (DESIGN §3: expired counts as withdrawn): the caseworker
    should ask again. Open while the expired record is still the newest for its scope;
    deleted with the consent record (so with the case on erasure)."""

    __tablename__ = "consent_task"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The expired consent record. No foreign key: erasure deletes a case's consent rows in
    # bulk, and a per-row cascade trigger would cost a lookup per row; the erasure hook
    # deletes the case's tasks instead.
    consent_id: Mapped[int] = mapped_column(Integer, unique=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("survivor_case.id", ondelete="CASCADE"), index=True
    )
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    scope: Mapped[str] = mapped_column(String(24))
    expired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ReferralStatistic(db.Model):  # type: ignore[name-defined,misc]
    """What remains of one referral of an erased case: month it was made, the referring
    organization, the case's area, the service category, the outcome and the provider's
    answer time in whole hours. No case, service or person is named."""

    __tablename__ = "referral_statistic"
    __table_args__ = (Index("ix_referral_statistic_org_month", "organization_id", "month"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[date] = mapped_column(Date)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id", ondelete="SET NULL"))
    category: Mapped[str] = mapped_column(String(20))
    outcome: Mapped[str] = mapped_column(String(20))
    answer_hours: Mapped[int | None] = mapped_column(Integer)


class BedSnapshot(db.Model):  # type: ignore[name-defined,misc]
    """Beds of one shelter service on one day (taken by the daily retention run), for the
    occupancy figures. Capacity, not people."""

    __tablename__ = "bed_snapshot"
    __table_args__ = (UniqueConstraint("day", "service_id", name="uq_bed_snapshot_day_service"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id", ondelete="CASCADE"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    beds_total: Mapped[int] = mapped_column(Integer)
    beds_available: Mapped[int] = mapped_column(Integer)
