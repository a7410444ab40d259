"""Erase now: crypto-shredding and scrubbing leave nothing identifying behind — not in the
tables, not in the raw SQLite file or its WAL, not decryptable on PostgreSQL."""

from __future__ import annotations

import os
import threading
import uuid
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import String, Text, func, select, text

from app.cases import erasure
from app.cases import service as cases
from app.consent import changes
from app.core.crypto import blind_index, keyring
from app.core.extensions import db
from app.models import (
    AuditEvent,
    Case,
    CaseStatistic,
    Consent,
    ConsentSignature,
    DataKey,
    HotlineSession,
    Message,
    Need,
    Organization,
)
from app.referrals import service as referrals
from tests import factories
from tests.conftest import login_session
from tests.test_intake import consent_form, png_data_url

# Behaviour that depends on the database, run on both: raw bytes on disk after erasure, row locks
# and racing submissions.
pytestmark = pytest.mark.both_databases


def sqlite_path(app) -> str | None:
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    return url[len("sqlite:///"):] if url.startswith("sqlite:///") else None


def raw_bytes(app) -> bytes:
    """The database file and its WAL, as they are on disk."""
    path = sqlite_path(app)
    assert path
    data = b""
    for name in (path, path + "-wal"):
        if os.path.exists(name):
            with open(name, "rb") as fh:
                data += fh.read()
    return data


def tables_holding(value: str) -> list[str]:
    """Every text column of every table that holds ``value`` exactly."""
    found = []
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, (String, Text)):
                hits = db.session.scalar(
                    select(func.count()).select_from(table).where(column == value)
                )
                if hits:
                    found.append(f"{table.name}.{column.name}")
    return found


@pytest.fixture
def survivor():
    tag = uuid.uuid4().hex[:10]
    digits = str(int(tag, 16))[-4:].rjust(4, "7")
    return {
        "alias": f"Zephyrine{tag}",
        "phone": f"+1415555{digits}",
        "note": f"meets at the bakery {tag}",
        # Safe hours are weekdays and times: their stored (sealed) form holds this text.
        "safe_hours": '"from":"21:17"',
    }


def intake_through_the_views(client, area, survivor, signature=True) -> Case:
    form = consent_form(method="written" if signature else "verbal",
                        token="erase_" + uuid.uuid4().hex,
                        signature=png_data_url() if signature else "")
    response = client.post("/cases/new", data=form)
    assert response.status_code == 302, response.get_data(as_text=True)
    case = db.session.scalar(select(Case).order_by(Case.id.desc()))
    response = client.post(f"/cases/{case.id}/profile", data={
        "alias": survivor["alias"], "phone": survivor["phone"], "language": "fr",
        "age_band": "35_49", "area_id": str(area.id), "note": survivor["note"],
        "safe_hours-0-days": ["0", "1"], "safe_hours-0-start": "21:17",
        "safe_hours-0-end": "23:00",
    })
    assert response.status_code == 302, response.get_data(as_text=True)
    assert client.post(f"/cases/{case.id}/needs",
                       data={"need_legal": "soon", "need_medical": "immediate"}).status_code == 302
    db.session.expire_all()
    return db.session.get(Case, case.id)


@pytest.fixture
def staffed(app, client):
    user = factories.make_user("caseworker")
    area = factories.make_area()
    db.session.commit()
    login_session(client, user)
    return user, area


