"""Cases: creation (idempotent), profile and needs, close/reopen, export, erasure.

Domain functions flush, never commit: the view or CLI command owns the transaction.

Erasure, one case or many, is ``app.cases.erasure``. After the caller commits an erasure,
on SQLite the WAL is checkpointed and truncated (``PRAGMA wal_checkpoint(TRUNCATE)``) so old
frames do not linger in the -wal file. The same checkpoint follows every commit that
deletes or replaces an identifier — a phone, a blind index, an alias, any sealed field:
the domain function that does it calls ``request_checkpoint()`` (profile edits here,
FORGET and declined conversations in ``app.sms.hotline``, numbers cleared from messages in
``app.sms.messaging`` and the SMS worker, retention rules in ``app.retention``).
``secure_delete`` zeroes the freed cells in the database file; the checkpoint makes sure no
older copy of the page stays in the WAL.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import struct
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import and_, delete, event, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.cases import followups
from app.consent.safe_hours import Window, contact_rules
from app.consent.safe_hours import write as write_safe_hours
from app.consent.service import current_consents, has_consent
from app.core import audit
from app.core.crypto import blind_index, format_phone, new_data_key
from app.core.extensions import db
from app.core.vocab import SERVICE_CATEGORIES, URGENCIES
from app.models.accounts import Organization, User
from app.models.audit import AuditEvent
from app.models.base import utcnow
from app.models.cases import (
    CLOSE_REASONS,
    Case,
    ConsentSignature,
    Need,
)
from app.models.keys import DataKey
from app.models.messages import Message
from app.models.referrals import Referral, Release

# Reference codes: 6 characters from 31 that cannot be confused when read aloud or
# handwritten (no 0/O, 1/I/L), shown as K7Q-4MX.
REFERENCE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
REFERENCE_RE = re.compile(r"^[A-HJKMNP-Z2-9]{3}-?[A-HJKMNP-Z2-9]{3}$")
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")

ALIAS_MAX = 60
NOTE_MAX = 500
SIGNATURE_MAX_CHARS = 48_000  # a data URL; the form memory limit is 64 KB
SIGNATURE_MAX_SIZE = (2000, 1000)


class CaseError(ValueError):
    pass


class NotADraft(CaseError):
    """Only a draft can be discarded: this case has its profile now (or was closed or
    erased meanwhile)."""


def new_reference() -> str:
    raw = "".join(secrets.choice(REFERENCE_ALPHABET) for _ in range(6))
    return f"{raw[:3]}-{raw[3:]}"


def normalize_reference(text: str) -> str | None:
    """Accepts what a person types (lower case, no dash, O for 0...) when it is unambiguous."""
    cleaned = re.sub(r"[\s-]", "", (text or "").upper())
    if not REFERENCE_RE.match(cleaned):
        return None
    return f"{cleaned[:3]}-{cleaned[3:]}"


def new_intake_token() -> str:
    return secrets.token_urlsafe(24)


def valid_token(token: str | None) -> bool:
    return bool(token) and bool(TOKEN_RE.match(token or ""))


# --- creation ---------------------------------------------------------------------------


def create_case(
    organization_id: int,
    created_by_id: int | None,
    *,
    idempotency_key: str | None,
    language: str,
    channel: str = "tablet",
    at: datetime | None = None,
) -> tuple[Case, bool]:
    """Create an open case, or return the one this idempotency key already made.

    Returns ``(case, created)``. Safe against a double tap racing itself on both databases:
    the insert runs in a SAVEPOINT and a unique-key violation falls back to reading the
    winner's row. A key that belongs to another organization raises ``CaseError``."""
    if idempotency_key is not None:
        if not valid_token(idempotency_key):
            raise CaseError("invalid idempotency key")
        existing = _by_key(idempotency_key)
        if existing is not None:
            return _own(existing, organization_id), False
    for _attempt in range(8):
        case = Case(
            reference=new_reference(),
            organization_id=organization_id,
            created_by_id=created_by_id,
            idempotency_key=idempotency_key,
            channel=channel,
            status="open",
            language=language,
            created_at=at or utcnow(),
            # The creator is responsible by default; a hotline case waits to be taken.
            assigned_to_id=created_by_id if channel == "tablet" else None,
        )
        try:
            with db.session.begin_nested():
                db.session.add(case)
                db.session.flush()
        except IntegrityError:
            if idempotency_key is not None:
                existing = _by_key(idempotency_key)
                if existing is not None:
                    return _own(existing, organization_id), False
            continue  # reference code collision: draw another
        audit.record("case.create", "case", case.id, actor_user_id=created_by_id)
        return case, True
    raise CaseError("could not allocate a reference code")


