"""Voice webhooks. Thin: signature, fields, call ``app.voice.calls``, commit, TwiML."""

from __future__ import annotations

import re

from flask import Blueprint, Response, abort, current_app, request

from app.core.crypto import InvalidPhoneNumber, normalize_phone
from app.core.extensions import csrf, db
from app.models.base import utcnow
from app.sms import channels
from app.sms.views import check_signature, sqlite_writers_queue
from app.voice import calls, twiml

bp = Blueprint("voice", __name__)
csrf.exempt(bp)

CALL_SID_RE = re.compile(r"^CA[0-9a-f]{32}$")
STEP_RE = re.compile(r"^[0-9]{1,3}$")
DIGITS_RE = re.compile(r"^[0-9*#]{0,20}$")
MAX_STEPS = 999


def _xml(body: str) -> Response:
    return Response(body, status=200, content_type="text/xml; charset=utf-8")


def _step_url(step: int) -> str:
    base = current_app.config.get("PUBLIC_BASE_URL") or ""
    return f"{base}/voice/step?n={step}"


def _caller() -> tuple[str, str | None]:
    """The CallSid and the caller's E.164 number (None: withheld, or not a number)."""
    form = request.form
    call_sid = form.get("CallSid", "")
    if not CALL_SID_RE.match(call_sid):
        abort(400)
    try:
        return call_sid, normalize_phone(form.get("From", "")) if form.get(
            "From", "").startswith("+") else None
    except InvalidPhoneNumber:
        return call_sid, None


def _withheld(raw: str) -> Response:
    """A withheld or unusable caller id: the emergency number and the help text, then
    hang up; counted like other senders that are not numbers, nothing kept."""
    with sqlite_writers_queue():
        channels.count_ignored_sender(channels.sender_kind(raw), utcnow())
        db.session.commit()
    return _xml(twiml.goodbye(channels.VOICE.render("hotline.help", "en")))


@bp.post("/inbound")
def inbound() -> Response:
    check_signature()
    call_sid, e164 = _caller()
    if e164 is None:
        return _withheld(request.form.get("From", ""))
    with sqlite_writers_queue():
        turn = calls.start_call(call_sid, e164)
        db.session.commit()
    return _xml(twiml.render(turn, _step_url(1), current_app.config["HAVEN_ON_CALL_NUMBER"]))


@bp.post("/step")
def step() -> Response:
    check_signature()
    raw_step = request.args.get("n", "")
    digits = request.form.get("Digits", "")
    if not STEP_RE.match(raw_step) or not DIGITS_RE.match(digits):
        abort(400)
    call_sid, e164 = _caller()
    if e164 is None:
        return _withheld(request.form.get("From", ""))
    number = int(raw_step)
    with sqlite_writers_queue():
        turn = calls.press(call_sid, number, e164, digits.replace("#", "").replace("*", ""))
        db.session.commit()
    if number >= MAX_STEPS:
        turn.ended = True
    return _xml(twiml.render(turn, _step_url(number + 1),
                             current_app.config["HAVEN_ON_CALL_NUMBER"]))


@bp.post("/status")
def status() -> Response:
    check_signature()
    call_sid = request.form.get("CallSid", "")
    call_status = request.form.get("CallStatus", "")
    if not CALL_SID_RE.match(call_sid) or not re.fullmatch(r"[a-z-]{1,20}", call_status):
        abort(400)
    with sqlite_writers_queue():
        calls.call_ended(call_sid, call_status)
        db.session.commit()
    return _xml('<?xml version="1.0" encoding="UTF-8"?><Response />')
