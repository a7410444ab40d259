"""Protection of identifying data at rest (DESIGN §1.3, §7).

* ``KeyRing``: the master keys (``HAVEN_DATA_KEYS``, newest first, a ``MultiFernet``) and
  the blind-index key (``HAVEN_INDEX_KEY``), bound to the Flask app.
* ``MasterEncrypted``: a column type sealed directly with the master keys, for staff data
  such as TOTP secrets.
* Per-record data keys (``DataKey`` rows) wrapped by the master keys, and the ``sealed``
  descriptor that encrypts a model's field with its own record key. Deleting the key
  (crypto-shredding) leaves the ciphertext unreadable wherever copies of it survive.
* ``blind_index``: HMAC-SHA256 of an E.164 number, the only plaintext-free form of a phone
  number that may be stored or compared.
* ``normalize_phone``: E.164 normalisation with ``phonenumbers``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

import phonenumbers
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import Flask, current_app
from sqlalchemy import LargeBinary
from sqlalchemy.types import TypeDecorator

if TYPE_CHECKING:
    from app.models.keys import DataKey


class CryptoError(Exception):
    """Base class for the errors of this module."""


class KeyDestroyed(CryptoError):
    """The record's data key was erased: its fields are gone for good."""


class InvalidPhoneNumber(ValueError):
    """The text is not a phone number we can normalise to E.164."""


def fingerprint(key: bytes) -> str:
    """A short, non-secret identifier for a master key (first 16 hex of its SHA-256)."""
    return hashlib.sha256(key).hexdigest()[:16]


@dataclass(frozen=True)
class KeyRing:
    master_keys: tuple[bytes, ...]
    index_key: bytes

    @classmethod
    def from_config(cls, data_keys: str, index_key: str) -> KeyRing:
        keys = tuple(k.strip().encode() for k in data_keys.split(",") if k.strip())
        padded = index_key.encode() + b"=" * (-len(index_key) % 4)
        return cls(master_keys=keys, index_key=base64.urlsafe_b64decode(padded))

    @property
    def multi(self) -> MultiFernet:
        return MultiFernet([Fernet(k) for k in self.master_keys])

    @property
    def current_fp(self) -> str:
        return fingerprint(self.master_keys[0])

    def blind_index(self, e164: str) -> str:
        return hmac.new(self.index_key, e164.encode(), hashlib.sha256).hexdigest()

    def keyed_hash(self, purpose: str, value: str) -> str:
        """HMAC for non-phone lookups (login throttling keys), domain-separated."""
        message = purpose.encode() + b"\x00" + value.encode("utf-8", "surrogatepass")
        return hmac.new(self.index_key, message, hashlib.sha256).hexdigest()


def init_app(app: Flask) -> None:
    app.extensions["haven_keys"] = KeyRing.from_config(
        app.config["HAVEN_DATA_KEYS"], app.config["HAVEN_INDEX_KEY"]
    )


def keyring() -> KeyRing:
    ring: KeyRing = current_app.extensions["haven_keys"]
    return ring


def blind_index(e164: str) -> str:
    """DESIGN §7: lowercase hex HMAC-SHA256, key = b64url-decoded HAVEN_INDEX_KEY,
    message = the E.164 number."""
    return keyring().blind_index(e164)


def normalize_phone(raw: str, region: str | None = None) -> str:
    """Return the E.164 form of ``raw`` or raise ``InvalidPhoneNumber``."""
    text = (raw or "").strip().strip("\"'").strip()
    if not text or len(text) > 32:
        raise InvalidPhoneNumber("empty or too long")
    if any(ch.isalpha() for ch in text):
        # phonenumbers reads letters as vanity digits ("555-CALL", or an "O" typed for "0")
        # and drops "ext ..." silently: either way a message could reach someone else.
        raise InvalidPhoneNumber("letters in number")
    default_region = region or current_app.config.get("HAVEN_PHONE_REGION", "US")
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidPhoneNumber(str(exc)) from exc
    if not phonenumbers.is_valid_number(parsed):
        raise InvalidPhoneNumber("not a valid number")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def format_phone(e164: str) -> str:
    """International display form, e.g. ``+1 415-555-0123``."""
    parsed = phonenumbers.parse(e164, None)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def mask_phone(e164: str) -> str:
    """For operator-facing messages: keep only the country code and last two digits."""
    if len(e164) < 5:
        return "***"
    return e164[:2] + "*" * (len(e164) - 4) + e164[-2:]


class MasterEncrypted(TypeDecorator[str]):
    """A text column sealed with the master MultiFernet of the current app."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: object) -> bytes | None:  # noqa: ARG002 - SQLAlchemy's TypeDecorator signature
        if value is None:
            return None
        return keyring().multi.encrypt(value.encode())

    def process_result_value(self, value: bytes | None, dialect: object) -> str | None:  # noqa: ARG002 - SQLAlchemy's TypeDecorator signature
        if value is None:
            return None
        return keyring().multi.decrypt(bytes(value)).decode()


# --- per-record data keys -------------------------------------------------------------


def new_data_key() -> DataKey:
    """A fresh random record key, wrapped under the newest master key (not yet added)."""
    from app.models.keys import DataKey  # noqa: PLC0415 - app.models imports this module

    ring = keyring()
    return DataKey(wrapped=ring.multi.encrypt(Fernet.generate_key()), master_fp=ring.current_fp)


def unwrap(data_key: DataKey | None) -> Fernet:
    if data_key is None or data_key.wrapped is None:
        raise KeyDestroyed("record key erased")
    try:
        return Fernet(keyring().multi.decrypt(bytes(data_key.wrapped)))
    except InvalidToken as exc:
        raise CryptoError("record key cannot be unwrapped with the configured master keys") from exc


T = TypeVar("T")


class sealed(Generic[T]):  # noqa: N801 - used like a field declaration
    """Descriptor for a field sealed with its record's own data key.

    ``alias = sealed[str]("alias_enc")`` on a model that has an ``alias_enc`` bytes column
    and a ``data_key`` relationship. Reading returns the plaintext (or ``None``); reading
    after crypto-shredding raises ``KeyDestroyed``."""

    def __init__(self, column: str, kind: type = str) -> None:
        self.column = column
        self.kind = kind

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, objtype: type) -> sealed[T]: ...
    @overload
    def __get__(self, obj: object, objtype: type) -> T | None: ...
    def __get__(self, obj: object | None, objtype: type | None = None) -> Any:
        if obj is None:
            return self
        token = getattr(obj, self.column)
        if token is None:
            return None
        plain = unwrap(getattr(obj, "data_key", None)).decrypt(bytes(token)).decode()
        return plain if self.kind is str else self.kind(plain)

    def __set__(self, obj: object, value: T | None) -> None:
        if value is None:
            setattr(obj, self.column, None)
            return
        key = getattr(obj, "data_key", None)
        if key is None:
            key = new_data_key()
            obj.data_key = key  # type: ignore[attr-defined]
        setattr(obj, self.column, unwrap(key).encrypt(str(value).encode()))


def rotate_tokens(tokens: Iterable[bytes]) -> list[bytes]:
    multi = keyring().multi
    return [multi.rotate(bytes(t)) for t in tokens]
