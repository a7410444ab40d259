"""Explainable matching of a survivor's needs to directory services (issue 4).

``match(criteria)`` returns, per need, the services of that category ranked best first,
each with the reasons a caseworker can read ("speaks Arabic", "2 beds free", "serves this
area", ...), and on request the services excluded by a hard filter with why.

* Hard filters (a service failing one is excluded): category, active, eligibility — age
  band, gender, children. An unknown age band or gender on the survivor's side filters
  nothing (the restriction is then shown as a note to check). Ages are exact: a band only
  partly inside a service's ages (12+ and "under 18") is matched with a note saying which
  part is not eligible, never silently; a band wholly outside is excluded.
* Marks, not filters: shelters with no free bed rank last and are marked full; services
  closed right now are marked closed; services in a category the survivor has not consented
  to share with are *information only* (they cannot be referred).
* Soft ranking: language, area (served area, or distance when both sides have coordinates),
  accessibility, current load (free beds for shelters), open now.

Speed: one indexed SQL query per need fetches plain column tuples of the eligible services of
that category (``ix_service_category_active``, eligibility tested on bit masks), one indexed
query finds which of them serve the survivor's area; scoring is then plain Python and the
readable reasons are only built for the services returned.

This module reads only; it never commits.
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from flask_babel import lazy_gettext as _l
from flask_babel import lazy_ngettext
from sqlalchemy import Select, Text, and_, bindparam, cast, select

from app.core import vocab
from app.core.extensions import db
from app.core.formatting import km_number
from app.models.accounts import Organization
from app.models.areas import Area
from app.models.base import utcnow
from app.models.directory import (
    ALL_GENDERS_MASK,
    Service,
    age_bit,
    band_fit,
    gender_bit,
    open_at,
    service_area,
)

# Weights of the soft criteria (bigger = more important). Kept in one place so the ranking
# stays explainable: a service's score is the sum of the weights of its positive reasons.
W_LANGUAGE = 40.0
W_AREA = 30.0
W_DISTANCE_MAX = 20.0  # at 0 km, falling linearly to 0 at DISTANCE_HORIZON_KM
DISTANCE_HORIZON_KM = 100.0
W_ACCESSIBILITY = 15.0  # per accessibility need met
W_BEDS_MAX = 10.0  # shelters: scaled by the share of beds free (current load)
W_OPEN_NOW = 5.0
W_OPEN_NOW_IMMEDIATE = 15.0  # an immediate need favours services open right now

DEFAULT_LIMIT = 25


@dataclass(frozen=True)
class MatchCriteria:
    """What matching needs to know about a survivor, and nothing more."""

    needs: tuple[tuple[str, str], ...]  # (category, urgency)
    language: str | None = None
    age_band: str | None = None
    gender: str | None = None
    area_id: int | None = None
    children: bool = False
    accessibility: frozenset[str] = frozenset()
    consented_share_categories: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for category, urgency in self.needs:
            if category not in vocab.SERVICE_CATEGORIES:
                raise ValueError("unknown need category")
            if urgency not in vocab.URGENCIES:
                raise ValueError("unknown urgency")
        if self.language is not None and self.language not in vocab.SURVIVOR_LANGUAGES:
            raise ValueError("unknown language")
        if self.age_band is not None and self.age_band not in vocab.AGE_BANDS:
            raise ValueError("unknown age band")
        if self.gender is not None and self.gender not in vocab.GENDERS:
            raise ValueError("unknown gender")
        if set(self.accessibility) - set(vocab.ACCESSIBILITY_NEEDS):
            raise ValueError("unknown accessibility need")


def criteria_from_form(data: dict[str, Any]) -> MatchCriteria:
    """Anonymous mode: criteria typed by the caseworker, nothing stored. Without a case
    there is no consent to share, so every result is information only."""
    needs = tuple((c, data.get("urgency") or "routine") for c in data.get("categories") or ())
    return MatchCriteria(
        needs=needs,
        language=data.get("language") or None,
        age_band=data.get("age_band") or None,
        gender=data.get("gender") or None,
        area_id=data.get("area_id") or None,
        children=bool(data.get("children")),
        accessibility=frozenset(data.get("accessibility") or ()),
        consented_share_categories=frozenset(),
    )


@dataclass(frozen=True)
class Reason:
    """One readable reason. ``code`` is stable (tests, templates); ``str()`` translates."""

    code: str
    params: tuple[tuple[str, Any], ...] = ()

    def __str__(self) -> str:
        return str(_reason_text(self.code, dict(self.params)))

    @property
    def text(self) -> str:
        return str(self)


def _reason_text(code: str, p: dict[str, Any]) -> Any:  # noqa: C901 - one branch per field or reason, read top to bottom; a split is a follow-up
    if code == "language":
        return _l("speaks %(language)s", language=vocab.SURVIVOR_LANGUAGE_LABELS[p["language"]])
    if code == "no_language":
        return _l(
            "does not list %(language)s", language=vocab.SURVIVOR_LANGUAGE_LABELS[p["language"]]
        )
    if code == "area":
        return _l("serves this area")
    if code == "distance":
        return _l("about %(km)s km away", km=km_number(p["km"]))
    if code == "beds_free":
        return lazy_ngettext("%(num)d bed free", "%(num)d beds free", int(p["n"]))
    if code == "full":
        return _l("full: no free bed")
    if code == "children":
        return _l("accepts children")
    if code == "wheelchair":
        return _l("wheelchair access")
    if code == "hearing":
        return _l("hearing support")
    if code == "no_wheelchair":
        return _l("no wheelchair access listed")
    if code == "no_hearing":
        return _l("no hearing support listed")
    if code == "open_now":
        return _l("open now")
    if code == "closed_now":
        return _l("closed now")
    if code == "hours_unknown":
        return _l("opening hours unknown")
    if code == "information_only":
        return _l("information only: no consent to share with this kind of service")
    if code == "check_gender":
        who = _labels(p["mask"], vocab.GENDERS, vocab.GENDER_LABELS)
        return _l("only for: %(who)s — check eligibility", who=who)
    if code == "check_age":
        ages = vocab.age_range_label(p["min"], p["max"])
        return _l("only for ages %(ages)s — check eligibility", ages=ages)
    if code == "part_age":
        return _l(
            "Ages %(ages)s only: part of %(band)s is not eligible",
            ages=vocab.age_range_label(p["min"], p["max"]),
            band=vocab.AGE_BAND_LABELS[p["band"]],
        )
    # exclusions
    if code == "excluded_gender":
        who = _labels(p["mask"], vocab.GENDERS, vocab.GENDER_LABELS)
        return _l("not for this gender (only for: %(who)s)", who=who)
    if code == "excluded_age":
        ages = vocab.age_range_label(p["min"], p["max"])
        return _l("not for this age band (only for ages %(ages)s)", ages=ages)
    if code == "excluded_children":
        return _l("does not accept children")
    return code


@dataclass
class ServiceMatch:
    service_id: int
    name: str
    organization_name: str
    category: str
    score: float
    reasons: list[Reason] = field(default_factory=list)
    notes: list[Reason] = field(default_factory=list)  # neutral/negative marks
    full: bool = False
    open_now: bool | None = None
    information_only: bool = False
    beds_available: int | None = None
    distance_km: float | None = None

    @property
    def referable(self) -> bool:
        return not self.information_only


@dataclass
class ExcludedService:
    service_id: int
    name: str
    organization_name: str
    reasons: list[Reason]


@dataclass
class NeedMatches:
    category: str
    urgency: str
    matches: list[ServiceMatch]
    total: int  # eligible services of the category (before the limit)
    excluded: list[ExcludedService] | None = None  # None: not asked for


# --- geometry ----------------------------------------------------------------------------


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6371.0088
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(a)))


# --- queries ----------------------------------------------------------------------------

# Plain column tuples, read with Core (no ORM loading). The hours come as their JSON text:
# many services share a schedule, so "open now" is worked out once per distinct text.
_COLUMNS = (
    Service.id,
    Service.name,
    Service.organization_id,
    Service.languages,
    Service.latitude,
    Service.longitude,
    Service.gender_mask,
    Service.age_mask,
    Service.accepts_children,
    Service.wheelchair_access,
    Service.hearing_access,
    cast(Service.hours, Text),
    Service.timezone,
    Service.beds_total,
    Service.beds_available,
    Service.min_age,
    Service.max_age,
)


# What scoring reads for every candidate (the rest is fetched for the services returned).
_SCORE_COLUMNS = (
    Service.id,
    Service.languages,
    Service.latitude,
    Service.longitude,
    Service.wheelchair_access,
    Service.hearing_access,
    cast(Service.hours, Text),
    Service.timezone,
    Service.beds_total,
    Service.beds_available,
)


def eligibility_conditions(criteria: MatchCriteria) -> list[Any]:
    conditions: list[Any] = []
    if criteria.age_band is not None:
        conditions.append(Service.age_mask.op("&")(bindparam("age_bit")) != 0)
    if criteria.gender is not None:
        conditions.append(Service.gender_mask.op("&")(bindparam("gender_bit")) != 0)
    if criteria.children:
        conditions.append(Service.accepts_children.is_(True))
    return conditions


def eligibility_params(criteria: MatchCriteria) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if criteria.age_band is not None:
        params["age_bit"] = age_bit(criteria.age_band)
    if criteria.gender is not None:
        params["gender_bit"] = gender_bit(criteria.gender)
    return params


@lru_cache(maxsize=16)
def _prefilter(has_age: bool, has_gender: bool, children: bool) -> Select[*tuple[Any, ...]]:
    probe = MatchCriteria(
        needs=(),
        age_band="18_24" if has_age else None,
        gender="female" if has_gender else None,
        children=children,
    )
    query: Select[*tuple[Any, ...]] = (
        select(*_SCORE_COLUMNS)
        .where(Service.category == bindparam("category"), Service.active.is_(True))
        .where(*eligibility_conditions(probe))
    )
    return query


def prefilter_query(category: str, criteria: MatchCriteria) -> Select[*tuple[Any, ...]]:  # noqa: ARG001 - the same arguments as prefilter_params
    """The indexed pre-filter: active services of one category that pass eligibility
    (values bound: see ``prefilter_params``). Built once per shape."""
    return _prefilter(criteria.age_band is not None, criteria.gender is not None, criteria.children)


def prefilter_params(category: str, criteria: MatchCriteria) -> dict[str, Any]:
    return {"category": category, **eligibility_params(criteria)}


def _area_context(area_id: int | None) -> tuple[list[int], tuple[float, float] | None]:
    """The area and its ancestors (a service serving a region serves its towns), and the
    area's centre when known."""
    if area_id is None:
        return [], None
    ids: list[int] = []
    centre: tuple[float, float] | None = None
    current: int | None = area_id
    while current is not None and current not in ids and len(ids) < 10:
        row = db.session.execute(
            select(Area.id, Area.parent_id, Area.latitude, Area.longitude).where(Area.id == current)
        ).first()
        if row is None:
            break
        ids.append(row.id)
        if centre is None and row.latitude is not None and row.longitude is not None:
            centre = (row.latitude, row.longitude)
        current = row.parent_id
    return ids, centre


