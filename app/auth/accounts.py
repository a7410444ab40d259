"""Staff accounts: password policy, argon2 hashing, login throttling, TOTP, sessions.

Domain exceptions are named so views can map each to a translated message (SecureDrop
style). Nothing here commits: callers own the transaction.
"""

from __future__ import annotations

import contextlib
import functools
import re
import secrets
from datetime import datetime, timedelta
from typing import Any

import pyotp
from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app
from sqlalchemy import delete, func, select

from app.core import audit
from app.core.crypto import keyring
from app.core.extensions import db
from app.models import ROLES, LoginAttempt, Organization, User, UserSession, utcnow


@functools.cache
def _hashing(profile: str) -> tuple[PasswordHasher, str]:
    """The argon2id hasher of a named ``argon2.profiles`` profile, and a hash of a random
    password made with it: verified against when the username is unknown, so that timing
    does not reveal which accounts exist."""
    hasher = PasswordHasher.from_parameters(getattr(profiles, profile))
    return hasher, hasher.hash(secrets.token_urlsafe(16))


def _hasher() -> PasswordHasher:
    # config.ARGON2_PROFILE: RFC 9106's low-memory profile everywhere but in tests.
    return _hashing(current_app.config["ARGON2_PROFILE"])[0]


COMMON_PASSWORDS = frozenset(
    """
    123456789012 1234567890123 password1234 passwordpassword qwertyuiopas qwerty123456
    iloveyou1234 letmein12345 welcome12345 admin1234567 administrator changeme1234
    password123! password1234! 111111111111 000000000000 abc123456789 abcdefghijkl
    trustno1trustno1 monkey123456 dragon123456 football1234 baseball1234 sunshine1234
    princess1234 superman1234 qwertyqwerty 1q2w3e4r5t6y zaq12wsxcde3 p@ssw0rd1234
    passw0rd1234 haven1234567 havenhaven12 shelter12345 caseworker12 correcthorsebatterystaple
    """.split()
)
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 256


class AccountError(Exception):
    """Base class for account errors shown to the user."""


class LoginThrottledException(AccountError):
    """Too many failed logins for this account, or for this address (past its ceiling) and
    this account, inside the window."""


class InvalidCredentials(AccountError):
    """Unknown username, wrong password or inactive account (deliberately one error)."""


class TotpInvalid(AccountError):
    """The TOTP code is wrong or outside the accepted window."""


class TotpReplayed(AccountError):
    """The TOTP code was already used."""


