"""Tamper-evident audit trail (DESIGN §1.6, issue 2 §6): the hash chain verifies, every kind
of tampering is caught by `flask audit verify` at the first broken event, no PII is ever
recorded, and concurrent writers never fork the chain."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, select, text, update

from app.core import audit
from app.core.extensions import db
from app.models import AuditEvent, AuditHead, LoginAttempt
from tests import factories

# Behaviour that depends on the database, run on both: the chain head upsert, its row lock and
# concurrent writers.
pytestmark = pytest.mark.both_databases

USERNAME = "zelda.quartermain"
NEW_PASSWORD = "violet-harbor-seven-22"
UNKNOWN_USERNAME = "wilhelmina.x"
WRONG_PASSWORD = "quokka-wrong-guess-31"


def _verify(app):
    result = app.test_cli_runner().invoke(args=["audit", "verify"])
    db.session.rollback()
    return result


def _events(n: int = 6) -> None:
    """A chain of ``n`` events: a real user creation (user.create) and then other actions."""
    factories.make_user("caseworker")
    for i in range(n - 1):
        audit.record("case.view" if i % 2 else "referral.send", "case", i + 1, actor_user_id=7)
    db.session.commit()


def _seqs() -> list[int]:
    return list(db.session.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)))


def test_chain_verifies_after_real_events(app, client, auth):
    user = factories.make_user("caseworker", username=USERNAME)
    admin = factories.make_user("admin")
    db.session.commit()
    assert auth.login(user).status_code == 302
    auth.logout()
    auth.login(admin)
    client.post("/auth/login", data={"username": USERNAME, "password": WRONG_PASSWORD})
    actions = list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))
    assert actions[:2] == ["user.create", "user.create"]
    assert {"auth.login", "auth.logout"} <= set(actions)
    assert audit.verify_chain().ok
    result = _verify(app)
    assert result.exit_code == 0, result.output
    assert f"Audit chain intact: {len(actions)} events verified." in result.output
    # Links: each event names its predecessor's hash, starting from the genesis value.
    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    assert events[0].prev_hash == audit.GENESIS
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    head = db.session.get(AuditHead, 1)
    assert (head.seq, head.last_hash) == (events[-1].seq, events[-1].hash)


def test_empty_chain_verifies(app):
    result = _verify(app)
    assert result.exit_code == 0, result.output
    assert "0 events verified" in result.output


def _tamper_action(conn_sql) -> int:
    conn_sql("UPDATE audit_event SET action = 'auth.logout' WHERE seq = 3")
    return 3


def _delete_middle(conn_sql) -> int:
    conn_sql("DELETE FROM audit_event WHERE seq = 4")
    return 4


def _delete_last(conn_sql) -> int:
    conn_sql("DELETE FROM audit_event WHERE seq = 6")
    return 6


def _delete_last_two_and_rewind_head(conn_sql) -> int:
    # A careful attacker also rewinds the head row to the new tip's seq (but cannot forge the
    # hash without recomputing it, and cannot recompute without being caught by the link).
    conn_sql("DELETE FROM audit_event WHERE seq >= 5")
    conn_sql("UPDATE audit_head SET seq = 4")
    return 5


def _swap_seq(conn_sql) -> int:
    conn_sql("UPDATE audit_event SET seq = -2 WHERE seq = 2")
    conn_sql("UPDATE audit_event SET seq = 2 WHERE seq = 3")
    conn_sql("UPDATE audit_event SET seq = 3 WHERE seq = -2")
    return 2


def _change_prev_hash(conn_sql) -> int:
    conn_sql("UPDATE audit_event SET prev_hash = '" + "a" * 64 + "' WHERE seq = 5")
    return 5


def _change_actor(conn_sql) -> int:
    conn_sql("UPDATE audit_event SET actor_user_id = 999 WHERE seq = 2")
    return 2


def _change_object_id(conn_sql) -> int:
    conn_sql("UPDATE audit_event SET object_id = '1' WHERE seq = 6")
    return 6


def _backdate(conn_sql) -> int:
    # Through the column type, so the stored form is exactly what the app would write.
    conn_sql(
        update(AuditEvent.__table__)
        .where(AuditEvent.__table__.c.seq == 2)
        .values(at=datetime(2020, 1, 1, tzinfo=UTC))
    )
    return 2


def _rehash_edited_row(conn_sql) -> int:
    # Edit a row and recompute its own hash properly: the next row's link now breaks.
    conn_sql("UPDATE audit_event SET action = 'auth.logout' WHERE seq = 3")
    row = db.session.scalars(select(AuditEvent).where(AuditEvent.seq == 3)).one()
    conn_sql(f"UPDATE audit_event SET hash = '{audit.compute_hash(row)}' WHERE seq = 3")
    return 4


def _insert_forged_row(conn_sql) -> int:
    conn_sql("UPDATE audit_event SET seq = seq + 100 WHERE seq >= 4")
    conn_sql("UPDATE audit_event SET seq = seq - 99 WHERE seq >= 100")
    # seq 4 is now free and 5..7 hold the old 4..6: a forged row at 4 breaks the link.
    conn_sql(
        "INSERT INTO audit_event (seq, at, action, prev_hash, hash) VALUES "
        "(4, '2026-01-01 00:00:00+00:00', 'auth.login', '" + "0" * 64 + "', '" + "1" * 64 + "')"
    )
    return 4


def _insert_before_the_chain(conn_sql) -> int:
    # A forged event placed before the chain's first seq, where a walk from seq 1 would
    # never look, but the admin audit log would show it.
    conn_sql(
        "INSERT INTO audit_event (seq, at, action, prev_hash, hash) VALUES "
        "(0, '2026-01-01 00:00:00+00:00', 'auth.login', '" + "0" * 64 + "', '" + "1" * 64 + "')"
    )
    return 0


@pytest.mark.parametrize(
    "tamper",
    [
        _tamper_action,
        _delete_middle,
        _delete_last,
        _delete_last_two_and_rewind_head,
        _swap_seq,
        _change_prev_hash,
        _change_actor,
        _change_object_id,
        _backdate,
        _rehash_edited_row,
        _insert_forged_row,
        _insert_before_the_chain,
    ],
)
def test_tampering_is_caught_at_the_first_broken_event(app, tamper):
    _events(6)
    assert _seqs() == [1, 2, 3, 4, 5, 6]
    assert _verify(app).exit_code == 0

    def sql(statement: Any) -> None:
        db.session.execute(text(statement) if isinstance(statement, str) else statement)

    broken = tamper(sql)
    db.session.commit()
    result = _verify(app)
    assert result.exit_code == 1, result.output
    assert f"Audit chain BROKEN at event #{broken}:" in result.stderr
    assert not audit.verify_chain().ok


def test_reordering_ids_is_caught(app):
    """Same seqs and hashes, but the rows' insertion order (ids) swapped."""
    _events(4)
    ids = dict(db.session.execute(select(AuditEvent.seq, AuditEvent.id)).all())
    db.session.execute(text("UPDATE audit_event SET id = -1 WHERE id = :i"), {"i": ids[2]})
    db.session.execute(
        text("UPDATE audit_event SET id = :a WHERE id = :b"), {"a": ids[2], "b": ids[3]}
    )
    db.session.execute(text("UPDATE audit_event SET id = :b WHERE id = -1"), {"b": ids[3]})
    db.session.commit()
    result = _verify(app)
    assert result.exit_code == 1
    assert "Audit chain BROKEN at event #3:" in result.stderr


