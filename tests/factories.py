"""Factories for test data. They flush, never commit: the test decides."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pyotp

from app import accounts
from app.extensions import db
from app.models import Organization, User, utcnow

PASSWORD = "plum-river-candle-47"
_seq = itertools.count(1)


def make_org(kind: str = "ngo", name: str | None = None, **fields: Any) -> Organization:
    org = Organization(name=name or f"{kind.title()} Org {next(_seq)}", kind=kind, **fields)
    db.session.add(org)
    db.session.flush()
    return org


def make_user(
    role: str = "caseworker",
    organization: Organization | None = None,
    username: str | None = None,
    password: str = PASSWORD,
    totp: bool | None = None,
) -> User:
    """A user; admins and supervisors (or ``totp=True``) get an enrolled TOTP secret."""
    if organization is None:
        kind = {"provider": "provider", "admin": "operator"}.get(role, "ngo")
        organization = make_org(kind)
    user = accounts.create_user(organization, username or f"{role}{next(_seq)}", password, role)
    if totp or (totp is None and role in ("admin", "supervisor")):
        user.totp_secret = pyotp.random_base32()
    db.session.flush()
    return user


def totp_code(user: User, at: datetime | None = None) -> str:
    assert user.totp_secret
    return pyotp.TOTP(user.totp_secret).at(at or utcnow())


def next_window_code(user: User) -> str:
    """A valid code from the next 30-second window (accepted: one step of drift is allowed)."""
    return totp_code(user, utcnow() + timedelta(seconds=30))