def test_erase_now_leaves_no_trace(app, client, staffed, survivor):
    _user, area = staffed
    case = intake_through_the_views(client, area, survivor)
    index = blind_index(survivor["phone"])
    key_id = case.data_key_id
    wrapped = bytes(db.session.get(DataKey, key_id).wrapped)
    sealed_alias = bytes(case.alias_enc)
    assert case.alias == survivor["alias"] and case.phone_index == index
    assert tables_holding(index) == ["survivor_case.phone_index"]
    secrets_ = [survivor[k].encode() for k in ("alias", "phone", "note", "safe_hours")]

    on_sqlite = sqlite_path(app) is not None
    if on_sqlite:
        before = raw_bytes(app)
        # The scan works: what is stored in clear (reference code, blind index) is found...
        assert case.reference.encode() in before and index.encode() in before
        # ...and the identifying fields are not, anywhere (they are sealed).
        for secret in secrets_:
            assert secret not in before, secret
        assert sealed_alias in before

    response = client.post(f"/cases/{case.id}/erase", data={"reference": case.reference})
    assert response.status_code == 302
    db.session.expire_all()

    case = db.session.get(Case, case.id)
    assert case.status == "erased" and case.erased_at is not None
    for column in ("alias_enc", "phone_enc", "note_enc", "safe_hours_enc", "phone_index",
                   "idempotency_key", "data_key_id", "area_id", "age_band", "language"):
        assert getattr(case, column) is None, column
    assert db.session.get(DataKey, key_id) is None
    for model in (Consent, Need, ConsentSignature):
        assert db.session.scalar(
            select(func.count()).select_from(model).where(model.case_id == case.id)) == 0
    assert tables_holding(index) == []
    stat = db.session.scalar(select(CaseStatistic))
    assert (stat.channel, stat.age_band, stat.area_id, stat.need_categories, stat.reason) == (
        "tablet", "35_49", area.id, "legal,medical", "survivor_request")
    assert stat.month.day == 1
    assert "case.erase" in set(db.session.scalars(select(AuditEvent.action)))

    # The ciphertext, wherever a copy survives, cannot be opened: its key is gone.
    ring = keyring()
    for row in db.session.scalars(select(DataKey)):
        with pytest.raises(InvalidToken):
            Fernet(ring.multi.decrypt(bytes(row.wrapped))).decrypt(sealed_alias)
    with pytest.raises(InvalidToken):
        ring.multi.decrypt(sealed_alias)

    if on_sqlite:
        after = raw_bytes(app)
        assert case.reference.encode() in after  # the tombstone is still there: scan works
        for secret in [*secrets_, index.encode(), wrapped, sealed_alias]:
            assert secret not in after, secret[:20]
        wal = sqlite_path(app) + "-wal"
        assert not os.path.exists(wal) or os.path.getsize(wal) == 0


def test_erasure_writes_statistics_without_identifiers(app, staffed, survivor):
    user, area = staffed
    case = factories.make_case(user.organization, alias=survivor["alias"], area=area,
                               needs={"shelter": "immediate", "other": "routine"})
    assert erasure.erase_case(case, user.id) is True
    db.session.commit()
    columns = {c.name for c in CaseStatistic.__table__.columns}
    assert columns == {"id", "month", "organization_id", "area_id", "channel", "age_band",
                       "need_categories", "reason", "close_reason"}
    stat = db.session.scalars(select(CaseStatistic)).one()
    assert stat.need_categories == "shelter,other"
    assert erasure.erase_case(case, user.id) is False  # idempotent
    assert db.session.scalar(select(func.count(CaseStatistic.id))) == 1


def test_erasure_steps_run_before_the_data_goes(app, staffed, survivor, monkeypatch):
    user, _area = staffed
    seen = []
    erase_for_cases = referrals.erase_for_cases

    def spy(case_ids, actor_id, at):
        for case_id in case_ids:
            case = db.session.get(Case, case_id)
            seen.append((case.alias, case.phone, actor_id))  # still readable
        erase_for_cases(case_ids, actor_id, at)

    monkeypatch.setattr(referrals, "erase_for_cases", spy)
    case = factories.make_case(user.organization, alias=survivor["alias"],
                               phone=survivor["phone"])
    erasure.erase_case(case, user.id)
    assert seen == [(survivor["alias"], survivor["phone"], user.id)]


def test_a_failing_step_erases_nothing(app, client, staffed, survivor, monkeypatch):
    user, _area = staffed
    case = factories.make_case(user.organization, alias=survivor["alias"])
    db.session.commit()

    def boom(case_ids, actor_id, at):
        raise RuntimeError("cannot cancel")

    monkeypatch.setattr(referrals, "erase_for_cases", boom)
    response = client.post(f"/cases/{case.id}/erase", data={"reference": case.reference})
    assert response.status_code == 500
    monkeypatch.undo()
    db.session.expire_all()
    case = db.session.get(Case, case.id)
    assert case.status == "open" and case.alias == survivor["alias"]
    assert db.session.scalar(select(func.count(CaseStatistic.id))) == 0


