"""The simulator's phone: builds the form Twilio would post for one message (SMS,
WhatsApp) or one key press on a call, signs it with ``TWILIO_AUTH_TOKEN`` exactly as
Twilio does (``X-Twilio-Signature`` over the public URL and the parameters), and sends it
through the application's own WSGI stack (``app.test_client()``): the real view, its
signature check, the hotline and its transaction. Nothing here reaches the state machine
directly.

Returns what the phone would show: each reply's text with its segment count and encoding
(SMS, WhatsApp) or each spoken sentence (voice), and for a call the next step's URL.
"""

from __future__ import annotations

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from flask import Flask
from twilio.request_validator import RequestValidator

from app.sms import messaging

SIMULATED_TO = "+15005550006"  # Twilio's magic test number: the hotline's own number
ACCOUNT_SID = "AC" + "0" * 32


class SimulatorError(Exception):
    """The simulator cannot sign requests (no ``TWILIO_AUTH_TOKEN``)."""


@dataclass(frozen=True)
class Reply:
    text: str
    segments: int | None = None
    encoding: str | None = None


@dataclass
class Exchange:
    status: int
    replies: list[Reply] = field(default_factory=list)
    # Voice: the call, and where its next key press goes (None once it has ended).
    call_sid: str | None = None
    next_step: str | None = None
    dialled: bool = False


def _base_url(app: Flask) -> str:
    return str(app.config.get("PUBLIC_BASE_URL") or "http://localhost")


def post(app: Flask, path: str, params: dict[str, str]) -> tuple[int, bytes]:
    """POST ``params`` to ``path`` through the app, signed as Twilio signs."""
    token = app.config.get("TWILIO_AUTH_TOKEN") or ""
    if not token:
        raise SimulatorError("TWILIO_AUTH_TOKEN is not set")
    base = _base_url(app)
    signature = RequestValidator(token).compute_signature(base + path, params)
    parts = urlsplit(base)
    client = app.test_client()
    response = client.post(
        path, data=params, base_url=f"{parts.scheme}://{parts.netloc}",
        headers={"X-Twilio-Signature": signature},
    )
    return response.status_code, response.data


def _message_replies(data: bytes) -> list[Reply]:
    root = ET.fromstring(data)  # noqa: S314 - our own application's TwiML
    out = []
    for node in root.iter("Message"):
        text = node.text or ""
        count = messaging.segments(text)
        out.append(Reply(text, count.segments, count.encoding))
    return out


def send_message(app: Flask, channel: str, e164: str, text: str) -> Exchange:
    sender = ("whatsapp:" if channel == "whatsapp" else "") + e164
    params = {
        "MessageSid": "SM" + secrets.token_hex(16), "AccountSid": ACCOUNT_SID,
        "From": sender, "To": ("whatsapp:" if channel == "whatsapp" else "") + SIMULATED_TO,
        "Body": text, "NumMedia": "0",
    }
    status, data = post(app, "/sms/inbound", params)
    replies = _message_replies(data) if status == 200 else []
    return Exchange(status, replies)


def voice(app: Flask, e164: str, digits: str, call_sid: str | None,
          next_step: str | None) -> Exchange:
    """A call: no ``call_sid`` starts one (``/voice/inbound``); otherwise ``digits`` go to
    the step URL the last <Gather> named."""
    params: dict[str, Any] = {
        "AccountSid": ACCOUNT_SID, "From": e164, "To": SIMULATED_TO,
        "CallStatus": "in-progress", "Direction": "inbound",
    }
    if call_sid and next_step:
        params.update(CallSid=call_sid, Digits=digits)
        path = next_step
    else:
        call_sid = "CA" + secrets.token_hex(16)
        params.update(CallSid=call_sid, CallStatus="ringing")
        path = "/voice/inbound"
    status, data = post(app, path, params)
    exchange = Exchange(status, call_sid=call_sid)
    if status != 200:
        return exchange
    root = ET.fromstring(data)  # noqa: S314 - our own application's TwiML
    for node in root.iter():
        if node.tag == "Say":
            exchange.replies.append(Reply(node.text or ""))
        elif node.tag == "Gather":
            action = node.get("action") or ""
            exchange.next_step = urlsplit(action).path + (
                "?" + urlsplit(action).query if urlsplit(action).query else "")
        elif node.tag == "Dial":
            exchange.dialled = True
    if exchange.next_step is None:
        exchange.call_sid = None
    return exchange