# --- no PII ----------------------------------------------------------------------------


def _all_text(table: str) -> str:
    rows = db.session.execute(text(f"SELECT * FROM {table}")).all()
    return "\n".join(" ".join("" if v is None else str(v) for v in row) for row in rows)


def test_audit_rows_hold_no_pii(app, client, auth):
    org = factories.make_org("ngo", name="Secret Sisters Shelter Network")
    user = factories.make_user("caseworker", organization=org, username=USERNAME)
    db.session.commit()
    # failed logins (known and unknown user), a login, a password change, a logout
    client.post("/auth/login", data={"username": USERNAME, "password": WRONG_PASSWORD})
    client.post("/auth/login", data={"username": UNKNOWN_USERNAME, "password": WRONG_PASSWORD})
    assert auth.login(user).status_code == 302
    response = client.post(
        "/auth/password",
        data={"current": factories.PASSWORD, "new": NEW_PASSWORD, "confirm": NEW_PASSWORD},
    )
    assert response.status_code == 302
    auth.logout()
    for _ in range(6):  # up to the lockout
        client.post("/auth/login", data={"username": USERNAME, "password": WRONG_PASSWORD})

    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {
        "user.create",
        "auth.login_failed",
        "auth.login",
        "user.password_change",
        "auth.logout",
        "auth.lockout",
    } <= actions
    forbidden = [
        USERNAME,
        UNKNOWN_USERNAME,
        "zelda",
        factories.PASSWORD,
        NEW_PASSWORD,
        WRONG_PASSWORD,
        "Secret Sisters",
        "127.0.0.1",
    ]
    for table in ("audit_event", "audit_head", "login_attempt"):
        dump = _all_text(table).lower()
        for needle in forbidden:
            assert needle.lower() not in dump, (table, needle)
    assert db.session.scalar(select(func.count(LoginAttempt.id))) >= 9
    assert audit.verify_chain().ok


