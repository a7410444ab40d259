"""Tamper-evident audit trail (DESIGN §1.6).

``record`` appends an event to the current transaction; it never commits, so the event
lands together with the change it describes or not at all. Events carry ids and action
names only. Each event's hash is SHA-256 over its canonical JSON and the previous hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Final

from flask import g, has_request_context
from flask_login import current_user
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as lite_insert

from app.core.extensions import db
from app.models.accounts import User
from app.models.audit import AuditEvent, AuditHead
from app.models.base import utcnow

GENESIS = "0" * 64
_ACTION = re.compile(r"^[a-z][a-z0-9_.]{1,63}$")
_OBJECT_TYPE = re.compile(r"^[a-z][a-z_]{1,31}$")


class AuditError(Exception):
    pass


class _SignedIn:
    """The type of ``SIGNED_IN``, the default actor of ``record``."""

    def __repr__(self) -> str:
        return "audit.SIGNED_IN"


# The actor of an event: no argument (SIGNED_IN) means whoever is signed in to this request;
# SYSTEM means nobody (a worker, retention, the hotline, an expiry job) and is never replaced
# by the signed-in user; a user id passed through is kept as given.
SIGNED_IN: Final = _SignedIn()
SYSTEM: Final = None
Actor = int | None | _SignedIn  # what a domain function that records events may be given


def canonical(event: AuditEvent) -> bytes:
    payload = {
        "seq": event.seq,
        "at": event.at.isoformat(timespec="microseconds"),
        "actor_user_id": event.actor_user_id,
        "actor_org_id": event.actor_org_id,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "request_id": event.request_id,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical(event) + event.prev_hash.encode()).hexdigest()


def _ensure_head() -> None:
    if db.session.get(AuditHead, 1) is None:
        # ON CONFLICT DO NOTHING: two first-ever events racing on PostgreSQL must not fail
        # on the primary key; the loser waits for the winner's row and then updates it.
        insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else lite_insert
        db.session.execute(
            insert(AuditHead).values(id=1, seq=0, last_hash=GENESIS).on_conflict_do_nothing()
        )


_HEAD = AuditHead.__table__
_EVENTS = AuditEvent.__table__
_ADVANCE = (
    _HEAD.update()
    .where(_HEAD.c.id == 1)
    .values(seq=_HEAD.c.seq + bindparam("count"))
    .returning(_HEAD.c.seq, _HEAD.c.last_hash)
)
_BATCH = "haven_audit_batch"  # key in db.session.info while `batched()` collects events
_SET_TIP = _HEAD.update().where(_HEAD.c.id == 1).values(last_hash=bindparam("tip"))


def lock() -> None:
    """Take the audit chain's lock (the head row, PostgreSQL) now rather than at this
    transaction's first event. Every audited transaction takes it anyway; one that will
    also lock rows other audited transactions lock (a service's bed count, a referral)
    calls this first, so that all of them take the same lock first and no deadlock can
    form. SQLite transactions are already serialised (BEGIN IMMEDIATE): nothing to do."""
    if db.session.get_bind().dialect.name != "postgresql":
        return
    _ensure_head()
    db.session.execute(select(AuditHead.id).where(AuditHead.id == 1).with_for_update())


def record(
    action: str,
    object_type: str | None = None,
    object_id: int | str | None = None,
    *,
    actor_user_id: Actor = SIGNED_IN,
    actor_org_id: int | None = None,
    at: datetime | None = None,
) -> AuditEvent:
    """Write one event in the session's transaction, at once, with three Core statements on
    its connection (never an ORM flush, never a commit: the caller's pending changes are
    flushed when it next queries or commits, in the same transaction as the event). Inside
    ``batched()`` the event is written when the batch ends instead, and the returned event
    has no ``seq`` or ``hash`` yet.

    The actor defaults to the logged-in user (``SIGNED_IN``); ``actor_user_id=SYSTEM`` (or
    None) records nobody, and a user id is kept as given, with that user's organization
    unless ``actor_org_id`` says otherwise. Object ids are database ids or reference codes,
    never names, phone numbers or free text: the regexes below refuse anything else.
    """
    if not _ACTION.match(action):
        raise AuditError("invalid audit action name")
    if object_type is not None and not _OBJECT_TYPE.match(object_type):
        raise AuditError("invalid audit object type")
    oid = None if object_id is None else str(object_id)
    if oid is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", oid):
        raise AuditError("audit object ids are ids or codes only")
    actor: int | None
    if isinstance(actor_user_id, _SignedIn):
        actor = None
        if has_request_context() and current_user.is_authenticated:
            actor = current_user.id
            actor_org_id = current_user.organization_id
    else:
        actor = actor_user_id
        if actor is not None and actor_org_id is None:
            actor_org_id = _organization_of(actor)
    values = {
        "at": at or utcnow(),
        "actor_user_id": actor,
        "actor_org_id": actor_org_id,
        "action": action,
        "object_type": object_type,
        "object_id": oid,
        "request_id": g.get("request_id") if has_request_context() else None,
    }
    pending = db.session.info.get(_BATCH)
    if pending is not None:
        pending.append(values)
        return AuditEvent(**values)
    _append([values])
    return AuditEvent(**values)


def _organization_of(user_id: int) -> int | None:
    """The organization of an actor given by id: the signed-in user's without a query, any
    other's read on the session's connection (Core: no ORM flush, as ``record`` promises)."""
    if has_request_context() and current_user.is_authenticated and current_user.id == user_id:
        return int(current_user.organization_id)
    found = db.session.connection().scalar(
        select(User.organization_id).where(User.id == user_id)
    )
    return None if found is None else int(found)


@contextmanager
def batched() -> Iterator[None]:
    """Collect the events ``record`` is asked for inside the block and write them, in order,
    when it ends: one head update, one insert, one tip update, however many there are (the
    hotline's new case writes three). The chain is the same as with one ``record`` each.
    If the block raises, nothing is written (the caller rolls the transaction back).
    Nested blocks join the outermost."""
    if _BATCH in db.session.info:
        yield
        return
    pending: list[dict[str, object]] = []
    db.session.info[_BATCH] = pending
    try:
        yield
    finally:
        del db.session.info[_BATCH]
    if pending:
        _append(pending)


def _not_in_batch() -> None:
    # These write at once: inside a batch they would take seqs before its earlier events.
    if _BATCH in db.session.info:
        raise AuditError("record_many and prune_through cannot run inside audit.batched()")


def _append(events: list[dict[str, object]]) -> None:
    """Chain ``events`` (dicts of the event's fields but seq and hashes) onto the tip, on the
    session's connection. Core statements, not ORM bulk updates: every audited request pays
    for these, the SMS webhook's included (bench/bench_sms_inbound.py)."""
    connection = db.session.connection()
    # The UPDATE takes the row lock (PostgreSQL) or the write lock (SQLite) and returns the
    # tip in the same statement, so concurrent writers queue here and the chain never forks.
    count = len(events)
    head = connection.execute(_ADVANCE, {"count": count}).first()
    if head is None:  # the first event ever
        _ensure_head()
        head = connection.execute(_ADVANCE, {"count": count}).one()
    prev = head.last_hash
    for offset, values in enumerate(events):
        values["seq"] = head.seq - count + 1 + offset
        values["prev_hash"] = prev
        values["hash"] = prev = compute_hash(SimpleNamespace(**values))  # type: ignore[arg-type]
    connection.execute(_EVENTS.insert(), events)
    connection.execute(_SET_TIP, {"tip": prev})


def record_many(
    action: str,
    object_type: str,
    object_ids: list[int],
    *,
    actor_user_id: int | None = None,
    actor_org_id: int | None = None,
    at: datetime | None = None,
) -> int:
    """``record`` for many objects at once (batch jobs such as retention): the same events,
    chained the same way, with one head update, one bulk insert and one tip update. Flushes,
    never commits."""
    if not object_ids:
        return 0
    _not_in_batch()
    if not _ACTION.match(action) or not _OBJECT_TYPE.match(object_type):
        raise AuditError("invalid audit action or object type")
    db.session.flush()  # as before: the caller's pending changes go first
    when = (at or utcnow()).astimezone(UTC)
    # The same fields `canonical` hashes, without building ORM objects (thousands of events
    # per retention batch); `_append` chains and writes them.
    _append([
        {"at": when, "actor_user_id": actor_user_id, "actor_org_id": actor_org_id,
         "action": action, "object_type": object_type, "object_id": str(int(object_id)),
         "request_id": None}
        for object_id in object_ids
    ])
    return len(object_ids)


def prune_through(last_seq: int) -> int:
    """Delete the events up to ``last_seq`` (retention: events older than 6 years) and move
    the chain's checkpoint there: ``audit_head.base_seq`` / ``base_hash`` take the pruned
    tip's seq and hash, and verification starts from them instead of the genesis. The
    caller records an ``audit.prune`` event (object id = ``last_seq``) in the same
    transaction, so the checkpoint itself is part of the chain. Flushes, never commits."""
    _not_in_batch()
    _ensure_head()
    # Lock the head first (as `record` does): no event is appended while we move the base.
    db.session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq))
    tip = db.session.execute(
        select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.seq == last_seq)
    ).one_or_none()
    if tip is None:
        return 0
    result = db.session.execute(
        AuditEvent.__table__.delete().where(AuditEvent.seq <= last_seq)
    )
    db.session.execute(
        update(AuditHead).where(AuditHead.id == 1).values(base_seq=tip.seq, base_hash=tip.hash)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


@dataclass
class VerifyResult:
    ok: bool
    checked: int
    broken_seq: int | None = None
    reason: str | None = None


def tip() -> tuple[int, str]:
    """The chain's last seq and hash: an anchor to keep outside this database (a ticket, a
    printout, another system). Someone able to write to the database could rewrite the
    whole chain consistently; a kept anchor that no longer matches shows it."""
    head = db.session.get(AuditHead, 1)
    return (head.seq, head.last_hash) if head else (0, GENESIS)


def check_anchor(seq: int, expected_hash: str) -> str | None:
    """Why the event ``seq`` no longer has the hash an anchor recorded, or None if it has.
    Run after ``verify_chain``: it checks one link against a value kept elsewhere."""
    head = db.session.get(AuditHead, 1)
    base_seq = int(head.base_seq or 0) if head else 0
    if seq < base_seq:
        return f"event #{seq} was pruned by retention (the chain now starts at #{base_seq})"
    actual: str | None
    if seq == base_seq:
        actual = (head.base_hash or GENESIS) if head else GENESIS
    else:
        actual = db.session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == seq))
    if actual is None:
        return f"event #{seq} does not exist"
    if actual != expected_hash.lower():  # (public values: no constant-time compare needed)
        return f"event #{seq} has another hash than the anchor: the chain was rewritten"
    return None


