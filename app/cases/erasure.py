"""Erasure (DESIGN §1.7): crypto-shredding plus scrubbing, one pipeline for one case or for a
retention batch (erasing one case is a batch of one), in the caller's transaction (flush,
never commit). ``erase_cases`` does, in this order:

0. the audit chain's lock, FIRST, before any row lock (a referral being sent for a case
   takes it first, then the case's key and case rows; the soak found a deadlock otherwise),
   then the cases' rows (``FOR UPDATE`` on PostgreSQL); cases already erased are skipped;
1. the SMS outbox: queued messages cancelled, numbers unlinked from every message row
   (``app.sms.messaging.forget_cases``);
2. the hotline: sessions of the cases or their numbers, blind indexes on inbound rows of
   their numbers, and the cases' re-ask tasks go;
3. one ``ReferralStatistic`` per referral, while each still has its last real outcome (a
   pending one counts as cancelled);
4. referrals: open ones cancelled through the referrals module (bed given back, provider
   told by code), then the referral and release rows deleted;
5. one de-identified ``CaseStatistic`` per case (intake month, area, channel, age band, need
   categories, reason); needs, consent records and signatures deleted; the case row kept as
   a tombstone (id, reference, organization, channel, status ``erased``, timestamps) with
   every identifying and descriptive column nulled, blind index and idempotency key included;
6. the cases' ``DataKey`` rows deleted, so any ciphertext left in backups, SQLite free
   pages, WAL frames or PostgreSQL dead tuples is unreadable;
7. one ``case.erase`` audit event per case, and a WAL checkpoint asked for after the commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

from sqlalchemy import delete, insert, or_, select, update

from app.cases import followups
from app.cases.service import NotADraft, need_categories, request_checkpoint
from app.core import audit
from app.core.database import any_of
from app.core.extensions import db
from app.models.base import utcnow
from app.models.cases import Case, CaseStatistic, Consent, ConsentSignature, Need
from app.models.keys import DataKey
from app.models.messages import HotlineSession, Message
from app.models.retention import ConsentTask
from app.referrals import service as referrals
from app.sms import messaging


def erase_case(
    case: Case, actor_id: int | None, *, reason: str = "survivor_request",
    at: datetime | None = None,
) -> bool:
    """Erase one case now. Idempotent: an erased case is left alone (False)."""
    return bool(erase_cases([case.id], actor_id, reason=reason, at=at))


def erase_cases(
    case_ids: Sequence[int], actor_id: int | None, *, reason: str, at: datetime | None = None
) -> list[int]:
    """Erase these cases (the module docstring's steps, in order). Returns the ids erased."""
    at = at or utcnow()
    audit.lock()
    query = select(Case).where(any_of(Case.id, case_ids), Case.status != "erased")
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    cases = list(db.session.scalars(query.order_by(Case.id)))
    if not cases:
        return []
    ids = [c.id for c in cases]
    messaging.forget_cases(ids)
    _forget_conversations(cases)
    referrals.write_statistics(cases)
    referrals.erase_for_cases(ids, actor_id, at)
    _scrub(cases, reason, at)
    if actor_id is None:
        audit.record_many("case.erase", "case", ids)
    else:
        for case in cases:
            audit.record(
                "case.erase", "case", case.id,
                actor_user_id=actor_id, actor_org_id=case.organization_id,
            )
    request_checkpoint()
    return ids


def _forget_conversations(cases: list[Case]) -> None:
    ids = [c.id for c in cases]
    db.session.execute(delete(ConsentTask).where(any_of(ConsentTask.case_id, ids)))
    indexes = [c.phone_index for c in cases if c.phone_index]
    condition = any_of(HotlineSession.case_id, ids)
    if indexes:
        condition = or_(condition, any_of(HotlineSession.phone_index, indexes))
        db.session.execute(
            update(Message)
            .where(Message.direction == "in", any_of(Message.counterpart_index, indexes))
            .values(counterpart_index=None)
            .execution_options(synchronize_session=False)
        )
    db.session.execute(
        delete(HotlineSession).where(condition).execution_options(synchronize_session=False)
    )


def _scrub(cases: list[Case], reason: str, at: datetime) -> None:
    ids = [c.id for c in cases]
    needs: dict[int, list[str]] = {}
    for case_id, category in db.session.execute(
        select(Need.case_id, Need.category).where(any_of(Need.case_id, ids))
    ):
        needs.setdefault(case_id, []).append(category)
    db.session.execute(
        insert(CaseStatistic),
        [
            {
                "month": date(c.created_at.year, c.created_at.month, 1),
                "organization_id": c.organization_id,
                "area_id": c.area_id,
                "channel": c.channel,
                "age_band": c.age_band,
                "need_categories": need_categories(needs.get(c.id, [])),
                "reason": reason,
                "close_reason": c.close_reason,
            }
            for c in cases
        ],
    )
    key_ids = [c.data_key_id for c in cases if c.data_key_id is not None]
    # Consent rows are append-only for the ORM (no UPDATE), and signatures must go before
    # the key they are sealed with.
    followups.delete_for_cases(ids)  # sealed with the case key that goes below
    for model in (Consent, ConsentSignature, Need):
        db.session.execute(
            delete(model)
            .where(any_of(model.case_id, ids))
            .execution_options(synchronize_session=False)
        )
    db.session.execute(
        update(Case)
        .where(any_of(Case.id, ids))
        .values(
            alias_enc=None,
            phone_enc=None,
            note_enc=None,
            safe_hours_enc=None,
            phone_index=None,
            idempotency_key=None,
            language=None,
            age_band=None,
            gender=None,
            area_id=None,
            children_accompanying=None,
            accessibility=False,
            no_voicemail=False,
            do_not_text=False,
            safe_hours_check=False,
            timezone=None,
            retention_due_at=None,
            danger_reported_at=None,
            danger_acknowledged_at=None,
            danger_acknowledged_by_id=None,
            assigned_to_id=None,
            close_reason=None,
            status="erased",
            erased_at=at,
            data_key_id=None,
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )
    if key_ids:
        db.session.execute(
            delete(DataKey)
            .where(any_of(DataKey.id, key_ids))
            .execution_options(synchronize_session=False)
        )
    for case in cases:
        db.session.expire(case)


def discard_draft(
    case: Case, actor_id: int | None, *, at: datetime | None = None
) -> bool:
    """Discard an abandoned intake: audited (``case.discard_draft``), then erased like any
    case (``erase_case``, reason ``draft_discarded``: its consent records and signature go
    with its key, one de-identified count stays). Raises ``NotADraft`` for anything else.
    The case row is locked (after the audit lock, the usual order) and re-read first, so a
    profile saved at the same moment is not lost."""
    audit.lock()
    db.session.refresh(case, with_for_update=True)
    if not case.is_draft:
        raise NotADraft("only a draft can be discarded")
    audit.record(
        "case.discard_draft", "case", case.id,
        actor_user_id=actor_id, actor_org_id=case.organization_id if actor_id else None,
    )
    return erase_case(case, actor_id, reason="draft_discarded", at=at)
