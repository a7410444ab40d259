"""Retention (issue 7): every rule at its boundary, dry run, idempotence, interrupted and
concurrent runs, erasure that leaves no trace, statistics left behind, audit pruning that
keeps `audit verify` meaningful."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import func, select, text, update

from app.cases import erasure
from app.cases import service as cases
from app.consent import changes
from app.consent import service as consent
from app.core import audit
from app.core.crypto import blind_index, keyring
from app.core.extensions import db
from app.models import (
    AuditEvent,
    AuditHead,
    Case,
    CaseStatistic,
    Consent,
    ConsentTask,
    DataKey,
    HotlineSession,
    JobLock,
    LoginAttempt,
    Message,
    Need,
    ReferralStatistic,
    RetentionRun,
)
from app.models.referrals import Referral, Release
from app.referrals import service as referrals
from app.retention import service as retention
from tests import factories
from tests.conftest import TEST_ENV, login_session

# Behaviour that depends on the database, run on both: bulk SQL deletes, the job lock (upsert,
# conditional update), FOR UPDATE, SQLite WAL checkpoints.
pytestmark = pytest.mark.both_databases

T0 = datetime(2020, 3, 15, 10, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def due_count(rule: str, now: datetime) -> int:
    return {r.name: r.count for r in retention.preview(now)}[rule]


def run(now: datetime, **kwargs):
    report = retention.run(now, **kwargs)
    db.session.expire_all()
    return {r.name: r.count for r in report.results}


def count(model, *where) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def survivor_values():
    tag = uuid.uuid4().hex[:10]
    digits = str(int(tag, 16))[-4:].rjust(4, "3")
    return {
        "alias": f"Quillonie{tag}",
        "phone": f"+1415555{digits}",
        "note": f"sleeps at the laundromat {tag}",
    }


def closed_case(org, due: datetime, **kwargs):
    case = factories.make_case(
        org,
        at=T0,
        status="closed",
        closed_at=due - timedelta(days=90),
        retention_due_at=due,
        updated_at=T0,
        **kwargs,
    )
    return case


# --- every rule at its boundary ----------------------------------------------------------


def setup_hotline(org):
    db.session.add(
        HotlineSession(
            phone_index="a" * 64,
            step="consent",
            last_message_at=T0,
            created_at=T0,
            failures=0,
            menu_page=0,
            urgent=False,
        )
    )
    # A conversation that reached consent (has a case) is not this rule's business.
    case = factories.make_case(org, at=T0, updated_at=T0)
    db.session.add(
        HotlineSession(
            phone_index="b" * 64,
            step="done",
            last_message_at=T0,
            created_at=T0,
            case_id=case.id,
            failures=0,
            menu_page=0,
            urgent=False,
        )
    )
    return T0 + timedelta(hours=24), lambda: count(HotlineSession) == 1


def setup_inbound(org):
    for sid, deleted in (("SMdone", T0), ("SMpending", None)):
        db.session.add(
            Message(
                direction="in",
                audience="survivor",
                status="received",
                twilio_sid=sid,
                counterpart_index="c" * 64,
                created_at=T0,
                final_at=T0,
                remote_deleted_at=deleted,
            )
        )
    # With the console backend nothing is kept at Twilio: both go (see the Twilio case below).
    return T0 + timedelta(hours=24), lambda: count(Message) == 0


def setup_outbound(org):
    db.session.add(
        Message(
            direction="out",
            audience="provider",
            status="delivered",
            template_key="provider.help",
            counterpart_index="d" * 64,
            recipient="+14155550100",
            final_at=T0,
            created_at=T0,
        )
    )
    db.session.add(
        Message(
            direction="out",
            audience="provider",
            status="queued",
            template_key="provider.help",
            counterpart_index="e" * 64,
            recipient="+14155550101",
            created_at=T0,
        )
    )
    return (
        T0,
        lambda: (
            count(Message, Message.recipient.is_(None), Message.counterpart_index.is_(None)) == 1
            and count(Message, Message.status == "queued", Message.recipient.is_not(None)) == 1
        ),
    )


def setup_closed(org):
    due = T0 + timedelta(days=120)
    case = closed_case(org, due)
    return due, lambda: db.session.get(Case, case.id).status == "erased"


def setup_store_expired(org):
    case = factories.make_case(org, at=T0, updated_at=T0)
    due = T0 + timedelta(days=365) + timedelta(days=30)
    return due, lambda: db.session.get(Case, case.id).status == "erased"


def setup_idle(org):
    case = factories.make_case(org, at=T0, updated_at=T0)
    return T0 + timedelta(days=180), lambda: db.session.get(Case, case.id).status == "closed"


def setup_drafts(org):
    from tests.test_drafts import make_draft

    case = make_draft(org, at=T0)
    return T0 + timedelta(hours=24), lambda: db.session.get(Case, case.id).status == "erased"


def setup_consent(org):
    case = factories.make_case(
        org, at=T0, updated_at=T0, consents={"store": True, "contact_sms": True}
    )
    return (
        T0 + timedelta(days=365),
        lambda: (
            sorted(
                db.session.scalars(select(ConsentTask.scope).where(ConsentTask.case_id == case.id))
            )
            == ["contact_sms", "store"]
        ),
    )


def setup_audit(org):
    for _ in range(3):
        audit.record("test.old", at=T0)
    audit.record("test.young", at=T0 + timedelta(days=3000))
    due = T0 + timedelta(days=6 * 365 + 2)
    return due, lambda: count(AuditEvent, AuditEvent.action == "test.old") == 0


def setup_referral(org):
    area = factories.make_area()
    service = factories.make_service(category="legal", areas=[area])
    case = factories.make_case(org, at=T0, updated_at=T0, area=area, needs={"legal": "soon"})
    made, _ = referrals.create_referrals(
        case,
        [
            referrals.ReferralRequest(
                service.id, referrals.ReleaseSpec(service.organization_id, "verbal")
            )
        ],
        None,
        idempotency_key=None,
        at=T0,
    )
    due = made[0].hold_expires_at
    return due, lambda: db.session.get(Referral, made[0].id).status == "expired"


def setup_login_attempts(org):
    attempts = ((T0, False), (T0 + timedelta(hours=1), True), (T0 + timedelta(days=9), False))
    for at, success in attempts:
        db.session.add(
            LoginAttempt(at=at, account_key="f" * 64, client_key="0" * 64, success=success)
        )
    return (
        T0 + timedelta(days=30),
        lambda: count(LoginAttempt) == 2 and count(LoginAttempt, LoginAttempt.at == T0) == 0,
    )


RULE_SETUPS = {
    "hotline_unconsented": setup_hotline,
    "inbound_messages": setup_inbound,
    "outbound_messages": setup_outbound,
    "closed_cases": setup_closed,
    "consent_expired_erase": setup_store_expired,
    "idle_cases": setup_idle,
    "drafts": setup_drafts,
    "consent_expired": setup_consent,
    "releases_and_holds": setup_referral,
    "audit_events": setup_audit,
    "login_attempts": setup_login_attempts,
}


@pytest.mark.parametrize("rule", sorted(RULE_SETUPS))
def test_rule_applies_from_its_due_moment_not_a_second_before(app, rule):
    org = factories.make_org()
    due, applied = RULE_SETUPS[rule](org)
    db.session.commit()
    assert due_count(rule, due - SECOND) == 0
    assert due_count(rule, due + SECOND) >= 1
    assert run(due - SECOND)[rule] == 0
    assert not applied()
    counts = run(due + SECOND)
    assert counts[rule] >= 1
    assert applied()
    assert audit.verify_chain().ok


# Per rule: (count due, oldest due date) the preview reports just after the due moment.
# The date is the rule's due column: the moment itself for closed cases and holds, the
# time the row was last touched plus the period for age rules, the row's own time for
# the message, hotline and sign-in rules (as `retention status` has always shown them).
PREVIEW_EXPECTED = {
    "hotline_unconsented": (1, T0),
    "inbound_messages": (2, T0),
    "outbound_messages": (1, T0),
    "closed_cases": (1, T0 + timedelta(days=120)),
    "consent_expired_erase": (1, T0 + timedelta(days=365 + 30)),
    "idle_cases": (1, T0 + timedelta(days=180)),
    "drafts": (1, T0 + timedelta(hours=24)),
    "consent_expired": (2, T0 + timedelta(days=365)),
    "audit_events": (3, T0 + timedelta(days=6 * 365 + 2)),  # HAVEN_RETENTION_AUDIT_DAYS
    "login_attempts": (1, T0),
}


@pytest.mark.parametrize("rule", sorted(PREVIEW_EXPECTED))
def test_preview_counts_and_oldest_due_date_per_rule(app, rule):
    org = factories.make_org()
    due, _applied = RULE_SETUPS[rule](org)
    db.session.commit()
    result = {r.name: r for r in retention.preview(due + SECOND)}[rule]
    assert (result.count, result.oldest_due) == PREVIEW_EXPECTED[rule]


def test_preview_of_holds_and_the_daily_bed_count(app):
    org = factories.make_org()
    due, _applied = setup_referral(org)
    factories.make_service(category="shelter", beds_total=10, beds_available=4)
    db.session.commit()
    results = {r.name: r for r in retention.preview(due + SECOND)}
    assert (results["releases_and_holds"].count, results["releases_and_holds"].oldest_due) == (
        1,
        due,
    )
    midnight = (due + SECOND).replace(hour=0, minute=0, second=0, microsecond=0)
    assert (results["bed_snapshot"].count, results["bed_snapshot"].oldest_due) == (1, midnight)


def test_preview_of_referrals_left_by_an_erased_case(app):
    org = factories.make_org()
    setup_referral(org)
    referral = db.session.scalars(select(Referral)).one()
    erased_at = T0 + timedelta(days=3)
    db.session.execute(
        update(Case)
        .where(Case.id == referral.case_id)
        .values(status="erased", erased_at=erased_at)
    )
    db.session.commit()
    result = {r.name: r for r in retention.preview(T0 + timedelta(days=4))}["erased_referrals"]
    assert (result.count, result.oldest_due) == (1, erased_at)


def test_every_rule_is_named_and_configurable(app):
    assert set(RULE_SETUPS) | {"erased_referrals", "bed_snapshot"} == set(retention.RULE_NAMES)
    for key in (
        "RETENTION_HOTLINE_UNCONSENTED",
        "RETENTION_INBOUND_SID",
        "RETENTION_OUTBOUND_AFTER_FINAL",
        "RETENTION_IDLE_CASE",
        "RETENTION_DRAFT",
        "RETENTION_CONSENT_REASK",
        "RETENTION_AUDIT",
        "RETENTION_LOGIN_ATTEMPT",
        "CASE_RETENTION_AFTER_CLOSE",
    ):
        assert isinstance(app.config[key], timedelta)


def test_periods_come_from_the_environment():
    from config import TestingConfig

    config = TestingConfig(
        dict(
            TEST_ENV,
            HAVEN_RETENTION_HOTLINE_HOURS="6",
            HAVEN_RETENTION_IDLE_DAYS="30",
            HAVEN_RETENTION_AUDIT_DAYS="10",
            HAVEN_RETENTION_LOGIN_ATTEMPT_DAYS="7",
        )
    )
    assert timedelta(days=7) == config.RETENTION_LOGIN_ATTEMPT
    assert timedelta(hours=6) == config.RETENTION_HOTLINE_UNCONSENTED
    assert timedelta(days=30) == config.RETENTION_IDLE_CASE
    assert timedelta(days=10) == config.RETENTION_AUDIT
    default = TestingConfig(dict(TEST_ENV))
    assert timedelta(hours=24) == default.RETENTION_HOTLINE_UNCONSENTED
    assert timedelta(days=180) == default.RETENTION_IDLE_CASE
    assert timedelta(days=90) == default.CASE_RETENTION_AFTER_CLOSE
    assert timedelta(days=30) == default.RETENTION_LOGIN_ATTEMPT


def test_inbound_text_is_never_stored():
    """Nothing to delete: the message table has no column that could hold a text."""
    columns = {c.name for c in Message.__table__.columns}
    assert not columns & {"body", "text", "content", "message"}
    assert {c.name for c in HotlineSession.__table__.columns}.isdisjoint({"body", "text"})


def test_with_twilio_an_inbound_record_waits_for_the_text_to_be_deleted_there(app_factory):
    twilio = app_factory(SMS_BACKEND="twilio")
    with twilio.app_context():
        setup_inbound(None)
        db.session.commit()
        assert run(T0 + timedelta(days=2))["inbound_messages"] == 1
        # Still to be deleted at Twilio: kept (the worker needs its SID).
        assert list(db.session.scalars(select(Message.twilio_sid))) == ["SMpending"]
        db.session.remove()


def test_an_inbound_text_leaves_no_copy_and_its_record_goes_after_a_day(app):
    from app.sms import hotline

    phrase = f"quinceberry{uuid.uuid4().hex[:12]}"
    hotline.handle_inbound("SM" + uuid.uuid4().hex, "+14155550177", f"hello {phrase}")
    db.session.commit()
    for table in db.metadata.sorted_tables:
        for row in db.session.execute(select(table)):
            assert phrase not in repr(tuple(row)), table.name
    path = sqlite_file(app)
    if path:
        assert phrase.encode() not in raw_bytes(path)
    # What is kept (SID, blind index, a session at the language step) goes on schedule.
    assert count(Message, Message.direction == "in") == 1 and count(HotlineSession) == 1
    later = datetime.now(UTC) + timedelta(hours=24, seconds=5)
    counts = run(later)
    assert counts["hotline_unconsented"] == 1 and counts["inbound_messages"] == 1
    assert count(Message) == 0 and count(HotlineSession) == 0


def test_activity_keeps_a_case_open(app):
    org = factories.make_org()
    case = factories.make_case(org, at=T0, updated_at=T0)
    db.session.commit()
    now = T0 + timedelta(days=181)
    assert due_count("idle_cases", now) == 1
    # A consent change 10 days ago is activity.
    changes.change_consent(
        case, "explicit_wording", False, "verbal", None, language="en", at=now - timedelta(days=10)
    )
    db.session.execute(update(Case).where(Case.id == case.id).values(updated_at=T0))
    db.session.commit()
    assert due_count("idle_cases", now) == 0


def test_expired_share_consent_cancels_open_referrals_and_opens_a_task(app, client):
    org = factories.make_org()
    area = factories.make_area()
    service = factories.make_service(
        category="shelter", areas=[area], beds_total=3, beds_available=3
    )
    at = datetime.now(UTC) - timedelta(days=1)
    case = factories.make_case(org, at=at - timedelta(days=364), area=area)
    made, _ = referrals.create_referrals(
        case,
        [
            referrals.ReferralRequest(
                service.id, referrals.ReleaseSpec(service.organization_id, "verbal")
            )
        ],
        None,
        idempotency_key=None,
        at=at,
    )
    db.session.commit()
    now = at + timedelta(days=1, seconds=1)
    counts = run(now)
    assert counts["consent_expired"] == len(factories.ALL_CONSENT_SCOPES)
    referral = db.session.get(Referral, made[0].id)
    assert referral.status == "cancelled" and referral.cancel_reason == "consent_withdrawn"
    assert not consent.permits(db.session.get(Case, case.id), "share:shelter", now)
    # The caseworker sees the task on the home page, until the survivor is asked again.
    user = factories.make_user("caseworker", organization=org)
    db.session.commit()
    login_session(client, user)
    page = client.get("/").get_data(as_text=True)
    assert case.reference in page and "ask the survivor again" in page.lower()
    assert case.alias not in page  # reference codes only
    assert len(retention.open_tasks(org.id)) == len(factories.ALL_CONSENT_SCOPES)
    case = db.session.get(Case, case.id)
    changes.change_consent(case, "store", True, "verbal", user.id, language="en")
    db.session.commit()
    scopes = {task.scope for task, _case in retention.open_tasks(org.id)}
    assert "store" not in scopes and len(scopes) == len(factories.ALL_CONSENT_SCOPES) - 1
    assert run(now)["consent_expired"] == 0  # one task per expired record


# --- dry run, idempotence, status ---------------------------------------------------------


def snapshot() -> str:
    """A digest of every row of every table."""
    digest = hashlib.sha256()
    for table in db.metadata.sorted_tables:
        pk = list(table.primary_key.columns)
        for row in db.session.execute(select(table).order_by(*pk)):
            digest.update(repr(tuple(row)).encode())
    return digest.hexdigest()


def seed_everything(org):
    for setup in RULE_SETUPS.values():
        setup(org)
    factories.make_service(category="shelter", beds_total=10, beds_available=4)
    db.session.commit()


def test_dry_run_changes_nothing_and_reports_counts(app):
    org = factories.make_org()
    seed_everything(org)
    before = snapshot()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["retention", "run", "--dry-run", "--now", "2030-01-01T00:00:00Z"])
    assert result.exit_code == 0, result.output
    assert "Dry run: nothing was changed." in result.output
    lines = {line.split()[0]: line.split()[1:] for line in result.output.splitlines()[2:-1]}
    assert lines["closed_cases"][0] == "1"
    assert lines["closed_cases"][1] == "2020-07-13"  # T0 + 120 days, the oldest due date
    assert lines["hotline_unconsented"][0] == "1"
    db.session.expire_all()
    assert snapshot() == before
    assert count(RetentionRun) == 0


def test_a_run_twice_is_a_run_once(app):
    org = factories.make_org()
    seed_everything(org)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    first = run(now)
    assert first["closed_cases"] >= 1 and first["hotline_unconsented"] == 1
    stats = count(CaseStatistic)
    after_first = snapshot()
    second = run(now)
    assert all(n == 0 for n in second.values()), second
    assert count(CaseStatistic) == stats
    # Only the run's own bookkeeping changed: its log row, its audit summary and the lock.
    assert count(RetentionRun) == 2
    assert after_first != snapshot()
    assert audit.verify_chain().ok
    assert count(AuditEvent, AuditEvent.action == "retention.run") == 2


def test_a_real_run_prints_counts_and_writes_one_audit_summary(app):
    org = factories.make_org()
    closed_case(org, T0 + timedelta(days=100))
    closed_case(org, T0 + timedelta(days=110))
    db.session.commit()
    result = app.test_cli_runner().invoke(
        args=["retention", "run", "--now", "2021-01-01T00:00:00+00:00"]
    )
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("closed_cases"))
    assert row.split()[1:] == ["2", "2020-06-23", "10:00:00Z"]
    events = list(
        db.session.scalars(select(AuditEvent).where(AuditEvent.action == "retention.run"))
    )
    assert len(events) == 1 and events[0].object_type == "retention_run"
    run_row = db.session.get(RetentionRun, int(events[0].object_id))
    assert run_row.complete and run_row.counts["closed_cases"] == 2


def test_status_shows_what_falls_due_in_the_next_7_days(app):
    org = factories.make_org()
    now = datetime.now(UTC)
    closed_case(org, now - timedelta(days=1))
    closed_case(org, now + timedelta(days=3))
    closed_case(org, now + timedelta(days=9))
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["retention", "status"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("closed_cases"))
    assert row.split()[1:3] == ["1", "2"]
    assert "No retention run has completed yet." in result.output


def test_sign_in_attempts_are_kept_30_days_and_shown_in_status(app):
    """Sign-in attempts (keyed hashes of usernames and addresses) are kept for the throttle
    and a month of investigation, not forever."""
    now = datetime.now(UTC)
    for age in (timedelta(days=31), timedelta(days=25), timedelta(hours=1)):
        db.session.add(
            LoginAttempt(at=now - age, account_key="a" * 64, client_key="b" * 64, success=False)
        )
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["retention", "status"])
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.startswith("login_attempts"))
    assert row.split()[1:3] == ["1", "2"]
    dry = app.test_cli_runner().invoke(args=["retention", "run", "--dry-run"])
    assert any(line.split()[:2] == ["login_attempts", "1"] for line in dry.output.splitlines())
    assert run(now)["login_attempts"] == 1
    assert count(LoginAttempt) == 2


def test_bad_now_is_refused(app):
    result = app.test_cli_runner().invoke(args=["retention", "run", "--now", "yesterday"])
    assert result.exit_code == 2 and "ISO 8601" in result.output


# --- erasure: statistics, identical to erase_case, no trace ---------------------------------


def test_erasure_leaves_statistics_with_referral_outcomes(app):
    org = factories.make_org()
    area = factories.make_area()
    legal = factories.make_service(category="legal", areas=[area])
    medical = factories.make_service(category="medical", areas=[area])
    case = factories.make_case(org, at=T0, area=area, needs={"legal": "soon", "medical": "soon"})
    made, _ = referrals.create_referrals(
        case,
        [
            referrals.ReferralRequest(s.id, referrals.ReleaseSpec(s.organization_id, "verbal"))
            for s in (legal, medical)
        ],
        None,
        idempotency_key=None,
        at=T0,
    )
    referrals.accept(made[0], None, at=T0 + timedelta(hours=5, minutes=59))
    cases.close_case(case, "goals_met", at=T0 + timedelta(days=10))
    db.session.commit()
    counts = run(T0 + timedelta(days=101))
    assert counts["closed_cases"] == 1 and counts["erased_referrals"] == 0
    stat = db.session.scalar(select(CaseStatistic))
    assert (
        stat.month.isoformat(),
        stat.area_id,
        stat.channel,
        stat.age_band,
        stat.need_categories,
        stat.reason,
    ) == ("2020-03-01", area.id, "tablet", "25_34", "legal,medical", "retention")
    rows = sorted(
        (r.category, r.outcome, r.answer_hours, r.area_id, r.month.isoformat(), r.organization_id)
        for r in db.session.scalars(select(ReferralStatistic))
    )
    assert rows == [
        ("legal", "accepted", 5, area.id, "2020-03-01", org.id),
        ("medical", "cancelled", None, area.id, "2020-03-01", org.id),
    ]
    # The referral rows went with the case; nothing names a service or a code any more.
    assert count(Referral) == 0 and count(Release) == 0
    assert {c.name for c in ReferralStatistic.__table__.columns} == {
        "id",
        "month",
        "organization_id",
        "area_id",
        "category",
        "outcome",
        "answer_hours",
    }


def comparable_case(case_id: int) -> dict:
    row = db.session.execute(select(Case.__table__).where(Case.id == case_id)).mappings().one()
    return {
        k: v
        for k, v in row.items()
        if k not in ("id", "reference", "erased_at", "updated_at", "created_at")
    }


def test_batch_erasure_leaves_exactly_what_erase_case_leaves(app):
    org = factories.make_org()
    area = factories.make_area()
    service = factories.make_service(category="legal", areas=[area])
    made_cases = []
    for phone in ("+14155550111", "+14155550122"):
        case = factories.make_case(org, at=T0, area=area, needs={"legal": "soon"}, phone=phone)
        referrals.create_referrals(
            case,
            [
                referrals.ReferralRequest(
                    service.id, referrals.ReleaseSpec(service.organization_id, "verbal")
                )
            ],
            None,
            idempotency_key=None,
            at=T0,
        )
        db.session.add(
            HotlineSession(
                phone_index=case.phone_index,
                step="done",
                case_id=case.id,
                failures=0,
                menu_page=0,
                urgent=False,
            )
        )
        made_cases.append(case)
    db.session.commit()
    one, two = made_cases
    erasure.erase_case(one, None, reason="retention", at=T0)
    db.session.commit()
    erasure.erase_cases([two.id], None, reason="retention", at=T0)
    db.session.commit()
    db.session.expire_all()
    assert comparable_case(one.id) == comparable_case(two.id)
    stats = [
        (s.month, s.area_id, s.channel, s.age_band, s.need_categories, s.reason)
        for s in db.session.scalars(select(CaseStatistic).order_by(CaseStatistic.id))
    ]
    assert stats[0] == stats[1]
    rstats = [
        (s.category, s.outcome, s.area_id)
        for s in db.session.scalars(select(ReferralStatistic).order_by(ReferralStatistic.id))
    ]
    assert rstats == [("legal", "cancelled", area.id)] * 2
    # Both open referrals were cancelled (bed back, provider told), their statistics
    # written, and their rows deleted at once: one pipeline, the same rows on both paths.
    assert count(AuditEvent, AuditEvent.action == "referral.cancel") == 2
    assert count(Referral) == 0 and count(Release) == 0
    assert count(HotlineSession) == 0 and count(DataKey) == 0
    assert count(Need) == 0 and count(Consent) == 0
    assert count(AuditEvent, AuditEvent.action == "case.erase") == 2
    # Nothing is left for the next run's erased_referrals rule.
    assert run(datetime.now(UTC))["erased_referrals"] == 0
    assert count(ReferralStatistic) == 2
    assert audit.verify_chain().ok


def sqlite_file(app) -> str | None:
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    return url[len("sqlite:///") :] if url.startswith("sqlite:///") else None


def raw_bytes(path: str) -> bytes:
    data = b""
    for name in (path, path + "-wal"):
        if os.path.exists(name):
            with open(name, "rb") as fh:
                data += fh.read()
    return data


def test_retention_erasure_leaves_no_trace(app):
    org = factories.make_org()
    values = survivor_values()
    index = blind_index(values["phone"])
    case = closed_case(
        org,
        T0 + timedelta(days=100),
        alias=values["alias"],
        phone=values["phone"],
        note=values["note"],
    )
    db.session.add(
        HotlineSession(
            phone_index=index,
            step="done",
            case_id=case.id,
            failures=0,
            menu_page=0,
            urgent=False,
            created_at=T0,
            last_message_at=T0,
        )
    )
    db.session.add(
        Message(
            direction="in",
            audience="survivor",
            status="received",
            twilio_sid="SM" + uuid.uuid4().hex,
            counterpart_index=index,
            created_at=datetime.now(UTC),
            final_at=datetime.now(UTC),
        )
    )
    db.session.add(
        Message(
            direction="out",
            audience="survivor",
            status="queued",
            template_key="survivor.update",
            case_id=case.id,
            counterpart_index=index,
            params={"reference": case.reference},
        )
    )
    db.session.commit()
    sealed = [bytes(case.alias_enc), bytes(case.phone_enc), bytes(case.note_enc)]
    key_id = case.data_key_id
    path = sqlite_file(app)
    if path:
        before = raw_bytes(path)
        assert index.encode() in before and sealed[0] in before  # the scan can see them
        for value in values.values():
            assert value.encode() not in before  # sealed from the start

    counts = run(T0 + timedelta(days=100, seconds=1))
    assert counts["closed_cases"] == 1
    assert db.session.get(DataKey, key_id) is None
    assert count(HotlineSession) == 0
    assert count(Message, Message.counterpart_index == index) == 0
    assert count(Message, Message.status == "queued") == 0

    if path:
        after = raw_bytes(path)
        assert case.reference.encode() in after  # the tombstone remains: the scan works
        for secret in [*(v.encode() for v in values.values()), index.encode(), *sealed]:
            assert secret not in after, secret[:24]
        assert not os.path.exists(path + "-wal") or os.path.getsize(path + "-wal") == 0
    else:
        # PostgreSQL: dead row versions may hold the old ciphertext until VACUUM reuses the
        # space; without the destroyed key no remaining key opens it.
        ring = keyring()
        for token in sealed:
            with pytest.raises(InvalidToken):
                ring.multi.decrypt(token)
            for row in db.session.scalars(select(DataKey)):
                with pytest.raises(InvalidToken):
                    Fernet(ring.multi.decrypt(bytes(row.wrapped))).decrypt(token)
        # The run vacuumed the tables erasure touched.
        vacuumed = db.session.scalar(
            text("SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 'survivor_case'")
        )
        assert vacuumed is not None


# --- interrupted and concurrent runs -----------------------------------------------------


class Interrupt(Exception):
    pass


def consistent(case_id: int) -> str:
    """'erased' or 'intact' — never anything in between."""
    case = db.session.get(Case, case_id)
    if case.status == "erased":
        assert case.data_key_id is None and case.alias_enc is None and case.phone_index is None
        assert count(Consent, Consent.case_id == case_id) == 0
        assert count(Need, Need.case_id == case_id) == 0
        return "erased"
    assert case.alias == "Rosa" and db.session.get(DataKey, case.data_key_id) is not None
    assert count(Consent, Consent.case_id == case_id) == len(factories.ALL_CONSENT_SCOPES)
    return "intact"


def test_an_interrupted_run_leaves_whole_batches_and_the_next_run_finishes(app):
    org = factories.make_org()
    ids = [closed_case(org, T0 + timedelta(days=100)).id for _ in range(5)]
    db.session.commit()
    batches = []

    def crash(rule, handled):
        batches.append(rule)
        if len(batches) == 2:
            raise Interrupt()

    with pytest.raises(Interrupt):
        retention.run(T0 + timedelta(days=200), batch=2, after_batch=crash)
    db.session.expire_all()
    states = [consistent(i) for i in ids]
    assert states.count("erased") == 4 and count(CaseStatistic) == 4
    assert retention.lock_holder() is None  # released on the way out
    assert count(RetentionRun, RetentionRun.complete.is_(True)) == 0
    assert run(T0 + timedelta(days=200))["closed_cases"] == 1
    assert [consistent(i) for i in ids] == ["erased"] * 5
    assert count(CaseStatistic) == 5
    assert audit.verify_chain().ok


# The killed run's lock: long enough that a loaded machine does not stall the child past it.
LOCK_SECONDS = 60


def test_a_killed_run_is_finished_by_the_next(app, database_url):
    org = factories.make_org()
    ids = [closed_case(org, T0 + timedelta(days=100)).id for _ in range(300)]
    db.session.commit()
    env = dict(
        os.environ,
        **TEST_ENV,
        DATABASE_URL=database_url,
        HAVEN_ENV="testing",
        HAVEN_RETENTION_LOCK_SECONDS=str(LOCK_SECONDS),
    )
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flask",
            "--app",
            "app",
            "retention",
            "run",
            "--batch",
            "1",
            "--now",
            "2021-01-01T00:00:00Z",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    path = sqlite_file(app)
    # Watch without taking SQLite's write lock: the app's sessions BEGIN IMMEDIATE, and a
    # watcher queued behind the child's one-case batches could first see the count when the
    # whole run was over (the test then killed a run that had already released its lock).
    watcher = (
        sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None) if path else None
    )

    def erased_now() -> int:
        if watcher is not None:
            return int(watcher.execute(
                "SELECT count(*) FROM survivor_case WHERE status = 'erased'"
            ).fetchone()[0])
        erased = count(Case, Case.status == "erased")
        db.session.rollback()
        return erased

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if erased_now() >= 1:
                break
            time.sleep(0.005)
        # (A loaded machine may stall the child past its lock: it then stops by itself
        # with status 75, "lock lost" — an interruption too, just not by us.)
        killed = proc.poll() is None
        if killed:
            proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(30)
        if watcher is not None:
            watcher.close()
    assert killed or proc.returncode == 75, "the run finished before it could be killed"
    db.session.rollback()
    if killed:
        # The dead run still holds the lock until it expires: a run now is refused.
        with pytest.raises(retention.RetentionLocked):
            retention.run(datetime(2021, 1, 1, tzinfo=UTC))
        assert retention.lock_holder() is not None
    db.session.rollback()
    db.session.expire_all()
    states = [consistent(i) for i in ids]
    erased = states.count("erased")
    assert 1 <= erased < 300 and count(CaseStatistic) == erased
    assert audit.verify_chain().ok
    # ...and the next one, once the dead run's lock has expired (a clock past it rather than
    # a wait for it), finishes the job.
    def later() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=LOCK_SECONDS + 1)

    db.session.rollback()
    assert retention.lock_holder(at=later()) is None
    assert run(datetime(2021, 1, 1, tzinfo=UTC), clock=later)["closed_cases"] == 300 - erased
    assert [consistent(i) for i in ids] == ["erased"] * 300
    assert count(CaseStatistic) == 300
    assert audit.verify_chain().ok


def test_two_runs_at_once_never_double_process(app_factory, app):
    org = factories.make_org()
    for _ in range(4):
        closed_case(org, T0 + timedelta(days=100))
    db.session.commit()
    db.session.rollback()
    now = T0 + timedelta(days=200)
    inside = threading.Event()
    go_on = threading.Event()
    outcome: dict[str, object] = {}

    def first() -> None:
        worker = app_factory()
        with worker.app_context():

            def pause(rule, handled):
                if not inside.is_set():
                    inside.set()
                    go_on.wait(30)

            try:
                outcome["first"] = retention.run(now, batch=1, after_batch=pause)
            except Exception as exc:  # noqa: BLE001 - checked below
                outcome["first"] = exc

    thread = threading.Thread(target=first)
    thread.start()
    assert inside.wait(30)
    other = app_factory()
    with other.app_context():
        with pytest.raises(retention.RetentionLocked):
            retention.run(now)
        result = other.test_cli_runner().invoke(args=["retention", "run"])
        assert result.exit_code == 75 and "in progress" in result.output
        db.session.remove()
    go_on.set()
    thread.join(60)
    report = outcome["first"]
    assert isinstance(report, retention.RunReport), report
    assert {r.name: r.count for r in report.results}["closed_cases"] == 4
    db.session.expire_all()
    assert count(CaseStatistic) == 4
    assert count(AuditEvent, AuditEvent.action == "case.erase") == 4


def test_the_lock_goes_to_exactly_one_of_many_racing_runs(app_factory, app):
    db.session.rollback()
    barrier = threading.Barrier(4)
    taken: list[bool] = []

    def race(n: int) -> None:
        worker = app_factory()
        with worker.app_context():
            barrier.wait()
            taken.append(retention.acquire_lock(f"runner-{n}"))
            db.session.remove()

    threads = [threading.Thread(target=race, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(taken) == [False, False, False, True]
    holder = db.session.get(JobLock, retention.LOCK_NAME)
    assert holder.owner.startswith("runner-")
    # A run that lost its lock cannot commit another batch.
    with pytest.raises(retention.LockLost):
        retention.renew_lock("someone-else")
    db.session.rollback()


# --- audit pruning ---------------------------------------------------------------------


def test_pruned_audit_chain_still_verifies_and_still_catches_tampering(app):
    for n in range(7):
        audit.record("test.old", "case", n, at=T0)
    audit.record("test.young", at=T0 + timedelta(days=6 * 365 + 10))
    db.session.commit()
    counts = run(T0 + timedelta(days=6 * 365 + 5), batch=3)
    assert counts["audit_events"] == 7
    head = db.session.get(AuditHead, 1)
    assert head.base_seq == 7 and head.base_hash
    assert count(AuditEvent, AuditEvent.action == "test.old") == 0
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    assert result.exit_code == 0, result.output

    # Editing a kept event is caught.
    young = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "test.young"))
    db.session.execute(update(AuditEvent).where(AuditEvent.id == young.id).values(object_id="99"))
    db.session.commit()
    assert not audit.verify_chain().ok
    db.session.execute(update(AuditEvent).where(AuditEvent.id == young.id).values(object_id=None))
    db.session.commit()
    assert audit.verify_chain().ok

    # Deleting the first kept event (pretending it was pruned) is caught...
    db.session.execute(AuditEvent.__table__.delete().where(AuditEvent.id == young.id))
    db.session.commit()
    result = audit.verify_chain()
    assert not result.ok and result.reason == "event missing"


def test_moving_the_checkpoint_by_hand_is_caught(app):
    for n in range(4):
        audit.record("test.old", "case", n, at=T0)
    audit.record("test.young", at=datetime.now(UTC))
    db.session.commit()
    run(T0 + timedelta(days=6 * 365 + 5))
    assert audit.verify_chain().ok
    first_kept = db.session.scalar(select(func.min(AuditEvent.seq)))
    victim = db.session.scalar(select(AuditEvent).where(AuditEvent.seq == first_kept))
    # Delete the oldest kept event and move the checkpoint over it, as pruning would:
    db.session.execute(AuditEvent.__table__.delete().where(AuditEvent.id == victim.id))
    db.session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(base_seq=victim.seq, base_hash=victim.hash)
    )
    db.session.commit()
    result = audit.verify_chain()
    assert not result.ok and result.reason == "checkpoint not attested by the chain"