def test_withdrawing_store_by_sms_erases_like_erase_now(app, staffed, survivor):
    user, _area = staffed
    case = factories.make_case(user.organization, phone=survivor["phone"])
    db.session.commit()
    changes.change_consent(case, "store", False, "sms", None, language="en")
    db.session.commit()
    assert tables_holding(blind_index(survivor["phone"])) == []
    stat = db.session.scalar(select(CaseStatistic))
    assert stat.reason == "consent_withdrawn"


def test_concurrent_double_submission_makes_one_case(app_factory, app):
    """Two requests with the same intake token at the same moment (two processes)."""
    user = factories.make_user("caseworker")
    db.session.commit()
    # Only the session id crosses into the threads; end our own transaction so that on
    # SQLite (BEGIN IMMEDIATE) this thread holds no lock while the two requests race.
    identity = user.get_id()
    who = SimpleNamespace(get_id=lambda: identity)
    db.session.rollback()
    token = "race_" + uuid.uuid4().hex
    results: list[int] = []
    barrier = threading.Barrier(2)

    def submit() -> None:
        worker_app = app_factory()
        client = worker_app.test_client()
        with worker_app.app_context():
            login_session(client, who)
        barrier.wait()
        response = client.post("/cases/new", data=consent_form(token=token))
        results.append(response.status_code)

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert results == [302, 302]
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Case.id))) == 1
    assert db.session.scalar(select(func.count(Consent.id))) == len(factories.ALL_CONSENT_SCOPES)


def test_create_case_waits_for_a_racing_insert_and_returns_it(app_factory, app):
    """Request A has inserted the case but not committed; request B with the same key
    blocks on the unique key (PostgreSQL) or the write lock (SQLite), then returns A's case."""
    import time

    org = factories.make_org()
    db.session.commit()
    org_id = org.id
    db.session.rollback()
    token = "race_" + uuid.uuid4().hex
    app_a, app_b = app_factory(), app_factory()
    outcome: dict[str, object] = {}

    def request_b() -> None:
        with app_b.app_context():
            try:
                case, created = cases.create_case(org_id, None, idempotency_key=token,
                                                  language="en")
                db.session.commit()
                outcome["b"] = (case.id, created)
            except Exception as exc:  # noqa: BLE001 - reported by the assert below
                outcome["b"] = exc

    with app_a.app_context():
        case_a, created_a = cases.create_case(org_id, None, idempotency_key=token, language="en")
        assert created_a
        thread = threading.Thread(target=request_b)
        thread.start()
        time.sleep(0.5)
        assert "b" not in outcome  # B is waiting for A
        db.session.commit()
        a_id = case_a.id
    thread.join(30)
    assert outcome["b"] == (a_id, False)
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Case.id))) == 1


# --- identifiers replaced or deleted leave no bytes behind (issue 14 item 9) -------------
#
# On SQLite the database file plus its WAL must not hold an old blind index or an old
# ciphertext after the commit that replaced or deleted it (PRAGMA wal_checkpoint(TRUNCATE)
# after that commit; secure_delete zeroes the freed cells). On PostgreSQL a retention run
# that deleted or scrubbed identifiers VACUUMs the tables it touched.


def vacuum_counts(tables: tuple[str, ...]) -> dict[str, int]:
    db.session.commit()  # a fresh snapshot of the statistics
    rows = db.session.execute(
        text(
            "SELECT relname, vacuum_count FROM pg_stat_user_tables WHERE relname = ANY(:names)"
        ),
        {"names": list(tables)},
    ).all()
    db.session.commit()
    return {name: int(n) for name, n in rows}


def assert_gone_from_disk(app, secrets_: list[bytes], still_there: bytes) -> None:
    after = raw_bytes(app)
    assert still_there in after  # the scan sees what is stored in clear
    for secret in secrets_:
        assert secret not in after, secret[:24]
    wal = sqlite_path(app) + "-wal"
    assert not os.path.exists(wal) or os.path.getsize(wal) == 0


