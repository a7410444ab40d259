"""Protected fields (DESIGN §1.3, §7): blind index, E.164 normalisation, per-record data keys
and crypto-shredding, master-sealed columns, master key rotation with MultiFernet."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections.abc import Iterator

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import ForeignKey, Integer, LargeBinary, MetaData, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from app.core import crypto
from app.core.crypto import InvalidPhoneNumber, KeyDestroyed, normalize_phone, sealed
from app.core.extensions import db
from app.models import DataKey, User
from tests import factories
from tests.conftest import TEST_ENV


def _expected_index(e164: str) -> str:
    raw = TEST_ENV["HAVEN_INDEX_KEY"]
    key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    return hmac.new(key, e164.encode("ascii"), hashlib.sha256).hexdigest()


# --- blind index ------------------------------------------------------------------------


@pytest.mark.parametrize("e164", ["+14155550123", "+442079460018", "+33612345678", "+4930123456"])
def test_blind_index_is_the_documented_hmac(app, e164):
    value = crypto.blind_index(e164)
    assert value == _expected_index(e164)
    assert value == value.lower() and len(value) == 64
    assert e164.lstrip("+") not in value


def test_blind_index_of_a_typed_number_matches_its_e164_form(app):
    assert crypto.blind_index(normalize_phone("(415) 555-0123")) == _expected_index("+14155550123")
    assert crypto.blind_index("+14155550123") != crypto.blind_index("+14155550124")


def test_blind_index_depends_on_the_index_key(app, app_factory):
    other_key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    other = app_factory(HAVEN_INDEX_KEY=other_key)
    with other.app_context():
        assert crypto.blind_index("+14155550123") != _expected_index("+14155550123")


# --- E.164 normalisation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(415) 555-0123", None, "+14155550123"),  # default region from config (US)
        ("415.555.0123", None, "+14155550123"),
        ("4155550123", None, "+14155550123"),
        ("1 415 555 0123", None, "+14155550123"),
        ("+1 415 555 0123", None, "+14155550123"),
        ("+44 20 7946 0018", None, "+442079460018"),  # +country wins over the default region
        ("+33 6 12 34 56 78", "GB", "+33612345678"),
        ("020 7946 0018", "GB", "+442079460018"),  # national number, explicit region
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("00 44 20 7946 0018", "FR", "+442079460018"),  # international prefix
        ("'+14155550123'", None, "+14155550123"),  # stray quotes (spreadsheet paste)
        ('"415-555-0123"', None, "+14155550123"),
        ("   +1-415-555-0123   ", None, "+14155550123"),
        ("+1 (415) 555-0123", None, "+14155550123"),
        ("４１５５５５０１２３", None, "+14155550123"),  # full-width digits
        ("+٤٤٢٠٧٩٤٦٠٠١٨", None, "+442079460018"),  # Arabic-Indic digits
    ],
)
def test_normalize_phone(app, raw, region, expected):
    assert normalize_phone(raw, region) == expected


def test_default_region_comes_from_config(app, app_factory):
    gb = app_factory(HAVEN_PHONE_REGION="GB")
    with gb.app_context():
        assert normalize_phone("020 7946 0018") == "+442079460018"
    assert normalize_phone("020 7946 0018", "GB") == "+442079460018"
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone("020 7946 0018")  # not a US number


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "''",
        "12345",  # too short
        "555-0123",  # no area code
        "+1415555012345678",  # too long for the country
        "+1 415 555 0123 " + "9" * 20,  # longer than any number
        "call me",
        "415-555-CALL",  # letters would become vanity digits: another person's number
        "4155550I23",  # a typed I for 1
        "+1 415 555 0123 ext 12",  # an extension cannot receive an SMS
        "tel:+14155550123",
        "+999 123 456 789",  # no such country code
        "+-",
        "0000000000",
    ],
)
def test_normalize_phone_refuses(app, raw):
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone(raw)


def test_format_and_mask_phone():
    assert crypto.format_phone("+14155550123") == "+1 415-555-0123"
    masked = crypto.mask_phone("+14155550123")
    assert masked.endswith("23") and "5550" not in masked and len(masked) == 12


# --- per-record data keys and the sealed descriptor -------------------------------------


class _ThrowawayBase(DeclarativeBase):
    metadata = MetaData()


class SealedThing(_ThrowawayBase):
    """A minimal model using ``sealed`` exactly as real models will (own metadata, created
    and dropped by the fixture below, so the application schema is untouched)."""

    __tablename__ = "test_sealed_thing"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    data_key_id: Mapped[int | None] = mapped_column(
        ForeignKey(DataKey.__table__.c.id, ondelete="SET NULL"), nullable=True
    )
    alias_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    data_key: Mapped[DataKey | None] = relationship(DataKey)

    alias = sealed[str]("alias_enc")
    phone = sealed[str]("phone_enc")


@pytest.fixture
def sealed_table(app) -> Iterator[None]:
    SealedThing.metadata.create_all(db.engine)
    try:
        yield
    finally:
        db.session.rollback()
        db.session.execute(SealedThing.__table__.delete())
        db.session.commit()
        db.session.remove()
        SealedThing.metadata.drop_all(db.engine)


def _raw(column: str, thing_id: int) -> bytes:
    value = db.session.execute(
        text(f"SELECT {column} FROM test_sealed_thing WHERE id = :id"), {"id": thing_id}
    ).scalar_one()
    return bytes(value)


def test_sealed_round_trip_with_own_data_key(app, sealed_table):
    thing = SealedThing()
    thing.alias = "Rosa M."
    thing.phone = "+14155550123"
    db.session.add(thing)
    db.session.commit()
    thing_id, key_id = thing.id, thing.data_key_id
    assert key_id is not None
    db.session.expunge_all()

    stored = db.session.get(SealedThing, thing_id)
    assert stored.alias == "Rosa M."
    assert stored.phone == "+14155550123"
    raw_alias = _raw("alias_enc", thing_id)
    assert b"Rosa" not in raw_alias and b"5550123" not in _raw("phone_enc", thing_id)
    # Sealed with the record key, not with the master key directly.
    with pytest.raises(InvalidToken):
        crypto.keyring().multi.decrypt(raw_alias)
    # The stored data key is itself wrapped: the raw row does not hold a usable key.
    wrapped = bytes(db.session.get(DataKey, key_id).wrapped)
    with pytest.raises(ValueError, match="Fernet key must be"):
        Fernet(wrapped)
    record_key = Fernet(Fernet(TEST_ENV["HAVEN_DATA_KEYS"].encode()).decrypt(wrapped))
    assert record_key.decrypt(raw_alias) == b"Rosa M."


def test_each_record_has_its_own_key(app, sealed_table):
    one, two = SealedThing(), SealedThing()
    one.alias = two.alias = "same alias"
    db.session.add_all([one, two])
    db.session.commit()
    assert one.data_key_id != two.data_key_id
    with pytest.raises(InvalidToken):
        crypto.unwrap(two.data_key).decrypt(_raw("alias_enc", one.id))


def test_setting_none_clears_the_field(app, sealed_table):
    thing = SealedThing()
    thing.alias = "x-alias"
    thing.alias = None
    db.session.add(thing)
    db.session.commit()
    assert thing.alias is None and thing.alias_enc is None


def test_deleting_the_data_key_shreds_the_record(app, sealed_table):
    thing = SealedThing()
    thing.alias = "Rosa M."
    db.session.add(thing)
    db.session.commit()
    thing_id, key_id = thing.id, thing.data_key_id
    ciphertext = _raw("alias_enc", thing_id)

    db.session.execute(DataKey.__table__.delete().where(DataKey.id == key_id))
    db.session.commit()
    db.session.expunge_all()

    stored = db.session.get(SealedThing, thing_id)
    assert stored.alias_enc is not None  # the ciphertext survives (backups, free pages) ...
    with pytest.raises(KeyDestroyed):
        stored.alias  # noqa: B018 - ... but it can no longer be read
    with pytest.raises(KeyDestroyed):
        crypto.unwrap(None)
    # No configured key opens the surviving ciphertext.
    with pytest.raises(InvalidToken):
        crypto.keyring().multi.decrypt(ciphertext)


def test_new_data_key_and_unwrap(app):
    key = crypto.new_data_key()
    assert key.master_fp == crypto.keyring().current_fp
    assert key.master_fp == crypto.fingerprint(TEST_ENV["HAVEN_DATA_KEYS"].encode())
    db.session.add(key)
    db.session.commit()
    token = crypto.unwrap(key).encrypt(b"secret note")
    db.session.expunge_all()
    again = db.session.get(DataKey, key.id)
    assert crypto.unwrap(again).decrypt(token) == b"secret note"
    again.wrapped = None
    with pytest.raises(KeyDestroyed):
        crypto.unwrap(again)


def test_unwrap_with_a_foreign_master_key_fails_loudly(app, app_factory):
    key = crypto.new_data_key()
    db.session.add(key)
    db.session.commit()
    key_id = key.id
    db.session.close()  # end our transaction: on SQLite every transaction holds the write lock
    stranger = app_factory(HAVEN_DATA_KEYS=Fernet.generate_key().decode())
    with stranger.app_context(), Session(db.engine) as session:
        row = session.get(DataKey, key_id)
        with pytest.raises(crypto.CryptoError):
            crypto.unwrap(row)


# --- master-sealed columns (TOTP secrets) ------------------------------------------------


def _raw_totp(user_id: int) -> bytes:
    value = db.session.execute(
        text("SELECT totp_secret FROM user_account WHERE id = :id"), {"id": user_id}
    ).scalar_one()
    return bytes(value)


def test_totp_secret_is_not_stored_in_clear(app):
    user = factories.make_user("supervisor")
    secret = user.totp_secret
    db.session.commit()
    raw = _raw_totp(user.id)
    assert secret.encode() not in raw
    assert Fernet(TEST_ENV["HAVEN_DATA_KEYS"].encode()).decrypt(raw) == secret.encode()
    db.session.expunge_all()
    assert db.session.get(User, user.id).totp_secret == secret


def test_null_totp_secret_stays_null(app):
    user = factories.make_user("caseworker", totp=False)
    db.session.commit()
    assert (
        db.session.execute(
            text("SELECT totp_secret FROM user_account WHERE id = :id"), {"id": user.id}
        ).scalar_one()
        is None
    )


# --- MultiFernet rotation ----------------------------------------------------------------


def test_data_sealed_under_an_old_master_key_reads_after_a_new_key_is_prepended(
    app, app_factory, sealed_table
):
    old_key = TEST_ENV["HAVEN_DATA_KEYS"]
    user = factories.make_user("admin")
    secret = user.totp_secret
    thing = SealedThing()
    thing.alias = "Amina"
    db.session.add(thing)
    db.session.commit()
    user_id, thing_id = user.id, thing.id
    db.session.close()  # end our transaction: on SQLite every transaction holds the write lock

    new_key = Fernet.generate_key().decode()
    rotated = app_factory(HAVEN_DATA_KEYS=f"{new_key},{old_key}")
    with rotated.app_context():
        assert crypto.keyring().current_fp == crypto.fingerprint(new_key.encode())
        assert db.session.get(User, user_id).totp_secret == secret
        assert db.session.get(SealedThing, thing_id).alias == "Amina"
        # New records are wrapped under the newest key.
        fresh = crypto.new_data_key()
        assert fresh.master_fp == crypto.fingerprint(new_key.encode())
        assert Fernet(new_key.encode()).decrypt(bytes(fresh.wrapped))
        db.session.rollback()
        db.session.remove()

    # Without the old key nothing sealed under it opens (rotation must re-wrap first).
    only_new = app_factory(HAVEN_DATA_KEYS=new_key)
    with only_new.app_context():
        with pytest.raises(InvalidToken):
            db.session.get(User, user_id).totp_secret  # noqa: B018
        db.session.rollback()
        with pytest.raises(crypto.CryptoError):
            db.session.get(SealedThing, thing_id).alias  # noqa: B018
        db.session.rollback()
        db.session.remove()


def test_rotate_tokens_reseals_under_the_newest_key(app, app_factory):
    old_key = TEST_ENV["HAVEN_DATA_KEYS"]
    token = crypto.keyring().multi.encrypt(b"payload")
    new_key = Fernet.generate_key().decode()
    with app_factory(HAVEN_DATA_KEYS=f"{new_key},{old_key}").app_context():
        (rotated,) = crypto.rotate_tokens([token])
    assert Fernet(new_key.encode()).decrypt(rotated) == b"payload"
    with pytest.raises(InvalidToken):
        Fernet(old_key.encode()).decrypt(rotated)