def verify_chain(batch: int = 1000) -> VerifyResult:
    """Walk the chain in order; report the first event that was edited, deleted, inserted
    or reordered, and a tip that does not match the head row (last events deleted)."""
    # After retention pruned the oldest events, the chain starts at the checkpoint kept in
    # the head row (base_seq / base_hash), which an audit.prune event in the chain attests.
    head = db.session.get(AuditHead, 1)
    base_seq = int(head.base_seq or 0) if head else 0
    base_hash = (head.base_hash or GENESIS) if head else GENESIS
    if base_seq < 0 or (base_seq == 0) != (base_hash == GENESIS):
        return VerifyResult(False, 0, base_seq, "checkpoint altered")
    if base_seq and db.session.scalar(
        select(func.count(AuditEvent.id)).where(
            AuditEvent.action == "audit.prune", AuditEvent.object_id == str(base_seq)
        )
    ) == 0:
        return VerifyResult(False, 0, base_seq, "checkpoint not attested by the chain")
    # Rows at or below the base sit outside the walk below; the audit log would still show
    # them.
    stray = db.session.scalar(
        select(func.min(AuditEvent.seq)).where(AuditEvent.seq < base_seq + 1)
    )
    if stray is not None:
        return VerifyResult(False, 0, stray, "event outside the chain")
    expected_prev = base_hash
    expected_seq = base_seq + 1
    checked = 0
    last_id = 0
    while True:
        rows = (
            db.session.execute(
                select(AuditEvent).where(AuditEvent.seq >= expected_seq).order_by(AuditEvent.seq)
                .limit(batch)
            )
            .scalars()
            .all()
        )
        if not rows:
            break
        for event in rows:
            if event.seq != expected_seq:
                return VerifyResult(False, checked, expected_seq, "event missing")
            if event.prev_hash != expected_prev:
                return VerifyResult(False, checked, event.seq, "previous-hash link broken")
            if compute_hash(event) != event.hash:
                return VerifyResult(False, checked, event.seq, "event content changed")
            if event.id <= last_id:
                return VerifyResult(False, checked, event.seq, "events reordered")
            last_id = event.id
            expected_prev = event.hash
            expected_seq += 1
            checked += 1
        db.session.expunge_all()
    head = db.session.get(AuditHead, 1)
    head_seq = head.seq if head else 0
    head_hash = head.last_hash if head else GENESIS
    if head_seq != base_seq + checked or head_hash != expected_prev:
        return VerifyResult(
            False, checked, base_seq + checked + 1, "events missing at the end of the chain"
        )
    return VerifyResult(True, checked)
