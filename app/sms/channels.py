"""The hotline's channels (issue 18): SMS, WhatsApp and a voice line, behind one small
interface, so the one conversation engine (``app.hotline.Conversation``) runs unchanged
behind each of them.

A channel says three things and nothing else:

* ``render(key, language, params)``: the words of one of the hotline's catalog texts on
  this channel (SMS and WhatsApp: the SMS text; voice: the spoken, press-a-digit version
  of the same question where there is one, ``VOICE_TEXTS``);
* ``read(step, norm)``: what an answer means at a step (voice: consent 1 yes, 2 no,
  3 yes without texts; everything else is read as typed);
* ``address(e164)``: the number as Twilio names it on this channel (``whatsapp:+…``).

A conversation is keyed by the number's blind index *and* the channel; the number's case is
one (``hotline.find_case`` looks by number only), and ``whatsapp.answer_channel`` tells a
caseworker (and the outbox) which channel to answer on.

Senders that are not phone numbers (short codes, alphanumeric senders, numbers that do
not parse) are answered with empty TwiML and counted per day and kind
(``count_ignored_sender``): nothing about them is stored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from flask import current_app
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as lite_insert

from app.core.extensions import db
from app.models.cases import Case
from app.models.messages import CHANNELS, HotlineSession, IgnoredSender, Message
from app.sms import messaging, whatsapp

WHATSAPP_PREFIX = "whatsapp:"
# Answers on the voice line that the SMS words do not cover: pressed digits at the consent
# question. "yes_no_texts" keeps a case without the ``contact_sms`` consent.
STORE_ONLY = "\x01yes_no_texts"
VOICE_CONSENT = {"1": "yes", "2": "no", "3": STORE_ONLY}

# The voice line's words for the hotline's questions (spoken with <Say>, answered with the
# keypad). Keys not listed here are spoken with their SMS text.
VOICE_TEXTS: dict[str, Any] = {
    "hotline.language_menu": _l(
        "Hello. For English press 1. Para español, pulse 2. Pour le français, appuyez "
        "sur 3. للعربية اضغط 4."
    ),
    "hotline.consent": _l(
        "To help you we keep a short record, with no legal name. Press 1 to agree and "
        "receive text messages from us, 3 to agree without text messages, or 2 for no."
    ),
    "hotline.needs_menu": _l(
        "What help do you need? Press one or more numbers, then the hash key: 1 a safe "
        "place to stay, 2 legal advice, 3 health care, 4 someone to talk to, 5 other. "
        "Press 0 if you are in danger now."
    ),
    "hotline.area_menu": _l("Where are you? Press the number, then the hash key: %(options)s"),
    "hotline.area_more": _l("0 for more places"),
    "hotline.confirm": _l(
        "Thank you. A caseworker will contact you. Your reference is %(reference)s."
    ),
    "hotline.resume": _l(
        "Your reference is %(reference)s. A caseworker will contact you."
    ),
    "hotline.help": _l(
        "Haven: confidential support. If you are in danger now, call %(emergency)s."
    ),
    "hotline.offer_callback": _l(
        "Sorry, we did not understand. A caseworker can call you back. If you are in "
        "danger now, call %(emergency)s."
    ),
    "voice.dial_on_call": _l("We are connecting you to someone on call now."),
    "voice.goodbye": _l("Thank you for calling. Goodbye."),
    "voice.no_input": _l("We did not hear a key press."),
}


# The voice language menu, one sentence per language, each spoken in its own language with
# that language's voice (an English voice cannot say Arabic). Rendered in the locale it
# speaks, so each catalog can correct its own sentence.
VOICE_LANGUAGE_MENU: dict[str, Any] = {
    "en": _l("For English, press 1."),
    "es": _l("Para español, pulse 2."),
    "fr": _l("Pour le français, appuyez sur 3."),
    "ar": _l("للعربية، اضغط 4."),
}


def voice_language_menu() -> list[tuple[str, str]]:
    """(language, sentence) of the voice language menu."""
    out = []
    for language, text in VOICE_LANGUAGE_MENU.items():
        with force_locale(language):
            out.append((language, str(text)))
    return out


@dataclass(frozen=True)
class Channel:
    name: str

    def render(self, key: str, language: str, params: Mapping[str, Any] | None = None) -> str:
        if self.name == "voice" and key in VOICE_TEXTS:
            return voice_text(key, language, params)
        return messaging.render(key, language, params)

    def read(self, step: str, norm: str) -> str:
        if self.name == "voice" and step == "consent":
            return VOICE_CONSENT.get(norm, norm)
        return norm

    def address(self, e164: str) -> str:
        return WHATSAPP_PREFIX + e164 if self.name == "whatsapp" else e164


SMS = Channel("sms")
WHATSAPP = Channel("whatsapp")
VOICE = Channel("voice")
BY_NAME = {c.name: c for c in (SMS, WHATSAPP, VOICE)}
assert set(BY_NAME) == set(CHANNELS)


def voice_text(key: str, language: str, params: Mapping[str, Any] | None = None) -> str:
    locale = language if language in messaging.shipped_languages() else "en"
    frozen = tuple(sorted((k, "" if v is None else str(v)) for k, v in (params or {}).items()))
    return _voice_cached(key, locale, frozen, current_app.config["HAVEN_EMERGENCY_NUMBER"])


@lru_cache(maxsize=1024)
def _voice_cached(key: str, locale: str, params: tuple[tuple[str, str], ...],
                  emergency: str) -> str:
    values = dict(params)
    values.setdefault("emergency", emergency)
    if "reference" in values:
        values["reference"] = spell(values["reference"])
    with force_locale(locale):
        return str(VOICE_TEXTS[key]) % values


def spell(code: str) -> str:
    """A reference code spelled out for <Say>: "K7Q-4MX" -> "K, 7, Q, 4, M, X"."""
    return ", ".join(ch for ch in code if ch.isalnum())


# --- senders ------------------------------------------------------------------------------

SHORT_CODE_RE = re.compile(r"^[0-9]{3,8}$")


def sender_kind(raw: str) -> str:
    """What kind of non-phone sender ``raw`` is: short_code, alphanumeric or invalid."""
    bare = raw.removeprefix(WHATSAPP_PREFIX)
    if SHORT_CODE_RE.match(bare):
        return "short_code"
    if bare and not bare.startswith("+") and any(ch.isalpha() for ch in bare):
        return "alphanumeric"
    return "invalid"


@lru_cache(maxsize=4)
def _counter_upsert(dialect: str) -> Any:
    table = IgnoredSender.__table__
    insert = pg_insert if dialect == "postgresql" else lite_insert
    statement = insert(table).values(
        day=bindparam("day"), kind=bindparam("kind"), count=1
    )
    return statement.on_conflict_do_update(
        index_elements=["day", "kind"], set_={"count": table.c.count + 1}
    )


def count_ignored_sender(kind: str, at: datetime) -> None:
    """One more message from a sender that is not a phone number (flush only)."""
    connection = db.session.connection()
    connection.execute(_counter_upsert(connection.dialect.name),
                       {"day": at.date(), "kind": kind})


def ignored_senders(day: date) -> dict[str, int]:
    rows = db.session.scalars(select(IgnoredSender).where(IgnoredSender.day == day))
    return {row.kind: row.count for row in rows}


# --- what a caseworker sees on the case page --------------------------------------------------

CHANNEL_LABELS = {"sms": _l("SMS"), "whatsapp": _l("WhatsApp"), "voice": _l("Voice call")}
FAILURE_REASON_LABELS = {
    whatsapp.NO_TEMPLATE: _l(
        "Not sent: more than 24 hours since her last WhatsApp message, and no approved "
        "WhatsApp template for this message in her language."
    ),
}


@dataclass(frozen=True)
class CaseChannels:
    answer_on: str  # sms / whatsapp
    used: tuple[str, ...]  # the channels she wrote or called on, newest first
    unsent: tuple[tuple[datetime, str], ...]  # (queued at, reason) of messages not sent


def case_channels(case: Case) -> CaseChannels | None:
    """Which channel to answer the case's survivor on, the channels she used, and her
    messages that were not sent for a reason (newest first, at most 10)."""
    if not case.phone_index:
        return None
    used = tuple(db.session.scalars(
        select(HotlineSession.channel)
        .where(HotlineSession.phone_index == case.phone_index)
        .order_by(HotlineSession.last_message_at.desc())
    ))
    unsent = tuple(
        (row.created_at, row.failure_reason)
        for row in db.session.execute(
            select(Message.created_at, Message.failure_reason)
            .where(Message.case_id == case.id, Message.failure_reason.is_not(None))
            .order_by(Message.created_at.desc())
            .limit(10)
        )
    )
    return CaseChannels(whatsapp.answer_channel(case.phone_index), used, unsent)
