"""Cases, their needs and consent records, and the de-identified counts that are all that
remains of a survivor who refused `store` or was erased (DESIGN §1–3, §5).

What is sealed with the case's own data key (crypto-shredded on erasure), and why:

* ``alias``, ``phone``: identify the person.
* ``note``: the one short free-text field; may hold anything.
* ``safe_hours``: when she may be contacted, as JSON windows (weekdays and from/to times,
  ``app.safe_hours``) — her routine, identifying and dangerous in the wrong hands. Cases
  from before structured hours may still hold the free text that was typed then, with
  ``safe_hours_check`` set (see below).
* ``ConsentSignature.image``: a handwritten signature identifies the signer.

Plain columns are the coarse, non-identifying facts matching, the SMS outbox and statistics
filter on: language, age band, gender, area, channel, status, children count, and the
safe-contact flags ``no_voicemail`` / ``do_not_text`` / ``accessibility`` (booleans that
other modules must check without unwrapping a key), ``safe_hours_check`` (her safe hours are
old free text that could not be read unambiguously: no SMS until a caseworker saves them
again) and ``timezone`` (an IANA name; empty: her area's zone). The phone is searchable only
through its blind index (DESIGN §7).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ColumnElement,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    and_,
    event,
    false,
)
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.crypto import sealed
from app.core.extensions import db
from app.models.base import UTCDateTime, utcnow
from app.models.keys import DataKey

CHANNELS = ("tablet", "sms")
CASE_STATUSES = ("open", "closed", "erased")
CONSENT_SCOPES = (
    "store",
    "contact_sms",
    "share_shelter",
    "share_legal",
    "share_medical",
    "share_psychosocial",
    "share_other",
    "share_identity",
    "explicit_wording",
)
CONSENT_METHODS = ("verbal", "written", "sms")
# What a consent record is: a grant; a withdrawal of the grant in force (or expired) just
# before it; a refusal of a scope that was not granted (asked and answered "no").
CONSENT_DECISIONS = ("grant", "withdraw", "refuse")
# Why a case was closed (issue 16); asked when closing, counted in the figures.
CLOSE_REASONS = ("goals_met", "referred_elsewhere", "lost_contact", "survivor_choice",
                 "moved_away")
ERASURE_REASONS = ("survivor_request", "consent_withdrawn", "retention", "draft_discarded")


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


class Case(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "survivor_case"  # "case" is an SQL keyword
    __table_args__ = (
        CheckConstraint(f"channel IN {_in(CHANNELS)}", name="channel"),
        CheckConstraint(f"status IN {_in(CASE_STATUSES)}", name="status"),
        CheckConstraint(
            f"close_reason IS NULL OR close_reason IN {_in(CLOSE_REASONS)}", name="close_reason"
        ),
        Index("ix_survivor_case_org_status", "organization_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reference: Mapped[str] = mapped_column(String(7), unique=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    channel: Mapped[str] = mapped_column(String(10), default="tablet")
    status: Mapped[str] = mapped_column(String(10), default="open")
    # A random token from the intake form: a resent form finds the case it already made.
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)

    data_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_key.id", ondelete="SET NULL"), index=True
    )
    data_key: Mapped[DataKey | None] = relationship()
    alias_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    note_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    safe_hours_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    phone_index: Mapped[str | None] = mapped_column(String(64), index=True)

    alias = sealed[str]("alias_enc")
    phone = sealed[str]("phone_enc")
    note = sealed[str]("note_enc")
    safe_hours = sealed[str]("safe_hours_enc")

    # Coarse facts (nullable so that an erased case keeps none of them).
    language: Mapped[str | None] = mapped_column(String(8))
    age_band: Mapped[str | None] = mapped_column(String(16))
    gender: Mapped[str | None] = mapped_column(String(16))
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    children_accompanying: Mapped[int | None] = mapped_column(Integer)
    accessibility: Mapped[bool] = mapped_column(Boolean, default=False)
    no_voicemail: Mapped[bool] = mapped_column(Boolean, default=False)
    do_not_text: Mapped[bool] = mapped_column(Boolean, default=False)
    # Legacy free-text safe hours not converted: blocks every outbox SMS to her
    # (consent.permits "sms") until a caseworker saves structured hours or clears them.
    safe_hours_check: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # Her own time zone (IANA name) for safe hours; None: her area's, else the default.
    timezone: Mapped[str | None] = mapped_column(String(64))

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    profile_completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    retention_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # The survivor said she is in danger (hotline): when, and who acknowledged it when
    # (``app.danger``). Reported and not acknowledged: at the top of the home page and of
    # the SMS queue. A report after an acknowledgement flags the case again.
    danger_reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    danger_acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    danger_acknowledged_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL")
    )
    # The caseworker responsible (issue 16): the creator by default, none for a hotline
    # case until someone takes it or a supervisor assigns it (``app.cases.assign``).
    assigned_to_id: Mapped[int | None] = mapped_column(
        ForeignKey("user_account.id", ondelete="SET NULL"), index=True
    )
    # Why it was closed (``CLOSE_REASONS``); erasure keeps it in the ``CaseStatistic``.
    close_reason: Mapped[str | None] = mapped_column(String(20))

    area = relationship("Area")
    created_by = relationship("User", foreign_keys=[created_by_id])
    danger_acknowledged_by = relationship("User", foreign_keys=[danger_acknowledged_by_id])
    assigned_to = relationship("User", foreign_keys=[assigned_to_id])
    needs: Mapped[list[Need]] = relationship(
        back_populates="case", cascade="all, delete-orphan", order_by="Need.id"
    )
    consents: Mapped[list[Consent]] = relationship(
        back_populates="case",
        cascade="all, delete-orphan",
        order_by=lambda: [Consent.recorded_at, Consent.id],
    )

    @property
    def is_erased(self) -> bool:
        return self.status == "erased"

    @hybrid_property
    def is_draft(self) -> bool:
        """An intake on the tablet that recorded consent (the consent step makes the case)
        but no profile yet. Hotline cases without a profile are the SMS queue instead."""
        return self.channel == "tablet" and self.status == "open" and (
            self.profile_completed_at is None
        )

    @is_draft.inplace.expression
    @classmethod
    def _is_draft_expression(cls) -> ColumnElement[bool]:
        return and_(
            cls.channel == "tablet", cls.status == "open", cls.profile_completed_at.is_(None)
        )


class Need(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "need"
    __table_args__ = (
        CheckConstraint("urgency IN ('immediate', 'soon', 'routine')", name="urgency"),
        CheckConstraint(
            "category IN ('shelter', 'legal', 'medical', 'psychosocial', 'other')",
            name="category",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("survivor_case.id", ondelete="CASCADE"), index=True
    )
    category: Mapped[str] = mapped_column(String(20))
    urgency: Mapped[str] = mapped_column(String(12))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    case: Mapped[Case] = relationship(back_populates="needs")


class ConsentSignature(db.Model):  # type: ignore[name-defined,misc]
    """A signature drawn on the tablet (PNG), sealed with the case's key: it identifies the
    signer, so it is shredded with the case."""

    __tablename__ = "consent_signature"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(
        ForeignKey("survivor_case.id", ondelete="CASCADE"), index=True
    )
    data_key_id: Mapped[int | None] = mapped_column(
        ForeignKey("data_key.id", ondelete="SET NULL"), index=True
    )
    data_key: Mapped[DataKey | None] = relationship()
    image_enc: Mapped[bytes | None] = mapped_column(LargeBinary)
    image = sealed[str]("image_enc")  # a data:image/png;base64 URL
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


def _decision_default(context: Any) -> str:
    """A row written without a decision (tests and fixtures that add records directly):
    what the record says by ``granted``, as existing rows were migrated. ``change_consent``
    always says which it is."""
    return "grant" if context.get_current_parameters()["granted"] else "withdraw"


class Consent(db.Model):  # type: ignore[name-defined,misc]
    """Append-only: a change of mind is a new row; the newest row per scope decides.
    ``decision`` says what the row is (grant, withdraw, refuse); ``granted`` is true for a
    grant only, and the database refuses a row where the two disagree."""

    __tablename__ = "consent"
    __table_args__ = (
        CheckConstraint(f"scope IN {_in(CONSENT_SCOPES)}", name="scope"),
        CheckConstraint(f"method IN {_in(CONSENT_METHODS)}", name="method"),
        CheckConstraint(f"decision IN {_in(CONSENT_DECISIONS)}", name="decision"),
        CheckConstraint("granted = (decision = 'grant')", name="decision_granted"),
        Index("ix_consent_case_scope", "case_id", "scope", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("survivor_case.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(String(24))
    granted: Mapped[bool] = mapped_column(Boolean)
    decision: Mapped[str] = mapped_column(String(8), default=_decision_default)
    method: Mapped[str] = mapped_column(String(10))
    text_version: Mapped[str] = mapped_column(String(16))
    language: Mapped[str] = mapped_column(String(8))
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("user_account.id"))
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    signature_id: Mapped[int | None] = mapped_column(
        ForeignKey("consent_signature.id", ondelete="SET NULL")
    )

    case: Mapped[Case] = relationship(back_populates="consents")
    signature: Mapped[ConsentSignature | None] = relationship()


@event.listens_for(Consent, "before_update")
def _consent_is_append_only(_mapper: Any, _connection: Any, _target: Consent) -> None:
    raise ValueError("consent records are append-only; record a new one instead")


class AnonymousContact(db.Model):  # type: ignore[name-defined,misc]
    """One survivor helped without a `store` consent: day, area and need categories only."""

    __tablename__ = "anonymous_contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date, index=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"))
    need_categories: Mapped[str] = mapped_column(String(100), default="")
    # The intake form's random token, so a resent form counts once. Not derived from anyone.
    idempotency_key: Mapped[str | None] = mapped_column(String(64), unique=True)


class CaseStatistic(db.Model):  # type: ignore[name-defined,misc]
    """What remains of an erased case: coarse facts that do not single a person out.
    Month of intake (not a date), area, channel, age band, need categories. Groups under 5
    are suppressed when shown (DESIGN §5)."""

    __tablename__ = "case_statistic"

    id: Mapped[int] = mapped_column(primary_key=True)
    month: Mapped[date] = mapped_column(Date, index=True)  # first day of the intake month
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    area_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"))
    channel: Mapped[str] = mapped_column(String(10))
    age_band: Mapped[str | None] = mapped_column(String(16))
    need_categories: Mapped[str] = mapped_column(String(100), default="")
    reason: Mapped[str] = mapped_column(String(20))
    # Why the case had been closed, when it had (issue 16: reasons feed the figures).
    close_reason: Mapped[str | None] = mapped_column(String(20))