def _serving(area_ids: list[int]) -> set[int]:
    """Ids of the services serving the area or one of its ancestors (any category: the set
    is only used to test candidates), from the covering (area_id, service_id) index."""
    if not area_ids:
        return set()
    rows = db.session.connection().execute(
        select(service_area.c.service_id).where(service_area.c.area_id.in_(area_ids))
    )
    return {r[0] for r in rows}


# --- scoring ----------------------------------------------------------------------------


def _labels(mask: int, universe: tuple[str, ...], labels: dict[str, Any]) -> str:
    return ", ".join(str(labels[v]) for i, v in enumerate(universe) if mask & (1 << i))


class _Clock:
    """ "Open now" for one match call: the local weekday and minute once per timezone, the
    verdict once per distinct (schedule, timezone)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.verdicts: dict[tuple[str | None, str | None], bool | None] = {}

    def open(self, hours_text: str | None, tz_name: str | None) -> bool | None:
        key = (hours_text, tz_name)
        verdict = self.verdicts.get(key, _MISSING)
        if verdict is _MISSING:
            try:
                hours = json.loads(hours_text) if hours_text else None
            except ValueError:
                hours = None
            verdict = open_at(hours, tz_name, self.now)
            self.verdicts[key] = verdict
        return verdict  # type: ignore[return-value]


_MISSING: Any = object()
_KM_PER_DEGREE = 111.2


def _score_row(
    row: Any,
    criteria: MatchCriteria,
    urgency: str,
    serving: set[int],
    centre: tuple[float, float] | None,
    clock: _Clock,
) -> tuple[float, bool, bool | None, float | None]:
    """(score, full, open_now, distance) of one ``_SCORE_COLUMNS`` row: plain numbers, cheap,
    for every candidate."""
    score = 0.0
    # Codes are two letters joined by commas, so a substring test is an exact code test.
    if criteria.language is not None and criteria.language in (row[1] or ""):
        score += W_LANGUAGE
    distance = None
    serves = row[0] in serving
    if serves:
        score += W_AREA
    # Only services within reach earn distance points; a latitude gap alone rules most out
    # without trigonometry (the exact distance is shown for the services returned).
    if (
        centre is not None
        and row[2] is not None
        and row[3] is not None
        and abs(row[2] - centre[0]) * _KM_PER_DEGREE < DISTANCE_HORIZON_KM
    ):
        distance = haversine_km(centre[0], centre[1], row[2], row[3])
        if not serves:
            score += max(0.0, W_DISTANCE_MAX * (1 - distance / DISTANCE_HORIZON_KM))
    if row[4] and "wheelchair" in criteria.accessibility:
        score += W_ACCESSIBILITY
    if row[5] and "hearing" in criteria.accessibility:
        score += W_ACCESSIBILITY
    full = False
    beds_total, beds_free = row[8], row[9]
    if beds_free is not None:
        if beds_free <= 0:
            full = True
        elif beds_total:
            score += W_BEDS_MAX * min(1.0, beds_free / beds_total)
        else:
            score += W_BEDS_MAX / 2
    is_open = clock.open(row[6], row[7])
    if is_open:
        score += W_OPEN_NOW_IMMEDIATE if urgency == "immediate" else W_OPEN_NOW
    return score, full, is_open, distance


def _explain(  # noqa: C901 - one branch per field or reason, read top to bottom; a split is a follow-up
    row: Any,
    organization_name: str,
    category: str,
    criteria: MatchCriteria,
    serving: set[int],
    centre: tuple[float, float] | None,
    score: float,
    full: bool,
    is_open: bool | None,
    distance: float | None,
) -> ServiceMatch:
    reasons: list[Reason] = []
    notes: list[Reason] = []
    languages = (row[3] or "").split(",")
    if criteria.language is not None:
        if criteria.language in languages:
            reasons.append(Reason("language", (("language", criteria.language),)))
        else:
            notes.append(Reason("no_language", (("language", criteria.language),)))
    if row[0] in serving:
        reasons.append(Reason("area"))
    if distance is None and centre is not None and row[4] is not None and row[5] is not None:
        distance = haversine_km(centre[0], centre[1], row[4], row[5])
    if distance is not None:
        km = round(distance) if distance >= 10 else round(distance, 1)
        (reasons if row[0] not in serving else notes).append(Reason("distance", (("km", km),)))
    if criteria.children and row[8]:
        reasons.append(Reason("children"))
    for need, column in (("wheelchair", 9), ("hearing", 10)):
        if need in criteria.accessibility:
            if row[column]:
                reasons.append(Reason(need))
            else:
                notes.append(Reason("no_" + need))
    if row[14] is not None:
        if full:
            notes.append(Reason("full"))
        else:
            reasons.append(Reason("beds_free", (("n", row[14]),)))
    if is_open is True:
        reasons.append(Reason("open_now"))
    elif is_open is False:
        notes.append(Reason("closed_now"))
    else:
        notes.append(Reason("hours_unknown"))
    if criteria.gender is None and row[6] != ALL_GENDERS_MASK:
        notes.append(Reason("check_gender", (("mask", row[6]),)))
    ages = (("min", row[15]), ("max", row[16]))
    if criteria.age_band is None:
        if row[15] or row[16] is not None:
            notes.append(Reason("check_age", ages))
    elif band_fit(row[15], row[16], criteria.age_band) == "part":
        notes.insert(0, Reason("part_age", (*ages, ("band", criteria.age_band))))
    info_only = category not in criteria.consented_share_categories
    if info_only:
        notes.append(Reason("information_only"))
    return ServiceMatch(
        service_id=row[0],
        name=row[1],
        organization_name=organization_name,
        category=category,
        score=round(score, 2),
        reasons=reasons,
        notes=notes,
        full=full,
        open_now=is_open,
        information_only=info_only,
        beds_available=row[14],
        distance_km=distance,
    )


def rank_key(score: float, full: bool, service_id: int) -> tuple[Any, ...]:
    """Full shelters last, then best score first; ties broken by id (stable)."""
    return (full, -score, service_id)


def _org_names(ids: Iterable[int]) -> dict[int, str]:
    wanted = set(ids)
    if not wanted:
        return {}
    rows = db.session.connection().execute(
        select(Organization.id, Organization.name).where(Organization.id.in_(wanted))
    )
    return {r[0]: r[1] for r in rows}


def _rank(
    rows: Iterable[Any],
    category: str,
    urgency: str,
    criteria: MatchCriteria,
    serving: set[int],
    centre: tuple[float, float] | None,
    clock: _Clock,
    limit: int | None,
) -> list[ServiceMatch]:
    scored = []
    for row in rows:
        score, full, is_open, distance = _score_row(row, criteria, urgency, serving, centre, clock)
        scored.append((full, -score, row[0], is_open, distance))
    chosen = heapq.nsmallest(limit, scored) if limit is not None else sorted(scored)
    if not chosen:
        return []
    details = {
        r[0]: r
        for r in db.session.connection().execute(
            select(*_COLUMNS).where(Service.id.in_([item[2] for item in chosen]))
        )
    }
    names = _org_names(r[2] for r in details.values())
    return [
        _explain(
            details[sid],
            names.get(details[sid][2], ""),
            category,
            criteria,
            serving,
            centre,
            -neg_score,
            full,
            is_open,
            distance,
        )
        for full, neg_score, sid, is_open, distance in chosen
    ]


def _match_need(
    category: str,
    urgency: str,
    criteria: MatchCriteria,
    serving: set[int],
    centre: tuple[float, float] | None,
    clock: _Clock,
    limit: int | None,
    with_excluded: bool,
) -> NeedMatches:
    rows = (
        db.session.connection()
        .execute(prefilter_query(category, criteria), prefilter_params(category, criteria))
        .all()
    )
    matches = _rank(rows, category, urgency, criteria, serving, centre, clock, limit)
    excluded = _excluded(category, criteria) if with_excluded else None
    return NeedMatches(category, urgency, matches, total=len(rows), excluded=excluded)


def _excluded(category: str, criteria: MatchCriteria) -> list[ExcludedService]:
    conditions = eligibility_conditions(criteria)
    if not conditions:
        return []
    rows = (
        db.session.connection()
        .execute(
            select(*_COLUMNS)
            .where(Service.category == category, Service.active.is_(True))
            .where(~and_(*conditions) if len(conditions) > 1 else ~conditions[0])
            .order_by(Service.name, Service.id),
            eligibility_params(criteria),
        )
        .all()
    )
    out: list[tuple[Any, list[Reason]]] = []
    for row in rows:
        why: list[Reason] = []
        if criteria.gender is not None and not row[6] & gender_bit(criteria.gender):
            why.append(Reason("excluded_gender", (("mask", row[6]),)))
        if criteria.age_band is not None and not row[7] & age_bit(criteria.age_band):
            why.append(Reason("excluded_age", (("min", row[15]), ("max", row[16]))))
        if criteria.children and not row[8]:
            why.append(Reason("excluded_children"))
        out.append((row, why))
    names = _org_names(row[2] for row, _ in out)
    return [ExcludedService(row[0], row[1], names.get(row[2], ""), why) for row, why in out]


def match(
    criteria: MatchCriteria,
    *,
    now: datetime | None = None,
    limit: int | None = DEFAULT_LIMIT,
    with_excluded: bool = False,
) -> list[NeedMatches]:
    """Ranked services for each need of ``criteria`` (in the order of the needs)."""
    clock = _Clock(now or utcnow())
    area_ids, centre = _area_context(criteria.area_id)
    serving = _serving(area_ids)  # one indexed lookup, shared by every need
    return [
        _match_need(category, urgency, criteria, serving, centre, clock, limit, with_excluded)
        for category, urgency in criteria.needs
    ]


def service_ids(results: Iterable[NeedMatches]) -> list[list[int]]:
    return [[m.service_id for m in need.matches] for need in results]


__all__ = [
    "ExcludedService",
    "MatchCriteria",
    "NeedMatches",
    "Reason",
    "ServiceMatch",
    "criteria_from_form",
    "haversine_km",
    "match",
]
