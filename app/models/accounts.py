from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.crypto import MasterEncrypted
from app.core.extensions import db
from app.models.base import UTCDateTime, utcnow

ROLES = ("admin", "supervisor", "caseworker", "provider")
ORG_KINDS = ("operator", "ngo", "provider")


class Organization(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "organization"
    __table_args__ = (CheckConstraint(f"kind IN {ORG_KINDS!r}", name="kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    # TOTP is always required for admins and supervisors; this switches it on for the others.
    totp_required: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Open Referral HSDS organization id (directory import/export, revision 0003_directory).
    hsds_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=None)
    # Settings (revision 0015_org_settings): the IANA zone every time is shown in to its
    # staff (app.formatting), and the public line providers call about its referrals (E.164;
    # never a caseworker's own number).
    timezone: Mapped[str] = mapped_column(String(64), default="UTC", server_default="UTC")
    contact_phone: Mapped[str | None] = mapped_column(String(16), default=None)
    # Where its staff's numbers are read (ISO 3166 code; None: HAVEN_PHONE_REGION).
    phone_region: Mapped[str | None] = mapped_column(String(2), default=None)
    # HSDS organization description (import/export, revision 0016_hsds_interop).
    description: Mapped[str] = mapped_column(Text, default="", server_default="")

    users: Mapped[list[User]] = relationship(back_populates="organization")


class User(UserMixin, db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "user_account"
    __table_args__ = (CheckConstraint(f"role IN {ROLES!r}", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    locale: Mapped[str | None] = mapped_column(String(8), default=None)
    totp_secret: Mapped[str | None] = mapped_column(MasterEncrypted(), default=None)
    totp_last_counter: Mapped[int | None] = mapped_column(Integer, default=None)
    # Rotated whenever every session of this user ends (app.accounts.end_sessions): a
    # sign-in waiting for its second factor carries it, and ends with them.
    session_token: Mapped[str] = mapped_column(String(64))
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    organization: Mapped[Organization] = relationship(back_populates="users")

    @property
    def is_active(self) -> bool:  # Flask-Login
        return self.active

    @property
    def totp_required(self) -> bool:
        return self.role in ("admin", "supervisor") or self.organization.totp_required

    @property
    def totp_enrolled(self) -> bool:
        return self.totp_secret is not None


class LoginAttempt(db.Model):  # type: ignore[name-defined,misc]
    """One login try. Keys are keyed hashes of the username and client address, so the
    throttle works across processes without storing either in clear."""

    __tablename__ = "login_attempt"
    __table_args__ = (
        Index("ix_login_attempt_account_at", "account_key", "at"),
        Index("ix_login_attempt_client_at", "client_key", "at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    account_key: Mapped[str] = mapped_column(String(64))
    client_key: Mapped[str] = mapped_column(String(64))
    success: Mapped[bool] = mapped_column(Boolean)


class UserSession(db.Model):  # type: ignore[name-defined,misc]
    """One signed-in browser (app.accounts): the cookie carries a random id, stored here only
    as a keyed hash. Sign-out, quick exit, expiry and the end of all of a user's sessions
    delete the row, so a copy of the cookie opens nothing afterwards; rows left by browsers
    that just walked away are deleted once past the absolute lifetime (at the next sign-in)."""

    __tablename__ = "user_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
