"""Retention: forgetting on a schedule (DESIGN §1.7, §5). ``flask retention run`` applies the
rules below; ``flask retention status`` previews them (app/retention_cli.py).

Rules, in the order a run applies them (each has a name, a period from ``config.py`` and an
environment variable):

========================  ==================================================================
``hotline_unconsented``   hotline conversations that never reached consent (no case): the
                          session row (blind index, step, language) is deleted 24 h after
                          its last message (``HAVEN_RETENTION_HOTLINE_HOURS``).
``inbound_messages``      inbound SMS text is never stored (the webhook parses and drops
                          it; ``sms_message`` has no body column, a test checks it). What
                          is kept is the Twilio SID (to answer a retried webhook once) and
                          the blind index; the row goes 24 h after arrival
                          (``HAVEN_RETENTION_INBOUND_SID_HOURS``) once the worker deleted
                          the text at Twilio (or gave up, or deletion is switched off).
``outbound_messages``     outbound rows never hold a body; once a message reached a final
                          status (``HAVEN_RETENTION_OUTBOUND_HOURS`` after, default 0) the
                          sealed recipient number and the blind index are cleared. The
                          worker deletes the text at Twilio.
``closed_cases``          closed cases are erased when their ``retention_due_at`` (closing
                          + ``HAVEN_CASE_RETENTION_DAYS``, default 90 days) has passed.
``consent_expired_erase`` a case whose ``store`` consent expired and was not renewed within
                          ``HAVEN_RETENTION_REASK_DAYS`` (30 days) is erased: without
                          ``store`` nothing identifying may be kept (DESIGN §1.1).
``drafts``                intakes that recorded consent on the tablet but no profile
                          (``Case.is_draft``), untouched for ``HAVEN_RETENTION_DRAFT_HOURS``
                          (24 h): no change to the case row, no consent record and no audit
                          event on the case (a view counts) since. Discarded like a
                          caseworker's "Discard": ``case.discard_draft``, then erased
                          (reason ``draft_discarded``, one de-identified count kept).
``idle_cases``            open cases with no activity (case row, consent, messages, hotline,
                          referrals) for ``HAVEN_RETENTION_IDLE_DAYS`` (180 days) are
                          closed; they are then erased by ``closed_cases`` 90 days later.
``consent_expired``       a grant past its ``expires_at`` counts as withdrawn (the consent
                          module already answers "no"); the run applies the withdrawal
                          effects (queued SMS cancelled, open referrals of the category
                          cancelled) and opens a task for the caseworker to ask again.
``releases_and_holds``    expired releases and bed holds (``app.referrals.expire_due``).
``audit_events``          audit events older than ``HAVEN_RETENTION_AUDIT_DAYS`` (6 years)
                          are pruned; the chain's checkpoint moves with them
                          (``app.audit.prune_through``) so ``flask audit verify`` still
                          passes and still detects tampering.
``login_attempts``        sign-in attempts (keyed hashes of the username and the client
                          address, kept for the login throttle) are deleted
                          ``HAVEN_RETENTION_LOGIN_ATTEMPT_DAYS`` (30 days) after the attempt.
``bed_snapshot``          not a deletion: one bed-count snapshot per shelter per day, for
                          the occupancy figures (capacity, not people).
========================  ==================================================================

Erasure is ``app.cases.erasure.erase_cases`` over each batch of due ids: the one pipeline
that erases a single case too, written set-wise because 100,000 due cases must go in under
a minute (DESIGN §8).

Runs. A real run takes the ``retention`` lock (``job_lock`` row, taken by a conditional
UPDATE that works the same on SQLite and PostgreSQL; renewed inside every batch's
transaction, so a run that lost its lock cannot commit another batch), then works rule by
rule in batches of ``HAVEN_RETENTION_BATCH`` ids, one transaction per batch. Memory is
bounded by the batch. A run killed half-way leaves whole batches done and the rest
untouched; the next run (once the dead run's lock expires, ``HAVEN_RETENTION_LOCK_SECONDS``)
finds the rest still due and finishes.

What lingers on disk. Each rule names the tables in which it deletes or scrubs identifiers
(``Rule.identifier_tables``: blind indexes, sealed numbers, keyed hashes, whole cases). On
SQLite every batch of such a rule asks for a WAL checkpoint after its commit
(``app.cases.request_checkpoint``), so no old copy of a page stays in the -wal file
(``secure_delete`` zeroes the freed cells in the database file). On PostgreSQL the run ends
by VACUUMing every table that such a rule touched (``vacuum_tables``), so the dead row
versions go from the tables and their indexes.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from flask_babel import lazy_gettext as _l
from sqlalchemy import (
    Select,
    String,
    and_,
    cast,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as lite_insert
from sqlalchemy.orm import aliased

from app.cases import erasure
from app.cases.service import checkpoint_sqlite, request_checkpoint
from app.consent import changes
from app.core import audit
from app.core.database import any_of
from app.core.extensions import db
from app.models.accounts import LoginAttempt
from app.models.audit import AuditEvent
from app.models.base import UTCDateTime, utcnow
from app.models.cases import Case, Consent
from app.models.directory import Service
from app.models.followups import FollowUp
from app.models.messages import HotlineSession, Message
from app.models.referrals import Referral, Release
from app.models.retention import (
    BedSnapshot,
    ConsentTask,
    JobLock,
    RetentionRun,
)
from app.referrals import service as referrals

LOCK_NAME = "retention"


class RetentionLocked(RuntimeError):
    """Another run holds the lock."""


class LockLost(RuntimeError):
    """This run's lock expired and another run took it: stop without committing."""