@pytest.mark.parametrize(
    ("object_type", "object_id"),
    [
        ("case", "Maria Lopez"),
        ("case", "+14155550123"),
        ("case", "maria@example.org"),
        ("case", "a b"),
        ("case", "x" * 65),
        ("case", ""),
        ("case", "K7Q-4MX\n"),
        ("case", "Zoë"),
        ("case", "1; DROP TABLE audit_event"),
        ("Case Name", 1),
        ("case-file", 1),
    ],
)
def test_record_refuses_free_text(app, object_type, object_id):
    with pytest.raises(audit.AuditError):
        audit.record("case.view", object_type, object_id)
    db.session.commit()
    assert db.session.scalar(select(func.count(AuditEvent.id))) == 0


@pytest.mark.parametrize("action", ["", "Case.View", "case view", "case.view;", "x" * 70, "1case"])
def test_record_refuses_bad_action_names(app, action):
    with pytest.raises(audit.AuditError):
        audit.record(action, "case", 1)


def test_record_accepts_ids_and_codes(app):
    first = audit.record("case.view", "case", 42)
    second = audit.record("referral.send", "referral", "K7Q-4MX")
    db.session.commit()
    assert (first.object_id, second.object_id) == ("42", "K7Q-4MX")
    assert (first.seq, second.seq) == (1, 2) and second.prev_hash == first.hash
    assert audit.verify_chain().ok


def test_record_never_commits(app):
    audit.record("case.view", "case", 1)
    db.session.rollback()
    assert db.session.scalar(select(func.count(AuditEvent.id))) == 0
    assert audit.verify_chain().ok


# --- concurrency -----------------------------------------------------------------------

THREADS, EACH = 4, 10


@pytest.mark.parametrize("warm", [True, False], ids=["existing-head", "first-event"])
def test_a_batch_writes_the_same_chain_in_order(app, warm):
    if warm:
        _events(2)
    before = _seqs()
    audit.record("case.view", "case", 1, actor_user_id=3)
    with audit.batched():
        audit.record("case.create", "case", 2)
        with audit.batched():  # nested: joins the outer batch
            audit.record("consent.grant", "case", 2)
        assert _seqs() == [*before, len(before) + 1]  # nothing of the batch written yet
        audit.record("consent.grant", "case", 2)
    audit.record("case.view", "case", 2, actor_user_id=3)
    db.session.commit()
    new = db.session.scalars(
        select(AuditEvent).where(AuditEvent.seq > len(before)).order_by(AuditEvent.seq)
    ).all()
    assert [(e.seq, e.action) for e in new] == [
        (len(before) + 1, "case.view"), (len(before) + 2, "case.create"),
        (len(before) + 3, "consent.grant"), (len(before) + 4, "consent.grant"),
        (len(before) + 5, "case.view"),
    ]
    assert audit.verify_chain().ok
    assert _verify(app).exit_code == 0


