"""The naive matching reference (DESIGN §8: "match one case against 10,000 services, ≥ 40×
faster than the naive reference"): load every service as an ORM object and filter in Python.
It is slow and obviously correct: ``bench_matching`` times it as the floor, and
tests/test_matching.py checks ``match`` against it.

It filters on its own (category, active, exact ages, gender, children; served areas through
each service's ``areas``) and ranks its candidates with the engine's own scoring, so the two
may differ only in which services they consider. The engine is looked up in the tree under
test (``bench.common.find``): the feature-package layout first, the flat module after.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import select

from bench.common import find, find_module_with

ENGINE_MODULES = ("app.directory.matching.engine", "app.directory.matching", "app.matching")
_DEFAULT: Any = object()


def engine() -> Any:
    """The matching engine module of the tree under test."""
    return find_module_with(
        ("match", "MatchCriteria", "NeedMatches", "_Clock", "_area_context", "_rank"),
        *ENGINE_MODULES,
    )


def naive_match(criteria: Any, *, now: datetime | None = None, limit: Any = _DEFAULT) -> list[Any]:
    """``match`` by brute force: every service loaded, each need filtered in Python."""
    m = engine()
    db = find("app.core.extensions:db", "app.extensions:db")
    service_model = find("app.models:Service", "app.models.directory:Service")
    band_fit = find("app.models.directory:band_fit")
    utcnow = find("app.models.base:utcnow")
    if limit is _DEFAULT:
        limit = m.DEFAULT_LIMIT
    clock = m._Clock(now or utcnow())
    area_ids, centre = m._area_context(criteria.area_id)
    services = db.session.scalars(select(service_model)).all()
    results = []
    for category, urgency in criteria.needs:
        candidates = []
        for s in services:
            if s.category != category or not s.active:
                continue
            if (
                criteria.age_band is not None
                and band_fit(s.min_age, s.max_age, criteria.age_band) == "none"
            ):
                continue
            if criteria.gender is not None and criteria.gender not in s.genders:
                continue
            if criteria.children and not s.accepts_children:
                continue
            candidates.append(s)
        serving = {s.id for s in candidates if any(a.id in area_ids for a in s.areas)}
        rows = [
            (
                s.id,
                s.languages,
                s.latitude,
                s.longitude,
                s.wheelchair_access,
                s.hearing_access,
                json.dumps(s.hours),
                s.timezone,
                s.beds_total,
                s.beds_available,
            )
            for s in candidates
        ]
        matches = m._rank(rows, category, urgency, criteria, serving, centre, clock, limit)
        results.append(m.NeedMatches(category, urgency, matches, total=len(rows)))
    return results
