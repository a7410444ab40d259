"""SMS messaging: templates, segment counting, the transactional outbox and the backends
(DESIGN §1.4, §4, §5).

Outbox. ``enqueue(...)`` adds a ``Message`` row to the caller's transaction (flush, never
commit), so the message exists exactly when the change that caused it is committed. The
worker (``app.sms.worker``) sends it later. A row holds a template key, a language and
non-PII parameters (codes and vocabulary keys), never a body: bodies are rendered from the
translated templates at send time. The number comes from the case (survivor messages) or
the service (provider messages) at send time; only a message to some other number keeps the
number, sealed with the master keys, until the worker is done with it.

Consent. A survivor message is enqueued only if consent permits an SMS now, and checked
again by the worker at the moment of sending. Withdrawing ``contact_sms`` (or ``store``)
and erasing a case cancel the case's queued messages (``cancel_queued``, called in order by
``app.consent.changes`` and ``app.cases.erasure``). Delivery callbacks: ``app.sms.status``.

Her rules. A survivor message is scheduled for the first moment inside her safe hours on
her own clock (``app.safe_hours.send_time``), and not written at all while her hours wait to
be checked; the worker checks both again when it sends.

What it announces. A survivor message about a referral (``Template.announces``: the
referral statuses it is true for) names its referral (``Message.referral_id``). Any change
of that referral cancels it (``cancel_queued(referral_id=...)``, called by the referrals
module's one status-change function) and the worker sends it only while
``announcement_holds``.

Wording. Survivor templates are discreet: no "shelter", "trafficking", "abuse" — only a
reference code — unless the survivor chose ``explicit_wording`` (then the ``explicit``
variant is used). Their parameters are reference codes, service category keys and small
numbers, checked when queued and again when rendered (``_check_survivor_params``); the
hotline's area menu carries only labels an admin approved for SMS (DESIGN §1.10). Every
template must fit in 2 SMS segments in every shipped language (``segments()`` counts GSM-7
septets or UCS-2 code units); tests check this.

Backends (``SMS_BACKEND``): ``console`` logs "message of template X went to +1*******23"
(masked number, no body); ``twilio`` sends with the Twilio SDK (an ``http_client`` can be
injected with the ``TWILIO_HTTP_CLIENT`` config key, which tests use to reach a local mock).
"""

from __future__ import annotations

import logging
import math
import re
import secrets
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import requests
from flask import Flask, current_app, has_app_context
from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, or_, select, update
from sqlalchemy.exc import IntegrityError
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from app.cases.service import REFERENCE_RE, request_checkpoint
from app.consent import safe_hours
from app.consent.service import permits
from app.core import audit
from app.core.crypto import blind_index, mask_phone, normalize_phone
from app.core.database import any_of
from app.core.extensions import db
from app.core.vocab import (
    AGE_BAND_LABELS,
    CATEGORY_LABELS,
    SERVICE_CATEGORIES,
    SURVIVOR_LANGUAGE_LABELS,
    URGENCY_LABELS,
)
from app.models.base import utcnow
from app.models.cases import Case
from app.models.messages import Message, SmsOptOut
from app.models.referrals import Referral
from app.sms import whatsapp

log = logging.getLogger("haven.sms")


class MessagingError(ValueError):
    pass


# --- templates -------------------------------------------------------------------------


@dataclass(frozen=True)
class Template:
    audience: str  # survivor / provider / hotline (TwiML replies) / staff
    text: Any  # lazy_gettext string with %(name)s parameters
    params: tuple[str, ...] = ()
    explicit: Any = None  # survivor only: wording that names the service type
    # About a referral: the referral statuses in which what it says is still true.
    announces: tuple[str, ...] = ()


