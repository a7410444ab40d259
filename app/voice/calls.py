"""The voice line's domain: one call is the same conversation as SMS and WhatsApp
(``app.hotline``), on the voice channel (``app.channels.VOICE``: spoken, press-a-digit
questions). Flushes, never commits.

* A call's start (``start_call``) and each key press (``press``) are de-duplicated by
  their key: the CallSid for the start, ``CallSid:n`` for the n-th step (a retried webhook
  is answered with the current question again, nothing changes twice).
* Nothing is recorded or transcribed: the TwiML (``app.voice.twiml``) has <Gather
  input="dtmf"> only, never <Record>, transcription or speech input.
* The call's record is deleted at Twilio once the call is over: its row's ``final_at`` is
  set by the status callback (``call_ended``) and the SMS worker deletes the call
  (``messaging.TwilioBackend.delete(sid, "voice")``). Step rows have nothing at Twilio.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update

from app.core.crypto import blind_index
from app.core.extensions import db
from app.models.base import utcnow
from app.models.messages import Message
from app.sms import hotline
from app.sms.channels import VOICE

ENDED = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})


@dataclass
class Turn:
    """What to say, in which language, and whether a danger answer was given."""

    replies: list[str]
    language: str
    danger: bool
    ended: bool = False


def _language(index: str) -> str:
    return hotline.replies_language(index)


def _said_danger(replies: list[str], language: str) -> bool:
    return VOICE.render("hotline.danger", language) in replies


def start_call(call_sid: str, e164: str, at: datetime | None = None) -> Turn:
    """A call comes in: the question of her conversation's current step (the language
    menu for a new caller; her reference once she is done)."""
    at = at or utcnow()
    index = blind_index(e164)
    connection = db.session.connection()
    fresh = hotline.record_inbound(connection, call_sid, index, False, at, "voice")
    # The call's record at Twilio is deleted when it ends, not before (call_ended).
    db.session.execute(
        update(Message).where(Message.twilio_sid == call_sid).values(final_at=None)
        .execution_options(synchronize_session=False)
    )
    conversation = hotline.Conversation(index, e164, at, VOICE)
    session = conversation.session
    if fresh is None or (session is not None and session.step not in ("done", "callback")):
        conversation.prompt()
        replies = conversation.replies
        db.session.flush()
    else:
        replies = conversation.answer("")
    return Turn(replies, _language(index), danger=False)


def press(call_sid: str, step: int, e164: str, digits: str,
          at: datetime | None = None) -> Turn:
    """Keys pressed at the ``step``-th question of the call."""
    at = at or utcnow()
    index = blind_index(e164)
    key = f"{call_sid}:{step}"
    replies = hotline.handle_inbound(key, e164, digits, at=at, channel=VOICE)
    # A step has no record of its own at Twilio: nothing to delete there.
    db.session.execute(
        update(Message).where(Message.twilio_sid == key).values(remote_deleted_at=at)
        .execution_options(synchronize_session=False)
    )
    if not replies:  # a retried step: ask the current question again
        conversation = hotline.Conversation(index, e164, at, VOICE)
        conversation.prompt()
        replies = conversation.replies
        db.session.flush()
    language = _language(index)
    session_gone = hotline.Conversation(index, e164, at, VOICE).session is None
    return Turn(replies, language, _said_danger(replies, language), ended=session_gone)


def call_ended(call_sid: str, call_status: str, at: datetime | None = None) -> bool:
    """The status callback: once the call is over, its record may be deleted at Twilio."""
    if call_status not in ENDED:
        return False
    at = at or utcnow()
    result = db.session.execute(
        update(Message)
        .where(Message.twilio_sid == call_sid, Message.channel == "voice",
               Message.final_at.is_(None))
        .values(final_at=at, updated_at=at)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