class PasswordPolicyError(AccountError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UsernameTaken(AccountError):
    pass


# --- passwords -------------------------------------------------------------------------


def password_problem(password: str, username: str) -> str | None:
    """The first reason the password is refused, as a stable key (translated by views)."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return "too_short"
    if len(password) > MAX_PASSWORD_LENGTH:
        return "too_long"
    lowered = password.lower()
    if username and username.lower() in lowered:
        return "contains_username"
    if lowered in COMMON_PASSWORDS or len(set(password)) < 4:
        return "too_common"
    return None


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def check_password(user: User | None, password: str) -> bool:
    hasher, dummy_hash = _hashing(current_app.config["ARGON2_PROFILE"])
    if user is None:
        with contextlib.suppress(VerificationError):
            hasher.verify(dummy_hash, password)
        return False
    try:
        ok = hasher.verify(user.password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    if ok and hasher.check_needs_rehash(user.password_hash):
        # Made with other parameters (older, or weaker): upgraded at this sign-in.
        user.password_hash = hasher.hash(password)
    return ok


def set_password(user: User, password: str, *, keep_session: str | None = None) -> None:
    """Set a new password; every session of the user ends but ``keep_session`` (the
    browser that changed it, when she changed her own)."""
    problem = password_problem(password, user.username)
    if problem:
        raise PasswordPolicyError(problem)
    user.password_hash = hash_password(password)
    user.password_changed_at = utcnow()
    end_sessions(user, keep=keep_session)


def create_user(
    organization: Organization, username: str, password: str, role: str, *, active: bool = True
) -> User:
    if role not in ROLES:
        raise ValueError("unknown role")
    username = username.strip()
    if db.session.scalar(select(User.id).where(func.lower(User.username) == username.lower())):
        raise UsernameTaken(username)
    user = User(
        organization=organization,
        username=username,
        role=role,
        active=active,
        session_token=secrets.token_hex(16),
        password_hash="!",  # noqa: S106 - placeholder, replaced by set_password below
    )
    set_password(user, password)
    db.session.add(user)
    db.session.flush()
    audit.record("user.create", "user", user.id)
    return user


# --- sessions ----------------------------------------------------------------------------

# A session id: 32 random bytes, urlsafe base64 (secrets.token_urlsafe(32)).
_SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def _session_key(session_id: str) -> str:
    return keyring().keyed_hash("user-session", session_id)


def open_session(user_id: int, lifetime: timedelta, now: datetime | None = None) -> str:
    """A new server-side session for the user; returns its id, which only the browser's
    (signed) cookie keeps: the database holds a keyed hash of it. Sessions of anyone that
    are past ``lifetime`` (browsers that walked away without signing out) are deleted."""
    now = now or utcnow()
    db.session.execute(delete(UserSession).where(UserSession.created_at < now - lifetime))
    session_id = secrets.token_urlsafe(32)
    db.session.add(UserSession(user_id=user_id, key_hash=_session_key(session_id), created_at=now))
    db.session.flush()
    return session_id


def session_user(session_id: object) -> User | None:
    """The active user of a live session, or None (ended, never existed, or not an id)."""
    if not isinstance(session_id, str) or not _SESSION_ID.fullmatch(session_id):
        return None
    user = db.session.scalar(
        select(User)
        .join(UserSession, UserSession.user_id == User.id)
        .where(UserSession.key_hash == _session_key(session_id))
    )
    return user if user is not None and user.active else None


def close_session(session_id: object) -> None:
    """End one session (sign-out, quick exit, expiry): its row is deleted."""
    if isinstance(session_id, str) and _SESSION_ID.fullmatch(session_id):
        db.session.execute(
            delete(UserSession).where(UserSession.key_hash == _session_key(session_id))
        )


def end_sessions(user: User, *, keep: str | None = None) -> None:
    """End every session of ``user`` (a password change, a change of role, organization or
    status), but ``keep``; a sign-in waiting for its second factor ends too."""
    user.session_token = secrets.token_hex(16)
    if user.id is None:  # a new account: no session yet
        return
    stale = delete(UserSession).where(UserSession.user_id == user.id)
    if keep is not None:
        stale = stale.where(UserSession.key_hash != _session_key(keep))
    db.session.execute(stale)


# --- login throttling ------------------------------------------------------------------


def _keys(username: str, client_addr: str) -> tuple[str, str]:
    ring = keyring()
    return (
        ring.keyed_hash("login-account", username.strip().lower()),
        ring.keyed_hash("login-client", client_addr or "unknown"),
    )


def _failures_since(column: Any, key: str, since: datetime) -> int:
    return int(
        db.session.scalar(
            select(func.count(LoginAttempt.id)).where(
                column == key, LoginAttempt.success.is_(False), LoginAttempt.at >= since
            )
        )
        or 0
    )


def is_throttled(username: str, client_addr: str, now: datetime | None = None) -> bool:
    """Whether a sign-in as ``username`` from ``client_addr`` is refused now:

    * the account failed ``LOGIN_MAX_FAILURES`` times inside the window (from anywhere); or
    * the address failed ``LOGIN_ADDRESS_MAX_FAILURES`` times inside the window (a much
      higher ceiling: an office shares one address) and this account failed at least once
      inside it. An account that has not failed is never refused because of its address,
      so one address cannot lock every account; an unknown username is treated exactly
      like an account (no enumeration), and past the ceiling an address gets one guess
      per account and window."""
    now = now or utcnow()
    window: timedelta = current_app.config["LOGIN_WINDOW"]
    limit: int = current_app.config["LOGIN_MAX_FAILURES"]
    ceiling: int = current_app.config["LOGIN_ADDRESS_MAX_FAILURES"]
    account_key, client_key = _keys(username, client_addr)
    since = now - window
    account_failures = _failures_since(LoginAttempt.account_key, account_key, since)
    if account_failures >= limit:
        return True
    return account_failures > 0 and (
        _failures_since(LoginAttempt.client_key, client_key, since) >= ceiling
    )


def note_failure(username: str, client_addr: str) -> None:
    """Count a failed second factor against the same throttle as a wrong password."""
    account_key, client_key = _keys(username, client_addr)
    db.session.add(LoginAttempt(account_key=account_key, client_key=client_key, success=False))
    db.session.flush()
    _tell_when_the_address_reaches_its_ceiling(client_key)


def _tell_when_the_address_reaches_its_ceiling(client_key: str) -> None:
    """Once per window and address, when its failures reach the ceiling: an audit event and
    a log warning for the operator (README, "Sign-in throttling"). Neither holds the
    address; the log line's request id finds it in the proxy's access log."""
    since = utcnow() - current_app.config["LOGIN_WINDOW"]
    if _failures_since(LoginAttempt.client_key, client_key, since) != (
        current_app.config["LOGIN_ADDRESS_MAX_FAILURES"]
    ):
        return
    audit.record("auth.address_limit", actor_user_id=audit.SYSTEM)
    current_app.logger.warning(
        "sign-in failures from one address reached HAVEN_LOGIN_ADDRESS_MAX_FAILURES (%d in "
        "%d minutes): accounts that failed are refused from that address until it drops",
        current_app.config["LOGIN_ADDRESS_MAX_FAILURES"],
        current_app.config["LOGIN_WINDOW"].total_seconds() // 60,
    )


def note_refused_attempt(username: str, client_addr: str) -> None:
    """A sign-in refused before any check (a NUL byte in the form: PostgreSQL cannot even
    look such a username up) counts like a wrong password: the same failure row and audit
    events, with no user named (none was looked up). Only keyed hashes reach the database."""
    note_failure(username, client_addr)
    audit.record("auth.login_failed", actor_user_id=audit.SYSTEM)
    if is_throttled(username, client_addr):
        audit.record("auth.lockout", actor_user_id=audit.SYSTEM)


def authenticate(username: str, password: str, client_addr: str) -> User:
    """Check a username and password. Records the attempt; raises on failure.

    The caller must commit in both cases (failed attempts have to persist to count)."""
    account_key, client_key = _keys(username, client_addr)
    if is_throttled(username, client_addr):
        note_failure(username, client_addr)
        audit.record("auth.login_throttled", actor_user_id=None)
        raise LoginThrottledException()
    user = db.session.scalar(
        select(User).where(func.lower(User.username) == username.strip().lower())
    )
    ok = check_password(user, password)
    if not ok or user is None or not user.active:
        note_failure(username, client_addr)
        audit.record(
            "auth.login_failed",
            "user" if user else None,
            user.id if user else None,
            actor_user_id=None,
        )
        if is_throttled(username, client_addr):
            audit.record("auth.lockout", "user" if user else None, user.id if user else None,
                         actor_user_id=None)
        raise InvalidCredentials()
    db.session.add(LoginAttempt(account_key=account_key, client_key=client_key, success=True))
    return user


# --- TOTP ------------------------------------------------------------------------------

TOTP_ISSUER = "Haven"


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(user: User, secret: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=user.username, issuer_name=TOTP_ISSUER)


def _matching_counter(secret: str, code: str, at: datetime) -> int | None:
    code = code.strip().replace(" ", "")
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    counter = totp.timecode(at)
    for candidate in (counter - 1, counter, counter + 1):
        if secrets.compare_digest(totp.generate_otp(candidate), code):
            return candidate
    return None


def verify_totp(
    user: User, code: str, secret: str | None = None, at: datetime | None = None
) -> None:
    """Accept a code once: a code (or an older one) that was already used is refused."""
    secret = secret or user.totp_secret
    if not secret:
        raise TotpInvalid()
    counter = _matching_counter(secret, code, at or utcnow())
    if counter is None:
        audit.record("auth.totp_failed", "user", user.id, actor_user_id=None)
        raise TotpInvalid()
    if user.totp_last_counter is not None and counter <= user.totp_last_counter:
        audit.record("auth.totp_replayed", "user", user.id, actor_user_id=None)
        raise TotpReplayed()
    user.totp_last_counter = counter
