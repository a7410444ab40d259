"""Bed holds: a referral to a shelter takes a bed at once; accept keeps it; decline, expiry,
cancellation and no-show give it back exactly once; arrival uses it; provider capacity
updates set the beds free for NEW referrals without fighting holds; and concurrent senders
never overbook (threads, each with its own app context, session and connection — run on
SQLite and on PostgreSQL)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from app.consent import changes
from app.core.extensions import db
from app.directory import capacity
from app.models import Referral, Release, Service, utcnow
from app.referrals import service as referrals
from tests import factories

# Behaviour that depends on the database, run on both: concurrent holds on one bed count (row
# locks).
pytestmark = pytest.mark.both_databases


@pytest.fixture(autouse=True)
def request_context(app):
    with app.test_request_context():
        yield


def shelter(free: int = 3, total: int = 10) -> Any:
    return factories.make_service(
        organization=factories.make_org("provider"),
        category="shelter",
        beds_total=total,
        beds_available=free,
        intake_phone="+14155550100",
    )


def beds(service: Any) -> int:
    db.session.expire_all()
    return db.session.get(Service, service.id).beds_available


def refer(case: Any, service: Any, **kwargs: Any) -> Referral:
    [referral], _ = referrals.create_referrals(
        case,
        [
            referrals.ReferralRequest(
                service.id, referrals.ReleaseSpec(service.organization_id, "verbal")
            )
        ],
        None,
        idempotency_key=None,
        **kwargs,
    )
    return referral


def run_together(app: Any, jobs: list[Any]) -> list[Any]:
    """Run each job in its own thread and app context (own session and connection),
    released at the same moment; return what each returned or raised."""
    barrier = threading.Barrier(len(jobs))
    results: list[Any] = [None] * len(jobs)

    def worker(index: int, job: Any) -> None:
        with app.app_context(), app.test_request_context():
            barrier.wait()
            try:
                results[index] = job()
                db.session.commit()
            except Exception as exc:  # noqa: BLE001 - reported to the test
                db.session.rollback()
                results[index] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=worker, args=(i, j)) for i, j in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    return results


def test_twenty_concurrent_referrals_at_three_free_beds(app):
    service = shelter(free=3, total=10)
    cases = [factories.make_case(needs={"shelter": "immediate"}) for _ in range(20)]
    service_id, case_ids = service.id, [c.id for c in cases]
    db.session.commit()  # (and touch nothing until the threads are done: on SQLite a
    # refresh would open a write transaction here and hold the lock)
    from app.models import Case

    def job(case_id: int) -> Any:
        def run() -> Any:
            case = db.session.get(Case, case_id)
            return refer(case, db.session.get(Service, service_id)).id

        return run

    results = run_together(app, [job(cid) for cid in case_ids])
    made = [r for r in results if isinstance(r, int)]
    refused = [r for r in results if isinstance(r, referrals.NoBedFree)]
    others = [r for r in results if r not in made and r not in refused]
    assert others == []
    assert len(made) == 3 and len(refused) == 17
    db.session.expire_all()
    held = db.session.scalar(
        select(func.count(Referral.id)).where(
            Referral.service_id == service_id, Referral.hold_status == "held"
        )
    )
    assert held == 3
    assert db.session.scalar(select(func.count(Referral.id))) == 3
    assert beds(service) == 0
    # The refused 17 left nothing behind; the audit chain stayed whole.
    from app.core import audit
    from app.models import AuditEvent, Message, Release

    assert db.session.scalar(select(func.count(Release.id))) == 3
    assert db.session.scalar(select(func.count(Message.id))) == 3
    assert (
        db.session.scalar(
            select(func.count(AuditEvent.id)).where(AuditEvent.action == "referral.create")
        )
        == 3
    )
    assert audit.verify_chain().ok


def test_a_shelter_with_no_free_bed_refuses_with_a_reason(app):
    service = shelter(free=0)
    case = factories.make_case(needs={"shelter": "immediate"})
    with pytest.raises(referrals.NoBedFree) as raised:
        refer(case, service)
    assert "no free bed" in str(raised.value.message)
    assert db.session.scalar(select(func.count(Referral.id))) == 0


def test_accept_keeps_decline_returns(app):
    service = shelter(free=2)
    first = refer(factories.make_case(needs={"shelter": "immediate"}), service)
    second = refer(factories.make_case(needs={"shelter": "immediate"}), service)
    assert beds(service) == 0
    referrals.accept(first, None)
    assert beds(service) == 0 and first.hold_status == "held"
    referrals.decline(second, "full", "no room for a family", None)
    assert beds(service) == 1 and second.hold_status == "returned"
    # The decline text is sealed with the case's key.
    assert second.response_text == "no room for a family"
    assert b"family" not in (second.response_text_enc or b"")


def test_no_show_returns_arrival_uses(app):
    service = shelter(free=2)
    a = refer(factories.make_case(needs={"shelter": "immediate"}), service)
    b = refer(factories.make_case(needs={"shelter": "immediate"}), service)
    referrals.accept(a, None)
    referrals.accept(b, None)
    referrals.record_outcome(a, "arrived", None)
    referrals.record_outcome(b, "no_show", None)
    assert (a.hold_status, b.hold_status) == ("used", "returned")
    assert beds(service) == 1
    referrals.record_outcome(a, "completed", None)
    assert a.status == "completed" and beds(service) == 1
    with pytest.raises(referrals.BadTransition):
        referrals.record_outcome(b, "arrived", None)


def test_hold_expiry_gives_the_bed_back(app):
    service = shelter(free=1)
    case = factories.make_case(needs={"shelter": "immediate"})
    at = utcnow()
    referral = refer(case, service, at=at)
    assert beds(service) == 0
    assert referral.hold_expires_at == at + timedelta(hours=4)
    referrals.expire_due(at + timedelta(hours=4) - timedelta(seconds=1))
    assert beds(service) == 0
    result = referrals.expire_due(at + timedelta(hours=4))
    assert result.expired == 1 and beds(service) == 1
    # A bed can then be held again.
    refer(factories.make_case(needs={"shelter": "immediate"}), service)
    assert beds(service) == 0


def test_the_hold_window_is_configurable(app_factory):
    other = app_factory(REFERRAL_HOLD=timedelta(hours=1))
    with other.app_context(), other.test_request_context():
        service = shelter(free=1)
        case = factories.make_case(needs={"shelter": "immediate"})
        at = utcnow()
        referral = refer(case, service, at=at)
        assert referral.hold_expires_at == at + timedelta(hours=1)
        db.session.rollback()


def test_decline_racing_expiry_returns_the_bed_once(app):
    service = shelter(free=1, total=5)
    case = factories.make_case(needs={"shelter": "immediate"})
    at = utcnow()
    referral = refer(case, service, at=at)
    rid, later = referral.id, at + timedelta(hours=5)
    db.session.commit()

    def decline() -> Any:
        referrals.decline(db.session.get(Referral, rid), "full", None, None)
        return "declined"

    results = run_together(app, [decline, lambda: referrals.expire_due(later)])
    db.session.expire_all()
    final = db.session.get(Referral, rid)
    assert final.status in ("declined", "expired")
    assert final.hold_status == "returned"
    assert beds(service) == 1  # not 2
    # The loser saw the referral already answered (a clear error or nothing to expire).
    assert any(
        isinstance(r, referrals.BadTransition) or r == referrals.ExpiryResult(0, 0) for r in results
    )


def test_capacity_updates_set_beds_for_new_holds(app):
    service = shelter(free=3, total=5)
    held = refer(factories.make_case(needs={"shelter": "immediate"}), service)
    assert beds(service) == 2 and capacity.beds_held(service.id) == 1
    # The provider says 4 beds are free for new referrals; the held one stays held.
    capacity.set_beds(db.session.get(Service, service.id), free=4)
    assert beds(service) == 4 and held.hold_status == "held"
    # Free + held may not exceed the total.
    with pytest.raises(capacity.BedCountError) as refused:
        capacity.set_beds(db.session.get(Service, service.id), free=5)
    assert (refused.value.reason, refused.value.top) == ("over_total", 4)
    assert beds(service) == 4
    # A returned hold adds its bed back: free + held stays within the total.
    referrals.cancel(held, None)
    assert beds(service) == 5 and capacity.beds_held(service.id) == 0
    refer(factories.make_case(needs={"shelter": "immediate"}), service)
    assert beds(service) == 4


def test_a_returned_hold_never_lifts_free_above_the_total(app):
    """A row written outside the rule (data from before it): the returned bed is capped."""
    service = shelter(free=3, total=5)
    held = refer(factories.make_case(needs={"shelter": "immediate"}), service)
    db.session.execute(
        update(Service).where(Service.id == service.id).values(beds_available=5)
    )
    referrals.cancel(held, None)
    assert beds(service) == 5


def test_shelters_without_a_bed_count_hold_nothing(app):
    service = factories.make_service(
        organization=factories.make_org("provider"), category="shelter"
    )
    referral = refer(factories.make_case(needs={"shelter": "immediate"}), service)
    assert referral.hold_status == "none" and beds(service) is None


def test_a_double_submit_racing_itself_makes_one_referral(app):
    """The same form sent twice at the same moment (a flaky network): one referral, one
    bed held, and both requests see the same referral."""
    service = shelter(free=2)
    case = factories.make_case(needs={"shelter": "immediate"})
    service_id, case_id, org_id = service.id, case.id, service.organization_id
    db.session.commit()
    from app.models import Case

    def submit() -> Any:
        made, _created = referrals.create_referrals(
            db.session.get(Case, case_id),
            [referrals.ReferralRequest(service_id, referrals.ReleaseSpec(org_id, "verbal"))],
            None,
            idempotency_key="race_" + "d" * 30,
        )
        return [r.id for r in made]

    results = run_together(app, [submit, submit])
    assert all(isinstance(r, list) for r in results), results
    assert results[0] == results[1]
    assert db.session.scalar(select(func.count(Referral.id))) == 1
    assert db.session.scalar(select(func.count(Release.id))) == 1
    assert beds(service) == 1


def test_two_forms_to_one_service_at_once_make_one_open_referral(app):
    """Two caseworkers (two form tokens) refer the same case to the same legal service at
    the same moment: one referral; the other is refused with a reason, not a crash."""
    service = factories.make_service(organization=factories.make_org("provider"), category="legal")
    case = factories.make_case(needs={"legal": "soon"})
    service_id, case_id, org_id = service.id, case.id, service.organization_id
    db.session.commit()
    from app.models import Case

    def submit(token: str) -> Any:
        def run() -> Any:
            made, _created = referrals.create_referrals(
                db.session.get(Case, case_id),
                [referrals.ReferralRequest(service_id, referrals.ReleaseSpec(org_id, "verbal"))],
                None,
                idempotency_key=token,
            )
            return [r.id for r in made]

        return run

    results = run_together(app, [submit("one_" + "e" * 30), submit("two_" + "f" * 30)])
    assert sorted(type(r).__name__ for r in results) == ["NotReferable", "list"], results
    assert db.session.scalar(select(func.count(Referral.id))) == 1
    assert db.session.scalar(select(func.count(Release.id))) == 1


class _Meeting:
    """The order of two racing transactions, by events rather than sleeps: the sender stops
    inside its transaction (after its first row locks); the other one starts then; the
    sender goes on once the other waits for one of its locks (PostgreSQL, seen in pg_locks)
    or has finished. (SQLite: one writer at a time, the other waits for the whole commit.)"""

    def __init__(self) -> None:
        self.sender_inside = threading.Event()
        self.other_started = threading.Event()
        self.other_done = threading.Event()

    def other(self, job: Any) -> Any:
        def run() -> Any:
            assert self.sender_inside.wait(30), "the sender never got inside its transaction"
            self.other_started.set()
            try:
                return job()
            finally:
                self.other_done.set()

        return run

    def hold_the_sender(self) -> None:
        self.sender_inside.set()
        assert self.other_started.wait(30), "the other transaction never started"
        if db.engine.dialect.name != "postgresql":
            return
        deadline = time.monotonic() + 10
        with db.engine.connect() as watcher:
            while not self.other_done.is_set() and time.monotonic() < deadline:
                waiting = watcher.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a"
                        " ON a.pid = l.pid WHERE NOT l.granted"
                        " AND a.datname = current_database()"
                    )
                )
                watcher.rollback()
                if waiting:
                    return
                self.other_done.wait(0.01)


def _slow_release_grant(monkeypatch: Any) -> _Meeting:
    """The sending thread ("sender") is held inside its transaction, after its first row
    locks, until a second transaction has started in the middle of it."""
    from app.core import audit

    real = audit.record
    meeting = _Meeting()

    def record(*args: Any, **kwargs: Any) -> Any:
        if (
            threading.current_thread().name == "sender"
            and args[0] == "release.grant"
            and not meeting.sender_inside.is_set()
        ):
            meeting.hold_the_sender()
        return real(*args, **kwargs)

    monkeypatch.setattr(audit, "record", record)
    return meeting


def _sender(service_id: int, org_id: int, case_id: int) -> Any:
    from app.models import Case

    def run() -> Any:
        threading.current_thread().name = "sender"
        made, _ = referrals.create_referrals(
            db.session.get(Case, case_id),
            [referrals.ReferralRequest(service_id, referrals.ReleaseSpec(org_id, "verbal"))],
            None,
            idempotency_key=None,
        )
        return made[0].id

    return run


def test_a_withdrawal_racing_a_new_referral_at_the_same_shelter(app, monkeypatch):
    """A survivor withdraws share_shelter (their open shelter referral is cancelled, its
    bed given back) while another survivor is referred to the same shelter. On PostgreSQL
    both used to lock the audit head and the service row in opposite orders (deadlock:
    the withdrawal failed); with one lock order both succeed."""
    from app.models import Case

    service = shelter(free=3)
    first = factories.make_case(needs={"shelter": "immediate"})
    second = factories.make_case(needs={"shelter": "immediate"})
    refer(first, service)
    ids = (service.id, service.organization_id, first.id, second.id)
    db.session.commit()
    meeting = _slow_release_grant(monkeypatch)

    def withdraw() -> str:
        case = db.session.get(Case, ids[2])
        changes.change_consent(case, "share_shelter", False, "verbal", None, language="en")
        return "withdrawn"

    results = run_together(app, [_sender(ids[0], ids[1], ids[3]), meeting.other(withdraw)])
    assert not any(isinstance(r, Exception) for r in results), results
    assert beds(service) == 2  # 3 - 1 (first) + 1 (given back) - 1 (second)


def test_beds_by_sms_racing_a_new_referral(app, monkeypatch):
    """A shelter texts BEDS while a referral to it is being sent: no deadlock."""
    from app.sms import hotline

    service = shelter(free=3, total=10)
    case = factories.make_case(needs={"shelter": "immediate"})
    ids = (service.id, service.organization_id, case.id)
    db.session.commit()
    meeting = _slow_release_grant(monkeypatch)

    def beds_by_sms() -> list[str]:
        return hotline.handle_inbound("SM" + "7" * 32, "+14155550100", "BEDS 5")

    results = run_together(app, [_sender(*ids), meeting.other(beds_by_sms)])
    assert not any(isinstance(r, Exception) for r in results), results
    assert "5" in results[1][0]
    assert beds(service) in (4, 5)  # the update sets beds for new holds; order decides
