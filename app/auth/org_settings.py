"""An organization's settings (issue 16): its time zone, its contact line, the region its
staff's phone numbers are read in. One place for each rule: which zone an organization's
times are shown in (``zone_name``), which region a number typed by its staff is read in
(``phone_region``), and which line a provider calls about its referrals (``contact_line``).

The contact line is the organization's own public number: from its settings, else from its
listing in the directory (its first active service with an intake phone). It is never a
caseworker's own number or name: a provider calls the organization, not a person.
"""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from sqlalchemy import select

from app.consent.safe_hours import valid_zone
from app.core import audit
from app.core.crypto import InvalidPhoneNumber, format_phone, normalize_phone
from app.core.extensions import db
from app.models.accounts import Organization
from app.models.directory import Service

DEFAULT_ZONE = "UTC"


class SettingsError(ValueError):
    """One setting that cannot be saved; ``field`` names it (the view words the message)."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


@dataclass(frozen=True)
class ContactLine:
    organization: str
    phone: str | None  # international display form, or None when the organization has none


def zone_name(org: Organization | None) -> str:
    if org is not None and valid_zone(org.timezone):
        return str(org.timezone)
    return DEFAULT_ZONE


def phone_region(org: Organization | None, default: str) -> str:
    if org is not None and org.phone_region in phonenumbers.SUPPORTED_REGIONS:
        return str(org.phone_region)
    return default


def region_choices() -> list[str]:
    return sorted(phonenumbers.SUPPORTED_REGIONS)


def update(
    org: Organization,
    *,
    timezone: str,
    contact_phone: str | None,
    region: str | None,
    default_region: str,
) -> None:
    """Check and set the three settings together (nothing changes when one is refused:
    ``SettingsError`` before any attribute is touched); audits, flushes, never commits."""
    zone = (timezone or "").strip()
    if not valid_zone(zone):
        raise SettingsError("timezone")
    chosen_region = (region or "").strip().upper() or None
    if chosen_region is not None and chosen_region not in phonenumbers.SUPPORTED_REGIONS:
        raise SettingsError("dialing_region")
    line = None
    if contact_phone and contact_phone.strip():
        try:
            line = normalize_phone(contact_phone, chosen_region or default_region)
        except InvalidPhoneNumber as exc:
            raise SettingsError("contact_phone") from exc
    org.timezone = zone
    org.phone_region = chosen_region
    org.contact_phone = line
    audit.record("organization.settings", "organization", org.id)
    db.session.flush()


def contact_line(org: Organization) -> ContactLine:
    phone = org.contact_phone
    if not phone:
        listed = db.session.scalars(
            select(Service)
            .where(
                Service.organization_id == org.id,
                Service.active.is_(True),
                Service.intake_phone_index.is_not(None),
            )
            .order_by(Service.id)
            .limit(1)
        ).first()
        phone = listed.intake_phone if listed is not None else None
    return ContactLine(org.name, format_phone(phone) if phone else None)
