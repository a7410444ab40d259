"""SMS: the outbox / message log, hotline conversations and opt-outs (DESIGN §2, §4, §5).

What is kept, and what never is:

* A ``Message`` row holds no body. Outbound bodies are rendered from a translated template
  (``template_key`` + ``language`` + ``params``) at send time; ``params`` are non-PII codes
  and ids only (a reference code, a referral code, vocabulary keys).
* The counterpart's number is kept only as its blind index (``counterpart_index``). When a
  message goes to a number that is not read from a case or a service at send time, the
  number is sealed with the master keys (``recipient``) and cleared as soon as the worker no
  longer needs it (accepted by Twilio, failed for good, or cancelled).
* Inbound messages get a row (direction ``in``, the Twilio ``MessageSid``) so that a Twilio
  retry of the same webhook is handled once (``twilio_sid`` is unique), and so that the
  worker can delete the inbound text at Twilio too. Their text is never stored.
* ``HotlineSession``: one per phone blind index; step, language, failure count, case id.
* ``SmsOptOut``: numbers (blind index) that said STOP or that Twilio reported as opted out
  (error 21610); nothing is sent to them until they say START.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.crypto import MasterEncrypted
from app.core.extensions import db
from app.models.base import UTCDateTime, utcnow

DIRECTIONS = ("in", "out")
AUDIENCES = ("survivor", "provider", "staff")
# queued: in the outbox. submitted: accepted by Twilio (queued/accepted/sending there).
# sent: handed to the carrier. Final: delivered, undelivered, failed, cancelled, received.
MESSAGE_STATUSES = (
    "queued",
    "submitted",
    "sent",
    "delivered",
    "undelivered",
    "failed",
    "cancelled",
    "received",
)
FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "cancelled", "received"})
HOTLINE_STEPS = ("language", "consent", "needs", "area", "done", "callback")
# The hotline's channels (app.channels): one conversation per number and channel.
CHANNELS = ("sms", "whatsapp", "voice")


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


class Message(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "sms_message"
    __table_args__ = (
        CheckConstraint(f"direction IN {_in(DIRECTIONS)}", name="direction"),
        CheckConstraint(f"status IN {_in(MESSAGE_STATUSES)}", name="status"),
        CheckConstraint(f"audience IN {_in(AUDIENCES)}", name="audience"),
        # The worker's claim query: due rows of the outbox.
        Index("ix_sms_message_status_next_attempt_at", "status", "next_attempt_at"),
        CheckConstraint(f"channel IN {_in(CHANNELS)}", name="channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    direction: Mapped[str] = mapped_column(String(3))
    audience: Mapped[str] = mapped_column(String(10), default="survivor")
    template_key: Mapped[str | None] = mapped_column(String(48))
    language: Mapped[str] = mapped_column(String(8), default="en")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    twilio_sid: Mapped[str | None] = mapped_column(String(40), unique=True)
    status: Mapped[str] = mapped_column(String(12), default="queued")
    error_code: Mapped[int | None] = mapped_column(Integer)
    counterpart_index: Mapped[str | None] = mapped_column(String(64), index=True)
    # Sealed with the master keys; only for messages whose number is not read from their
    # case or service at send time. Cleared once the worker is done with the message.
    recipient: Mapped[str | None] = mapped_column(MasterEncrypted(), default=None)
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("survivor_case.id", ondelete="SET NULL"), index=True
    )
    service_id: Mapped[int | None] = mapped_column(
        ForeignKey("service.id", ondelete="SET NULL"), index=True
    )
    # The referral a survivor message announces something about: the worker checks at send
    # time that it is still so, and any change of the referral cancels the queued message.
    referral_id: Mapped[int | None] = mapped_column(
        ForeignKey("referral.id", ondelete="SET NULL"), index=True
    )

    # sms / whatsapp / voice (a voice row is a call: its CallSid, or CallSid:step).
    channel: Mapped[str] = mapped_column(String(10), default="sms", server_default="sms")
    # Why a message was not sent, in words a caseworker is shown (e.g. "whatsapp_window":
    # outside WhatsApp's 24-hour window with no approved template). Never message text.
    failure_reason: Mapped[str | None] = mapped_column(String(24))

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Deleting the text at Twilio once final (TWILIO_DELETE_AFTER_DELIVERY).
    remote_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    remote_delete_attempts: Mapped[int] = mapped_column(Integer, default=0)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    final_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    @property
    def is_final(self) -> bool:
        return self.status in FINAL_STATUSES


class HotlineSession(db.Model):  # type: ignore[name-defined,misc]
    """The state of one hotline conversation, keyed by the phone's blind index and the
    channel (a number that used SMS and WhatsApp has two conversations, one case)."""

    __tablename__ = "hotline_session"
    __table_args__ = (
        CheckConstraint(f"step IN {_in(HOTLINE_STEPS)}", name="step"),
        CheckConstraint(f"channel IN {_in(CHANNELS)}", name="channel"),
        UniqueConstraint("phone_index", "channel", name="uq_hotline_session_phone_channel"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    phone_index: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(10), default="sms", server_default="sms")
    step: Mapped[str] = mapped_column(String(12), default="language")
    # Where LANG returns to once a language is chosen again.
    return_step: Mapped[str | None] = mapped_column(String(12))
    language: Mapped[str | None] = mapped_column(String(8))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    # An immediate-danger answer was given: the needs are recorded as urgent.
    urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    # When it was given, while there is no case yet (before consent): carried onto the case
    # (``Case.danger_reported_at``) when consent creates it, then cleared.
    danger_reported_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Paging through a long area list (0-based page of the numbered menu).
    menu_page: Mapped[int] = mapped_column(Integer, default=0)
    # Need categories chosen before the case exists are not kept: the case is created at
    # consent, so the needs go straight onto it.
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("survivor_case.id", ondelete="SET NULL"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_message_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)


class SmsOptOut(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "sms_opt_out"

    id: Mapped[int] = mapped_column(primary_key=True)
    phone_index: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(12))  # "keyword" or "twilio_21610"
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class IgnoredSender(db.Model):  # type: ignore[name-defined,misc]
    """Messages from senders that are not phone numbers (short codes, alphanumeric
    senders, numbers that do not parse), counted per day and kind. Nothing else about
    them is kept: not the sender, not the text."""

    __tablename__ = "hotline_ignored_sender"
    __table_args__ = (UniqueConstraint("day", "kind", name="uq_hotline_ignored_sender_day_kind"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    day: Mapped[date] = mapped_column(Date)
    kind: Mapped[str] = mapped_column(String(16))  # short_code / alphanumeric / invalid
    count: Mapped[int] = mapped_column(Integer, default=0)