def test_a_profile_edit_leaves_no_old_identifier_on_disk(app, client, staffed, survivor):
    _user, area = staffed
    case = intake_through_the_views(client, area, survivor)
    old_index = blind_index(survivor["phone"])
    old_sealed = [bytes(case.alias_enc), bytes(case.phone_enc), bytes(case.note_enc)]
    if sqlite_path(app):
        before = raw_bytes(app)
        assert old_index.encode() in before and all(s in before for s in old_sealed)
    # The phone is replaced, the alias changed and the note removed.
    new_phone = "+14155550166"
    response = client.post(f"/cases/{case.id}/profile", data={
        "alias": "Someone else", "phone": new_phone, "language": "fr", "age_band": "35_49",
        "area_id": str(area.id), "note": "",
    })
    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.expire_all()
    case = db.session.get(Case, case.id)
    assert case.phone == new_phone and case.note is None
    assert tables_holding(old_index) == []
    if sqlite_path(app):
        assert_gone_from_disk(
            app, [old_index.encode(), *old_sealed], blind_index(new_phone).encode()
        )


def _hotline_app(app_factory):
    from tests.sms_support import ACCOUNT_SID, AUTH_TOKEN

    return app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID)


def test_forget_before_consent_leaves_no_trace_on_disk(app_factory, survivor):
    """FORGET from a number that never consented: no case to erase, but the conversation
    (blind index) and the inbound message records go, and so must their bytes."""
    from tests.sms_support import inbound_params, post_signed

    sms_app = _hotline_app(app_factory)
    with sms_app.app_context():
        factories.make_org("ngo", name="Hotline NGO")
        db.session.commit()
        client = sms_app.test_client()
        index = blind_index(survivor["phone"])
        for body in ("hi", "1"):
            assert post_signed(
                client, "/sms/inbound", inbound_params(survivor["phone"], body)
            ).status_code == 200
        if sqlite_path(sms_app):
            assert index.encode() in raw_bytes(sms_app)
        assert post_signed(
            client, "/sms/inbound", inbound_params(survivor["phone"], "FORGET")
        ).status_code == 200
        db.session.expire_all()
        assert tables_holding(index) == []
        if sqlite_path(sms_app):
            org = db.session.scalar(select(Organization.name))
            assert_gone_from_disk(sms_app, [index.encode()], org.encode())
        db.session.remove()


RETENTION_T0 = datetime(2020, 3, 15, 10, 0, tzinfo=UTC)


def _retention_leaves_nothing(app, setup, tables: tuple[str, ...], rule: str) -> None:
    from app.retention import service as retention

    org = factories.make_org(name="Scan Marker Org")
    secrets_ = setup(org)
    db.session.commit()
    if sqlite_path(app):
        before = raw_bytes(app)
        for secret in secrets_:
            assert secret in before, secret[:24]
    else:
        vacuumed_before = vacuum_counts(tables)
    report = retention.run(RETENTION_T0 + timedelta(days=2))
    assert {r.name: r.count for r in report.results}[rule] >= 1
    db.session.expire_all()
    if sqlite_path(app):
        assert_gone_from_disk(app, secrets_, b"Scan Marker Org")
    else:
        after = vacuum_counts(tables)
        for table in tables:
            assert after[table] > vacuumed_before[table], table


def test_retention_of_an_unconsented_conversation_leaves_no_trace(app, survivor):
    def setup(org):
        index = blind_index(survivor["phone"])
        db.session.add(HotlineSession(
            phone_index=index, step="consent", last_message_at=RETENTION_T0,
            created_at=RETENTION_T0, failures=0, menu_page=0, urgent=False,
        ))
        return [index.encode()]

    _retention_leaves_nothing(app, setup, ("hotline_session",), "hotline_unconsented")


def test_retention_of_inbound_records_leaves_no_trace(app, survivor):
    def setup(org):
        index = blind_index(survivor["phone"])
        sid = "SM" + uuid.uuid4().hex
        db.session.add(Message(
            direction="in", audience="survivor", status="received", twilio_sid=sid,
            counterpart_index=index, created_at=RETENTION_T0, final_at=RETENTION_T0,
        ))
        return [index.encode(), sid.encode()]

    _retention_leaves_nothing(app, setup, ("sms_message",), "inbound_messages")


