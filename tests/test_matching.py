"""Matching (issue 4): hard filters and their edge cases, marks (full, closed, information
only), readable reasons, and ranking properties checked with hypothesis."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core import vocab
from app.core.extensions import db
from app.directory.matching import MatchCriteria, criteria_from_form, haversine_km, match
from app.models.directory import open_at
from bench.naive_matching import naive_match
from tests import factories

_areas = itertools.count(1)

# A Wednesday, 15:00 UTC (08:00 in Los Angeles, summer time).
WEDNESDAY = datetime(2026, 7, 15, 15, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _request(app: Any) -> Any:
    """Reasons render through gettext, which reads the request's locale."""
    with app.test_request_context():
        yield


def make_area(name: str | None = None, **fields: Any) -> Any:
    """An area with optional parent and centre."""
    from app.models import Area

    area = Area(name=name or f"Area {next(_areas)}", **fields)
    db.session.add(area)
    db.session.flush()
    return area


def crit(category: str = "shelter", urgency: str = "routine", **kw: Any) -> MatchCriteria:
    kw.setdefault("consented_share_categories", frozenset(vocab.SERVICE_CATEGORIES))
    return MatchCriteria(needs=((category, urgency),), **kw)


def ids(result: Any) -> list[int]:
    return [m.service_id for m in result.matches]


def one(criteria: MatchCriteria, **kw: Any) -> Any:
    [need] = match(criteria, now=WEDNESDAY, **kw)
    return need


# --- hard filters -----------------------------------------------------------------------------


def test_category_and_active_filter(app: Any) -> None:
    shelter = factories.make_service(category="shelter")
    factories.make_service(category="legal")
    factories.make_service(category="shelter", active=False)
    assert ids(one(crit("shelter"))) == [shelter.id]


@pytest.mark.parametrize(
    ("service_genders", "survivor", "eligible"),
    [
        (("female",), "female", True),
        (("female",), "male", False),
        (("female", "nonbinary"), "nonbinary", True),
        (("male",), "other", False),
        (None, "other", True),  # no restriction
        (("female",), None, True),  # unknown gender filters nothing (a note asks to check)
    ],
)
def test_gender_eligibility(app: Any, service_genders: Any, survivor: Any, eligible: bool) -> None:
    s = factories.make_service(genders=service_genders)
    result = one(crit(gender=survivor), with_excluded=True)
    assert (s.id in ids(result)) is eligible
    if not eligible:
        [excluded] = result.excluded
        assert [r.code for r in excluded.reasons] == ["excluded_gender"]
        assert "Woman" in str(excluded.reasons[0]) or "Man" in str(excluded.reasons[0])
    if survivor is None and service_genders:
        assert "check_gender" in [n.code for n in result.matches[0].notes]


@pytest.mark.parametrize(
    ("ages", "survivor", "fit"),
    [
        ((18, None), "under_18", "none"),  # adults only
        ((18, None), "18_24", "whole"),  # first adult band
        ((None, 17), "under_18", "whole"),
        ((0, 17), "under_18", "whole"),
        ((None, 17), "18_24", "none"),  # youth service, just too old
        ((65, None), "65_plus", "whole"),
        ((50, 64), "65_plus", "none"),
        ((None, None), "under_18", "whole"),
        ((None, None), "65_plus", "whole"),
        # Exact ages inside a band: the band is not widened to "all of it" (issue 13.11).
        ((12, None), "under_18", "part"),  # a child of 8 is in the band
        ((12, None), "18_24", "whole"),
        ((21, None), "18_24", "part"),
        ((12, 100), "65_plus", "part"),  # a 101-year-old is not eligible
        ((16, 20), "under_18", "part"),
        ((16, 20), "18_24", "part"),
        ((16, 20), "25_34", "none"),
        ((25, 34), "25_34", "whole"),
    ],
)
def test_age_eligibility_is_exact(app: Any, ages: Any, survivor: str, fit: str) -> None:
    s = factories.make_service(min_age=ages[0], max_age=ages[1])
    result = one(crit(age_band=survivor), with_excluded=True)
    if fit == "none":
        assert s.id not in ids(result)
        assert [r.code for r in result.excluded[0].reasons] == ["excluded_age"]
        return
    [found] = result.matches
    notes = [n for n in found.notes if "age" in n.code]
    if fit == "whole":
        assert notes == []
    else:
        assert [n.code for n in notes] == ["part_age"]
    assert result.excluded == []