TEMPLATES: dict[str, Template] = {
    # Outbox, to survivors (neutral unless explicit_wording).
    "survivor.update": Template(
        "survivor",
        _l("Haven: there is news about your request %(reference)s. We will contact you soon."),
        ("reference",),
    ),
    "survivor.referral_accepted": Template(
        "survivor",
        _l(
            "Good news about your request %(reference)s. A caseworker will contact you soon "
            "about the next step."
        ),
        ("reference", "category"),
        explicit=_l(
            "Good news about your request %(reference)s: the %(category)s service can help "
            "you. A caseworker will contact you soon."
        ),
        announces=("accepted",),
    ),
    "survivor.callback": Template(
        "survivor",
        _l("Haven: a caseworker will call you soon about %(reference)s. Text STOP to end texts."),
        ("reference",),
    ),
    # Outbox, to providers' intake phones (codes and coarse facts only).
    "provider.referral_new": Template(
        "provider",
        _l(
            "Haven referral %(code)s: needs %(needs)s; age %(age_band)s; language "
            "%(language)s. Reply ACCEPT %(code)s or DECLINE %(code)s and a reason."
        ),
        ("code", "needs", "age_band", "language"),
    ),
    "provider.referral_cancelled": Template(
        "provider",
        _l("Haven referral %(code)s was cancelled. Please do not act on it."),
        ("code",),
    ),
    "provider.referral_reminder": Template(
        "provider",
        _l(
            "Haven referral %(code)s is waiting for your answer. Reply ACCEPT %(code)s or "
            "DECLINE %(code)s and a reason."
        ),
        ("code",),
    ),
    # Hotline replies (TwiML), to whoever texts the hotline.
    "hotline.language_menu": Template(
        "hotline", _l("Hello. Reply 1 English, 2 Español, 3 Français, 4 العربية")
    ),
    "hotline.consent": Template(
        "hotline",
        _l(
            "To help you we keep a short record (no legal name) and may text you. Reply YES "
            "to agree or NO. Text FORGET at any time to delete it."
        ),
    ),
    "hotline.declined": Template(
        "hotline",
        _l("We kept nothing. Text us again at any time. In danger now? Call %(emergency)s."),
    ),
    "hotline.needs_menu": Template(
        "hotline",
        _l(
            "What help do you need? Reply with one or more numbers: 1 a safe place to stay, "
            "2 legal advice, 3 health care, 4 someone to talk to, 5 other, 0 I am in danger now"
        ),
    ),
    "hotline.area_menu": Template(
        "hotline", _l("Where are you? Reply with a number: %(options)s"), ("options",)
    ),
    "hotline.area_more": Template("hotline", _l("0 more")),
    # An area with no SMS label approved by an admin: offered by its option number only.
    "hotline.area_unnamed": Template("hotline", _l("%(number)s area %(number)s"), ("number",)),
    "hotline.confirm": Template(
        "hotline",
        _l(
            "Thank you. A caseworker will contact you. Your reference is %(reference)s. "
            "Text HELP for options."
        ),
        ("reference",),
    ),
    "hotline.resume": Template(
        "hotline",
        _l(
            "Your reference is %(reference)s. A caseworker will contact you. Text HELP for "
            "options."
        ),
        ("reference",),
    ),
    "hotline.danger": Template(
        "hotline", _l("If you are in danger now, call %(emergency)s.")
    ),
    "hotline.help": Template(
        "hotline",
        _l(
            "Haven: confidential support. In danger now? Call %(emergency)s. Text LANG to "
            "change language, STOP to end texts, START to restart, FORGET to delete your data."
        ),
    ),
    "hotline.unclear": Template("hotline", _l("Sorry, we did not understand.")),
    # WhatsApp: a photo, voice note, document or location is never fetched or kept.
    "hotline.text_only": Template(
        "hotline", _l("Sorry, we can only read text. Please write your answer.")
    ),
    "hotline.offer_callback": Template(
        "hotline",
        _l(
            "Sorry, we did not understand. Reply CALL and a caseworker will call you back. "
            "In danger now? Call %(emergency)s."
        ),
    ),
    "hotline.callback_ok": Template(
        "hotline",
        _l("A caseworker will call you back. Your reference is %(reference)s."),
        ("reference",),
    ),
    "hotline.stopped": Template(
        "hotline", _l("You will get no more texts from us. Text START to get them again.")
    ),
    "hotline.started": Template("hotline", _l("Texts are on again. Text HELP for options.")),
    "hotline.forgotten": Template(
        "hotline", _l("Everything we held about this number has been deleted.")
    ),
    "hotline.unavailable": Template(
        "hotline",
        _l("We cannot take requests by text right now. In danger now? Call %(emergency)s."),
    ),
    # Replies to providers' commands.
    "provider.help": Template(
        "provider", _l("Haven commands: ACCEPT code, DECLINE code reason, BEDS number.")
    ),
    "provider.not_found": Template(
        "provider", _l("Haven: no open request matches that message.")
    ),
    "provider.accepted": Template(
        "provider", _l("Haven: referral %(code)s accepted. Thank you."), ("code",)
    ),
    "provider.declined": Template(
        "provider", _l("Haven: referral %(code)s declined. Thank you."), ("code",)
    ),
    "provider.beds_updated": Template(
        "provider", _l("Haven: beds available now %(beds)s."), ("beds",)
    ),
    "provider.beds_invalid": Template(
        "provider", _l("Haven: send BEDS and a number from 0 to %(total)s."), ("total",)
    ),
    "provider.no_beds": Template(
        "provider", _l("Haven: no bed count is kept for this number.")
    ),
}

MAX_SEGMENTS = 2
# Parameter values are codes, numbers and vocabulary keys, never free text or a number.
_PARAM_VALUE = re.compile(r"^[A-Za-z0-9_,:\- ]{0,64}$")
# DESIGN §1.10: what a survivor-facing template (audience survivor or hotline) may carry
# besides its catalog text. "options" is the hotline's area menu, which ``app.hotline``
# builds from labels an admin approved for SMS (``app.discretion``) and option numbers.
_SURVIVOR_PARAMS = {
    "reference": lambda value: REFERENCE_RE.fullmatch(value) is not None,
    "category": lambda value: value in SERVICE_CATEGORIES,
    "number": lambda value: value.isascii() and value.isdigit() and len(value) <= 3,
    "options": lambda _value: True,
}


def _check_survivor_params(template: Template, params: Mapping[str, str]) -> None:
    """Refuse (``MessagingError``) anything but a code, a vocabulary key or a small number
    in a template a survivor reads: text from outside never reaches her phone."""
    if template.audience not in ("survivor", "hotline"):
        return
    for name, value in params.items():
        rule = _SURVIVOR_PARAMS.get(name)
        if rule is None or not rule(value):
            raise MessagingError("survivor messages carry codes and vocabulary keys only")

# What a message was about, in words for the survivor's export (which never shows a body):
# every template that can concern one survivor, i.e. names her reference or a referral code.
MESSAGE_LABELS = {
    "survivor.update": _l("News about the survivor's request"),
    "survivor.referral_accepted": _l("A service accepted the referral"),
    "survivor.callback": _l("A caseworker will call back"),
    "provider.referral_new": _l("New referral sent to the service"),
    "provider.referral_cancelled": _l("Referral cancelled: the service was told"),
    "provider.referral_reminder": _l("Reminder to the service to answer"),
    "provider.accepted": _l("The service's acceptance confirmed to it"),
    "provider.declined": _l("The service's decline confirmed to it"),
}


def _label(mapping: Mapping[str, Any], key: str) -> str:
    value = mapping.get(key)
    return str(value) if value is not None else key


def _need_label(need: str) -> str:
    """ "shelter:immediate" -> "shelter: immediate"; a category alone -> its label."""
    category, _, urgency = need.partition(":")
    label = _label(CATEGORY_LABELS, category).lower()
    return f"{label}: {_label(URGENCY_LABELS, urgency).lower()}" if urgency else label


def _format_params(params: Mapping[str, Any]) -> dict[str, str]:
    """Vocabulary keys become labels in the current (forced) locale."""
    out: dict[str, str] = {}
    for name, value in params.items():
        text = "" if value is None else str(value)
        if name == "category":
            text = _label(CATEGORY_LABELS, text).lower()
        elif name == "needs":
            text = ", ".join(_need_label(n) for n in text.split(",") if n)
        elif name == "age_band":
            text = _label(AGE_BAND_LABELS, text)
        elif name == "language":
            text = SURVIVOR_LANGUAGE_LABELS.get(text, text)
        out[name] = text
    return out


def shipped_languages() -> list[str]:
    return list(current_app.config["LANGUAGES"])