def test_retention_of_outbound_numbers_leaves_no_trace(app, survivor):
    def setup(org):
        index = blind_index(survivor["phone"])
        message = Message(
            direction="out", audience="staff", status="delivered",
            template_key="provider.help", counterpart_index=index, final_at=RETENTION_T0,
            created_at=RETENTION_T0, recipient=survivor["phone"],
        )
        db.session.add(message)
        db.session.flush()
        sealed_number = db.session.execute(
            text("SELECT recipient FROM sms_message WHERE id = :id"), {"id": message.id}
        ).scalar_one()
        return [index.encode(), bytes(sealed_number)]

    _retention_leaves_nothing(app, setup, ("sms_message",), "outbound_messages")


# --- erasure racing a referral (found by `make soak`, DESIGN §8) -------------------------


def _erase_one(case_id: int) -> None:
    erasure.erase_case(db.session.get(Case, case_id), None, reason="survivor_request")


def _erase_in_a_batch(case_id: int) -> None:
    erasure.erase_cases([case_id], None, reason="retention", at=datetime.now(UTC))


def _waiting_for_a_lock(app) -> bool:
    """PostgreSQL: some transaction of this database waits for a lock now."""
    with app.app_context():
        found = db.session.scalar(text(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND a.datname = current_database()"))
        db.session.remove()
    return bool(found)


@pytest.mark.parametrize("erase", [_erase_one, _erase_in_a_batch])
def test_an_erasure_while_a_referral_is_being_sent_for_the_case(app, erase):
    """`make soak` saw 500s: FORGET erased a case (its key row deleted, then the audit lock)
    while a caseworker sent a referral for it (the audit lock, then the key row, checked by
    the referral's foreign key): PostgreSQL found a deadlock and failed both requests.
    Erasure takes the audit lock first, as every path that locks rows does (app.audit.lock):
    the referral is made, then cancelled by the erasure; neither fails."""
    from app.core import audit
    from app.models import Referral, Service
    from app.referrals import service as referrals

    service = factories.make_service(category="shelter", beds_total=3, beds_available=3)
    case = factories.make_case(needs={"shelter": "immediate"})
    release = factories.make_release(case, service.organization)
    ids = SimpleNamespace(case=case.id, service=service.id, release=release.id)
    db.session.commit()
    sender_holds_lock, erasure_waits = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def send() -> None:
        with app.app_context():
            try:
                case = db.session.get(Case, ids.case)
                audit.lock()  # where create_referrals starts: the audit lock, then rows
                sender_holds_lock.set()
                erasure_waits.wait(30)
                referrals.create_referrals(
                    case, [referrals.ReferralRequest(ids.service)], None, idempotency_key=None)
                db.session.commit()
                outcome["send"] = "sent"
            except Exception as exc:  # noqa: BLE001 - reported to the test
                db.session.rollback()
                outcome["send"] = exc
            finally:
                sender_holds_lock.set()
                db.session.remove()

    def erasure() -> None:
        with app.app_context():
            try:
                sender_holds_lock.wait(30)
                erase(ids.case)
                db.session.commit()
                outcome["erase"] = "erased"
            except Exception as exc:  # noqa: BLE001
                db.session.rollback()
                outcome["erase"] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=send), threading.Thread(target=erasure)]
    for thread in threads:
        thread.start()
    sender_holds_lock.wait(30)
    if db.engine.dialect.name == "postgresql":
        for _ in range(600):  # until the erasure waits for a lock the sender holds
            if _waiting_for_a_lock(app):
                break
            threading.Event().wait(0.05)
    erasure_waits.set()
    for thread in threads:
        thread.join(60)
    assert outcome == {"send": "sent", "erase": "erased"}
    db.session.expire_all()
    assert db.session.get(Case, ids.case).status == "erased"
    referral = db.session.scalar(select(Referral).where(Referral.service_id == ids.service))
    assert referral is None or referral.status == "cancelled"
    assert db.session.get(Service, ids.service).beds_available == 3