def test_a_partly_eligible_band_says_which_part(app: Any) -> None:
    factories.make_service(name="Youth 12+", min_age=12)
    factories.make_service(name="Adults 21+", min_age=21)
    factories.make_service(name="Teens", min_age=13, max_age=17)
    factories.make_service(name="Young adults", max_age=20)
    child = one(crit(age_band="under_18"), with_excluded=True)
    texts = {m.name: [str(n) for n in m.notes] for m in child.matches}
    assert "Ages 12+ only: part of Under 18 is not eligible" in texts["Youth 12+"]
    assert "Ages 13–17 only: part of Under 18 is not eligible" in texts["Teens"]
    assert not any("eligible" in t for t in texts["Young adults"])
    assert [e.name for e in child.excluded] == ["Adults 21+"]
    assert str(child.excluded[0].reasons[0]) == "not for this age band (only for ages 21+)"
    young = one(crit(age_band="18_24"))
    texts = {m.name: [str(n) for n in m.notes] for m in young.matches}
    assert "Ages 21+ only: part of 18–24 is not eligible" in texts["Adults 21+"]
    assert "Ages up to 20 only: part of 18–24 is not eligible" in texts["Young adults"]
    unknown = one(crit(age_band=None))
    texts = {m.name: [str(n) for n in m.notes] for m in unknown.matches}
    assert "only for ages 12+ — check eligibility" in texts["Youth 12+"]


_age = st.one_of(st.none(), st.integers(0, 90))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    ages=st.lists(st.tuples(_age, _age), min_size=1, max_size=6),
    band=st.sampled_from(vocab.AGE_BANDS),
)
def test_age_matching_agrees_with_the_exact_ages(app: Any, ages: Any, band: str) -> None:
    """The SQL prefilter (an integer mask test) finds exactly the services whose exact ages
    meet the band at all; a note marks exactly those that do not cover it whole."""
    low, high = vocab.AGE_BAND_RANGES[band]
    try:
        made = {}
        for lo, hi in ages:
            if lo is not None and hi is not None and lo > hi:
                lo, hi = hi, lo
            made[factories.make_service(min_age=lo, max_age=hi).id] = (lo, hi)
        result = one(crit(age_band=band), limit=None)
        found = {m.service_id: m for m in result.matches}
        for sid, (lo, hi) in made.items():
            eligible_low, eligible_high = lo or 0, hi
            meets = (eligible_high is None or low <= eligible_high) and (
                high is None or eligible_low <= high
            )
            whole = eligible_low <= low and (
                eligible_high is None or (high is not None and high <= eligible_high)
            )
            assert (sid in found) is meets, (lo, hi, band)
            if meets:
                partial = "part_age" in [n.code for n in found[sid].notes]
                assert partial is not whole, (lo, hi, band)
        assert ids(result) == ids(naive_match(crit(age_band=band), now=WEDNESDAY, limit=None)[0])
    finally:
        db.session.rollback()


def test_children(app: Any) -> None:
    with_kids = factories.make_service(accepts_children=True)
    adults = factories.make_service(accepts_children=False)
    result = one(crit(children=True), with_excluded=True)
    assert ids(result) == [with_kids.id]
    assert "accepts children" in [str(r) for r in result.matches[0].reasons]
    assert [e.service_id for e in result.excluded] == [adults.id]
    assert str(result.excluded[0].reasons[0]) == "does not accept children"
    # Without children both qualify.
    assert set(ids(one(crit(children=False)))) == {with_kids.id, adults.id}


def test_several_exclusion_reasons_and_excluded_only_on_request(app: Any) -> None:
    factories.make_service(genders=("female",), max_age=17, accepts_children=False)
    plain = one(crit(gender="male", age_band="25_34", children=True))
    assert plain.matches == [] and plain.excluded is None
    asked = one(crit(gender="male", age_band="25_34", children=True), with_excluded=True)
    assert [r.code for r in asked.excluded[0].reasons] == [
        "excluded_gender",
        "excluded_age",
        "excluded_children",
    ]


# --- marks ------------------------------------------------------------------------------------


def test_full_shelter_last_and_marked(app: Any) -> None:
    full = factories.make_service(name="A full", beds_total=10, beds_available=0, languages="ar")
    free = factories.make_service(name="B free", beds_total=10, beds_available=2)
    result = one(crit(language="ar"))
    assert ids(result) == [free.id, full.id]
    assert result.matches[1].full and not result.matches[0].full
    assert "2 beds free" in [str(r) for r in result.matches[0].reasons]
    assert "full: no free bed" in [str(n) for n in result.matches[1].notes]
    assert "speaks العربية" in [str(r) for r in result.matches[1].reasons]