@dataclass
class RuleResult:
    name: str
    count: int = 0
    oldest_due: datetime | None = None
    seconds: float = 0.0


@dataclass
class Rule:
    name: str
    label: Any
    # (now) -> (count, oldest due date) of what is due at ``now``
    preview: Callable[[datetime], tuple[int, datetime | None]]
    # (now, batch size) -> yields the number of records handled by each committed batch
    apply: Callable[[datetime, int], Iterator[int]]
    # Tables in which the rule deletes or scrubs identifiers: checkpointed / VACUUMed.
    identifier_tables: tuple[str, ...] = ()


@dataclass
class RunReport:
    now: datetime
    dry_run: bool
    results: list[RuleResult] = field(default_factory=list)
    run_id: int | None = None


def cfg(name: str) -> Any:
    return current_app.config[name]


def _month(value: datetime) -> date:
    return date(value.year, value.month, 1)


def _ids_batches(query: Any, batch: int) -> Iterator[list[int]]:
    """Ids of due rows, ``batch`` at a time, by ascending id (keyset: a row that stays due
    after its batch, e.g. one a hook refused, is not picked up again in this run)."""
    last = 0
    while True:
        ids = list(
            db.session.scalars(
                query.where(query.selected_columns[0] > last)
                .order_by(query.selected_columns[0])
                .limit(batch)
            )
        )
        if not ids:
            return
        last = ids[-1]
        yield ids


# --- the lock ---------------------------------------------------------------------------


def lock_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"[:64]


def acquire_lock(owner: str, seconds: int | None = None, at: datetime | None = None) -> bool:
    """Take the lock if it is free or expired (at ``at``, default now); commits. True when
    taken."""
    now = at or utcnow()
    ttl = timedelta(seconds=seconds if seconds is not None else cfg("RETENTION_LOCK_SECONDS"))
    upsert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else lite_insert
    db.session.execute(upsert(JobLock).values(name=LOCK_NAME).on_conflict_do_nothing())
    taken = db.session.execute(
        update(JobLock)
        .where(JobLock.name == LOCK_NAME, or_(JobLock.owner.is_(None), JobLock.expires_at <= now))
        .values(owner=owner, expires_at=now + ttl, acquired_at=now)
    ).rowcount  # type: ignore[attr-defined]
    db.session.commit()
    return taken == 1


def renew_lock(owner: str, at: datetime | None = None) -> None:
    """Inside a batch's transaction: extend our lock, or raise ``LockLost``."""
    now = at or utcnow()
    ttl = timedelta(seconds=cfg("RETENTION_LOCK_SECONDS"))
    renewed = db.session.execute(
        update(JobLock)
        .where(JobLock.name == LOCK_NAME, JobLock.owner == owner, JobLock.expires_at > now)
        .values(expires_at=now + ttl)
    ).rowcount  # type: ignore[attr-defined]
    if renewed != 1:
        raise LockLost("the retention lock was lost")


def release_lock(owner: str) -> None:
    db.session.rollback()
    db.session.execute(
        update(JobLock)
        .where(JobLock.name == LOCK_NAME, JobLock.owner == owner)
        .values(owner=None, expires_at=None)
    )
    db.session.commit()


def lock_holder(at: datetime | None = None) -> JobLock | None:
    row = db.session.get(JobLock, LOCK_NAME)
    now = at or utcnow()
    if row is None or row.owner is None or row.expires_at is None or row.expires_at <= now:
        return None
    return row


