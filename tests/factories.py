"""Factories for test data. They flush, never commit: the test decides."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pyotp

from app.auth import accounts
from app.core.extensions import db
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


# --- directory (issue 4) ---------------------------------------------------------------


def make_service(
    organization: Organization | None = None,
    category: str = "shelter",
    name: str | None = None,
    areas: list[Any] | None = None,
    genders: tuple[str, ...] | None = None,
    intake_phone: str | None = None,
    **fields: Any,
) -> Any:
    """A directory service (open around the clock unless ``hours`` is given; exact
    eligibility ages with ``min_age`` / ``max_age``)."""
    from app.models import Service

    fields.setdefault("hours", [[d, "00:00", "24:00"] for d in range(7)])
    service = Service(
        organization=organization or make_org("provider"),
        category=category,
        name=name or f"{category.title()} service {next(_seq)}",
        areas=areas or [],
        **fields,
    )
    if genders is not None:
        service.genders = genders
    if intake_phone is not None:
        service.set_intake_phone(intake_phone)
    db.session.add(service)
    db.session.flush()
    return service


# --- cases (issue 3) -------------------------------------------------------------------

ALL_CONSENT_SCOPES = (
    "store", "contact_sms", "share_shelter", "share_legal", "share_medical",
    "share_psychosocial", "share_other", "share_identity", "explicit_wording",
)


def make_area(name: str | None = None, sms_label: str | None = None) -> Any:
    """An area; ``sms_label`` is written as given (the admin form is what checks it)."""
    from app.models import Area

    area = Area(name=name or f"Area {next(_seq)}", sms_label=sms_label)
    db.session.add(area)
    db.session.flush()
    return area


def make_case(
    organization: Organization | None = None,
    *,
    consents: dict[str, bool] | None = None,
    alias: str | None = "Rosa",
    phone: str | None = "+14155550123",
    note: str | None = "Prefers mornings",
    needs: dict[str, str] | None = None,
    area: Any = None,
    channel: str = "tablet",
    at: datetime | None = None,
    **fields: Any,
) -> Any:
    """An open case with a recorded profile. ``consents`` maps scope -> granted (default:
    every scope granted, verbally, now); a scope given as None is left unrecorded."""
    from app.cases import service as cases
    from app.consent import service as consent
    from app.core.crypto import blind_index
    from app.models import Case, Consent

    if organization is None:
        organization = make_org("ngo")
    at = at or utcnow()
    fields.setdefault("status", "open")
    case = Case(
        reference=cases.new_reference(), organization_id=organization.id, channel=channel,
        language="en", age_band="25_34", created_at=at,
        area_id=(area or make_area()).id, profile_completed_at=at, **fields,
    )
    case.data_key = cases._new_key()
    case.alias = alias
    case.phone = phone
    case.phone_index = blind_index(phone) if phone else None
    case.note = note
    db.session.add(case)
    db.session.flush()
    chosen = dict.fromkeys(ALL_CONSENT_SCOPES, True) if consents is None else consents
    from flask import current_app

    validity = current_app.config["CONSENT_VALIDITY"]
    for scope, granted in chosen.items():
        if granted is None:
            continue
        db.session.add(Consent(
            case_id=case.id, scope=scope, granted=granted, method="verbal",
            text_version=consent.CURRENT_VERSION, language="en", recorded_at=at,
            expires_at=at + validity if granted else None,
        ))
    for category, urgency in (needs if needs is not None else {"shelter": "immediate"}).items():
        from app.models import Need

        db.session.add(Need(case_id=case.id, category=category, urgency=urgency))
    db.session.flush()
    db.session.expire(case, ["needs", "consents"])
    return case


# --- referrals (issue 5) ----------------------------------------------------------------


def make_release(case: Any, organization: Organization, *, method: str = "verbal",
                 at: datetime | None = None, days: int = 30, withdrawn: bool = False) -> Any:
    """A release of ``case`` to ``organization`` (verbal, 30 days, from ``at``/now)."""
    from app.models import Release

    at = at or utcnow()
    release = Release(
        case_id=case.id, organization_id=organization.id, method=method, granted_at=at,
        expires_at=at + timedelta(days=days), withdrawn_at=at if withdrawn else None,
    )
    db.session.add(release)
    db.session.flush()
    return release


def make_referral(case: Any = None, service: Any = None, *, status: str = "pending",
                  **fields: Any) -> Any:
    """A referral made through the domain module (release recorded, bed held for a tracked
    shelter, provider SMS queued), then moved to ``status`` directly when asked."""
    from app.referrals import service as referrals

    service = service or make_service(category="legal")
    case = case or make_case(needs={service.category: "soon"})
    release = referrals.valid_release(case, service.organization_id) or make_release(
        case, service.organization
    )
    [referral], _created = referrals.create_referrals(
        case, [referrals.ReferralRequest(service.id, release)], None, idempotency_key=None
    )
    if status != "pending" or fields:
        referral.status = status
        for name, value in fields.items():
            setattr(referral, name, value)
        db.session.flush()
    return referral
