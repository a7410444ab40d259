"""Twilio webhooks. Thin: check the signature and the fields, call the domain module,
commit, answer TwiML. The inbound text lives only in this request's memory: it is parsed
and dropped, never stored and never logged."""

from __future__ import annotations

import fcntl
import hmac
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from flask import Blueprint, Response, abort, current_app, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from app.core.crypto import InvalidPhoneNumber, normalize_phone
from app.core.extensions import csrf, db
from app.models.base import utcnow
from app.sms import channels, hotline, messaging
from app.sms import status as sms_status

bp = Blueprint("sms", __name__)
csrf.exempt(bp)

SID_RE = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
TWILIO_STATUSES = frozenset(messaging.TWILIO_STATUS) | {"receiving", "received"}
# Twilio accepts up to 1,600 characters; only so much is ever looked at.
MAX_BODY = 1600


def _signed_url() -> str:
    base = current_app.config.get("PUBLIC_BASE_URL") or ""
    if not base:
        return request.url
    query = request.query_string.decode("latin-1")
    return base + request.path + (f"?{query}" if query else "")


@lru_cache(maxsize=2)
def _validator(token: str) -> RequestValidator:
    return RequestValidator(token)


def check_signature() -> None:
    token = current_app.config.get("TWILIO_AUTH_TOKEN") or ""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        abort(403)
    validator = _validator(token)
    url = _signed_url()
    # The URL exactly as signed first (one HMAC); the SDK's full check, which also tries the
    # URL with and without its port, only when that does not match.
    if hmac.compare_digest(validator.compute_signature(url, request.form), signature):
        return
    if not validator.validate(url, request.form, signature):
        abort(403)


_LOCK_FDS: dict[str, int] = {}


@contextmanager
def sqlite_writers_queue() -> Iterator[None]:
    """On SQLite (one writer at a time), queue webhook transactions on an OS file lock next
    to the database file. A waiting process is woken the moment the lock is free, instead of
    SQLite's busy handler polling with sleeps of up to 100 ms, which under a burst of Twilio
    webhooks made the p99 latency several times the work itself. No-op on PostgreSQL."""
    engine = db.engine
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    # One descriptor per process: a descriptor inherited through fork would be shared with
    # the other workers, and flock would not tell them apart.
    key = f"{os.getpid()}:{path}"
    fd = _LOCK_FDS.get(key)
    if fd is None:
        fd = os.open(path + ".webhook-lock", os.O_RDWR | os.O_CREAT, 0o600)
        _LOCK_FDS[key] = fd
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


@lru_cache(maxsize=1024)
def _twiml(replies: tuple[str, ...]) -> str:
    # Replies are rendered templates with codes in them, so the same few documents are
    # built over and over.
    response = MessagingResponse()
    for text in replies:
        response.message(text)
    return str(response)


def twiml(replies: list[str]) -> Response:
    return Response(_twiml(tuple(replies)), status=200, content_type="text/xml; charset=utf-8")


def ignore_sender(raw: str) -> Response:
    """A sender that is not a phone number (short code, alphanumeric, invalid): 200 with
    empty TwiML (a 4xx would alarm operators as a webhook error), counted, nothing kept."""
    with sqlite_writers_queue():
        channels.count_ignored_sender(channels.sender_kind(raw), utcnow())
        db.session.commit()
    return twiml([])


@bp.post("/inbound")
def inbound() -> Response:
    """SMS, and WhatsApp (``From=whatsapp:+E164``). WhatsApp's extra fields are never
    stored or logged: ProfileName and WaId are not read, location fields are ignored, and
    media are never fetched (the reply says only text is read; the worker deletes the
    message with its media at Twilio)."""
    check_signature()
    form = request.form
    sid = form.get("MessageSid", "")
    sender = form.get("From", "")
    body = form.get("Body")
    num_media = form.get("NumMedia", "0") or "0"
    if not SID_RE.match(sid) or body is None or not sender or "\x00" in sender:
        abort(400)  # (a NUL is a broken request, not a sender Twilio could have seen)
    if not num_media.isascii() or not num_media.isdigit() or len(num_media) > 2:
        abort(400)
    channel = channels.SMS
    number = sender
    if sender.startswith(channels.WHATSAPP_PREFIX):
        channel = channels.WHATSAPP
        number = sender.removeprefix(channels.WHATSAPP_PREFIX)
        # A quick-reply button's text, when the body is empty.
        body = body or form.get("ButtonText", "") or ""
    if not number.startswith("+"):
        return ignore_sender(sender)
    try:
        e164 = normalize_phone(number)
    except InvalidPhoneNumber:
        return ignore_sender(sender)
    with sqlite_writers_queue():
        if channel is channels.SMS:
            replies = hotline.handle_inbound(sid, e164, body[:MAX_BODY])
        else:
            replies = hotline.handle_inbound(
                sid, e164, body[:MAX_BODY], channel=channel, media=int(num_media)
            )
        db.session.commit()
    del body
    return twiml(replies)


@bp.post("/status")
def status() -> Response:
    check_signature()
    form = request.form
    sid = form.get("MessageSid", "")
    twilio_status = form.get("MessageStatus", "")
    raw_code = form.get("ErrorCode", "") or ""
    if not SID_RE.match(sid) or twilio_status not in TWILIO_STATUSES:
        abort(400)
    if raw_code and not re.fullmatch(r"[0-9]{1,6}", raw_code):
        abort(400)
    with sqlite_writers_queue():
        sms_status.apply_status(sid, twilio_status, int(raw_code) if raw_code else None)
        db.session.commit()
    return twiml([])
