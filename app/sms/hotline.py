"""The SMS hotline (DESIGN §4): a state machine per phone blind index, and the providers'
commands. Called by the ``/sms/inbound`` webhook; flushes, never commits.

Conversation: language → consent (``store`` + ``contact_sms``, method ``sms``) → needs
(numbered menu) → area (numbered menu of the Area list, paged to fit 2 SMS segments) →
confirmation with the case's reference code. The area menu names an area only by the SMS
label an admin approved for it (``app.discretion``, checked again when sent); an area
without one is offered by its number: area names, typed by admins or imported from feeds,
never reach a survivor's phone (DESIGN §1.10). The case is created when the survivor says
YES to the consent question (nothing is kept before that beyond the session's step and
language, keyed by the blind index), with channel ``sms``, so it appears in the
caseworkers' SMS queue. A number that texts again after finishing resumes its case (a
closed case is reopened) instead of creating a second one.

Unclear answers re-ask with the options; from the third unclear answer in a row the reply
offers a human callback (CALL). Keywords work at any step, in every shipped language
(``KEYWORDS``): STOP, START, HELP, FORGET, LANG, CALL. A message meaning immediate danger
(the needs menu's 0, or a danger word at any step) gets the emergency number first, and
flags the number's case for the caseworkers (``app.danger``; a closed case is reopened).
Before consent there is no case: the report's time waits on the session (nothing else is
kept) and goes onto the case when consent creates it.

Inbound text is normalised, matched against keywords and menus, and dropped: it is never
stored and never logged.

Providers text ``ACCEPT <code>``, ``DECLINE <code> <reason>`` and ``BEDS <n>`` from a
service's registered intake phone (found by ``Service.intake_phone_index``). BEDS is
handled here, under the one bed rule of ``app.capacity`` (audited). ACCEPT/DECLINE call
``app.referrals.service.respond_by_sms``; when no pending referral matches, and for any
number that is not a registered intake phone, the reply is the same neutral "no open request
matches", which reveals nothing about codes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from flask import current_app
from sqlalchemy import Boolean, bindparam, delete, exists, func, literal, or_, select, update
from sqlalchemy import case as sql_case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as lite_insert

from app.cases import danger
from app.cases.erasure import erase_case
from app.cases.service import create_case, reopen_case, request_checkpoint, set_needs
from app.consent.changes import change_consent
from app.consent.service import has_consent
from app.core import audit, discretion
from app.core.crypto import blind_index
from app.core.extensions import db
from app.core.textnorm import normalize
from app.directory import capacity
from app.models.accounts import Organization
from app.models.areas import Area
from app.models.base import utcnow
from app.models.cases import Case
from app.models.directory import Service
from app.models.messages import HotlineSession, Message, SmsOptOut
from app.referrals import service as referrals
from app.sms import messaging
from app.sms.channels import SMS, STORE_ONLY, Channel

# --- keywords (text is compared in ``app.textnorm.normalize``'s form) -------------------

# Whole-message keywords per language (normalised form). Every language's words work in
# every conversation: someone may switch languages mid-way.
KEYWORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "stop": {
        "en": ("stop", "stopall", "unsubscribe", "cancel", "end", "quit", "optout"),
        "es": ("parar", "alto", "baja", "detener"),
        "fr": ("arret", "arreter", "stop"),
        "ar": ("توقف", "ايقاف", "قف"),
    },
    "start": {
        "en": ("start", "unstop", "resume"),
        "es": ("iniciar", "comenzar", "reanudar"),
        "fr": ("demarrer", "reprendre"),
        "ar": ("ابدا", "استئناف"),
    },
    "help": {
        "en": ("help", "info"),
        "es": ("ayuda", "informacion"),
        "fr": ("aide",),
        "ar": ("مساعده", "معلومات"),
    },
    "forget": {
        "en": ("forget", "forget me", "delete", "erase"),
        "es": ("olvidar", "olvidame", "borrar"),
        "fr": ("oublier", "oubliez moi", "effacer"),
        "ar": ("انسى", "انسني", "احذف", "امسح"),
    },
    "lang": {
        "en": ("lang", "language"),
        "es": ("idioma", "lengua"),
        "fr": ("langue",),
        "ar": ("لغه", "اللغه"),
    },
    "call": {
        "en": ("call", "call me", "callback"),
        "es": ("llamar", "llamame", "llamada"),
        "fr": ("appeler", "appelez moi", "appel"),
        "ar": ("اتصل", "اتصلوا", "اتصال"),
    },
}
# Words meaning immediate danger, anywhere in a message.
DANGER_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("danger", "emergency", "sos", "unsafe"),
    "es": ("peligro", "emergencia", "auxilio", "socorro"),
    "fr": ("danger", "urgence", "secours"),
    "ar": ("خطر", "طوارئ", "النجده", "نجده"),
}
YES_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("yes", "y", "ok", "okay", "agree", "i agree"),
    "es": ("si", "s", "acepto", "de acuerdo", "vale"),
    "fr": ("oui", "o", "d accord", "j accepte", "accepte"),
    "ar": ("نعم", "اجل", "موافق", "موافقه"),
}
NO_WORDS: dict[str, tuple[str, ...]] = {
    "en": ("no", "n", "nope"),
    "es": ("no",),
    "fr": ("non",),
    "ar": ("لا", "كلا"),
}
LANGUAGE_CHOICES: dict[str, tuple[str, ...]] = {
    "en": ("1", "en", "english", "ingles", "anglais", "انجليزي", "الانجليزيه"),
    "es": ("2", "es", "espanol", "spanish", "castellano", "espagnol", "اسباني", "الاسبانيه"),
    "fr": ("3", "fr", "francais", "french", "frances", "فرنسي", "الفرنسيه"),
    "ar": ("4", "ar", "arabic", "arabe", "عربي", "العربيه"),
}
# Options on one page of the area menu (two SMS segments hold fewer anyway).
MAX_MENU_OPTIONS = 99
NEED_OPTIONS = {"1": "shelter", "2": "legal", "3": "medical", "4": "psychosocial", "5": "other"}
DANGER_OPTION = "0"


def _all(words: dict[str, tuple[str, ...]]) -> frozenset[str]:
    return frozenset(w for group in words.values() for w in group)


_KEYWORD_INDEX = {kind: _all(words) for kind, words in KEYWORDS.items()}
_DANGER = _all(DANGER_WORDS)
_YES = _all(YES_WORDS)
_NO = _all(NO_WORDS)


def keyword(norm: str) -> str | None:
    for kind, words in _KEYWORD_INDEX.items():
        if norm in words:
            return kind
    return None


def keyword_language(norm: str) -> str | None:
    """The language a keyword belongs to (the first one listing it)."""
    for words in KEYWORDS.values():
        for language, group in words.items():
            if norm in group:
                return language
    return None


def means_danger(norm: str) -> bool:
    tokens = norm.split()
    return any(t in _DANGER for t in tokens)


def choose_language(norm: str) -> str | None:
    for language, words in LANGUAGE_CHOICES.items():
        if norm in words:
            return language
    return None


# --- provider commands -----------------------------------------------------------------

PROVIDER_COMMANDS: dict[str, tuple[str, ...]] = {
    "accept": ("accept", "aceptar", "accepter", "قبول"),
    "decline": ("decline", "rechazar", "refuser", "رفض"),
    "beds": ("beds", "camas", "lits", "اسره"),
}
DECLINE_REASONS: dict[str, tuple[str, ...]] = {
    "full": ("full", "no space", "no beds", "lleno", "completo", "sin cupo", "complet",
             "plein", "ممتلئ", "لا مكان"),
    "ineligible": ("ineligible", "not eligible", "no elegible", "inelegible", "non eligible",
                   "غير مؤهل"),
    "unreachable": ("unreachable", "no answer", "no contact", "sin respuesta",
                    "injoignable", "pas de reponse", "لا رد"),
}
CODE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{2,15}$")


@dataclass(frozen=True)
class ProviderCommand:
    action: str  # accept / decline / beds
    code: str | None = None
    reason: str | None = None  # a reason code, never the provider's words
    beds: int | None = None
    valid: bool = True


def parse_provider_command(norm: str) -> ProviderCommand | None:
    tokens = norm.split()
    if not tokens:
        return None
    action = next((a for a, words in PROVIDER_COMMANDS.items() if tokens[0] in words), None)
    if action is None:
        return None
    if action == "beds":
        if len(tokens) == 2 and tokens[1].isascii() and tokens[1].isdigit() and len(tokens[1]) <= 5:
            return ProviderCommand("beds", beds=int(tokens[1]))
        return ProviderCommand("beds", valid=False)
    if len(tokens) < 2 or not CODE_RE.match(tokens[1]):
        return ProviderCommand(action, valid=False)
    code = tokens[1].upper()
    reason = None
    if action == "decline":
        rest = " ".join(tokens[2:])
        reason = next(
            (key for key, words in DECLINE_REASONS.items() if any(w in rest for w in words)),
            "other",
        )
    return ProviderCommand(action, code=code, reason=reason)


def _provider_reply(
    services: list[Service], command: ProviderCommand, language: str, at: datetime
) -> list[str]:
    def say(key: str, **params: object) -> list[str]:
        return [messaging.render(key, language, params)]

    if not command.valid:
        return say("provider.help") if services else say("provider.not_found")
    if command.action in ("accept", "decline"):
        outcome = None
        if services and command.code:
            outcome = referrals.respond_by_sms(
                services, command.action, command.code, command.reason, at
            )
        if outcome == "accepted":
            return say("provider.accepted", code=command.code)
        if outcome == "declined":
            return say("provider.declined", code=command.code)
        return say("provider.not_found")
    # BEDS: the same rule as every other path (app.capacity), for each shelter that keeps
    # a count on this number; all of them or none.
    shelters = [s for s in services if s.category == "shelter" and s.beds_total is not None]
    if not shelters or command.beds is None:
        return say("provider.no_beds")
    audit.lock()  # before the service rows: the lock order of app.referrals (bed holds)
    try:
        with db.session.begin_nested():
            for service in shelters:
                capacity.set_beds(
                    service, free=command.beds, actor_org_id=service.organization_id
                )
    except capacity.BedCountError:
        top = min(capacity.most_free(s) or 0 for s in shelters)
        return say("provider.beds_invalid", total=top)
    return say("provider.beds_updated", beds=command.beds)


# --- entry point -----------------------------------------------------------------------


@lru_cache(maxsize=4)
def _inbound_insert(dialect: str) -> Any:
    """The webhook's first statement: the inbound row (no text), its audience decided in
    the same statement (a registered intake phone, or a number claiming to answer a
    referral, is a provider), nothing when this MessageSid was already handled."""
    table = Message.__table__
    service = Service.__table__
    insert = pg_insert if dialect == "postgresql" else lite_insert
    registered = exists().where(
        service.c.intake_phone_index == bindparam("phone_index"), service.c.active.is_(True)
    )
    audience = sql_case(
        (or_(bindparam("claimed", type_=Boolean), registered), literal("provider")),
        else_=literal("survivor"),
    )
    return (
        insert(table)
        .values(
            direction="in", audience=audience, status="received",
            twilio_sid=bindparam("sid"), counterpart_index=bindparam("phone_index"),
            final_at=bindparam("at"), created_at=bindparam("at"), updated_at=bindparam("at"),
            attempts=0, params={}, language="en", remote_delete_attempts=0,
            channel=bindparam("channel"),
        )
        .on_conflict_do_nothing(index_elements=["twilio_sid"])
        .returning(table.c.id, table.c.audience)
    )


# The webhook's statements are Core, on the session's connection: the ORM's per-statement
# cost was most of the hotline's time (bench/bench_sms_inbound.py). The conversation falls
# back to ORM objects only where it changes a case.
_CASE = Case.__table__
_HOTLINE = HotlineSession.__table__
# Touch the number's session and read its state in one statement; on PostgreSQL the UPDATE
# also takes the row lock that serialises messages from one number.
_TOUCH_SESSION = (
    _HOTLINE.update()
    .where(_HOTLINE.c.phone_index == bindparam("session_index"),
           _HOTLINE.c.channel == bindparam("session_channel"))
    .values(last_message_at=bindparam("touched_at"))
    .returning(
        _HOTLINE.c.step, _HOTLINE.c.language, _HOTLINE.c.case_id,
        select(_CASE.c.reference).where(_CASE.c.id == _HOTLINE.c.case_id)
        .scalar_subquery().label("reference"),
        select(_CASE.c.status).where(_CASE.c.id == _HOTLINE.c.case_id)
        .scalar_subquery().label("case_status"),
    )
)
# FOR UPDATE: messages from one number are handled one at a time (two quick "yes" must not
# open two cases). On SQLite the clause is dropped; BEGIN IMMEDIATE serialises already.
_SESSION_BY_PHONE = (
    select(HotlineSession)
    .where(HotlineSession.phone_index == bindparam("phone_index"),
           HotlineSession.channel == bindparam("channel"))
    .with_for_update()
)


def record_inbound(
    connection: Any, sid: str, phone_index: str, claimed_provider: bool, at: datetime,
    channel: str = "sms",
) -> str | None:
    """Insert the inbound row (no text) and return its audience ("provider" or "survivor"),
    or None when this MessageSid was already handled (a Twilio retry). ``INSERT ... ON
    CONFLICT DO NOTHING`` on the unique SID is race-safe on both databases (a concurrent
    duplicate waits for the first, then does nothing) and costs one statement."""
    statement = _inbound_insert(connection.dialect.name)
    row = connection.execute(statement, {
        "sid": sid, "phone_index": phone_index, "claimed": claimed_provider, "at": at,
        "channel": channel,
    }).first()
    return None if row is None else str(row.audience)


def handle_inbound(
    sid: str, e164: str, text: str, at: datetime | None = None, channel: Channel = SMS,
    media: int = 0,
) -> list[str]:
    """Handle one inbound message (or a voice call's step: ``sid`` is then the call's step
    key) on ``channel``; return the reply texts (rendered, never stored). ``media``: how
    many media the message came with (never fetched): the survivor is told that only text
    is read."""
    at = at or utcnow()
    index = blind_index(e164)
    connection = db.session.connection()
    norm = normalize(text)
    command = parse_provider_command(norm)
    claimed = command is not None and command.action in ("accept", "decline")
    audience = record_inbound(connection, sid, index, claimed, at, channel.name)
    if audience is None:
        return []
    if audience == "provider":
        services = list(db.session.scalars(
            select(Service).where(Service.intake_phone_index == index, Service.active.is_(True))
            .order_by(Service.id)
        ))
        language = _provider_language(norm) or "en"
        if command is None:
            return [messaging.render("provider.help", language)]
        return _provider_reply(services, command, language, at)
    if media and not norm:
        return [messaging.render("hotline.text_only", replies_language(index))]
    quick = _follow_up(connection, index, norm, at, channel)
    if quick is not None:
        return quick
    replies = Conversation(index, e164, at, channel).answer(norm)
    if media:
        replies.insert(0, messaging.render("hotline.text_only", replies_language(index)))
    return replies


def replies_language(index: str) -> str:
    """The language of the number's newest conversation (English when none chose one)."""
    language = db.session.scalar(
        select(HotlineSession.language)
        .where(HotlineSession.phone_index == index, HotlineSession.language.is_not(None))
        .order_by(HotlineSession.last_message_at.desc())
        .limit(1)
    )
    return language or "en"


def _follow_up(
    connection: Any, index: str, norm: str, at: datetime, channel: Channel = SMS
) -> list[str] | None:
    """The hotline's steady state, without ORM objects: a number whose conversation is done
    texts again about its open case ("any news?", HELP). One UPDATE touches the session
    and returns its state with its case's code and status. None when the message needs
    the whole conversation (no session yet, another step, another keyword, a danger word,
    a case that is not open)."""
    row = connection.execute(_TOUCH_SESSION, {
        "session_index": index, "session_channel": channel.name, "touched_at": at,
    }).first()
    if row is None or row.step != "done" or row.case_id is None or row.language is None:
        return None
    kind = keyword(norm)
    if kind not in (None, "help") or means_danger(norm):
        return None
    if kind == "help":
        return [channel.render("hotline.help", row.language)]
    if row.case_status != "open":
        return None
    return [channel.render("hotline.resume", row.language, {"reference": row.reference})]


def _provider_language(norm: str) -> str | None:
    first = norm.split()[0] if norm else ""
    for language_index, language in enumerate(("en", "es", "fr", "ar")):
        for words in PROVIDER_COMMANDS.values():
            if len(words) > language_index and words[language_index] == first:
                return language
    return None


# --- the survivor conversation ---------------------------------------------------------


def hotline_organization() -> int | None:
    """The id of the organization that owns hotline cases (``HAVEN_HOTLINE_ORG``, else the
    first NGO)."""
    name = current_app.config.get("HAVEN_HOTLINE_ORG") or ""
    table = Organization.__table__
    query = select(table.c.id)
    if name:
        query = query.where(func.lower(table.c.name) == name.lower())
    else:
        query = query.where(table.c.kind == "ngo").order_by(table.c.id)
    return db.session.connection().execute(query.limit(1)).scalar()


_AREA = Area.__table__
# Areas with a label first (by label), then those offered by number only.
_AREAS = select(_AREA.c.id, _AREA.c.sms_label).order_by(
    _AREA.c.sms_label.is_(None), _AREA.c.sms_label, _AREA.c.name, _AREA.c.id
)
# An area menu option: the area's id and its approved SMS label (None: by number only).
AreaOption = tuple[int, str | None]
_LATEST_CASE = (
    select(_CASE.c.id, _CASE.c.language)
    .where(_CASE.c.phone_index == bindparam("phone_index"),
           _CASE.c.status.in_(("open", "closed")))
    .order_by(_CASE.c.created_at.desc(), _CASE.c.id.desc())
    .limit(1)
)


@lru_cache(maxsize=4)
def _session_insert(dialect: str) -> Any:
    insert = pg_insert if dialect == "postgresql" else lite_insert
    return insert(_HOTLINE).on_conflict_do_nothing(index_elements=["phone_index", "channel"])


def find_case(phone_index: str) -> Case | None:
    """The number's latest open or closed case (``_LATEST_CASE``)."""
    row = db.session.connection().execute(_LATEST_CASE, {"phone_index": phone_index}).first()
    return None if row is None else db.session.get(Case, row.id)


class Conversation:
    def __init__(
        self, phone_index: str, e164: str, at: datetime, channel: Channel = SMS
    ) -> None:
        self.index = phone_index
        self.e164 = e164
        self.at = at
        self.channel = channel
        self.replies: list[str] = []
        self._areas: list[AreaOption] | None = None
        self.session = db.session.scalar(
            _SESSION_BY_PHONE, {"phone_index": phone_index, "channel": channel.name}
        )

    # -- helpers --

    @property
    def language(self) -> str:
        return (self.session.language if self.session else None) or "en"

    def say(self, key: str, language: str | None = None, **params: object) -> None:
        self.replies.append(self.channel.render(key, language or self.language, params))

    def case(self) -> Case | None:
        if self.session is None or self.session.case_id is None:
            return None
        case = db.session.get(Case, self.session.case_id)
        if case is None or case.is_erased:
            return None
        return case

    def start_session(self) -> HotlineSession:
        """A number's first message (or its first since FORGET, or since its session was
        cleaned up): a session row, resuming the number's latest case if it has one. INSERT
        ... ON CONFLICT DO NOTHING: when two first messages race, the second uses the
        first's row (no savepoint, no IntegrityError)."""
        connection = db.session.connection()
        existing = connection.execute(_LATEST_CASE, {"phone_index": self.index}).first()
        values = {
            "phone_index": self.index, "step": "language", "failures": 0, "menu_page": 0,
            "urgent": False, "created_at": self.at, "last_message_at": self.at,
            "case_id": None, "language": None, "channel": self.channel.name,
        }
        if existing is not None:
            values.update(case_id=existing.id, language=existing.language, step="done")
        connection.execute(_session_insert(connection.dialect.name), values)
        found = db.session.scalar(
            _SESSION_BY_PHONE, {"phone_index": self.index, "channel": self.channel.name}
        )
        assert found is not None
        return found

    # -- dispatch --

    def answer(self, norm: str) -> list[str]:
        fresh = self.session is None
        if self.session is None:
            self.session = self.start_session()
        session = self.session
        kind = keyword(norm)
        if session.language is None and kind is not None:
            session.language = keyword_language(norm)
        if means_danger(norm) or (session.step == "needs" and DANGER_OPTION in norm.split()):
            self.say("hotline.danger")
            self.report_danger()
        if kind is not None:
            getattr(self, f"keyword_{kind}")()
        elif fresh and session.step == "language":
            chosen = choose_language(norm)
            if chosen:
                self.set_language(chosen)
            else:
                self.say("hotline.language_menu", "en")
        else:
            getattr(self, f"step_{session.step}")(self.channel.read(session.step, norm))
        self.carry_danger()
        if self.session is not None:
            # Already so after the touch in `_follow_up` or the session insert; assigned last
            # all the same, so that a step that flushes on its own (a new case's savepoint)
            # does not flush the session separately.
            self.session.last_message_at = self.at
        db.session.flush()
        return self.replies

    def report_danger(self) -> None:
        """After the emergency number: the trace a caseworker sees. The number's case is
        flagged (and reopened if it was closed); before consent, the time waits on the
        session for ``carry_danger``."""
        assert self.session is not None
        self.session.urgent = True
        case = self.case()
        if case is None:
            if self.session.danger_reported_at is None:
                self.session.danger_reported_at = self.at
            return
        reopen_if_closed(case)
        danger.report(case, self.at)

    def carry_danger(self) -> None:
        """A danger report kept on the session goes onto the case once there is one (the
        survivor said YES to the consent question, or her case was found again)."""
        if self.session is None or self.session.danger_reported_at is None:
            return
        case = self.case()
        if case is None:
            return
        danger.report(case, self.session.danger_reported_at)
        self.session.danger_reported_at = None

    def prompt(self) -> None:
        """Ask the question of the current step."""
        step = self.session.step if self.session else "language"
        if step == "language":
            self.say("hotline.language_menu", "en")
        elif step == "consent":
            self.say("hotline.consent")
        elif step == "needs":
            self.say("hotline.needs_menu")
        elif step == "area":
            self.area_menu()
        else:
            case = self.case()
            if case is not None:
                self.say("hotline.resume", reference=case.reference)
            else:
                self.say("hotline.help")

    def unclear(self) -> None:
        assert self.session is not None
        self.session.failures += 1
        if self.session.failures >= 3:
            self.say("hotline.offer_callback")
        else:
            self.say("hotline.unclear")
        self.prompt()

    def advance(self, step: str) -> None:
        assert self.session is not None
        self.session.step = step
        self.session.failures = 0
        self.session.menu_page = 0
        self.prompt()

    # -- steps --

    def set_language(self, language: str) -> None:
        assert self.session is not None
        self.session.language = language
        case = self.case()
        if case is not None:
            case.language = language
        next_step = self.session.return_step or ("done" if case is not None else "consent")
        self.session.return_step = None
        self.advance(next_step)

    def step_language(self, norm: str) -> None:
        chosen = choose_language(norm)
        if chosen is None:
            self.unclear()
            return
        self.set_language(chosen)

    def step_consent(self, norm: str) -> None:
        assert self.session is not None
        if norm in _YES or norm == STORE_ONLY:
            case = self.case() or self.open_case(texts=norm != STORE_ONLY)
            if case is None:
                self.say("hotline.unavailable")
                db.session.delete(self.session)
                request_checkpoint()
                self.session = None
                return
            self.advance("needs")
        elif norm in _NO:
            # Nothing is kept: the session goes too.
            language = self.language
            db.session.delete(self.session)
            request_checkpoint()
            self.session = None
            self.say("hotline.declined", language)
        else:
            self.unclear()

    def open_case(self, texts: bool = True) -> Case | None:
        assert self.session is not None
        org_id = hotline_organization()
        if org_id is None:
            current_app.logger.warning("sms hotline: no organization to own hotline cases")
            return None
        # The case's three audit events (created, two consents) go in with one batch.
        with audit.batched():
            case, _created = create_case(
                org_id, None, idempotency_key=None, language=self.language, channel="sms",
                at=self.at,
            )
            for scope in ("store", "contact_sms") if texts else ("store",):
                change_consent(case, scope, True, "sms", None, language=self.language, at=self.at)
        case.phone = self.e164
        case.phone_index = self.index
        # The case has its id already (create_case flushed it); its phone, the consents and
        # the session are written by the conversation's one flush at the end.
        self.session.case_id = case.id
        return case

    def step_needs(self, norm: str) -> None:
        assert self.session is not None
        digits = set(norm.replace(" ", "")) if re.fullmatch(r"[0-9 ]+", norm) else set()
        chosen = [NEED_OPTIONS[d] for d in sorted(digits) if d in NEED_OPTIONS]
        if not chosen or digits - set(NEED_OPTIONS) - {DANGER_OPTION}:
            if digits == {DANGER_OPTION}:
                self.prompt()  # the emergency number was given first; now the needs
            else:
                self.unclear()
            return
        case = self.case()
        if case is None:
            self.restart()
            return

        urgency = "immediate" if self.session.urgent else "soon"
        set_needs(case, dict.fromkeys(chosen, urgency), actor=audit.SYSTEM)
        if self.areas():
            self.advance("area")
        else:
            self.finish(case)

    def areas(self) -> list[AreaOption]:
        if self._areas is None:  # read once per message
            self._areas = [
                (row.id, row.sms_label if discretion.is_approved(row.sms_label) else None)
                for row in db.session.connection().execute(_AREAS)
            ]
        return self._areas

    def unnamed_options(self, count: int) -> tuple[str, ...]:
        """The menu texts of options 1..count for areas offered by number only."""
        return tuple(
            self.channel.render("hotline.area_unnamed", self.language, {"number": n})
            for n in range(1, min(count, MAX_MENU_OPTIONS) + 1)
        )

    def area_pages(self) -> list[list[AreaOption]]:
        """Menu pages that fit in 2 segments in the conversation's language."""
        areas = tuple(self.areas())
        return [list(page) for page in _area_pages(
            areas, self.language, self.channel.render("hotline.area_more", self.language),
            self.channel.render("hotline.area_menu", self.language, {"options": "\x00"}),
            self.unnamed_options(len(areas)),
        )]

    def area_text(self, page: list[AreaOption], more: bool) -> str:
        template = self.channel.render("hotline.area_menu", self.language, {"options": "\x00"})
        more_text = self.channel.render("hotline.area_more", self.language) if more else None
        return _area_text(template, page, more_text, self.unnamed_options(len(page)))

    def area_menu(self) -> None:
        assert self.session is not None
        pages = self.area_pages()
        if not pages:
            return
        number = self.session.menu_page % len(pages)
        self.replies.append(self.area_text(pages[number], more=len(pages) > 1))

    def step_area(self, norm: str) -> None:
        assert self.session is not None
        pages = self.area_pages()
        case = self.case()
        if case is None:
            self.restart()
            return
        if not pages:
            self.finish(case)
            return
        page = pages[self.session.menu_page % len(pages)]
        if norm == "0" and len(pages) > 1:
            self.session.menu_page = (self.session.menu_page + 1) % len(pages)
            self.area_menu()
            return
        if norm.isascii() and norm.isdigit() and 1 <= int(norm) <= len(page):
            case.area_id = page[int(norm) - 1][0]
            audit.record("case.profile_update", "case", case.id, actor_user_id=audit.SYSTEM)
            self.finish(case)
            return
        self.unclear()

    def finish(self, case: Case) -> None:
        assert self.session is not None
        self.session.step = "done"
        self.session.failures = 0
        self.say("hotline.confirm", reference=case.reference)

    def step_done(self, _norm: str) -> None:
        # (The common follow-up, an open case, is answered by ``_follow_up`` before this.)
        case = self.case() or self.resume_case()
        if case is None:
            self.restart()
            return
        reopen_if_closed(case)
        self.say("hotline.resume", reference=case.reference)

    def step_callback(self, norm: str) -> None:
        self.step_done(norm)

    def resume_case(self) -> Case | None:
        assert self.session is not None
        case = find_case(self.index)
        if case is None:
            return None
        self.session.case_id = case.id
        return case

    def restart(self) -> None:
        """The case is gone (erased elsewhere): start again from consent."""
        assert self.session is not None
        self.session.case_id = None
        self.advance("consent" if self.session.language else "language")

    # -- keywords --

    def keyword_help(self) -> None:
        self.say("hotline.help")

    def keyword_lang(self) -> None:
        assert self.session is not None
        if self.session.step != "language":
            self.session.return_step = self.session.step
        self.session.step = "language"
        self.session.failures = 0
        self.say("hotline.language_menu", "en")

    def keyword_stop(self) -> None:
        messaging.opt_out(self.index, "keyword")
        for case in self._cases():
            if has_consent(case, "contact_sms"):
                change_consent(
                    case, "contact_sms", False, "sms", None, language=self.language, at=self.at
                )
        self.say("hotline.stopped")

    def keyword_start(self) -> None:
        messaging.opt_in(self.index)
        for case in self._cases():
            if has_consent(case, "store") and not has_consent(case, "contact_sms"):
                change_consent(
                    case, "contact_sms", True, "sms", None, language=self.language, at=self.at
                )
        self.say("hotline.started")

    def keyword_call(self) -> None:
        assert self.session is not None
        case = self.case() or self.resume_case()
        if case is None:
            # A call back needs the number kept: that is the consent question.
            self.advance("consent")
            return
        reopen_if_closed(case)
        if self.session.step == "callback":
            self.session.step = "done"
        self.session.failures = 0
        self.say("hotline.callback_ok", reference=case.reference)

    def keyword_forget(self) -> None:
        language = self.language
        forget_number(self.index, self.at)
        self.session = None
        self.say("hotline.forgotten", language)

    def _cases(self) -> list[Case]:
        return list(
            db.session.scalars(
                select(Case).where(
                    Case.phone_index == self.index, Case.status.in_(("open", "closed"))
                )
            )
        )


