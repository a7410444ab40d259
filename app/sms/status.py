"""Delivery callbacks (Twilio's MessageStatus): the status mapping, and a recipient's opt-out
(error 21610) recorded as a consent withdrawal through ``app.consent.changes``."""

from __future__ import annotations

from sqlalchemy import select

from app.cases.service import request_checkpoint
from app.consent.changes import change_consent
from app.consent.service import has_consent
from app.core.extensions import db
from app.models.base import utcnow
from app.models.cases import Case
from app.models.messages import FINAL_STATUSES, Message
from app.sms import messaging

_RANK = {"queued": 0, "submitted": 1, "sent": 2}


def apply_status(sid: str, twilio_status: str, error_code: int | None) -> Message | None:
    """A delivery callback. Out-of-order callbacks never move a message backwards; a final
    status is final. Returns the message, or None when the SID is not ours."""
    ours = messaging.TWILIO_STATUS.get(twilio_status)
    message = db.session.scalar(
        select(Message).where(Message.twilio_sid == sid, Message.direction == "out")
    )
    if message is None or ours is None or message.is_final:
        return message
    if ours not in FINAL_STATUSES and _RANK.get(ours, 0) <= _RANK.get(message.status, 0):
        return message
    now = utcnow()
    message.status = ours
    message.error_code = error_code
    if ours in FINAL_STATUSES:
        message.final_at = now
        if message.recipient is not None:
            message.recipient = None
            request_checkpoint()
    db.session.flush()
    if error_code == 21610:
        record_opted_out(message)
    return message


def record_opted_out(message: Message) -> None:
    """Twilio says the recipient opted out (21610): record a ``contact_sms`` withdrawal on
    the case through the consent module, and stop everything else to that number."""
    if message.case_id is not None:
        case = db.session.get(Case, message.case_id)
        if case is not None and not case.is_erased and has_consent(case, "contact_sms"):
            change_consent(
                case, "contact_sms", False, "sms", None, language=case.language or "en"
            )
    if message.counterpart_index:
        messaging.opt_out(message.counterpart_index, "twilio_21610")