# --- rules ------------------------------------------------------------------------------


def _count_oldest(query: Any) -> tuple[int, datetime | None]:
    row = db.session.execute(query).one()
    return int(row[0] or 0), row[1]


def _simple_rule_batches(
    id_query: Any, work: Callable[[list[int]], int], batch: int
) -> Iterator[int]:
    for ids in _ids_batches(id_query, batch):
        yield work(ids)


# hotline_unconsented


def _hotline_where(now: datetime) -> Any:
    return and_(
        HotlineSession.case_id.is_(None),
        HotlineSession.last_message_at <= now - cfg("RETENTION_HOTLINE_UNCONSENTED"),
    )


def _hotline_preview(now: datetime) -> tuple[int, datetime | None]:
    return _count_oldest(
        select(func.count(HotlineSession.id), func.min(HotlineSession.last_message_at)).where(
            _hotline_where(now)
        )
    )


def _hotline_apply(now: datetime, batch: int) -> Iterator[int]:
    def work(ids: list[int]) -> int:
        return int(
            db.session.execute(
                delete(HotlineSession).where(any_of(HotlineSession.id, ids), _hotline_where(now))
            ).rowcount  # type: ignore[attr-defined]
            or 0
        )

    return _simple_rule_batches(select(HotlineSession.id).where(_hotline_where(now)), work, batch)


# inbound_messages


def _inbound_where(now: datetime) -> Any:
    remote_done: Any = or_(
        Message.twilio_sid.is_(None),
        Message.remote_deleted_at.is_not(None),
        Message.remote_delete_attempts >= cfg("SMS_MAX_ATTEMPTS"),
    )
    if not cfg("TWILIO_DELETE_AFTER_DELIVERY") or cfg("SMS_BACKEND") != "twilio":
        remote_done = True  # nothing to delete at Twilio (the worker does not try either)
    return and_(
        Message.direction == "in",
        Message.created_at <= now - cfg("RETENTION_INBOUND_SID"),
        remote_done,
    )


def _inbound_preview(now: datetime) -> tuple[int, datetime | None]:
    return _count_oldest(
        select(func.count(Message.id), func.min(Message.created_at)).where(_inbound_where(now))
    )


def _inbound_apply(now: datetime, batch: int) -> Iterator[int]:
    def work(ids: list[int]) -> int:
        return int(
            db.session.execute(
                delete(Message).where(any_of(Message.id, ids), _inbound_where(now))
            ).rowcount  # type: ignore[attr-defined]
            or 0
        )

    return _simple_rule_batches(select(Message.id).where(_inbound_where(now)), work, batch)


# outbound_messages


def _outbound_where(now: datetime) -> Any:
    return and_(
        Message.direction == "out",
        Message.final_at.is_not(None),
        Message.final_at <= now - cfg("RETENTION_OUTBOUND_AFTER_FINAL"),
        or_(Message.recipient.is_not(None), Message.counterpart_index.is_not(None)),
    )


def _outbound_preview(now: datetime) -> tuple[int, datetime | None]:
    return _count_oldest(
        select(func.count(Message.id), func.min(Message.final_at)).where(_outbound_where(now))
    )