def _by_key(key: str) -> Case | None:
    return db.session.scalar(select(Case).where(Case.idempotency_key == key))


def _own(case: Case, organization_id: int) -> Case:
    if case.organization_id != organization_id:
        raise CaseError("idempotency key belongs to another organization")
    return case


def set_profile(
    case: Case,
    *,
    alias: str,
    phone_e164: str | None,
    language: str,
    age_band: str,
    gender: str | None,
    area_id: int | None,
    children_accompanying: int | None,
    accessibility: bool,
    safe_hours: Sequence[Window],
    timezone: str | None,
    no_voicemail: bool,
    do_not_text: bool,
    note: str | None,
) -> None:
    """Save the profile. ``safe_hours``: her windows (none: any time), saved structured,
    which lifts a "safe hours need checking" flag; ``timezone``: her own IANA zone (None:
    her area's)."""

    if not has_consent(case, "store"):
        raise CaseError("no store consent")
    if case.data_key is None:
        case.data_key = _new_key()
    before = _identifiers(case)
    case.alias = alias
    case.phone = phone_e164
    case.phone_index = blind_index(phone_e164) if phone_e164 else None
    case.language = language
    case.age_band = age_band
    case.gender = gender or None
    case.area_id = area_id
    case.children_accompanying = children_accompanying
    case.accessibility = accessibility
    case.timezone = timezone or None
    write_safe_hours(case, safe_hours)
    case.no_voicemail = no_voicemail
    case.do_not_text = do_not_text
    case.note = note or None
    if case.profile_completed_at is None:
        case.profile_completed_at = utcnow()
    if any(old is not None and old != new for old, new in zip(
        before, _identifiers(case), strict=True
    )):
        request_checkpoint()  # an old phone, index or sealed text must not linger on disk
    db.session.flush()
    audit.record("case.profile_update", "case", case.id)


def _identifiers(case: Case) -> tuple[str | None, ...]:
    """What identifies the survivor on a case row: the sealed fields and the blind index."""
    return (case.alias, case.phone, case.phone_index, case.note, case.safe_hours)


def _new_key() -> DataKey:
    key = new_data_key()
    db.session.add(key)
    return key


def set_needs(case: Case, needs: dict[str, str], *, actor: audit.Actor = audit.SIGNED_IN) -> None:
    """Replace the case's needs with ``{category: urgency}`` (idempotent on resend)."""

    if not has_consent(case, "store"):
        raise CaseError("no store consent")
    for category, urgency in needs.items():
        if category not in SERVICE_CATEGORIES or urgency not in URGENCIES:
            raise CaseError("unknown need")
    db.session.execute(delete(Need).where(Need.case_id == case.id))
    db.session.expire(case, ["needs"])
    for category in SERVICE_CATEGORIES:
        if category in needs:
            db.session.add(Need(case_id=case.id, category=category, urgency=needs[category]))
    # The new rows are flushed with the rest of the transaction (the event needs only the id).
    audit.record("case.needs_update", "case", case.id, actor_user_id=actor)


def store_signature(case: Case, data_url: str) -> ConsentSignature:
    """Keep a validated signature image sealed with the case's key."""
    check_signature(data_url)
    if case.data_key is None:
        case.data_key = _new_key()
        db.session.flush()
    signature = ConsentSignature(case_id=case.id, data_key=case.data_key)
    signature.image = data_url
    db.session.add(signature)
    db.session.flush()
    return signature