def _area_text(template: str, page: Sequence[AreaOption], more: str | None,
               unnamed: tuple[str, ...]) -> str:
    options = ", ".join(
        f"{i} {label}" if label else unnamed[i - 1]
        for i, (_id, label) in enumerate(page, start=1)
    )
    if more:
        options += ", " + more
    return template.replace("\x00", options)


@lru_cache(maxsize=256)
def _area_pages(
    areas: tuple[AreaOption, ...], language: str, more: str, template: str,  # noqa: ARG001 - part of the lru_cache key
    unnamed: tuple[str, ...],
) -> tuple[tuple[AreaOption, ...], ...]:
    """Split the area list into numbered menu pages of at most 2 segments each (cached per
    area list and language: the list changes rarely, the hotline asks often)."""
    pages: list[tuple[AreaOption, ...]] = []
    page: tuple[AreaOption, ...] = ()
    for area in areas:
        trial = (*page, area)
        too_long = len(trial) > MAX_MENU_OPTIONS or (
            messaging.segments(_area_text(template, trial, more, unnamed)).segments > 2
        )
        if page and too_long:
            pages.append(page)
            page = (area,)
        else:
            page = trial
    if page:
        pages.append(page)
    return tuple(pages)


def reopen_if_closed(case: Case) -> None:
    """A survivor who texts again is back in the caseworkers' queue."""
    if case.status == "closed":
        reopen_case(case, actor=audit.SYSTEM)


def forget_number(phone_index: str, at: datetime | None = None) -> None:
    """FORGET: erase every case with this number (``erase_case``), cancel and unlink every
    message, delete the session and the opt-out. Flush only."""

    at = at or utcnow()
    cases = db.session.scalars(
        select(Case).where(Case.phone_index == phone_index, Case.status != "erased")
    ).all()
    for case in cases:
        erase_case(case, None, reason="survivor_request", at=at)
    messaging.cancel_queued(phone_index=phone_index)
    db.session.execute(
        update(Message)
        .where(Message.counterpart_index == phone_index)
        .values(counterpart_index=None, recipient=None)
        .execution_options(synchronize_session=False)
    )
    db.session.execute(delete(HotlineSession).where(HotlineSession.phone_index == phone_index))
    db.session.execute(delete(SmsOptOut).where(SmsOptOut.phone_index == phone_index))
    db.session.expire_all()
    request_checkpoint()
    audit.record("sms.forget", actor_user_id=audit.SYSTEM)
