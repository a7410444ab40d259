"""`flask keys rotate` (DESIGN §1.3, issue 2 §5): re-wraps every record key and re-seals
every staff secret under the newest master key, in batches, resumably, audited."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import func, select, text

from app.core import audit, crypto
from app.core.extensions import db
from app.models import AuditEvent, DataKey, Service, User
from tests import factories
from tests.conftest import TEST_ENV

# Behaviour that depends on the database, run on both: bulk re-wrapping of keys in batches,
# resumable.
pytestmark = pytest.mark.both_databases

KEY_A = TEST_ENV["HAVEN_DATA_KEYS"]
FP_A = crypto.fingerprint(KEY_A.encode())


@pytest.fixture
def key_b() -> str:
    return Fernet.generate_key().decode()


PHONES = ("+14155550101", "+14155550102", "+14155550103")


def _seed(count: int = 5) -> tuple[dict[int, bytes], dict[int, bytes], int, str]:
    """``count`` record keys under key A, each sealing a token; a user with a TOTP secret;
    three directory services with master-sealed intake phones.
    Returns {key id: token}, {key id: plaintext record key}, user id, TOTP secret."""
    tokens: dict[int, bytes] = {}
    plain: dict[int, bytes] = {}
    keys = [crypto.new_data_key() for _ in range(count)]
    db.session.add_all(keys)
    user = factories.make_user("supervisor")
    for phone in PHONES:
        factories.make_service(intake_phone=phone)
    db.session.commit()
    for key in keys:
        assert key.master_fp == FP_A
        tokens[key.id] = crypto.unwrap(key).encrypt(f"record {key.id}".encode())
        plain[key.id] = Fernet(KEY_A.encode()).decrypt(bytes(key.wrapped))
    user_id, secret = user.id, user.totp_secret
    # End our transaction: on SQLite every transaction takes the write lock.
    db.session.close()
    return tokens, plain, user_id, secret


def _rotate(app, *args: str):
    """Run `flask keys rotate` in ``app``'s own context. (The test runner invokes ``app.cli``
    directly, which does not push a context: without this it would run in the outer one.)"""
    with app.app_context():
        result = app.test_cli_runner().invoke(args=["keys", "rotate", *args])
        db.session.remove()
    return result


def _fingerprints() -> dict[int, str]:
    rows = db.session.execute(select(DataKey.id, DataKey.master_fp)).all()
    db.session.commit()
    return dict(rows)


def _assert_everything_reads(tokens: dict[int, bytes], user_id: int, secret: str) -> None:
    for key in db.session.scalars(select(DataKey)):
        assert crypto.unwrap(key).decrypt(tokens[key.id]) == f"record {key.id}".encode()
    assert db.session.get(User, user_id).totp_secret == secret
    phones = db.session.scalars(select(Service.intake_phone).order_by(Service.id)).all()
    assert tuple(phones) == PHONES
    db.session.rollback()


def _raw_totp(user_id: int) -> bytes:
    return bytes(
        db.session.execute(
            text("SELECT totp_secret FROM user_account WHERE id = :id"), {"id": user_id}
        ).scalar_one()
    )


def test_rotate_rewraps_every_key_under_the_newest_master_key(app, app_factory, key_b):
    tokens, plain, user_id, secret = _seed(5)
    fp_b = crypto.fingerprint(key_b.encode())

    rotating = app_factory(HAVEN_DATA_KEYS=f"{key_b},{KEY_A}")
    result = _rotate(rotating, "--batch", "2")
    assert result.exit_code == 0, result.output
    assert "re-wrapped 2 record keys so far" in result.output
    assert "re-wrapped 4 record keys so far" in result.output
    assert "re-sealed 1 values of user_account.totp_secret" in result.output
    assert "re-sealed 3 values of service.intake_phone" in result.output
    assert "Done: 5 record keys re-wrapped, 4 master-sealed values re-sealed" in result.output
    # Every master-sealed column of every model is covered, including ones added later.
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if isinstance(column.type, crypto.MasterEncrypted):
                assert f"values of {table.name}.{column.name}" in result.output

    assert set(_fingerprints().values()) == {fp_b}
    for key in db.session.scalars(select(DataKey)):
        wrapped = bytes(key.wrapped)
        # Same record key inside, now wrapped by B and no longer by A.
        assert Fernet(key_b.encode()).decrypt(wrapped) == plain[key.id]
        with pytest.raises(InvalidToken):
            Fernet(KEY_A.encode()).decrypt(wrapped)
    raw = _raw_totp(user_id)
    assert Fernet(key_b.encode()).decrypt(raw) == secret.encode()
    with pytest.raises(InvalidToken):
        Fernet(KEY_A.encode()).decrypt(raw)
    db.session.close()

    # Key A removed from the environment: everything still reads.
    only_b = app_factory(HAVEN_DATA_KEYS=key_b)
    with only_b.app_context():
        _assert_everything_reads(tokens, user_id, secret)
        events = db.session.scalars(
            select(AuditEvent).where(AuditEvent.action == "keys.rotate")
        ).all()
        assert len(events) == 1
        assert events[0].actor_user_id is None and events[0].object_id is None
        assert audit.verify_chain().ok
        db.session.remove()


def test_rotate_is_resumable_after_an_interruption(app, app_factory, key_b, monkeypatch):
    tokens, _, user_id, secret = _seed(5)
    fp_b = crypto.fingerprint(key_b.encode())
    rotating = app_factory(HAVEN_DATA_KEYS=f"{key_b},{KEY_A}")

    commits = {"n": 0}
    real_commit = type(db.session).commit

    def commit_then_power_cut(self):  # the first batch commits, then the process dies
        commits["n"] += 1
        if commits["n"] == 2:
            raise RuntimeError("power cut")
        return real_commit(self)

    monkeypatch.setattr(type(db.session), "commit", commit_then_power_cut)
    result = _rotate(rotating, "--batch", "2")
    monkeypatch.undo()
    assert isinstance(result.exception, RuntimeError)

    fingerprints = _fingerprints()
    assert sorted(fingerprints.values()) == sorted([fp_b] * 2 + [FP_A] * 3)
    # The first batch is the lowest ids (ordered, so reruns make progress).
    assert [fingerprints[i] for i in sorted(fingerprints)][:2] == [fp_b, fp_b]
    assert db.session.scalar(select(func.count()).where(AuditEvent.action == "keys.rotate")) == 0
    db.session.close()

    # Half-way, both keys are configured and everything still reads.
    with rotating.app_context():
        _assert_everything_reads(tokens, user_id, secret)
        db.session.remove()

    rerun = _rotate(rotating, "--batch", "2")
    assert rerun.exit_code == 0, rerun.output
    assert "Done: 3 record keys re-wrapped, 4 master-sealed values re-sealed" in rerun.output
    assert set(_fingerprints().values()) == {fp_b}
    db.session.close()

    with app_factory(HAVEN_DATA_KEYS=key_b).app_context():
        _assert_everything_reads(tokens, user_id, secret)
        assert audit.verify_chain().ok
        db.session.remove()


def test_rotate_twice_is_a_no_op_the_second_time(app, app_factory, key_b):
    _seed(3)
    rotating = app_factory(HAVEN_DATA_KEYS=f"{key_b},{KEY_A}")
    assert _rotate(rotating).exit_code == 0
    before = {row.id: bytes(row.wrapped) for row in db.session.scalars(select(DataKey))}
    db.session.close()
    second = _rotate(rotating)
    assert second.exit_code == 0, second.output
    assert "Done: 0 record keys re-wrapped, 0 master-sealed values re-sealed" in second.output
    after = {row.id: bytes(row.wrapped) for row in db.session.scalars(select(DataKey))}
    assert after == before
    db.session.close()


def test_rotate_without_the_old_key_fails_and_changes_nothing(app, app_factory, key_b):
    _seed(3)
    before = {row.id: bytes(row.wrapped) for row in db.session.scalars(select(DataKey))}
    db.session.close()
    result = _rotate(app_factory(HAVEN_DATA_KEYS=key_b))
    assert result.exit_code == 1
    assert "cannot be unwrapped" in result.output and "old key" in result.output
    assert key_b not in result.output and KEY_A not in result.output
    after = {row.id: bytes(row.wrapped) for row in db.session.scalars(select(DataKey))}
    assert after == before
    assert set(_fingerprints().values()) == {FP_A}
    db.session.close()
