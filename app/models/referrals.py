"""Referrals and releases (DESIGN §2–3, issue 5).

``Release``: the survivor's permission to disclose to ONE recipient organization, recorded
when a referral is made: method (``written`` with a signature sealed with the case's key,
``verbal``, ``sms``), granted and expiry time (default 30 days), withdrawal. A release is
never a condition of service; without one no referral is sent to that organization.

``Referral``: case → service. It keeps the code the provider knows it by, the release it
rests on, the *names* of the fields shared (a snapshot, never values: the provider portal
reads the values from the case at the moment of viewing, and only while the release and the
consent still allow), its status, the answer window and bed hold, the provider's answer and
the outcome.

Why the bed hold lives on the referral (``hold_*`` columns) rather than in a table of its
own: a referral holds at most one bed, the hold is born, kept and ended by the referral's
own status changes, and both must change in one statement under one row lock. A separate
table would add a join and a second row to keep consistent, and nothing else.

What is sealed: the provider's optional free-text answer (``response_text``), with the
case's data key — free text may name a person, so it is crypto-shredded with the case.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    CheckConstraint,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.crypto import sealed
from app.core.extensions import db
from app.models.base import UTCDateTime, utcnow
from app.models.keys import DataKey

RELEASE_METHODS = ("written", "verbal", "sms")
# pending → accepted / declined / expired / cancelled; accepted → arrived / no_show /
# cancelled; arrived → completed.
REFERRAL_STATUSES = (
    "pending",
    "accepted",
    "declined",
    "expired",
    "cancelled",
    "arrived",
    "no_show",
    "completed",
)
OPEN_STATUSES = ("pending", "accepted")
OPEN_WHERE = "status IN ('pending', 'accepted')"
# none: no bed counted (not a shelter, or its capacity is not tracked). held: one bed taken
# from beds_available. returned: given back (decline, expiry, cancellation, no-show).
# used: the survivor arrived and occupies it (the provider's counts take over).
HOLD_STATES = ("none", "held", "returned", "used")
DECLINE_REASONS = ("full", "ineligible", "unreachable", "other")
CANCEL_REASONS = (
    "caseworker",
    "consent_withdrawn",
    "release_withdrawn",
    "case_erased",
    "placed_elsewhere",  # another shelter accepted the survivor (or she arrived there)
)


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


class Release(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "referral_release"
    __table_args__ = (
        CheckConstraint(f"method IN {_in(RELEASE_METHODS)}", name="method"),
        Index("ix_referral_release_case_org", "case_id", "organization_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("survivor_case.id"))
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    method: Mapped[str] = mapped_column(String(10))
    # The drawn signature (written releases), sealed with the case's key like the consent
    # signatures; erasure deletes it.
    signature_id: Mapped[int | None] = mapped_column(
        ForeignKey("consent_signature.id", ondelete="SET NULL")
    )
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    granted_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    withdrawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    withdrawn_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))

    organization = relationship("Organization")
    signature = relationship("ConsentSignature")

    def valid_at(self, at: datetime) -> bool:
        return (
            self.granted_at <= at
            and self.expires_at > at
            and (self.withdrawn_at is None or self.withdrawn_at > at)
        )


class Referral(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "referral"
    __table_args__ = (
        CheckConstraint(f"status IN {_in(REFERRAL_STATUSES)}", name="status"),
        CheckConstraint(f"hold_status IN {_in(HOLD_STATES)}", name="hold_status"),
        CheckConstraint(
            f"response_reason IS NULL OR response_reason IN {_in(DECLINE_REASONS)}",
            name="response_reason",
        ),
        CheckConstraint(
            f"cancel_reason IS NULL OR cancel_reason IN {_in(CANCEL_REASONS)}",
            name="cancel_reason",
        ),
        # The provider portal and the caseworkers' waiting list: open referrals per org.
        Index("ix_referral_org_status", "organization_id", "status"),
        Index("ix_referral_referring_org_status", "referring_organization_id", "status"),
        # expire_due(): pending referrals by the end of their window.
        Index("ix_referral_status_hold_expires_at", "status", "hold_expires_at"),
        # One open referral per case and service, even for two forms sent at once.
        Index(
            "uq_referral_open_case_service",
            "case_id",
            "service_id",
            unique=True,
            postgresql_where=text(OPEN_WHERE),
            sqlite_where=text(OPEN_WHERE),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(7), unique=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("survivor_case.id"), index=True)
    service_id: Mapped[int] = mapped_column(ForeignKey("service.id"), index=True)
    category: Mapped[str] = mapped_column(String(20))
    # Recipient (the provider organization) and sender (the case's NGO): both scope queries.
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    referring_organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    release_id: Mapped[int] = mapped_column(ForeignKey("referral_release.id"), index=True)
    # Names of the fields the provider may see (no values), as at sending.
    shared_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(12), default="pending")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    # "<form token>:<service id>": a resent form finds the referrals it already made.
    idempotency_key: Mapped[str | None] = mapped_column(String(100), unique=True)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    # The answer window (every referral); for a shelter also the end of its bed hold.
    hold_expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    hold_status: Mapped[str] = mapped_column(String(10), default="none")
    hold_ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # No answer late in the window: flagged for the caseworker, provider reminded.
    flagged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    responded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    response_reason: Mapped[str | None] = mapped_column(String(20))
    data_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_key.id", ondelete="SET NULL"), index=True
    )
    data_key: Mapped[DataKey | None] = relationship()
    response_text_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    response_text = sealed[str]("response_text_enc")
    outcome_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    cancel_reason: Mapped[str | None] = mapped_column(String(24))

    case = relationship("Case")
    service = relationship("Service")
    organization = relationship("Organization", foreign_keys=[organization_id])
    release: Mapped[Release] = relationship()

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES
