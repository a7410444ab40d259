"""Consent: versioned texts, the current state of a case's consent, and the ONE function that
changes it (DESIGN §3).

Texts. Each scope's wording lives in the gettext catalogs under a version id
(``CONSENT_TEXTS[version][scope]``). Changing a wording means adding a new version here
(never editing an old one), so that every record's ``text_version`` + ``language`` still
names exactly what the survivor was shown.

State. ``current_consents(case, at)``: the newest record per scope decides; a grant past its
``expires_at`` counts as withdrawn. ``has_consent`` and ``permits`` answer from that.

Changes. ``change_consent(...)`` appends the record, audits it, and applies the effects at
once, in the same transaction. A record is one of three decisions, each with its own audit
action: a *grant* (``consent.grant``); a *withdrawal* (``consent.withdraw``) — a "no" while
the newest record of the scope is a grant, in force or expired; a *refusal*
(``consent.refuse``) — a "no" to a scope that was not granted: never asked before (the
intake's unticked scopes), or asked again after a withdrawal or refusal. A refusal counts as
not granted and has no effects: nothing was permitted, so nothing can be under way.

``change_consent`` and the effects of a withdrawal, in order, are in ``app.consent.changes``
(above the SMS outbox and referrals, which this module's rules serve).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask_babel import force_locale
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from app.core.extensions import db
from app.core.vocab import SERVICE_CATEGORIES
from app.models.base import utcnow
from app.models.cases import CONSENT_SCOPES, Case, Consent

CURRENT_VERSION = "2026-11"

# version -> scope -> wording. Read aloud or handed to the survivor in their language.
CONSENT_TEXTS = {
    "2026-11": {
        "store": _l(
            "May we keep a record about you in Haven, so that we can help you and follow "
            "up? It holds a name you choose (not your legal name), an age range, your area, "
            "language and what help you need, and a phone number if you want. You can ask "
            "us to see it or to delete it at any time. If you say no, we will still help you "
            "today and keep no record about you."
        ),
        "contact_sms": _l(
            "May we send you text messages? They will never name the kind of help unless "
            "you say so below, and only say a reference code. You can stop them at any time "
            "by sending STOP."
        ),
        "share_shelter": _l(
            "May we ask shelters on your behalf to take you in? They receive your needs, "
            "age range and language, and a reference code."
        ),
        "share_legal": _l(
            "May we ask legal aid services to help you? They receive your needs, age range "
            "and language, and a reference code."
        ),
        "share_medical": _l(
            "May we ask medical services to help you? They receive your needs, age range "
            "and language, and a reference code."
        ),
        "share_psychosocial": _l(
            "May we ask counselling and psychosocial services to help you? They receive "
            "your needs, age range and language, and a reference code."
        ),
        "share_other": _l(
            "May we ask other support services to help you? They receive your needs, age "
            "range and language, and a reference code."
        ),
        "share_identity": _l(
            "May we give the service your chosen name and phone number, so that they can "
            "contact you directly? Without this they only receive a reference code. Each "
            "service is named to you before anything is sent."
        ),
        "explicit_wording": _l(
            "May our text messages say what kind of service they are about (for example "
            "'shelter')? If someone else may read your phone, say no."
        ),
    },
}

SCOPE_LABELS = {
    "store": _l("Keep a record"),
    "contact_sms": _l("Text messages"),
    "share_shelter": _l("Share with shelters"),
    "share_legal": _l("Share with legal aid"),
    "share_medical": _l("Share with medical services"),
    "share_psychosocial": _l("Share with psychosocial support"),
    "share_other": _l("Share with other services"),
    "share_identity": _l("Share name and phone"),
    "explicit_wording": _l("Name the service in texts"),
}

METHOD_LABELS = {
    "verbal": _l("Verbal (read aloud, answered out loud)"),
    "written": _l("Written (signed on this tablet)"),
    "sms": _l("By text message reply"),
}

# A record's answer, as the case page and the export show it.
DECISION_LABELS = {
    "grant": _l("Yes"),
    "withdraw": _l("Withdrawn"),
    "refuse": _l("Refused"),
}

ACTIONS = (
    "store",
    "sms",
    "sms_explicit",
    *(f"share:{c}" for c in SERVICE_CATEGORIES),
    "share_identity",
    "export",
)


def consent_text(scope: str, language: str, version: str = CURRENT_VERSION) -> tuple[str, str]:
    """The wording of ``scope`` in ``language`` and the language actually shown: a language
    without a translation falls back to English, and the record must say so."""
    source = CONSENT_TEXTS[version][scope]
    english = _render(source, "en")
    if language == "en":
        return english, "en"
    text = _render(source, language)
    return (text, language) if text != english else (english, "en")


def texts_for(language: str, version: str = CURRENT_VERSION) -> tuple[dict[str, str], str]:
    """All scopes' wording and the language shown (one language for the whole step)."""
    shown = {s: consent_text(s, language, version) for s in CONSENT_SCOPES}
    languages = {lang for _, lang in shown.values()}
    if languages == {language}:
        return {s: t for s, (t, _) in shown.items()}, language
    english = {s: consent_text(s, "en", version)[0] for s in CONSENT_SCOPES}
    return english, "en"