def render(
    template_key: str, language: str, params: Mapping[str, Any] | None = None,
    *, explicit: bool = False,
) -> str:
    """The body of ``template_key`` in ``language`` (English when it is not shipped),
    fitted to 2 segments where the GSM-7 fallback allows (``fit``)."""
    if template_key not in TEMPLATES:
        raise MessagingError("unknown template")
    locale = language if language in shipped_languages() else "en"
    frozen = tuple(sorted((k, "" if v is None else str(v)) for k, v in (params or {}).items()))
    return _render_cached(
        template_key, locale, frozen, explicit, current_app.config["HAVEN_EMERGENCY_NUMBER"]
    )


@lru_cache(maxsize=4096)
def _render_cached(
    template_key: str, locale: str, params: tuple[tuple[str, str], ...], explicit: bool,
    emergency: str,
) -> str:
    # Parameters are codes and vocabulary keys, so the same few bodies are rendered over
    # and over: cached per process (catalogs only change with a restart).
    template = TEMPLATES[template_key]
    source = template.explicit if (explicit and template.explicit is not None) else template.text
    given = dict(params)
    _check_survivor_params(template, given)
    with force_locale(locale):
        values = _format_params(given)
        values.setdefault("emergency", emergency)
        body = fit(str(source) % values)
        needs = [c for c in str(given.get("needs") or "").split(",") if c]
        # A long list of needs is shortened ("shelter, legal +3") rather than sent over
        # 2 segments; the provider sees the rest in the portal.
        keep = len(needs) - 1
        while segments(body).segments > MAX_SEGMENTS and keep >= 1:
            shown = _format_params({"needs": ",".join(needs[:keep])})["needs"]
            values["needs"] = f"{shown} +{len(needs) - keep}"
            body = fit(str(source) % values)
            keep -= 1
        return body


# --- segments --------------------------------------------------------------------------

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SegmentCount:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets or UTF-16 code units
    segments: int