def test_closed_services_marked_not_hidden(app: Any) -> None:
    office = [[d, "09:00", "17:00"] for d in range(5)]
    closed = factories.make_service(hours=office, timezone="America/Los_Angeles")  # 08:00 there
    open_ = factories.make_service(hours=office, timezone="Europe/London")  # 16:00 there
    unknown = factories.make_service(hours=[])
    result = one(crit())
    by_id = {m.service_id: m for m in result.matches}
    assert by_id[closed.id].open_now is False
    assert "closed now" in [str(n) for n in by_id[closed.id].notes]
    assert by_id[open_.id].open_now is True
    assert "open now" in [str(r) for r in by_id[open_.id].reasons]
    assert by_id[unknown.id].open_now is None
    assert ids(result)[0] == open_.id


def test_information_only_without_share_consent(app: Any) -> None:
    s = factories.make_service(category="medical")
    consented = one(crit("medical", consented_share_categories=frozenset({"medical"})))
    assert consented.matches[0].referable
    other = one(crit("medical", consented_share_categories=frozenset({"shelter", "legal"})))
    assert other.matches[0].service_id == s.id and other.matches[0].information_only
    assert not other.matches[0].referable
    assert "information_only" in [n.code for n in other.matches[0].notes]


def test_anonymous_form_criteria_are_information_only(app: Any) -> None:
    c = criteria_from_form(
        {
            "categories": ["legal", "shelter"],
            "urgency": "immediate",
            "language": "ar",
            "age_band": "",
            "gender": None,
            "area_id": None,
            "children": True,
            "accessibility": ["wheelchair"],
        }
    )
    assert c.needs == (("legal", "immediate"), ("shelter", "immediate"))
    assert c.consented_share_categories == frozenset() and c.age_band is None
    with pytest.raises(ValueError, match="unknown need category"):
        criteria_from_form({"categories": ["nonsense"]})


# --- soft ranking and reasons -------------------------------------------------------------------


def test_area_language_accessibility_reasons_and_order(app: Any) -> None:
    county = make_area("County", latitude=34.0, longitude=-118.0)
    town = make_area("Town", parent=county, latitude=34.05, longitude=-118.25)
    elsewhere = make_area("Elsewhere")
    serves_county = factories.make_service(name="County-wide", areas=[county])
    near = factories.make_service(name="Near", latitude=34.06, longitude=-118.24, areas=[elsewhere])
    far = factories.make_service(name="Far", latitude=40.7, longitude=-74.0)
    speaks = factories.make_service(
        name="Speaks", languages="ar", wheelchair_access=True, areas=[town]
    )
    result = one(crit(area_id=town.id, language="ar", accessibility=frozenset({"wheelchair"})))
    assert ids(result) == [speaks.id, serves_county.id, near.id, far.id]
    texts = {m.service_id: [str(r) for r in m.reasons] for m in result.matches}
    assert {"speaks العربية", "serves this area", "wheelchair access"} <= set(texts[speaks.id])
    assert "serves this area" in texts[serves_county.id]  # parent area counts
    assert any(t.startswith("about 1") and t.endswith("km away") for t in texts[near.id])
    assert "no wheelchair access listed" in [str(n) for n in result.matches[1].notes]
    assert 3900 < haversine_km(34.05, -118.25, 40.7, -74.0) < 4000


def test_reasons_are_translated(app: Any) -> None:
    factories.make_service(languages="ar", beds_total=5, beds_available=2)
    with app.test_request_context(headers={"Accept-Language": "fr"}):
        result = one(crit(language="ar"))
        texts = [str(r) for r in result.matches[0].reasons]
    assert texts  # rendered without error in a French request (falls back when untranslated)


def test_open_at_edges() -> None:
    overnight = [[4, "20:00", "06:00"]]  # Friday night into Saturday
    tz = "Europe/Paris"
    friday_late = datetime(2026, 7, 17, 21, 30, tzinfo=UTC)  # 23:30 Paris, Friday
    saturday_early = datetime(2026, 7, 18, 3, 0, tzinfo=UTC)  # 05:00 Paris, Saturday
    saturday_late = datetime(2026, 7, 18, 4, 0, tzinfo=UTC)  # 06:00 Paris: closed
    assert open_at(overnight, tz, friday_late) is True
    assert open_at(overnight, tz, saturday_early) is True
    assert open_at(overnight, tz, saturday_late) is False
    always = [[d, "00:00", "24:00"] for d in range(7)]
    assert open_at(always, "UTC", WEDNESDAY) is True
    assert open_at([], "UTC", WEDNESDAY) is None
    # Daylight saving: 09:00-17:00 in New York is 13:00-21:00 UTC in July, 14:00-22:00 in January.
    office = [[d, "09:00", "17:00"] for d in range(5)]
    assert open_at(office, "America/New_York", datetime(2026, 7, 15, 13, 30, tzinfo=UTC)) is True
    assert open_at(office, "America/New_York", datetime(2026, 1, 14, 13, 30, tzinfo=UTC)) is False
    # A bad zone name falls back to UTC rather than failing the whole match.
    assert open_at(office, "Mars/Olympus", datetime(2026, 7, 15, 10, 0, tzinfo=UTC)) is True