def check_signature(data_url: str) -> None:
    """Raise ``CaseError`` unless ``data_url`` is a small PNG data URL with some ink."""
    prefix = "data:image/png;base64,"
    if not data_url or len(data_url) > SIGNATURE_MAX_CHARS or not data_url.startswith(prefix):
        raise CaseError("signature missing or too large")
    try:
        raw = base64.b64decode(data_url[len(prefix):], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CaseError("signature is not base64") from exc
    if raw[:8] != b"\x89PNG\r\n\x1a\n" or raw[12:16] != b"IHDR" or len(raw) < 33:
        raise CaseError("signature is not a PNG")
    width, height = struct.unpack(">II", raw[16:24])
    if not (0 < width <= SIGNATURE_MAX_SIZE[0] and 0 < height <= SIGNATURE_MAX_SIZE[1]):
        raise CaseError("signature size out of range")


# --- status -----------------------------------------------------------------------------


def close_case(case: Case, reason: str, at: datetime | None = None) -> None:
    """Close an open case for ``reason`` (one of ``CLOSE_REASONS``: they feed the figures)."""
    if case.status != "open":
        raise CaseError("only an open case can be closed")
    if reason not in CLOSE_REASONS:
        raise CaseError("unknown close reason")
    at = at or utcnow()
    case.status = "closed"
    case.close_reason = reason
    case.closed_at = at
    case.retention_due_at = at + current_app.config["CASE_RETENTION_AFTER_CLOSE"]
    db.session.flush()
    audit.record("case.close", "case", case.id)


def reopen_case(case: Case, *, actor: audit.Actor = audit.SIGNED_IN) -> None:
    if case.status != "closed":
        raise CaseError("only a closed case can be reopened")
    case.status = "open"
    case.closed_at = None
    case.close_reason = None
    case.retention_due_at = None
    db.session.flush()
    audit.record("case.reopen", "case", case.id, actor_user_id=actor)


# --- assignment (issue 16) ---------------------------------------------------------------


class NotAssignable(CaseError):
    """The case cannot be given to that person (another organization, not a caseworker or
    supervisor, inactive), or is no longer open."""


class AlreadyAssigned(CaseError):
    """Someone took the case meanwhile: only an unassigned case can be taken."""


def assignable_users(organization_id: int) -> list[User]:
    """Who may be responsible for the organization's cases: its active caseworkers and
    supervisors, by username."""
    return list(
        db.session.scalars(
            select(User)
            .where(
                User.organization_id == organization_id,
                User.role.in_(("caseworker", "supervisor")),
                User.active.is_(True),
            )
            .order_by(User.username)
        )
    )


def assign(case: Case, assignee_id: int | None, actor_id: int) -> bool:
    """A supervisor gives ``case`` to ``assignee_id`` (None: back to unassigned), within the
    case's organization only (audited ``case.assign``). False when nothing changed."""
    if case.status != "open":
        raise NotAssignable("only an open case can be assigned")
    if assignee_id is not None and assignee_id not in {
        u.id for u in assignable_users(case.organization_id)
    }:
        raise NotAssignable("not a caseworker of this organization")
    if case.assigned_to_id == assignee_id:
        return False
    case.assigned_to_id = assignee_id
    db.session.flush()
    audit.record("case.assign", "case", case.id, actor_user_id=actor_id)
    return True


def take(case: Case, user_id: int) -> None:
    """A caseworker takes an unassigned open case of her organization (audited
    ``case.take``). One conditional UPDATE: of two people tapping at once, one wins and the
    other gets ``AlreadyAssigned``."""
    if case.status != "open":
        raise NotAssignable("only an open case can be taken")
    result = db.session.execute(
        update(Case)
        .where(Case.id == case.id, Case.status == "open", Case.assigned_to_id.is_(None))
        .values(assigned_to_id=user_id)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(case, ["assigned_to_id"])
    if int(result.rowcount or 0) != 1:  # type: ignore[attr-defined]
        raise AlreadyAssigned("the case was taken meanwhile")
    audit.record("case.take", "case", case.id, actor_user_id=user_id)


# --- drafts ----------------------------------------------------------------------------


def drafts(organization_id: int, limit: int = 20) -> list[Case]:
    """The organization's drafts (``Case.is_draft``), newest first."""
    return list(
        db.session.scalars(
            select(Case)
            .where(Case.organization_id == organization_id, Case.is_draft)
            .order_by(Case.created_at.desc(), Case.id.desc())
            .limit(limit)
        )
    )


# --- export -----------------------------------------------------------------------------


def export_data(case: Case) -> dict[str, Any]:
    """Everything held about the case, decrypted, for the survivor (DESIGN §1, rights),
    including who received her data (GDPR Art. 15(1)(c)): every referral (recipient
    organization, what was shared under which release, status history), every release and
    every text message about her — never a message body or a phone number other than her
    own (in her profile)."""

    area = case.area.name if case.area is not None else None
    states = current_consents(case)
    phone = case.phone
    releases = _export_releases(case)
    referrals = _export_referrals(case, {r.pop("id"): r for r in releases})
    rules = contact_rules(case, current_app.config["HAVEN_DEFAULT_TIMEZONE"])
    return {
        "reference": case.reference,
        "status": case.status,
        "channel": case.channel,
        "created_at": case.created_at.isoformat(),
        "updated_at": case.updated_at.isoformat(),
        "closed_at": case.closed_at.isoformat() if case.closed_at else None,
        "retention_due_at": case.retention_due_at.isoformat() if case.retention_due_at else None,
        "danger_reported_at": (
            case.danger_reported_at.isoformat() if case.danger_reported_at else None
        ),
        "danger_acknowledged_at": (
            case.danger_acknowledged_at.isoformat() if case.danger_acknowledged_at else None
        ),
        "profile": {
            "alias": case.alias,
            "phone": format_phone(phone) if phone else None,
            # Her rules travel with her number (DESIGN §1.11): structured, not prose.
            "contact_rules": rules.as_export(),
            "language": case.language,
            "age_band": case.age_band,
            "gender": case.gender,
            "area": area,
            "children_accompanying": case.children_accompanying,
            "accessibility": case.accessibility,
            "note": case.note,
        },
        "needs": [{"category": n.category, "urgency": n.urgency} for n in case.needs],
        "consent_now": {scope: state.granted for scope, state in states.items()},
        "consent_history": [
            {
                "scope": c.scope,
                "granted": c.granted,
                "decision": c.decision,
                "method": c.method,
                "text_version": c.text_version,
                "language": c.language,
                "recorded_at": c.recorded_at.isoformat(),
                "expires_at": c.expires_at.isoformat() if c.expires_at else None,
                "signature": c.signature.image if c.signature is not None else None,
            }
            for c in case.consents
        ],
        "follow_ups": followups.export(case),
        "close_reason": case.close_reason,
        "referrals": referrals,
        "releases": releases,
        "messages": _export_messages(case, {r["code"] for r in referrals}),
        "activity": [
            {"at": e.at.isoformat(), "action": e.action} for e in case_audit_events(case)
        ],
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _export_releases(case: Case) -> list[dict[str, Any]]:
    """Every release of the case: recipient, method, given, until, withdrawn (and the id,
    which ``export_data`` takes back out to link each referral to its release)."""
    rows = db.session.execute(
        select(Release, Organization.name)
        .join(Organization, Organization.id == Release.organization_id)
        .where(Release.case_id == case.id)
        .order_by(Release.granted_at, Release.id)
    ).all()
    return [
        {
            "id": release.id,
            "recipient_organization": name,
            "method": release.method,
            "granted_at": release.granted_at.isoformat(),
            "expires_at": release.expires_at.isoformat(),
            "withdrawn_at": _iso(release.withdrawn_at),
        }
        for release, name in rows
    ]


def _export_referrals(
    case: Case, releases: dict[int, dict[str, Any]]
) -> list[dict[str, Any]]:
    """Every referral of the case: code, recipient organization, category, when, the names
    of the fields shared and the release they rest on, the status, the provider's answer,
    and the status history from the referral's audit events (action and time)."""
    rows = db.session.execute(
        select(Referral, Organization.name)
        .join(Organization, Organization.id == Referral.organization_id)
        .where(Referral.case_id == case.id)
        .order_by(Referral.created_at, Referral.id)
    ).all()
    history: dict[str, list[dict[str, str]]] = {}
    if rows:
        for object_id, action, at in db.session.execute(
            select(AuditEvent.object_id, AuditEvent.action, AuditEvent.at)
            .where(
                AuditEvent.object_type == "referral",
                AuditEvent.object_id.in_([str(r.id) for r, _name in rows]),
            )
            .order_by(AuditEvent.seq)
        ):
            history.setdefault(str(object_id), []).append({"at": at.isoformat(), "action": action})
    out = []
    for referral, name in rows:
        release = releases.get(referral.release_id, {})
        out.append(
            {
                "code": referral.code,
                "recipient_organization": name,
                "category": referral.category,
                "created_at": referral.created_at.isoformat(),
                "shared_fields": list(referral.shared_fields or []),
                "release": {
                    "recipient_organization": release.get("recipient_organization"),
                    "method": release.get("method"),
                    "granted_at": release.get("granted_at"),
                },
                "status": referral.status,
                "response_reason": referral.response_reason,
                "response_text": referral.response_text,
                "cancel_reason": referral.cancel_reason,
                "status_history": history.get(str(referral.id), []),
            }
        )
    return out


def _export_messages(case: Case, referral_codes: set[str]) -> list[dict[str, Any]]:
    """Every text message about her: those to her (the case's outbox rows), those she sent
    from her number (the inbound records, by the number's blind index) and those to a
    provider's phone about one of her referrals. Template, direction, times and status
    only: no body is ever kept, and no number or parameter is given out."""
    code = Message.params["code"].as_string()
    about: list[Any] = [Message.case_id == case.id]
    if case.phone_index:
        about.append(
            and_(Message.direction == "in", Message.counterpart_index == case.phone_index)
        )
    if referral_codes:
        services = select(Referral.service_id).where(Referral.case_id == case.id)
        about.append(
            and_(
                Message.direction == "out",
                Message.audience == "provider",
                Message.service_id.in_(services),
                code.in_(sorted(referral_codes)),
            )
        )
    rows = db.session.execute(
        select(
            Message.template_key,
            Message.audience,
            Message.direction,
            Message.created_at,
            Message.sent_at,
            Message.status,
            code,
        )
        .where(or_(*about))
        .order_by(Message.created_at, Message.id)
    ).all()
    return [
        {
            "template": row.template_key,
            "audience": row.audience,
            "direction": row.direction,
            "created_at": row.created_at.isoformat(),
            "sent_at": _iso(row.sent_at),
            "status": row.status,
            "referral_code": row[6] if row.audience == "provider" and row[6] in referral_codes
            else None,
        }
        for row in rows
    ]


def case_audit_events(case: Case, limit: int = 500) -> list[Any]:
    return list(
        db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == "case", AuditEvent.object_id == str(case.id))
            .order_by(AuditEvent.seq.desc())
            .limit(limit)
        )
    )


# --- erasure ----------------------------------------------------------------------------

def need_categories(categories: Iterable[str]) -> str:
    chosen = set(categories)
    return ",".join(c for c in SERVICE_CATEGORIES if c in chosen)


def request_checkpoint() -> None:
    """Checkpoint the WAL after the current transaction commits (nothing if it rolls back).
    Called by every domain function that deletes or replaces an identifier, so the old
    bytes do not linger in the SQLite -wal file (see the module docstring)."""
    db.session.info["haven_checkpoint"] = True


def checkpoint_sqlite() -> None:
    """Fold the WAL into the database file and truncate it (SQLite only; no-op elsewhere).
    Runs outside any transaction on a raw connection."""
    engine = db.engine
    if engine.dialect.name != "sqlite":
        return
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        cursor.fetchall()
        cursor.close()
    finally:
        raw.close()


@event.listens_for(Session, "after_commit")
def _checkpoint_after_commit(session: Session) -> None:
    if session.info.pop("haven_checkpoint", False):
        try:
            checkpoint_sqlite()
        except Exception:  # noqa: BLE001 - the change is committed; log, don't fail the request
            current_app.logger.warning("WAL checkpoint after removing identifiers failed")


@event.listens_for(Session, "after_rollback")
def _forget_checkpoint(session: Session) -> None:
    session.info.pop("haven_checkpoint", None)