def _render(text: object, language: str) -> str:
    try:
        with force_locale(language):
            return str(text)
    except Exception:  # noqa: BLE001 - an unknown locale means no translation
        return str(text)


# --- state ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ConsentState:
    scope: str
    granted: bool  # in force now: newest record grants and has not expired
    record: Consent | None
    expired: bool = False


def current_consents(case: Case, at: datetime | None = None) -> dict[str, ConsentState]:
    at = at or utcnow()
    newest: dict[str, Consent] = {}
    rows = db.session.scalars(
        select(Consent)
        .where(Consent.case_id == case.id, Consent.recorded_at <= at)
        .order_by(Consent.recorded_at, Consent.id)
    ).all() if case.id is not None else []
    for row in rows:
        newest[row.scope] = row
    states = {}
    for scope in CONSENT_SCOPES:
        latest = newest.get(scope)
        if latest is None:
            states[scope] = ConsentState(scope, False, None)
            continue
        expired = bool(
            latest.granted and latest.expires_at is not None and latest.expires_at <= at
        )
        states[scope] = ConsentState(scope, bool(latest.granted) and not expired, latest, expired)
    return states


def has_consent(case: Case, scope: str, at: datetime | None = None) -> bool:
    if scope not in CONSENT_SCOPES:
        raise ValueError(f"unknown consent scope {scope!r}")
    if case.status == "erased":
        return False
    return current_consents(case, at)[scope].granted


def permits(
    case: Case, action: str, at: datetime | None = None,
    states: dict[str, ConsentState] | None = None,
) -> bool:
    """Whether consent allows ``action`` on ``case`` at ``at`` (default now).

    store / export: ``store`` in force (an export is of a kept record; without ``store``
    there is nothing kept). sms: ``store`` + ``contact_sms``, the survivor did not ask not
    to be texted, and her safe hours are not waiting to be checked (old free text that could
    not be read one way, ``app.safe_hours``). sms_explicit: sms + ``explicit_wording``.
    share:<category>: ``store`` + ``share_<category>``. share_identity: ``store`` +
    ``share_identity``."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}")
    if case.status == "erased":
        return False
    states = states if states is not None else current_consents(case, at)

    def ok(scope: str) -> bool:
        return states[scope].granted

    if not ok("store"):
        return False
    if action in ("store", "export"):
        return True
    if action == "sms":
        return ok("contact_sms") and not case.do_not_text and not case.safe_hours_check
    if action == "sms_explicit":
        return (
            ok("contact_sms") and not case.do_not_text and not case.safe_hours_check
            and ok("explicit_wording")
        )
    if action == "share_identity":
        return ok("share_identity")
    category = action.split(":", 1)[1]
    return ok(f"share_{category}")


# --- changes --------------------------------------------------------------------------

class ConsentError(ValueError):
    pass


def decision_for(case: Case, scope: str, granted: bool, at: datetime) -> str:
    """What a new answer for ``scope`` at ``at`` is: ``grant`` for a yes; ``withdraw`` for
    a no while the newest record of the scope is a grant (in force or expired: expiry
    already counts as withdrawn, but its effects may not have run yet); ``refuse`` for a
    no to a scope that was not granted (no record, or the newest is a withdrawal or a
    refusal)."""
    if granted:
        return "grant"
    previous = current_consents(case, at)[scope].record
    return "withdraw" if previous is not None and previous.decision == "grant" else "refuse"

