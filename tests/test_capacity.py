"""Bed capacity: ONE rule (0 <= free, free + held <= total, total >= held), owned by
``app.capacity.set_beds`` and called by every path that writes a bed count — the provider
portal, SMS ``BEDS``, the directory's beds form, the service form (new and edit) — while the
HSDS import never writes one (HSDS carries no capacity). The table-driven test runs the same
scenario through every path and expects the same answer and the same counts."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.core.extensions import db
from app.models import AuditEvent, Referral, Service
from tests import factories
from tests.conftest import login_session
from tests.sms_support import ACCOUNT_SID, AUTH_TOKEN, inbound_params, post_signed

PROVIDER_PHONE = "+14155550188"
HSDS_ID = "77777777-0000-4000-8000-000000000001"
ORG_HSDS_ID = "66666666-0000-4000-8000-000000000001"


@pytest.fixture
def sms_ready(app: Any) -> Any:
    # The shared app's config is put back after the test (conftest ``app``).
    app.config.update(TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID)
    return app


def ten_bed_shelter_with_one_hold() -> tuple[Service, Any]:
    """A tracked shelter of 10 beds, all free, then one referral holds one: 9 free, 1 held."""
    org = factories.make_org("provider", hsds_id=ORG_HSDS_ID)
    shelter = factories.make_service(
        organization=org,
        category="shelter",
        name="Harbour Refuge",
        beds_total=10,
        beds_available=10,
        intake_phone=PROVIDER_PHONE,
        hsds_id=HSDS_ID,
    )
    factories.make_referral(factories.make_case(needs={"shelter": "immediate"}), shelter)
    user = factories.make_user("provider", organization=org)
    db.session.commit()
    return shelter, user


def counts(service_id: int) -> tuple[int | None, int | None, int]:
    db.session.expire_all()
    service = db.session.get(Service, service_id)
    assert service is not None
    held = db.session.scalar(
        select(func.count(Referral.id)).where(
            Referral.service_id == service_id, Referral.hold_status == "held"
        )
    )
    return service.beds_total, service.beds_available, int(held or 0)


def bed_updates() -> int:
    return int(
        db.session.scalar(
            select(func.count(AuditEvent.id)).where(AuditEvent.action == "service.beds_update")
        )
        or 0
    )


# --- the paths: each sets "free" beds its own way and returns what the user was told ---------


def via_portal(client: Any, service: Service, free: int) -> tuple[bool, str]:
    response = client.post(
        f"/provider/services/{service.id}/beds", data={f"s{service.id}-beds_available": free}
    )
    return response.status_code == 302, response.get_data(as_text=True)


def via_sms(client: Any, service: Service, free: int) -> tuple[bool, str]:
    response = post_signed(client, "/sms/inbound", inbound_params(PROVIDER_PHONE, f"BEDS {free}"))
    assert response.status_code == 200
    [reply] = [m.text or "" for m in ET.fromstring(response.data).iter("Message")]  # noqa: S314
    return reply.startswith("Haven: beds available now"), reply


def via_directory_beds_form(client: Any, service: Service, free: int) -> tuple[bool, str]:
    response = client.post(f"/directory/services/{service.id}/beds", data={"beds_available": free})
    return response.status_code == 302, response.get_data(as_text=True)


def via_service_form(client: Any, service: Service, free: int) -> tuple[bool, str]:
    data = {
        "name": "Harbour Refuge",
        "description": "",
        "timezone": "UTC",
        "intake_phone": PROVIDER_PHONE,
        "beds_total": "10",
        "beds_available": str(free),
        "active": "y",
    }
    response = client.post(f"/directory/services/{service.id}/edit", data=data)
    return response.status_code == 302, response.get_data(as_text=True)


def via_hsds_import(app: Any, service: Service, free: int, tmp_path: Any) -> tuple[bool, str]:
    """HSDS has no bed counts: a feed for this shelter cannot say "free", and the import
    must leave the counts (and the holds) as they are."""
    feed = [
        {
            "id": ORG_HSDS_ID,
            "name": service.organization.name,
            "services": [
                {
                    "id": HSDS_ID,
                    "name": "Harbour Refuge",
                    "description": f"Emergency shelter, {free} beds free",
                    "taxonomy_terms": [{"code": "shelter", "name": "Shelter"}],
                }
            ],
        }
    ]
    path = tmp_path / "feed.json"
    path.write_text(json.dumps(feed))
    result = app.test_cli_runner().invoke(args=["directory", "import-hsds", str(path)])
    assert result.exit_code == 0, result.output
    return False, str(result.output) + str(result.stderr)


PATHS: dict[str, Callable[..., tuple[bool, str]]] = {
    "provider portal": via_portal,
    "SMS BEDS": via_sms,
    "directory beds form": via_directory_beds_form,
    "service edit form": via_service_form,
}
REFUSALS = {
    # What each path says when free + held would exceed the total: the same limit (9).
    "provider portal": "No more than 9 beds can be free now",
    "SMS BEDS": "Haven: send BEDS and a number from 0 to 9.",
    "directory beds form": "No more than 9 beds can be free now",
    "service edit form": "No more than 9 beds can be free now",
}


@pytest.mark.parametrize("path", list(PATHS))
def test_ten_free_after_one_hold_is_refused_the_same_way_everywhere(
    sms_ready: Any, client: Any, path: str
) -> None:
    shelter, user = ten_bed_shelter_with_one_hold()
    login_session(client, user)
    assert counts(shelter.id) == (10, 9, 1)
    before = bed_updates()

    accepted, said = PATHS[path](client, shelter, 10)

    assert not accepted, f"{path} accepted 10 free + 1 held on 10 beds"
    assert REFUSALS[path] in said, said
    assert counts(shelter.id) == (10, 9, 1)
    assert bed_updates() == before


@pytest.mark.parametrize("path", list(PATHS))
def test_the_largest_allowed_count_is_accepted_the_same_way_everywhere(
    sms_ready: Any, client: Any, path: str
) -> None:
    shelter, user = ten_bed_shelter_with_one_hold()
    login_session(client, user)
    assert counts(shelter.id) == (10, 9, 1)
    PATHS[path](client, shelter, 0)
    assert counts(shelter.id) == (10, 0, 1)

    accepted, said = PATHS[path](client, shelter, 9)

    assert accepted, f"{path}: {said[:2000]}"
    assert counts(shelter.id) == (10, 9, 1)
    assert bed_updates() >= 1


def test_an_hsds_import_never_touches_bed_counts(app: Any, tmp_path: Any) -> None:
    shelter, _user = ten_bed_shelter_with_one_hold()
    before = bed_updates()
    accepted, _said = via_hsds_import(app, shelter, 10, tmp_path)
    assert not accepted
    assert counts(shelter.id) == (10, 9, 1)
    assert bed_updates() == before


# --- the rule itself ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("category", "total", "free", "held", "refused"),
    [
        ("shelter", None, None, 0, None),  # not tracked
        ("shelter", None, None, 2, None),  # tracking stopped while beds are held
        ("legal", None, None, 0, None),
        ("shelter", 10, 9, 1, None),
        ("shelter", 10, 0, 10, None),
        ("shelter", 0, 0, 0, None),
        ("shelter", 10, 10, 1, "over_total"),
        ("shelter", 10, 11, 0, "over_total"),
        ("shelter", 10, -1, 0, "negative"),
        ("shelter", -1, 0, 0, "negative"),
        ("shelter", 1, 0, 2, "below_held"),
        ("shelter", None, 3, 0, "no_total"),
        ("shelter", 10, None, 0, "no_free"),
        ("legal", 10, 5, 0, "not_shelter"),
    ],
)
def test_the_rule(
    category: str, total: int | None, free: int | None, held: int, refused: str | None
) -> None:
    from app.directory import capacity

    if refused is None:
        capacity.check(category, total, free, held)
        return
    with pytest.raises(capacity.BedCountError) as raised:
        capacity.check(category, total, free, held)
    assert raised.value.reason == refused
    if refused == "over_total":
        assert raised.value.top == total - held and raised.value.field == "free"


def test_set_beds_keeps_changes_and_refuses_without_writing(app: Any) -> None:
    from app.directory import capacity

    shelter, _user = ten_bed_shelter_with_one_hold()
    service = db.session.get(Service, shelter.id)
    before = bed_updates()
    # Nothing changes: no write, no event.
    assert capacity.set_beds(service, free=9) is False
    assert bed_updates() == before
    # The total alone (free kept), down to exactly free + held.
    assert capacity.set_beds(service, total=10) is False
    with pytest.raises(capacity.BedCountError) as raised:
        capacity.set_beds(service, total=9)
    assert raised.value.reason == "over_total" and counts(shelter.id) == (10, 9, 1)
    assert capacity.set_beds(service, total=12) is True
    assert counts(shelter.id) == (12, 9, 1)
    assert bed_updates() == before + 1
    with pytest.raises(capacity.BedCountError) as raised:
        capacity.set_beds(service, total=0, free=0)
    assert raised.value.reason == "below_held"
    # Tracking stops (both counts cleared); the hold stays on its referral.
    assert capacity.set_beds(service, total=None, free=None) is True
    assert counts(shelter.id) == (None, None, 1)
    assert capacity.most_free(db.session.get(Service, shelter.id)) is None


def test_the_service_form_refuses_a_total_below_the_holds(app: Any, client: Any) -> None:
    shelter, user = ten_bed_shelter_with_one_hold()
    login_session(client, user)
    accepted, _said = via_service_form(client, shelter, 0)
    assert accepted
    data = {"name": "Harbour Refuge", "timezone": "UTC", "beds_total": "0", "beds_available": "0"}
    response = client.post(f"/directory/services/{shelter.id}/edit", data=data)
    assert response.status_code == 400
    assert "cannot be fewer than the 1 beds held" in response.get_data(as_text=True)
    assert counts(shelter.id) == (10, 0, 1)


def test_a_new_service_breaking_the_rule_is_not_created(app: Any, client: Any) -> None:
    org = factories.make_org("provider")
    admin = factories.make_user("admin")
    db.session.commit()
    login_session(client, admin)
    data = {
        "organization_id": org.id,
        "name": "Clinic with beds",
        "category": "medical",
        "timezone": "UTC",
        "beds_total": "4",
        "beds_available": "2",
    }
    response = client.post("/directory/services/new", data=data)
    assert response.status_code == 400
    assert "Only shelters keep a bed count." in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(Service.id))) == 0
    response = client.post("/directory/services/new", data=dict(data, category="shelter"))
    assert response.status_code == 302
    [service] = db.session.scalars(select(Service)).all()
    assert counts(service.id) == (4, 2, 0)
    assert bed_updates() == 1


def test_beds_by_sms_change_every_shelter_on_the_number_or_none(
    sms_ready: Any, client: Any
) -> None:
    shelter, _user = ten_bed_shelter_with_one_hold()
    small = factories.make_service(
        organization=shelter.organization,
        category="shelter",
        beds_total=4,
        beds_available=4,
        intake_phone=PROVIDER_PHONE,
    )
    db.session.commit()
    accepted, said = via_sms(client, shelter, 5)  # fits the first (9), not the second (4)
    assert not accepted and said == "Haven: send BEDS and a number from 0 to 4."
    assert counts(shelter.id) == (10, 9, 1) and counts(small.id) == (4, 4, 0)
    accepted, said = via_sms(client, shelter, 3)
    assert accepted
    assert counts(shelter.id) == (10, 3, 1) and counts(small.id) == (4, 3, 0)


def test_setting_beds_racing_a_new_hold_never_overbooks(app: Any) -> None:
    """BEDS 10 on a full-free 10-bed shelter while a referral takes a bed: whichever goes
    first, free + held never exceeds the total (PostgreSQL: row locks; SQLite: one writer)."""
    from app.directory import capacity
    from tests.test_bed_holds import refer, run_together

    org = factories.make_org("provider")
    service = factories.make_service(
        organization=org, category="shelter", beds_total=10, beds_available=8
    )
    case = factories.make_case(needs={"shelter": "immediate"})
    service_id, case_id = service.id, case.id
    db.session.commit()
    from app.models import Case

    def set_ten_free() -> Any:
        return capacity.set_beds(db.session.get(Service, service_id), free=10)

    def hold_one() -> Any:
        return refer(db.session.get(Case, case_id), db.session.get(Service, service_id)).id

    results = run_together(app, [set_ten_free, hold_one])
    total, free, held = counts(service_id)
    assert free is not None and total is not None
    assert free + held <= total
    # Either the update came first (10 free, then one held: 9 + 1) or the hold did (then
    # 10 free is refused: 7 + 1).
    assert (free, held) in ((9, 1), (7, 1)), (results, free, held)
    assert isinstance(results[0], (bool, capacity.BedCountError)), results


# --- the invariant, whatever happens in whatever order ------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("hold")),
        st.tuples(st.just("return")),
        st.tuples(st.just("set"), st.integers(-2, 12), st.one_of(st.none(), st.integers(-2, 12))),
    ),
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(ops=operations)
def test_free_plus_held_never_exceeds_the_total(app: Any, ops: list[tuple[Any, ...]]) -> None:
    """Holds taken and returned, and counts set (``None``: the total kept), in any order:
    0 <= free and free + held <= total after every step, refused steps changing nothing."""
    from app.directory import capacity
    from app.referrals import service as referrals

    try:
        with app.test_request_context():
            org = factories.make_org("provider")
            service = factories.make_service(
                organization=org, category="shelter", beds_total=6, beds_available=3
            )
            open_referrals: list[Referral] = []
            for op in ops:
                before = counts(service.id)
                if op[0] == "hold":
                    case = factories.make_case(needs={"shelter": "soon"})
                    try:
                        open_referrals.append(factories.make_referral(case, service))
                    except referrals.NoBedFree:
                        assert before[1] == 0
                elif op[0] == "return" and open_referrals:
                    referrals.cancel(open_referrals.pop(0), None)
                elif op[0] == "set":
                    total = capacity.KEEP if op[2] is None else op[1]
                    free = op[1] if op[2] is None else op[2]
                    try:
                        row = db.session.get(Service, service.id)
                        capacity.set_beds(row, total=total, free=free)
                    except capacity.BedCountError:
                        assert counts(service.id) == before
                total_now, free_now, held_now = counts(service.id)
                assert total_now is not None and free_now is not None
                assert free_now >= 0 and free_now + held_now <= total_now
    finally:
        db.session.rollback()