def _outbound_apply(now: datetime, batch: int) -> Iterator[int]:
    def work(ids: list[int]) -> int:
        return int(
            db.session.execute(
                update(Message)
                .where(any_of(Message.id, ids), _outbound_where(now))
                .values(recipient=None, counterpart_index=None)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            or 0
        )

    return _simple_rule_batches(select(Message.id).where(_outbound_where(now)), work, batch)


# closed_cases


def _closed_where(now: datetime) -> Any:
    return and_(
        Case.status == "closed", Case.retention_due_at.is_not(None), Case.retention_due_at <= now
    )


def _closed_preview(now: datetime) -> tuple[int, datetime | None]:
    return _count_oldest(
        select(func.count(Case.id), func.min(Case.retention_due_at)).where(_closed_where(now))
    )


def _erasing(
    where: Callable[[datetime], Any], reason: str
) -> Callable[[datetime, int], Iterator[int]]:
    def apply(now: datetime, batch: int) -> Iterator[int]:
        for ids in _ids_batches(select(Case.id).where(where(now)), batch):
            # Re-checked under the batch's lock: a case reopened meanwhile is left alone.
            due = list(db.session.scalars(select(Case.id).where(any_of(Case.id, ids), where(now))))
            yield len(erasure.erase_cases(due, None, reason=reason, at=now)) if due else 0

    return apply


# consent: newest record per (case, scope) is an expired grant


def _newest_expired(
    now: datetime, *, older_than: timedelta = timedelta(0), scope: str | None = None
) -> Any:
    later = aliased(Consent)
    newer_exists = exists().where(
        later.case_id == Consent.case_id,
        later.scope == Consent.scope,
        later.recorded_at <= now,
        or_(
            later.recorded_at > Consent.recorded_at,
            and_(later.recorded_at == Consent.recorded_at, later.id > Consent.id),
        ),
    )
    conditions = [
        Consent.granted.is_(True),
        Consent.expires_at.is_not(None),
        Consent.expires_at <= now - older_than,
        Consent.recorded_at <= now,
        ~newer_exists,
    ]
    if scope is not None:
        conditions.append(Consent.scope == scope)
    return and_(*conditions)


def _store_expired_where(now: datetime) -> Any:
    return and_(
        Case.status.in_(("open", "closed")),
        exists().where(
            Consent.case_id == Case.id,
            _newest_expired(now, older_than=cfg("RETENTION_CONSENT_REASK"), scope="store"),
        ),
    )


def _store_expired_preview(now: datetime) -> tuple[int, datetime | None]:
    grace = cfg("RETENTION_CONSENT_REASK")
    count, oldest = _count_oldest(
        select(func.count(Consent.id), func.min(Consent.expires_at))
        .join(Case, Case.id == Consent.case_id)
        .where(
            Case.status.in_(("open", "closed")),
            _newest_expired(now, older_than=grace, scope="store"),
        )
    )
    return count, (oldest + grace) if oldest else None


def _consent_task_where(now: datetime) -> Any:
    return and_(
        _newest_expired(now),
        exists().where(Case.id == Consent.case_id, Case.status.in_(("open", "closed"))),
        ~exists().where(ConsentTask.consent_id == Consent.id),
    )


def _consent_preview(now: datetime) -> tuple[int, datetime | None]:
    return _count_oldest(
        select(func.count(Consent.id), func.min(Consent.expires_at)).where(_consent_task_where(now))
    )


def _consent_apply(now: datetime, batch: int) -> Iterator[int]:
    for ids in _ids_batches(select(Consent.id).where(_consent_task_where(now)), batch):
        rows = db.session.execute(
            select(Consent.id, Consent.case_id, Consent.scope, Consent.expires_at).where(
                any_of(Consent.id, ids), _consent_task_where(now)
            )
        ).all()
        cases = {
            c.id: c
            for c in db.session.scalars(
                select(Case).where(any_of(Case.id, {r.case_id for r in rows}))
            )
        }
        for row in rows:
            case = cases[row.case_id]
            changes.apply_withdrawal(case, row.scope, None, now)
            db.session.add(
                ConsentTask(
                    consent_id=row.id,
                    case_id=row.case_id,
                    organization_id=case.organization_id,
                    scope=row.scope,
                    expired_at=row.expires_at,
                    created_at=now,
                )
            )
        db.session.flush()
        audit.record_many("consent.expire", "case", sorted({r.case_id for r in rows}))
        yield len(rows)


# drafts: abandoned intakes


def _draft_audit_at() -> Any:
    """The time of the case's newest audit event (correlated to Case)."""
    return (
        select(func.max(AuditEvent.at))
        .where(AuditEvent.object_type == "case", AuditEvent.object_id == cast(Case.id, String))
        .scalar_subquery()
    )


def _draft_consent_at() -> Any:
    return select(func.max(Consent.recorded_at)).where(Consent.case_id == Case.id).scalar_subquery()


def _drafts_where(now: datetime) -> Any:
    cutoff = now - cfg("RETENTION_DRAFT")
    conditions = [
        Case.is_draft,
        Case.created_at <= cutoff,
        Case.updated_at <= cutoff,
        ~exists().where(Consent.case_id == Case.id, Consent.recorded_at > cutoff),
        ~exists().where(
            AuditEvent.object_type == "case",
            AuditEvent.object_id == cast(Case.id, String),
            AuditEvent.at > cutoff,
        ),
    ]
    conditions.append(~referrals.recent_activity(cutoff))
    return and_(*conditions)


def _latest(*values: Any) -> Any:
    """The latest of several datetimes: GREATEST on PostgreSQL, SQLite's max() of several
    arguments (its stored datetimes compare as text in one fixed format)."""
    if db.session.get_bind().dialect.name == "postgresql":
        return func.greatest(*values, type_=UTCDateTime())
    return func.max(*values, type_=UTCDateTime())


def _drafts_preview(now: datetime) -> tuple[int, datetime | None]:
    touched = _latest(
        Case.updated_at,
        func.coalesce(_draft_audit_at(), Case.updated_at),
        func.coalesce(_draft_consent_at(), Case.updated_at),
    )
    count, oldest = _count_oldest(
        select(func.count(Case.id), func.min(touched, type_=UTCDateTime())).where(
            _drafts_where(now)
        )
    )
    return count, (oldest + cfg("RETENTION_DRAFT")) if oldest else None


def _drafts_apply(now: datetime, batch: int) -> Iterator[int]:
    for ids in _ids_batches(select(Case.id).where(_drafts_where(now)), batch):
        # Re-checked with the rows locked (PostgreSQL; after the audit lock, the usual
        # order): a draft whose profile was saved meanwhile is no longer due, and one being
        # saved now waits for this batch.
        query = select(Case.id).where(any_of(Case.id, ids), _drafts_where(now))
        if db.session.get_bind().dialect.name == "postgresql":
            audit.lock()
            query = query.with_for_update()
        due = list(db.session.scalars(query))
        if not due:
            yield 0
            continue
        audit.record_many("case.discard_draft", "case", due)
        yield len(erasure.erase_cases(due, None, reason="draft_discarded", at=now))


# idle_cases


def _idle_where(now: datetime) -> Any:
    cutoff = now - cfg("RETENTION_IDLE_CASE")
    conditions = [
        Case.status == "open",
        Case.created_at <= cutoff,
        Case.updated_at <= cutoff,
        ~exists().where(Consent.case_id == Case.id, Consent.recorded_at > cutoff),
        ~exists().where(Message.case_id == Case.id, Message.created_at > cutoff),
        ~exists().where(HotlineSession.case_id == Case.id, HotlineSession.last_message_at > cutoff),
        # A follow-up is contact: a case followed up is not idle (issue 16).
        ~exists().where(FollowUp.case_id == Case.id, FollowUp.created_at > cutoff),
    ]
    conditions.append(~referrals.recent_activity(cutoff))
    return and_(*conditions)


def _idle_preview(now: datetime) -> tuple[int, datetime | None]:
    count, oldest = _count_oldest(
        select(func.count(Case.id), func.min(Case.updated_at)).where(_idle_where(now))
    )
    return count, (oldest + cfg("RETENTION_IDLE_CASE")) if oldest else None


def _idle_apply(now: datetime, batch: int) -> Iterator[int]:
    for ids in _ids_batches(select(Case.id).where(_idle_where(now)), batch):
        due = list(
            db.session.scalars(select(Case.id).where(any_of(Case.id, ids), _idle_where(now)))
        )
        if due:
            db.session.execute(
                update(Case)
                .where(any_of(Case.id, due))
                .values(
                    status="closed",
                    closed_at=now,
                    updated_at=now,
                    retention_due_at=now + cfg("CASE_RETENTION_AFTER_CLOSE"),
                )
                .execution_options(synchronize_session=False)
            )
            audit.record_many("case.close", "case", due)
        yield len(due)


# releases and bed holds (issue 5)


def _referrals_module() -> Any:
    return referrals


def _referral_models() -> Any:
    return Referral, Release


def _releases_preview(now: datetime) -> tuple[int, datetime | None]:
    """Pending referrals past their answer window (their bed hold ends with them). A
    release needs no change when it expires: ``valid_at`` reads its expiry."""
    models = _referral_models()
    if models is None:
        return 0, None
    referral_model = models[0]
    return _count_oldest(
        select(func.count(referral_model.id), func.min(referral_model.hold_expires_at)).where(
            referral_model.status == "pending", referral_model.hold_expires_at <= now
        )
    )


def _releases_apply(now: datetime, batch: int) -> Iterator[int]:
    module = _referrals_module()
    if module is None:
        return
    while True:
        result = module.expire_due(now, batch=batch)
        expired = int(getattr(result, "expired", result) or 0)
        flagged = int(getattr(result, "flagged", 0) or 0)
        if not expired and not flagged:
            return
        yield expired


# erased_referrals: rows of erased cases, once their statistics were written


def _erased_referrals_where() -> Any:
    referral_model = _referral_models()[0]
    return exists().where(Case.id == referral_model.case_id, Case.status == "erased")


def _erased_referrals_preview(_now: datetime) -> tuple[int, datetime | None]:
    models = _referral_models()
    if models is None:
        return 0, None
    referral_model = models[0]
    count, oldest = _count_oldest(
        select(func.count(referral_model.id), func.min(Case.erased_at))
        .join(Case, Case.id == referral_model.case_id)
        .where(Case.status == "erased")
    )
    return count, oldest


def _erased_referrals_apply(_now: datetime, batch: int) -> Iterator[int]:
    models = _referral_models()
    if models is None:
        return
    referral_model, release_model = models
    for ids in _ids_batches(select(referral_model.id).where(_erased_referrals_where()), batch):
        release_ids = list(
            db.session.scalars(
                select(referral_model.release_id).where(any_of(referral_model.id, ids))
            )
        )
        done = db.session.execute(
            delete(referral_model).where(any_of(referral_model.id, ids), _erased_referrals_where())
        ).rowcount  # type: ignore[attr-defined]
        still_used = select(referral_model.id).where(referral_model.release_id == release_model.id)
        db.session.execute(
            delete(release_model).where(any_of(release_model.id, release_ids), ~still_used.exists())
        )
        yield int(done or 0)
    # Releases of erased cases that no referral used.
    db.session.execute(
        delete(release_model).where(
            exists().where(Case.id == release_model.case_id, Case.status == "erased"),
            ~select(referral_model.id)
            .where(referral_model.release_id == release_model.id)
            .exists(),
        )
    )


# audit_events


def _audit_where(now: datetime) -> Any:
    return AuditEvent.at <= now - cfg("RETENTION_AUDIT")


def _audit_preview(now: datetime) -> tuple[int, datetime | None]:
    target = _audit_target(now)
    if target is None:
        return 0, None
    count, oldest = _count_oldest(
        select(func.count(AuditEvent.id), func.min(AuditEvent.at)).where(AuditEvent.seq <= target)
    )
    return count, (oldest + cfg("RETENTION_AUDIT")) if oldest else None


def _audit_target(now: datetime) -> int | None:
    """The last seq that may go: pruning keeps the chain whole, so only a prefix (by seq)
    of events that are all past the period goes, and never the chain's tip (its hash must
    stay checkable against the head row)."""
    first_young = db.session.scalar(select(func.min(AuditEvent.seq)).where(~_audit_where(now)))
    tip = db.session.scalar(select(func.max(AuditEvent.seq)))
    if tip is None:
        return None
    limit = (first_young - 1) if first_young is not None else tip - 1
    limit = min(limit, tip - 1)
    lowest = db.session.scalar(select(func.min(AuditEvent.seq)))
    return limit if lowest is not None and limit >= lowest else None


def _audit_apply(now: datetime, batch: int) -> Iterator[int]:
    target = _audit_target(now)  # fixed at the start: the run's own events come after it
    if target is None:
        return
    while True:
        seqs = list(
            db.session.scalars(
                select(AuditEvent.seq)
                .where(AuditEvent.seq <= target)
                .order_by(AuditEvent.seq)
                .limit(batch)
            )
        )
        if not seqs:
            return
        pruned = audit.prune_through(seqs[-1])
        audit.record("audit.prune", "audit_event", seqs[-1], actor_user_id=audit.SYSTEM,
                     at=utcnow())
        yield pruned


# bed snapshot


def _beds_preview(now: datetime) -> tuple[int, datetime | None]:
    count = db.session.scalar(
        select(func.count(Service.id)).where(
            Service.category == "shelter",
            Service.active.is_(True),
            Service.beds_total.is_not(None),
            Service.beds_available.is_not(None),
            ~exists().where(BedSnapshot.service_id == Service.id, BedSnapshot.day == now.date()),
        )
    )
    return int(count or 0), (
        datetime(now.year, now.month, now.day, tzinfo=now.tzinfo) if count else None
    )


def _beds_apply(now: datetime, batch: int) -> Iterator[int]:
    day = now.date()
    query = select(Service.id).where(
        Service.category == "shelter",
        Service.active.is_(True),
        Service.beds_total.is_not(None),
        Service.beds_available.is_not(None),
        ~exists().where(BedSnapshot.service_id == Service.id, BedSnapshot.day == day),
    )
    for ids in _ids_batches(query, batch):
        rows = db.session.execute(
            select(
                Service.id, Service.organization_id, Service.beds_total, Service.beds_available
            ).where(any_of(Service.id, ids))
        ).all()
        db.session.execute(
            insert(BedSnapshot),
            [
                {
                    "day": day,
                    "service_id": r.id,
                    "organization_id": r.organization_id,
                    "beds_total": r.beds_total,
                    "beds_available": r.beds_available,
                }
                for r in rows
            ],
        )
        yield len(rows)


# Tables erasure touches (the referrals module's when present); VACUUMed after a run that
# erased cases.
REFERRAL_TABLES: tuple[str, ...] = ("referral", "referral_release")
ERASURE_TABLES: tuple[str, ...] = (
    "survivor_case",
    "consent",
    "consent_signature",
    "need",
    "data_key",
    "sms_message",
    "hotline_session",
    "consent_task",
    *REFERRAL_TABLES,
)


# login_attempts


def _login_attempts_where(now: datetime) -> Any:
    return LoginAttempt.at <= now - cfg("RETENTION_LOGIN_ATTEMPT")


def _login_attempts_preview(now: datetime) -> tuple[int, datetime | None]:
    return _count_oldest(
        select(func.count(LoginAttempt.id), func.min(LoginAttempt.at)).where(
            _login_attempts_where(now)
        )
    )


def _login_attempts_apply(now: datetime, batch: int) -> Iterator[int]:
    def work(ids: list[int]) -> int:
        return int(
            db.session.execute(
                delete(LoginAttempt).where(
                    any_of(LoginAttempt.id, ids), _login_attempts_where(now)
                )
            ).rowcount  # type: ignore[attr-defined]
            or 0
        )

    return _simple_rule_batches(
        select(LoginAttempt.id).where(_login_attempts_where(now)), work, batch
    )


RULES: list[Rule] = [
    Rule(
        "hotline_unconsented",
        _l("Hotline conversations that never reached consent"),
        _hotline_preview,
        _hotline_apply,
        ("hotline_session",),
    ),
    Rule(
        "inbound_messages",
        _l("Inbound message records (text is never stored)"),
        _inbound_preview,
        _inbound_apply,
        ("sms_message",),
    ),
    Rule(
        "outbound_messages",
        _l("Numbers on outbound messages with a final status"),
        _outbound_preview,
        _outbound_apply,
        ("sms_message",),
    ),
    Rule(
        "closed_cases",
        _l("Closed cases past their retention period (erased)"),
        _closed_preview,
        _erasing(_closed_where, "retention"),
        ERASURE_TABLES,
    ),
    Rule(
        "consent_expired_erase",
        _l("Cases whose consent to keep a record expired and was not renewed (erased)"),
        _store_expired_preview,
        _erasing(_store_expired_where, "consent_expired"),
        ERASURE_TABLES,
    ),
    Rule(
        "drafts",
        _l("Drafts (consent but no profile) untouched for a day (discarded)"),
        _drafts_preview,
        _drafts_apply,
        ERASURE_TABLES,
    ),
    Rule(
        "erased_referrals",
        _l("Referrals and releases of erased cases (counted, then deleted)"),
        _erased_referrals_preview,
        _erased_referrals_apply,
        REFERRAL_TABLES,
    ),
    Rule("idle_cases", _l("Open cases without activity (closed)"), _idle_preview, _idle_apply),
    Rule(
        "consent_expired",
        _l("Expired consents (withdrawn; caseworker asked to re-ask)"),
        _consent_preview,
        _consent_apply,
    ),
    Rule(
        "releases_and_holds",
        _l("Expired releases and bed holds"),
        _releases_preview,
        _releases_apply,
    ),
    Rule(
        "audit_events",
        _l("Audit events past their retention period (pruned)"),
        _audit_preview,
        _audit_apply,
    ),
    Rule(
        "login_attempts",
        _l("Sign-in attempts (keyed hashes of usernames and addresses)"),
        _login_attempts_preview,
        _login_attempts_apply,
        ("login_attempt",),
    ),
    Rule("bed_snapshot", _l("Daily bed count snapshot of shelters"), _beds_preview, _beds_apply),
]
RULE_NAMES = tuple(rule.name for rule in RULES)


# --- the run ----------------------------------------------------------------------------


def preview(now: datetime) -> list[RuleResult]:
    """What is due at ``now``, per rule (read-only)."""
    results = [RuleResult(rule.name, *rule.preview(now)) for rule in RULES]
    db.session.rollback()
    return results


def run(
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    batch: int | None = None,
    owner: str | None = None,
    after_batch: Callable[[str, int], None] | None = None,
    clock: Callable[[], datetime] = utcnow,
) -> RunReport:
    """Apply every rule at ``now`` (default: the current time). ``after_batch(rule, n)`` is
    called after each committed batch (progress; tests use it to interrupt a run). ``clock``
    is the wall clock of the run's lock and its start and finish times (``now`` is the
    moment the rules are applied at)."""
    now = now or clock()
    report = RunReport(now=now, dry_run=dry_run)
    if dry_run:
        report.results = preview(now)
        return report
    size = batch or cfg("RETENTION_BATCH")
    owner = owner or lock_owner()
    if not acquire_lock(owner, at=clock()):
        raise RetentionLocked("another retention run holds the lock")
    touched: set[str] = set()  # tables where identifiers were deleted or scrubbed
    try:
        due = {r.name: r for r in preview(now)}
        renew_lock(owner, at=clock())
        run_row = RetentionRun(as_of=now, started_at=clock(), counts={}, complete=False)
        db.session.add(run_row)
        db.session.commit()
        report.run_id = run_row.id
        for rule in RULES:
            result = RuleResult(rule.name, 0, due[rule.name].oldest_due)
            report.results.append(result)
            batches = rule.apply(now, size)
            started = time.perf_counter()
            while True:
                renew_lock(owner, at=clock())
                try:
                    handled = next(batches)
                except StopIteration:
                    db.session.commit()
                    break
                if handled and rule.identifier_tables:
                    request_checkpoint()
                    touched.update(rule.identifier_tables)
                db.session.commit()
                result.count += handled
                if after_batch is not None:
                    after_batch(rule.name, handled)
            result.seconds = time.perf_counter() - started
        renew_lock(owner, at=clock())
        finished = db.session.get(RetentionRun, report.run_id)
        assert finished is not None
        run_row = finished
        run_row.counts = {r.name: r.count for r in report.results}
        run_row.finished_at = clock()
        run_row.complete = True
        audit.record("retention.run", "retention_run", run_row.id, actor_user_id=audit.SYSTEM)
        db.session.commit()
    finally:
        db.session.rollback()
        release_lock(owner)
    if touched:
        checkpoint_sqlite()  # the run's last commits (summary, lock) came after the rules
        vacuum_tables(sorted(touched))
    return report


def vacuum_tables(names: list[str]) -> None:
    """PostgreSQL: VACUUM these tables, so the dead row versions (blind indexes, sealed
    ciphertext — under destroyed keys for erased cases) are removed from the tables and
    their indexes and the space is reused. VACUUM does not overwrite the freed bytes at
    once; that is why erasure destroys the keys first. SQLite: nothing (the WAL is
    checkpointed after every such commit and ``secure_delete`` zeroes freed content)."""
    engine = db.engine
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        existing = set(
            conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            ).scalars()
        )
        for name in names:
            if name in existing:
                conn.execute(text(f'VACUUM (ANALYZE) "{name}"'))