def segments(text: str) -> SegmentCount:
    """How many SMS segments ``text`` takes: GSM-7 (160 septets, 153 per part when
    concatenated; extension characters take two) unless a character is outside the GSM
    alphabet, then UCS-2 (70 UTF-16 code units, 67 per part)."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        single, part, encoding = 160, 153, "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part, encoding = 70, 67, "UCS-2"
    count = 1 if units <= single else math.ceil(units / part)
    return SegmentCount(encoding, units, count)


# Typography that has a GSM-7 equivalent.
_GSM_SUBSTITUTES = str.maketrans({
    "\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00ab": '"',
    "\u00bb": '"', "\u2013": "-", "\u2014": "-", "\u00a0": " ", "\u202f": " ",
    "\u2026": "...", "\u00e7": "\u00c7",
})


def gsm_fallback(text: str) -> str | None:
    """``text`` in the GSM-7 alphabet (accents outside it dropped: "á" -> "a", typographic
    quotes and dashes replaced), like Twilio's Smart Encoding; None if that is impossible
    (Arabic, emoji...)."""

    out = []
    for ch in text.translate(_GSM_SUBSTITUTES):
        if ch in GSM7_BASIC or ch in GSM7_EXTENSION:
            out.append(ch)
            continue
        base = unicodedata.normalize("NFD", ch)[0]
        if base in GSM7_BASIC:
            out.append(base)
        else:
            return None
    return "".join(out)


def fit(text: str) -> str:
    """The text to send: as written when it fits in 2 segments; else its GSM-7 form when
    that fits (a Latin-script text pushed into UCS-2 by an accent takes 67 characters per
    segment instead of 153)."""
    if segments(text).segments <= MAX_SEGMENTS:
        return text
    fallback = gsm_fallback(text)
    if fallback is not None and segments(fallback).segments <= MAX_SEGMENTS:
        return fallback
    return text


# --- the outbox ------------------------------------------------------------------------


def _check_params(template: Template, params: Mapping[str, Any]) -> dict[str, str]:
    unknown = set(params) - set(template.params)
    if unknown:
        raise MessagingError("unknown template parameters")
    clean: dict[str, str] = {}
    for name, value in params.items():
        text = "" if value is None else str(value)
        if not _PARAM_VALUE.match(text) or sum(ch.isdigit() for ch in text) >= 7:
            raise MessagingError("template parameters must be codes, not free text")
        clean[name] = text
    _check_survivor_params(template, clean)
    return clean


def is_opted_out(phone_index: str | None) -> bool:
    if not phone_index:
        return False
    return db.session.scalar(
        select(SmsOptOut.id).where(SmsOptOut.phone_index == phone_index)
    ) is not None


def enqueue(
    template_key: str,
    *,
    language: str | None = None,
    params: Mapping[str, Any] | None = None,
    case: Case | None = None,
    service: Any = None,
    to_e164: str | None = None,
    audience: str | None = None,
    not_before: datetime | None = None,
    referral_id: int | None = None,
) -> Message | None:
    """Add an outbound message to the current transaction (flushes, never commits).

    Give exactly one recipient: ``case`` (survivor: the number is read from the case at
    send time), ``service`` (provider: its intake phone at send time) or ``to_e164`` (kept
    sealed until sent). ``language`` defaults to the case's language, else English.
    ``not_before`` delays the first try; a survivor message goes at the first moment from
    then inside her safe hours, on her clock. ``referral_id``: the referral the message is
    about (required for templates that announce a referral's status). Returns ``None``,
    writing nothing, when the message may not be sent: a survivor whose consent does not
    permit SMS or whose safe hours wait to be checked, or a number that opted out."""

    template = TEMPLATES.get(template_key)
    if template is None or template.audience == "hotline":
        raise MessagingError("unknown template")
    if sum(x is not None for x in (case, service, to_e164)) != 1:
        raise MessagingError("give exactly one recipient")
    if template.announces and referral_id is None:
        raise MessagingError("give the referral this message is about")
    clean = _check_params(template, params or {})
    first_try = not_before or utcnow()
    message = Message(
        direction="out",
        audience=audience or template.audience,
        template_key=template_key,
        language=language or "en",
        params=clean,
        status="queued",
        attempts=0,
        next_attempt_at=first_try,
        referral_id=referral_id,
    )
    if case is not None:
        if template.audience != "survivor":
            raise MessagingError("this template is not for survivors")
        if not case.phone_index or not permits(case, "sms"):
            return None
        when = safe_hours.send_time(
            case, first_try, current_app.config["HAVEN_DEFAULT_TIMEZONE"]
        )
        if when is None:
            return None
        message.next_attempt_at = when
        message.case_id = case.id
        message.counterpart_index = case.phone_index
        message.channel = whatsapp.answer_channel(case.phone_index)
        # The survivor's language (the case's), never the interface language of whoever
        # caused the message.
        message.language = language or case.language or "en"
    elif service is not None:
        if not service.intake_phone_index:
            return None
        message.service_id = service.id
        message.counterpart_index = service.intake_phone_index
    else:
        if template.audience == "survivor":
            raise MessagingError("survivor messages go to a case, so consent can be checked")
        e164 = normalize_phone(to_e164 or "")
        message.counterpart_index = blind_index(e164)
        message.recipient = e164
    if is_opted_out(message.counterpart_index):
        return None
    db.session.add(message)
    db.session.flush()
    return message


def cancel_queued(
    *, case_ids: Sequence[int] | None = None, phone_index: str | None = None,
    referral_id: int | None = None,
) -> int:
    """THE function that cancels queued outbound messages: every one of these cases, to a
    number, or to the survivor about a referral (flush, no commit)."""
    if not case_ids and phone_index is None and referral_id is None:
        return 0
    query = update(Message).where(Message.direction == "out", Message.status == "queued")
    if case_ids:
        query = query.where(any_of(Message.case_id, case_ids))
    elif referral_id is not None:
        query = query.where(Message.referral_id == referral_id, Message.audience == "survivor")
    else:
        query = query.where(Message.counterpart_index == phone_index)
    now = utcnow()
    result = db.session.execute(
        query.values(
            status="cancelled", final_at=now, updated_at=now, recipient=None,
            lease_owner=None, lease_expires_at=None,
        ).execution_options(synchronize_session=False)
    )
    cancelled = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if cancelled:
        request_checkpoint()  # sealed numbers were cleared
    return cancelled


def announcement_holds(message: Message) -> bool:
    """Whether what ``message`` announces is still true now: a message about a referral
    goes only while its referral (of the same case) is in a status its template announces.
    One whose referral is gone (or was never recorded) cannot be checked: False."""
    template = TEMPLATES.get(message.template_key or "")
    if template is None or not template.announces:
        return True
    if message.referral_id is None:
        return False
    status = db.session.scalar(
        select(Referral.status).where(
            Referral.id == message.referral_id, Referral.case_id == message.case_id
        )
    )
    return status in template.announces


def opt_out(phone_index: str, source: str) -> None:
    """Stop every message to this number until START (idempotent, flush only)."""
    if not is_opted_out(phone_index):
        try:
            with db.session.begin_nested():
                db.session.add(SmsOptOut(phone_index=phone_index, source=source))
        except IntegrityError:
            pass  # recorded at the same moment by another request
    cancel_queued(phone_index=phone_index)


def opt_in(phone_index: str) -> None:
    db.session.execute(delete(SmsOptOut).where(SmsOptOut.phone_index == phone_index))




# Twilio's MessageStatus values -> ours. "received"/"receiving" concern inbound messages.
TWILIO_STATUS = {
    "accepted": "submitted",
    "scheduled": "submitted",
    "queued": "submitted",
    "sending": "submitted",
    "sent": "sent",
    "delivered": "delivered",
    "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed",
    "canceled": "cancelled",
    "partially_delivered": "delivered",
}

def forget_cases(case_ids: Sequence[int]) -> None:
    """Erasure's step for the outbox: queued messages of these cases cancelled; the rows
    stay (statistics of sends), but nothing links them to a number any more."""
    cancel_queued(case_ids=case_ids)
    db.session.execute(
        update(Message)
        .where(
            any_of(Message.case_id, case_ids),
            or_(Message.counterpart_index.is_not(None), Message.recipient.is_not(None)),
        )
        .values(counterpart_index=None, recipient=None)
        .execution_options(synchronize_session=False)
    )


# --- backends --------------------------------------------------------------------------


@dataclass(frozen=True)
class SendResult:
    sid: str
    status: str  # ours: submitted / sent / delivered


class SendError(Exception):
    """``kind``: ``retry`` (5xx, 429, network), ``permanent`` (invalid number...),
    ``opted_out`` (21610)."""

    def __init__(self, kind: str, code: int | None = None, http_status: int | None = None):
        super().__init__(kind)
        self.kind = kind
        self.code = code
        self.http_status = http_status


OPTED_OUT = 21610
# Errors about the recipient that no retry will fix.
PERMANENT_CODES = frozenset(
    {21211, 21214, 21217, 21401, 21407, 21408, 21421, 21601, 21602, 21603, 21604, 21606,
     21612, 21614, 21617, 21619, 21635, 30003, 30005, 30006}
)


class ConsoleBackend:
    """Development: nothing leaves the machine; logs the template and a masked number."""

    name = "console"

    def send(  # the SMS backend interface: the console logs no body and no content
        self, to_e164: str, body: str, template_key: str, *, channel: str = "sms",  # noqa: ARG002 - the SMS backend interface
        content_sid: str | None = None, content_variables: str | None = None,  # noqa: ARG002 - the SMS backend interface
    ) -> SendResult:
        logger = current_app.logger if has_app_context() else log
        logger.info("sms: message of template %s went to %s by %s", template_key,
                    mask_phone(to_e164), channel)
        return SendResult("SM" + secrets.token_hex(16), "delivered")

    def delete(self, sid: str, channel: str = "sms") -> bool:  # noqa: ARG002 - the SMS backend interface
        return True


class TwilioBackend:
    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        *,
        from_number: str = "",
        messaging_service_sid: str = "",
        whatsapp_from: str = "",
        status_callback: str | None = None,
        http_client: Any = None,
        timeout: float | None = None,
    ) -> None:
        if http_client is None:
            # A quiet logger: the SDK logs request URLs and headers at INFO.
            quiet = logging.getLogger("haven.sms.twilio_http")
            quiet.setLevel(logging.WARNING)
            http_client = TwilioHttpClient(timeout=timeout, logger=quiet)
        self.client = Client(account_sid, auth_token, http_client=http_client)
        self.from_number = from_number
        self.messaging_service_sid = messaging_service_sid
        self.whatsapp_from = whatsapp_from
        self.status_callback = status_callback

    def send(
        self, to_e164: str, body: str, template_key: str, *, channel: str = "sms",  # noqa: ARG002 - the SMS backend interface
        content_sid: str | None = None, content_variables: str | None = None,
    ) -> SendResult:
        kwargs: dict[str, Any] = {"to": to_e164, "body": body}
        if channel == "whatsapp":
            # WhatsApp through the Messaging API: both ends as whatsapp: addresses; outside
            # the 24-hour window an approved template (Content SID) instead of the body.
            kwargs["to"] = "whatsapp:" + to_e164
            kwargs["from_"] = "whatsapp:" + (self.whatsapp_from or self.from_number)
            if content_sid:
                del kwargs["body"]
                kwargs["content_sid"] = content_sid
                kwargs["content_variables"] = content_variables or "{}"
        elif self.messaging_service_sid:
            kwargs["messaging_service_sid"] = self.messaging_service_sid
        else:
            kwargs["from_"] = self.from_number
        if self.status_callback:
            kwargs["status_callback"] = self.status_callback
        try:
            created = self.client.messages.create(**kwargs)
        except Exception as exc:  # noqa: BLE001 - classified below, never logged with values
            raise classify(exc) from None
        sid = created.sid or ""
        if not sid:
            raise SendError("retry")
        status = TWILIO_STATUS.get(created.status or "", "submitted")
        return SendResult(sid, status if status in ("submitted", "sent") else "submitted")

    def delete(self, sid: str, channel: str = "sms") -> bool:
        """Delete the message (and its text, and any media sent with it) at Twilio, or a
        voice call's record (``channel`` voice). True when gone (404 counts)."""
        try:
            if channel == "voice":
                self.client.calls(sid).delete()
                return True
            if sid.startswith("MM"):
                for media in self.client.messages(sid).media.list():
                    self.client.messages(sid).media(media.sid or "").delete()
            self.client.messages(sid).delete()
        except Exception as exc:  # noqa: BLE001
            err = classify(exc)
            if err.http_status == 404:
                return True
            raise err from None
        return True


def classify(exc: BaseException) -> SendError:
    """Map an SDK or network exception onto retry / permanent / opted_out."""

    if isinstance(exc, TwilioRestException):
        status = int(exc.status or 0)
        code = int(exc.code) if exc.code is not None else None
        if code == OPTED_OUT:
            return SendError("opted_out", code, status)
        if code in PERMANENT_CODES:
            return SendError("permanent", code, status)
        if status >= 500 or status in (401, 403, 408, 429) or status == 0:
            return SendError("retry", code, status)
        return SendError("permanent", code, status)
    if isinstance(exc, (requests.exceptions.RequestException, OSError, TimeoutError)):
        return SendError("retry")
    return SendError("retry")


def status_callback_url(app: Flask) -> str | None:
    base = app.config.get("PUBLIC_BASE_URL") or ""
    return f"{base}/sms/status" if base else None


def backend(app: Flask | None = None) -> ConsoleBackend | TwilioBackend:
    """The configured backend, built once per app."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    cached = app.extensions.get("haven_sms_backend")
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    chosen: ConsoleBackend | TwilioBackend
    if app.config["SMS_BACKEND"] == "twilio":
        chosen = TwilioBackend(
            app.config["TWILIO_ACCOUNT_SID"],
            app.config["TWILIO_AUTH_TOKEN"],
            from_number=app.config["TWILIO_FROM_NUMBER"],
            messaging_service_sid=app.config["TWILIO_MESSAGING_SERVICE_SID"],
            whatsapp_from=app.config["TWILIO_WHATSAPP_FROM"],
            status_callback=status_callback_url(app),
            http_client=app.config.get("TWILIO_HTTP_CLIENT"),
            timeout=app.config["SMS_HTTP_TIMEOUT_SECONDS"],
        )
    else:
        chosen = ConsoleBackend()
    app.extensions["haven_sms_backend"] = chosen
    return chosen


def audit_send(message: Message, action: str) -> None:
    """Survivor messages are a use of survivor data: audited (ids only)."""
    if message.case_id is not None and has_app_context():
        audit.record(action, "case", message.case_id, actor_user_id=audit.SYSTEM)
