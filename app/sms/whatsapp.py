"""WhatsApp's rules for what Haven sends (issue 18).

* **Which channel.** A survivor message goes on the channel she last wrote or called on
  (``answer_channel``: her newest hotline conversation); a voice caller is answered by SMS
  (only with her own ``contact_sms`` consent, checked as for every SMS).
* **The 24-hour window.** Free text only within 24 hours of her last WhatsApp message
  (``in_window``). Outside it, only a pre-approved template: a Twilio Content SID per
  template key and language, configured in ``TWILIO_WHATSAPP_CONTENT_SIDS`` and never in
  the code (``content_sid``). A message with neither fails with the reason
  ``whatsapp_window``, which the caseworker sees; it never falls back to SMS.

Domain functions take what they need (the clock, the configured JSON) as arguments.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import select

from app.core.extensions import db
from app.models.messages import HotlineSession, Message

WINDOW = timedelta(hours=24)
NO_TEMPLATE = "whatsapp_window"


def answer_channel(phone_index: str | None) -> str:
    """The channel to answer the number on: that of its newest conversation (SMS when it
    has none, or when that was a call)."""
    if not phone_index:
        return "sms"
    name = db.session.scalar(
        select(HotlineSession.channel)
        .where(HotlineSession.phone_index == phone_index)
        .order_by(HotlineSession.last_message_at.desc(), HotlineSession.id.desc())
        .limit(1)
    )
    return "whatsapp" if name == "whatsapp" else "sms"


def last_inbound(phone_index: str) -> datetime | None:
    return db.session.scalar(
        select(Message.created_at)
        .where(
            Message.counterpart_index == phone_index,
            Message.direction == "in",
            Message.channel == "whatsapp",
        )
        .order_by(Message.created_at.desc())
        .limit(1)
    )


def in_window(phone_index: str, now: datetime) -> bool:
    last = last_inbound(phone_index)
    return last is not None and now - last < WINDOW


@lru_cache(maxsize=8)
def _content_sids(raw: str) -> dict[str, dict[str, str]]:
    return dict(json.loads(raw)) if raw else {}


def content_sid(raw_config: str, template_key: str, language: str) -> str | None:
    """The approved template's Content SID for this key and language, if configured."""
    return _content_sids(raw_config).get(template_key, {}).get(language)


def content_variables(params: Mapping[str, Any]) -> str:
    """Template variables, numbered as WhatsApp templates number them ({{1}}, {{2}}, …), in
    the order of the parameter names (codes and vocabulary keys only, as for SMS)."""
    return json.dumps({str(i): str(params[k]) for i, k in enumerate(sorted(params), start=1)})


@dataclass(frozen=True)
class Plan:
    """How one WhatsApp message goes: free text, a template, or not at all (``reason``)."""

    content_sid: str | None = None
    content_variables: str | None = None
    reason: str | None = None


def plan(message: Message, now: datetime, raw_config: str) -> Plan:
    if message.counterpart_index and in_window(message.counterpart_index, now):
        return Plan()
    sid = content_sid(raw_config, message.template_key or "", message.language)
    if sid is None:
        return Plan(reason=NO_TEMPLATE)
    return Plan(content_sid=sid, content_variables=content_variables(message.params or {}))