def status(now: datetime | None = None, days: int = 7) -> list[tuple[RuleResult, RuleResult]]:
    """Per rule: (due now, due within ``days`` days)."""
    now = now or utcnow()
    horizon = now + timedelta(days=days)
    current = preview(now)
    ahead = preview(horizon)
    return list(zip(current, ahead, strict=True))


def last_run() -> RetentionRun | None:
    return db.session.scalar(
        select(RetentionRun)
        .where(RetentionRun.complete.is_(True))
        .order_by(RetentionRun.id.desc())
        .limit(1)
    )


def open_tasks(organization_id: int, limit: int = 50) -> list[tuple[ConsentTask, Case]]:
    """Re-ask tasks of an organization still open: the expired record is still the newest
    of its scope, and the case is not erased."""
    rows = db.session.execute(
        open_tasks_select(organization_id)
        .order_by(ConsentTask.expired_at, ConsentTask.id)
        .limit(limit)
    ).all()
    return [(task, case) for task, case in rows]


def open_tasks_select(organization_id: int) -> Select[*tuple[Any, ...]]:
    """The statement of ``open_tasks`` (unordered): the work queue counts it too."""
    later = aliased(Consent)
    expired = aliased(Consent)
    newer = exists().where(
        later.case_id == ConsentTask.case_id,
        later.scope == ConsentTask.scope,
        or_(
            later.recorded_at > expired.recorded_at,
            and_(later.recorded_at == expired.recorded_at, later.id > expired.id),
        ),
    )
    return (
        select(ConsentTask, Case)
        .join(Case, Case.id == ConsentTask.case_id)
        .join(expired, expired.id == ConsentTask.consent_id)
        .where(
            ConsentTask.organization_id == organization_id,
            Case.status.in_(("open", "closed")),
            ~newer,
        )
    )
