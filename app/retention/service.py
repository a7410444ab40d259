"""Retention: forgetting on a schedule (DESIGN §1.7, §5). ``flask retention run`` applies the
rules below; ``flask retention status`` previews them (app/retention/cli.py).

Each rule is data (``Rule``: the rows it handles, the condition that makes a row due, the
column whose minimum is the oldest due date, and an ``Action``: delete rows, scrub columns,
erase cases, close cases, …), listed in ``RULES``; ``preview_rule`` and ``apply_rule`` are
the one preview and the one apply of them all.

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
    false,
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


# --- rules as data ----------------------------------------------------------------------
#
# A rule is data: the rows it handles (``model``, batched by ``key``), the condition that
# makes a row due at ``now`` (``where``), the column whose minimum is the oldest due date
# (``due``, plus the period ``due_after`` names for rules that measure an age), and what
# is done to each batch of due rows (``action``). ``preview_rule`` and ``apply_rule`` are
# the one preview and the one apply of every rule.

# (rule, now, the rule's condition, due keys of one batch) -> records handled. Runs inside
# the batch's transaction and re-checks the condition there: a row that stopped being due
# since it was listed is left alone.
BatchWork = Callable[["Rule", datetime, Any, list[int]], int]


@dataclass(frozen=True)
class Action:
    """What a rule does to its due rows: ``work`` on each batch, then ``finish`` once in the
    last batch's transaction; or ``loop`` (now, batch size), for a rule whose own module
    picks its batches, yielding the records handled by each."""

    name: str
    work: BatchWork | None = None
    finish: Callable[[], None] | None = None
    loop: Callable[[datetime, int], Iterator[int]] | None = None


@dataclass(frozen=True)
class Rule:
    name: str
    label: Any
    model: Any
    # (now) -> SQL condition on ``model``: the rows due at ``now``
    where: Callable[[datetime], Any]
    # (now) -> the column (or expression, correlated to ``model``) whose minimum over the
    # due rows is the oldest due date; None: a daily task, due from the start of the day
    due: Callable[[datetime], Any] | None
    action: Action
    # Config period added to min(due): for rules whose column is when the row was last
    # touched rather than when it falls due.
    due_after: str | None = None
    # Tables in which the rule deletes or scrubs identifiers: checkpointed / VACUUMed.
    identifier_tables: tuple[str, ...] = ()
    # The column batches are keyed and counted by (default ``model.id``).
    key: Any = None

    @property
    def key_column(self) -> Any:
        return self.key if self.key is not None else self.model.id


def preview_rule(rule: Rule, now: datetime) -> tuple[int, datetime | None]:
    """(count, oldest due date) of what ``rule`` would handle at ``now``; read-only."""
    if rule.due is None:
        count = int(
            db.session.scalar(select(func.count(rule.key_column)).where(rule.where(now))) or 0
        )
        return count, (datetime(now.year, now.month, now.day, tzinfo=now.tzinfo) if count else None)
    row = db.session.execute(
        select(func.count(rule.key_column), func.min(rule.due(now))).where(rule.where(now))
    ).one()
    count, oldest = int(row[0] or 0), row[1]
    if oldest is not None and rule.due_after is not None:
        oldest = oldest + cfg(rule.due_after)
    return count, oldest


def apply_rule(rule: Rule, now: datetime, batch: int) -> Iterator[int]:
    """Apply ``rule`` at ``now``: yields the number of records handled by each batch; the
    caller commits after each one. The condition is built once, at the first batch (the
    audit rule's prefix is fixed then: the run's own events come after it)."""
    action = rule.action
    if action.loop is not None:
        yield from action.loop(now, batch)
        return
    assert action.work is not None
    condition = rule.where(now)
    for ids in _ids_batches(select(rule.key_column).where(condition), batch):
        yield action.work(rule, now, condition, ids)
    if action.finish is not None:
        action.finish()


# --- actions ----------------------------------------------------------------------------


def _delete_work(rule: Rule, _now: datetime, condition: Any, ids: list[int]) -> int:
    return int(
        db.session.execute(
            delete(rule.model).where(any_of(rule.key_column, ids), condition)
        ).rowcount  # type: ignore[attr-defined]
        or 0
    )


DELETE_ROWS = Action("delete rows", work=_delete_work)


def scrub(**values: Any) -> Action:
    """Clear these columns of the due rows (the rows stay)."""

    def work(rule: Rule, _now: datetime, condition: Any, ids: list[int]) -> int:
        return int(
            db.session.execute(
                update(rule.model)
                .where(any_of(rule.key_column, ids), condition)
                .values(**values)
                .execution_options(synchronize_session=False)
            ).rowcount  # type: ignore[attr-defined]
            or 0
        )

    return Action("scrub", work=work)


def erase(reason: str, *, discard_draft: bool = False) -> Action:
    """Erase the due cases through ``app.cases.erasure.erase_cases`` (the one pipeline).
    ``discard_draft``: re-check with the rows locked (PostgreSQL; after the audit lock, the
    usual order), so a draft whose profile was saved meanwhile is no longer due and one
    being saved now waits for this batch; the discard is audited before the erasure."""

    def work(_rule: Rule, now: datetime, condition: Any, ids: list[int]) -> int:
        # Re-checked under the batch's lock: a case reopened meanwhile is left alone.
        query = select(Case.id).where(any_of(Case.id, ids), condition)
        if discard_draft and db.session.get_bind().dialect.name == "postgresql":
            audit.lock()
            query = query.with_for_update()
        due = list(db.session.scalars(query))
        if not due:
            return 0
        if discard_draft:
            audit.record_many("case.discard_draft", "case", due)
        return len(erasure.erase_cases(due, None, reason=reason, at=now))

    return Action("erase cases", work=work)


def _close_work(_rule: Rule, now: datetime, condition: Any, ids: list[int]) -> int:
    due = list(db.session.scalars(select(Case.id).where(any_of(Case.id, ids), condition)))
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
    return len(due)


CLOSE_CASES = Action("close cases", work=_close_work)


def _consent_task_work(_rule: Rule, now: datetime, condition: Any, ids: list[int]) -> int:
    rows = db.session.execute(
        select(Consent.id, Consent.case_id, Consent.scope, Consent.expires_at).where(
            any_of(Consent.id, ids), condition
        )
    ).all()
    cases = {
        c.id: c
        for c in db.session.scalars(select(Case).where(any_of(Case.id, {r.case_id for r in rows})))
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
    return len(rows)


WITHDRAW_AND_ASK = Action("withdraw and ask again", work=_consent_task_work)


def _erased_referrals_work(_rule: Rule, _now: datetime, condition: Any, ids: list[int]) -> int:
    release_ids = list(
        db.session.scalars(select(Referral.release_id).where(any_of(Referral.id, ids)))
    )
    done = db.session.execute(
        delete(Referral).where(any_of(Referral.id, ids), condition)
    ).rowcount  # type: ignore[attr-defined]
    still_used = select(Referral.id).where(Referral.release_id == Release.id)
    db.session.execute(
        delete(Release).where(any_of(Release.id, release_ids), ~still_used.exists())
    )
    return int(done or 0)


def _unused_erased_releases() -> None:
    """Releases of erased cases that no referral used."""
    db.session.execute(
        delete(Release).where(
            exists().where(Case.id == Release.case_id, Case.status == "erased"),
            ~select(Referral.id).where(Referral.release_id == Release.id).exists(),
        )
    )


DELETE_ERASED_REFERRALS = Action(
    "delete rows", work=_erased_referrals_work, finish=_unused_erased_releases
)


def _expire_referrals(now: datetime, batch: int) -> Iterator[int]:
    while True:
        result = referrals.expire_due(now, batch=batch)
        if not result.expired and not result.flagged:
            return
        yield result.expired


EXPIRE_REFERRALS = Action("expire", loop=_expire_referrals)


def _prune_audit_work(_rule: Rule, _now: datetime, _condition: Any, seqs: list[int]) -> int:
    pruned = audit.prune_through(seqs[-1])
    audit.record("audit.prune", "audit_event", seqs[-1], actor_user_id=audit.SYSTEM, at=utcnow())
    return pruned


PRUNE_AUDIT = Action("prune", work=_prune_audit_work)


def _snapshot_work(_rule: Rule, now: datetime, _condition: Any, ids: list[int]) -> int:
    rows = db.session.execute(
        select(
            Service.id, Service.organization_id, Service.beds_total, Service.beds_available
        ).where(any_of(Service.id, ids))
    ).all()
    db.session.execute(
        insert(BedSnapshot),
        [
            {
                "day": now.date(),
                "service_id": r.id,
                "organization_id": r.organization_id,
                "beds_total": r.beds_total,
                "beds_available": r.beds_available,
            }
            for r in rows
        ],
    )
    return len(rows)


SNAPSHOT_BEDS = Action("snapshot", work=_snapshot_work)


# --- conditions -------------------------------------------------------------------------


def _hotline_where(now: datetime) -> Any:
    return and_(
        HotlineSession.case_id.is_(None),
        HotlineSession.last_message_at <= now - cfg("RETENTION_HOTLINE_UNCONSENTED"),
    )


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


def _outbound_where(now: datetime) -> Any:
    return and_(
        Message.direction == "out",
        Message.final_at.is_not(None),
        Message.final_at <= now - cfg("RETENTION_OUTBOUND_AFTER_FINAL"),
        or_(Message.recipient.is_not(None), Message.counterpart_index.is_not(None)),
    )


def _closed_where(now: datetime) -> Any:
    return and_(
        Case.status == "closed", Case.retention_due_at.is_not(None), Case.retention_due_at <= now
    )


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


def _store_expired_at(now: datetime) -> Any:
    """When the case's ``store`` grant expired (the newest record of the scope; one per
    case), correlated to Case."""
    return (
        select(func.min(Consent.expires_at))
        .where(
            Consent.case_id == Case.id,
            _newest_expired(now, older_than=cfg("RETENTION_CONSENT_REASK"), scope="store"),
        )
        .scalar_subquery()
    )


def _consent_task_where(now: datetime) -> Any:
    return and_(
        _newest_expired(now),
        exists().where(Case.id == Consent.case_id, Case.status.in_(("open", "closed"))),
        ~exists().where(ConsentTask.consent_id == Consent.id),
    )


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


def _draft_touched(_now: datetime) -> Any:
    """When the draft was last touched: its row, its newest audit event or consent."""
    return _latest(
        Case.updated_at,
        func.coalesce(_draft_audit_at(), Case.updated_at),
        func.coalesce(_draft_consent_at(), Case.updated_at),
    )


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


# releases and bed holds (issue 5): pending referrals past their answer window (their bed
# hold ends with them). A release needs no change when it expires: ``valid_at`` reads its
# expiry.


def _releases_where(now: datetime) -> Any:
    return and_(Referral.status == "pending", Referral.hold_expires_at <= now)


# erased_referrals: rows of erased cases, once their statistics were written


def _erased_referrals_where(_now: datetime) -> Any:
    return exists().where(Case.id == Referral.case_id, Case.status == "erased")


def _erased_referrals_due(_now: datetime) -> Any:
    return select(Case.erased_at).where(Case.id == Referral.case_id).scalar_subquery()


# audit_events


def _audit_old(now: datetime) -> Any:
    return AuditEvent.at <= now - cfg("RETENTION_AUDIT")


def _audit_target(now: datetime) -> int | None:
    """The last seq that may go: pruning keeps the chain whole, so only a prefix (by seq)
    of events that are all past the period goes, and never the chain's tip (its hash must
    stay checkable against the head row)."""
    first_young = db.session.scalar(select(func.min(AuditEvent.seq)).where(~_audit_old(now)))
    tip = db.session.scalar(select(func.max(AuditEvent.seq)))
    if tip is None:
        return None
    limit = (first_young - 1) if first_young is not None else tip - 1
    limit = min(limit, tip - 1)
    lowest = db.session.scalar(select(func.min(AuditEvent.seq)))
    return limit if lowest is not None and limit >= lowest else None


def _audit_where(now: datetime) -> Any:
    """The prefix of the chain that may go (queried when the condition is built)."""
    target = _audit_target(now)
    return AuditEvent.seq <= target if target is not None else false()


# login_attempts


def _login_attempts_where(now: datetime) -> Any:
    return LoginAttempt.at <= now - cfg("RETENTION_LOGIN_ATTEMPT")


# bed snapshot: not a deletion, one bed count per shelter per day


def _beds_where(now: datetime) -> Any:
    return and_(
        Service.category == "shelter",
        Service.active.is_(True),
        Service.beds_total.is_not(None),
        Service.beds_available.is_not(None),
        ~exists().where(BedSnapshot.service_id == Service.id, BedSnapshot.day == now.date()),
    )


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


# The rules, in the order a run applies them.
RULES: tuple[Rule, ...] = (
    Rule(
        "hotline_unconsented",
        _l("Hotline conversations that never reached consent"),
        HotlineSession,
        _hotline_where,
        lambda _now: HotlineSession.last_message_at,
        DELETE_ROWS,
        identifier_tables=("hotline_session",),
    ),
    Rule(
        "inbound_messages",
        _l("Inbound message records (text is never stored)"),
        Message,
        _inbound_where,
        lambda _now: Message.created_at,
        DELETE_ROWS,
        identifier_tables=("sms_message",),
    ),
    Rule(
        "outbound_messages",
        _l("Numbers on outbound messages with a final status"),
        Message,
        _outbound_where,
        lambda _now: Message.final_at,
        scrub(recipient=None, counterpart_index=None),
        identifier_tables=("sms_message",),
    ),
    Rule(
        "closed_cases",
        _l("Closed cases past their retention period (erased)"),
        Case,
        _closed_where,
        lambda _now: Case.retention_due_at,
        erase("retention"),
        identifier_tables=ERASURE_TABLES,
    ),
    Rule(
        "consent_expired_erase",
        _l("Cases whose consent to keep a record expired and was not renewed (erased)"),
        Case,
        _store_expired_where,
        _store_expired_at,
        erase("consent_expired"),
        due_after="RETENTION_CONSENT_REASK",
        identifier_tables=ERASURE_TABLES,
    ),
    Rule(
        "drafts",
        _l("Drafts (consent but no profile) untouched for a day (discarded)"),
        Case,
        _drafts_where,
        _draft_touched,
        erase("draft_discarded", discard_draft=True),
        due_after="RETENTION_DRAFT",
        identifier_tables=ERASURE_TABLES,
    ),
    Rule(
        "erased_referrals",
        _l("Referrals and releases of erased cases (counted, then deleted)"),
        Referral,
        _erased_referrals_where,
        _erased_referrals_due,
        DELETE_ERASED_REFERRALS,
        identifier_tables=REFERRAL_TABLES,
    ),
    Rule(
        "idle_cases",
        _l("Open cases without activity (closed)"),
        Case,
        _idle_where,
        lambda _now: Case.updated_at,
        CLOSE_CASES,
        due_after="RETENTION_IDLE_CASE",
    ),
    Rule(
        "consent_expired",
        _l("Expired consents (withdrawn; caseworker asked to re-ask)"),
        Consent,
        _consent_task_where,
        lambda _now: Consent.expires_at,
        WITHDRAW_AND_ASK,
    ),
    Rule(
        "releases_and_holds",
        _l("Expired releases and bed holds"),
        Referral,
        _releases_where,
        lambda _now: Referral.hold_expires_at,
        EXPIRE_REFERRALS,
    ),
    Rule(
        "audit_events",
        _l("Audit events past their retention period (pruned)"),
        AuditEvent,
        _audit_where,
        lambda _now: AuditEvent.at,
        PRUNE_AUDIT,
        due_after="RETENTION_AUDIT",
        key=AuditEvent.seq,
    ),
    Rule(
        "login_attempts",
        _l("Sign-in attempts (keyed hashes of usernames and addresses)"),
        LoginAttempt,
        _login_attempts_where,
        lambda _now: LoginAttempt.at,
        DELETE_ROWS,
        identifier_tables=("login_attempt",),
    ),
    Rule(
        "bed_snapshot",
        _l("Daily bed count snapshot of shelters"),
        Service,
        _beds_where,
        None,
        SNAPSHOT_BEDS,
    ),
)
RULE_NAMES = tuple(rule.name for rule in RULES)


# --- the run ----------------------------------------------------------------------------


def preview(now: datetime) -> list[RuleResult]:
    """What is due at ``now``, per rule (read-only)."""
    results = [RuleResult(rule.name, *preview_rule(rule, now)) for rule in RULES]
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
            batches = apply_rule(rule, now, size)
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
