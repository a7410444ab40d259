"""Service directory (DESIGN §2): services offered by organizations, compatible with Open
Referral HSDS 3.0 (ids kept in ``hsds_id``).

Eligibility is stored as small bit masks (one bit per vocabulary entry, see ``app.vocab``) so
the matching pre-filter is a cheap integer test in SQL on both SQLite and PostgreSQL. Ages are
kept exactly (``min_age`` / ``max_age``, inclusive, None: no limit); ``age_mask`` is derived
from them whenever either is set — the bands with at least one eligible age — and matching
then tells a band eligible whole from one eligible only in part (``band_fit``). Hours are
a structured weekly schedule (JSON list of ``[weekday, "HH:MM", "HH:MM"]``, Monday = 0) read in
the service's own IANA timezone, so "open now" is computable without another query.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    Text,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.core import vocab
from app.core.crypto import MasterEncrypted, blind_index
from app.core.extensions import db
from app.models.accounts import Organization
from app.models.areas import Area
from app.models.base import UTCDateTime, utcnow


def _mask(values: tuple[str, ...] | list[str] | set[str], universe: tuple[str, ...]) -> int:
    return sum(1 << universe.index(v) for v in set(values) if v in universe)


def _unmask(mask: int, universe: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(v for i, v in enumerate(universe) if mask & (1 << i))


ALL_GENDERS_MASK = (1 << len(vocab.GENDERS)) - 1
ALL_AGES_MASK = (1 << len(vocab.AGE_BANDS)) - 1
MAX_AGE = 150


def band_fit(min_age: int | None, max_age: int | None, age_band: str) -> str:
    """How much of ``age_band`` exact eligible ages cover: "whole", "part" or "none"."""
    band_low, band_high = vocab.AGE_BAND_RANGES[age_band]
    low = min_age or 0
    if (max_age is not None and max_age < band_low) or (band_high is not None and low > band_high):
        return "none"
    if low <= band_low and (max_age is None or (band_high is not None and band_high <= max_age)):
        return "whole"
    return "part"


def ages_mask(min_age: int | None, max_age: int | None) -> int:
    """The bands with at least one eligible age (the matching pre-filter's mask)."""
    return sum(
        1 << i
        for i, band in enumerate(vocab.AGE_BANDS)
        if band_fit(min_age, max_age, band) != "none"
    )


def gender_bit(gender: str) -> int:
    return 1 << vocab.GENDERS.index(gender)


def age_bit(age_band: str) -> int:
    return 1 << vocab.AGE_BANDS.index(age_band)


service_area = Table(
    "service_area",
    db.Model.metadata,
    Column("service_id", ForeignKey("service.id", ondelete="CASCADE"), primary_key=True),
    Column("area_id", ForeignKey("area.id", ondelete="CASCADE"), primary_key=True),
    # Matching asks "which services serve area X" (service_id, area_id) is the PK already.
    Index("ix_service_area_area_id_service_id", "area_id", "service_id"),
)


def new_hsds_id() -> str:
    return str(uuid.uuid4())


class Service(db.Model):  # type: ignore[name-defined,misc]
    __tablename__ = "service"
    __table_args__ = (
        CheckConstraint(f"category IN {vocab.SERVICE_CATEGORIES!r}", name="category"),
        CheckConstraint("beds_total IS NULL OR beds_total >= 0", name="beds_total"),
        CheckConstraint(
            "beds_available IS NULL OR (beds_available >= 0 AND "
            "(beds_total IS NULL OR beds_available <= beds_total))",
            name="beds_available",
        ),
        CheckConstraint(
            "latitude IS NULL OR (latitude >= -90 AND latitude <= 90)", name="latitude"
        ),
        CheckConstraint(
            "longitude IS NULL OR (longitude >= -180 AND longitude <= 180)", name="longitude"
        ),
        CheckConstraint(
            f"min_age IS NULL OR (min_age >= 0 AND min_age <= {MAX_AGE})", name="min_age"
        ),
        CheckConstraint(
            f"max_age IS NULL OR (max_age >= 0 AND max_age <= {MAX_AGE} "
            "AND (min_age IS NULL OR max_age >= min_age))",
            name="max_age",
        ),
        # The matching pre-filter: active services of one category (eligibility tested on
        # the masks of the rows this index finds).
        Index("ix_service_category_active", "category", "active"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    organization_id: Mapped[int] = mapped_column(ForeignKey("organization.id"), index=True)
    hsds_id: Mapped[str | None] = mapped_column(String(64), unique=True, default=new_hsds_id)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(20))
    # ISO 639-1 codes from vocab.SURVIVOR_LANGUAGES, comma-separated ("ar,en").
    languages: Mapped[str] = mapped_column(String(120), default="")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    gender_mask: Mapped[int] = mapped_column(Integer, default=ALL_GENDERS_MASK)
    # Exact eligible ages, inclusive (None: no limit); age_mask follows them (_derive_mask).
    min_age: Mapped[int | None] = mapped_column(Integer, default=None)
    max_age: Mapped[int | None] = mapped_column(Integer, default=None)
    age_mask: Mapped[int] = mapped_column(Integer, default=ALL_AGES_MASK)
    accepts_children: Mapped[bool] = mapped_column(Boolean, default=True)
    wheelchair_access: Mapped[bool] = mapped_column(Boolean, default=False)
    hearing_access: Mapped[bool] = mapped_column(Boolean, default=False)
    # [[weekday 0-6, "HH:MM", "HH:MM"], ...]; closes <= opens means it runs past midnight;
    # "24:00" closes at the end of the day. Empty: hours unknown.
    hours: Mapped[list[Any]] = mapped_column(JSON, default=list)
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    # E.164, sealed with the master keys; providers text BEDS/ACCEPT from it, so the SMS
    # hotline finds the service by the blind index (DESIGN §7).
    intake_phone: Mapped[str | None] = mapped_column(MasterEncrypted(), default=None)
    intake_phone_index: Mapped[str | None] = mapped_column(String(64), index=True, default=None)
    beds_total: Mapped[int | None] = mapped_column(Integer, default=None)
    beds_available: Mapped[int | None] = mapped_column(Integer, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # A confidential location (a refuge's secret address): coordinates and address appear
    # only on staff pages, never in HSDS export or the HSDS API; matching still uses them
    # internally (revision 0016_hsds_interop). On by default for new shelters (the form).
    location_confidential: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    # What a caseworker reads on the service page, as HSDS carries it.
    eligibility_description: Mapped[str] = mapped_column(Text, default="", server_default="")
    url: Mapped[str | None] = mapped_column(String(500), default=None)
    email: Mapped[str | None] = mapped_column(String(254), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    organization: Mapped[Organization] = relationship()
    areas: Mapped[list[Area]] = relationship(secondary=service_area, order_by=Area.name)

    # --- vocabulary views of the stored masks / lists ---------------------------------

    @property
    def language_list(self) -> tuple[str, ...]:
        return tuple(code for code in (self.languages or "").split(",") if code)

    @language_list.setter
    def language_list(self, codes: list[str] | tuple[str, ...]) -> None:
        ordered = [c for c in vocab.SURVIVOR_LANGUAGES if c in set(codes)]
        self.languages = ",".join(ordered)

    @property
    def genders(self) -> tuple[str, ...]:
        return _unmask(
            self.gender_mask if self.gender_mask is not None else ALL_GENDERS_MASK, vocab.GENDERS
        )

    @genders.setter
    def genders(self, values: list[str] | tuple[str, ...]) -> None:
        self.gender_mask = _mask(values, vocab.GENDERS) or ALL_GENDERS_MASK

    @validates("min_age", "max_age")
    def _derive_mask(self, key: str, value: int | None) -> int | None:
        """Exact ages are the truth; the band mask the pre-filter tests follows them."""
        low = value if key == "min_age" else self.min_age
        high = value if key == "max_age" else self.max_age
        self.age_mask = ages_mask(low, high)
        return value

    @property
    def ages_label(self) -> str:
        return vocab.age_range_label(self.min_age, self.max_age)

    def set_intake_phone(self, e164: str | None) -> None:
        """Store the (already normalised) E.164 number sealed, with its blind index."""

        self.intake_phone = e164
        self.intake_phone_index = blind_index(e164) if e164 else None

    @property
    def is_shelter(self) -> bool:
        return self.category == "shelter"

    def open_at(self, when: datetime) -> bool | None:
        return open_at(self.hours, self.timezone, when)


# --- opening hours ----------------------------------------------------------------------


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _minutes(text: str) -> int:
    hours, _, minutes = text.partition(":")
    return int(hours) * 60 + int(minutes or 0)


def open_at(hours: list[Any] | None, tz_name: str | None, when: datetime) -> bool | None:
    """True/False whether the weekly schedule is open at ``when`` (aware datetime), None when
    the hours are unknown. Spans with closes <= opens run past midnight into the next day."""
    if not hours:
        return None
    local = when.astimezone(zone(tz_name))
    day = local.weekday()
    now = local.hour * 60 + local.minute
    for entry in hours:
        try:
            weekday, opens, closes = int(entry[0]), _minutes(entry[1]), _minutes(entry[2])
        except (TypeError, ValueError, IndexError):
            continue
        if closes > opens:
            if weekday == day and opens <= now < closes:
                return True
        else:  # overnight (or 24 h when equal)
            if weekday == day and now >= opens:
                return True
            if (weekday + 1) % 7 == day and now < closes:
                return True
    return False


__all__ = [
    "ALL_AGES_MASK",
    "ALL_GENDERS_MASK",
    "Service",
    "age_bit",
    "ages_mask",
    "band_fit",
    "gender_bit",
    "open_at",
    "service_area",
]