def test_a_batch_that_raises_writes_nothing(app):
    _events(2)
    head = db.session.get(AuditHead, 1)
    tip = (head.seq, head.last_hash)

    def fail_half_way() -> None:
        with audit.batched():
            audit.record("case.create", "case", 9)
            raise RuntimeError("half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        fail_half_way()
    assert audit._BATCH not in db.session.info  # the next record is written at once again
    db.session.commit()
    assert _seqs() == [1, 2]
    db.session.expire_all()
    head = db.session.get(AuditHead, 1)
    assert (head.seq, head.last_hash) == tip
    audit.record("case.view", "case", 9, actor_user_id=3)
    db.session.commit()
    assert _seqs() == [1, 2, 3] and audit.verify_chain().ok


def test_bulk_writers_refuse_to_run_inside_a_batch(app):
    # They write at once, so inside a batch they would jump ahead of its pending events.
    _events(2)
    with audit.batched():
        audit.record("case.create", "case", 9)
        with pytest.raises(audit.AuditError):
            audit.record_many("case.erase", "case", [1, 2])
        with pytest.raises(audit.AuditError):
            audit.prune_through(1)
    db.session.commit()
    assert _seqs() == [1, 2, 3] and audit.verify_chain().ok


@pytest.mark.parametrize("warm", [True, False], ids=["existing-head", "first-event"])
def test_concurrent_appends_never_fork_the_chain(app, warm):
    """Several writers, each with its own app context, session and connection."""
    if warm:
        audit.record("test.start")
    db.session.commit()
    db.session.close()
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with app.app_context():
                barrier.wait(timeout=10)
                for i in range(EACH):
                    audit.record("test.concurrent", "user", n * 100 + i)
                    db.session.commit()
                db.session.remove()
        except BaseException as exc:  # reported below  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    expected = THREADS * EACH + (1 if warm else 0)
    assert _seqs() == list(range(1, expected + 1))
    result = audit.verify_chain()
    assert result.ok, result
    assert result.checked == expected


# --- anchors kept outside the database -------------------------------------------------------


def _verify_with(app, *anchors: str):
    args = ["audit", "verify"] + [a for anchor in anchors for a in ("--anchor", anchor)]
    result = app.test_cli_runner().invoke(args=args)
    db.session.rollback()
    return result


def _printed_tip(output: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith("Tip: ")]
    return line.split()[1]


def _rewrite_from(seq: int) -> None:
    """What someone with write access to the database can do: edit an event, then recompute
    every later link and hash and move the head's tip. The chain is consistent again."""
    db.session.execute(
        update(AuditEvent).where(AuditEvent.seq == seq).values(action="auth.logout")
    )
    db.session.expire_all()
    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq)).all()
    prev = audit.GENESIS
    for event in events:
        if event.seq >= seq:
            event.prev_hash = prev
            event.hash = audit.compute_hash(event)
        prev = event.hash
    db.session.get(AuditHead, 1).last_hash = prev
    db.session.commit()


def test_a_kept_anchor_catches_a_chain_rewritten_as_a_whole(app):
    _events(6)
    first = _verify(app)
    assert first.exit_code == 0, first.output
    anchor = _printed_tip(first.output)
    seq, digest = audit.tip()
    assert anchor == f"{seq}:{digest}" and seq == 6
    early = "2:" + db.session.scalar(select(AuditEvent.hash).where(AuditEvent.seq == 2))
    # The chain grows: the anchors still match.
    audit.record("case.view", "case", 9, actor_user_id=7)
    db.session.commit()
    grown = _verify_with(app, anchor, early)
    assert grown.exit_code == 0, grown.output
    assert "Anchors matched: 2." in grown.output and _printed_tip(grown.output).startswith("7:")

    _rewrite_from(3)
    assert audit.verify_chain().ok  # the chain alone cannot tell
    caught = _verify_with(app, early, anchor)
    assert caught.exit_code == 1, caught.output
    assert (
        "Audit anchor MISMATCH: event #6 has another hash than the anchor: the chain was "
        "rewritten." in caught.stderr
    )
    assert "#2" not in caught.stderr  # events before the rewrite still match their anchor
    assert "Audit chain intact" not in caught.output


@pytest.mark.parametrize(
    ("anchor", "code", "expected"),
    [
        ("6", 2, "write it as SEQ:HASH"),
        ("six:" + "a" * 64, 2, "write it as SEQ:HASH"),
        ("6:" + "a" * 63, 2, "write it as SEQ:HASH"),
        ("6:" + "g" * 64, 2, "write it as SEQ:HASH"),
        ("9" * 30 + ":" + "a" * 64, 2, "write it as SEQ:HASH"),
        ("\u0666:" + "a" * 64, 2, "write it as SEQ:HASH"),
        ("99:" + "a" * 64, 1, "event #99 does not exist"),
        ("4:" + "a" * 64, 1, "event #4 has another hash than the anchor"),
    ],
)
def test_bad_or_unknown_anchors_get_a_clear_answer(app, anchor, code, expected):
    _events(6)
    result = _verify_with(app, anchor)
    assert result.exit_code == code, result.output
    assert expected in result.output + result.stderr
    assert "Traceback" not in result.output + result.stderr


def test_anchors_at_and_before_a_pruned_checkpoint(app):
    _events(6)
    hashes = dict(db.session.execute(select(AuditEvent.seq, AuditEvent.hash)).all())
    audit.prune_through(3)
    audit.record("audit.prune", "audit", 3)
    db.session.commit()
    # The checkpoint (#3) keeps its hash in the head; #2 is gone and cannot be checked.
    assert _verify_with(app, f"3:{hashes[3]}", f"5:{hashes[5]}").exit_code == 0
    pruned = _verify_with(app, f"2:{hashes[2]}")
    assert pruned.exit_code == 1
    assert "event #2 was pruned by retention (the chain now starts at #3)" in pruned.stderr