def test_several_needs_in_order_and_same_as_naive_reference(app: Any) -> None:
    area = make_area("Somewhere", latitude=10.0, longitude=10.0)
    for i in range(30):
        factories.make_service(
            category=vocab.SERVICE_CATEGORIES[i % 3],
            name=f"S{i:02d}",
            languages=["ar", "en", "es"][i % 3],
            latitude=10 + i / 50,
            longitude=10.0,
            areas=[area] if i % 4 == 0 else [],
            beds_available=(i % 3) if i % 3 == 0 else None,
            beds_total=2 if i % 3 == 0 else None,
            genders=("female",) if i % 5 == 0 else None,
        )
    c = MatchCriteria(
        needs=(("legal", "soon"), ("shelter", "immediate")),
        language="es",
        area_id=area.id,
        gender="male",
        consented_share_categories=frozenset({"legal"}),
    )
    fast = match(c, now=WEDNESDAY, limit=None)
    slow = naive_match(c, now=WEDNESDAY, limit=None)
    assert [n.category for n in fast] == ["legal", "shelter"]
    assert [ids(n) for n in fast] == [ids(n) for n in slow]
    assert fast[0].matches and all(not m.information_only for m in fast[0].matches)
    assert all(m.information_only for m in fast[1].matches)
    limited = match(c, now=WEDNESDAY, limit=3)
    assert [ids(n) for n in limited] == [ids(n)[:3] for n in fast]
    assert limited[0].total == fast[0].total


# --- ranking properties ------------------------------------------------------------------------

service_strategy = st.fixed_dictionaries(
    {
        "languages": st.sets(st.sampled_from(["en", "es", "ar", "fr"])),
        "in_area": st.booleans(),
        "wheelchair": st.booleans(),
        "beds": st.one_of(st.none(), st.integers(0, 5)),
        "open": st.booleans(),
    }
)
PROPERTY_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _build(specs: list[dict[str, Any]], area: Any, org: Any) -> list[Any]:
    rows = []
    for i, spec in enumerate(specs):
        rows.append(
            factories.make_service(
                organization=org,
                name=f"Service {i:02d}",
                languages=",".join(sorted(spec["languages"])),
                areas=[area] if spec["in_area"] else [],
                wheelchair_access=spec["wheelchair"],
                beds_total=5 if spec["beds"] is not None else None,
                beds_available=spec["beds"],
                hours=[[d, "00:00", "24:00"] for d in range(7)]
                if spec["open"]
                else [[6, "01:00", "02:00"]],
            )
        )
    return rows


@PROPERTY_SETTINGS
@given(
    specs=st.lists(service_strategy, min_size=1, max_size=8),
    data=st.data(),
    language=st.sampled_from(["en", "es", "ar", "fr"]),
)
def test_adding_a_matching_language_never_lowers_rank(
    app: Any, specs: Any, data: Any, language: str
) -> None:
    try:
        org = factories.make_org("provider")
        area = make_area()
        rows = _build(specs, area, org)
        target = rows[data.draw(st.integers(0, len(rows) - 1))]
        c = crit(language=language, area_id=area.id, accessibility=frozenset({"wheelchair"}))
        before = ids(one(c, limit=None)).index(target.id)
        target.language_list = [*list(target.language_list), language]
        db.session.flush()
        after = ids(one(c, limit=None)).index(target.id)
        assert after <= before
    finally:
        db.session.rollback()


@PROPERTY_SETTINGS
@given(
    specs=st.lists(service_strategy, max_size=6),
    twin=service_strategy,
    free_beds=st.integers(1, 5),
    language=st.sampled_from(["en", "es", "ar", "fr"]),
)
def test_full_shelter_never_above_an_equal_free_one(
    app: Any, specs: Any, twin: Any, free_beds: int, language: str
) -> None:
    try:
        org = factories.make_org("provider")
        area = make_area()
        _build(specs, area, org)
        full, free = _build([dict(twin, beds=0), dict(twin, beds=free_beds)], area, org)
        # Same name would tie-break by id; give the full one the "better" name on purpose.
        full.name, free.name = "AAA", "ZZZ"
        db.session.flush()
        c = crit(language=language, area_id=area.id)
        order = ids(one(c, limit=None))
        assert order.index(free.id) < order.index(full.id)
        assert all(
            m.full
            for m in one(c, limit=None).matches[order.index(full.id) :]
            if m.beds_available == 0
        )
    finally:
        db.session.rollback()
