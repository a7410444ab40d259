"""Directory UI (issue 4): who may read and edit what, field validation, audit events, the
Area list, anonymous matching, and the demo seed hook."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text

from app.core.crypto import blind_index
from app.core.extensions import db
from app.models import Area, AuditEvent, Organization, Service
from tests import factories
from tests.conftest import login_session


def actions() -> list[tuple[str, str | None, str | None]]:
    return [
        (e.action, e.object_type, e.object_id)
        for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq))
    ]


def signed_in(client: Any, role: str, org: Organization | None = None) -> Any:
    user = factories.make_user(role, organization=org)
    db.session.commit()
    login_session(client, user)
    return user


FORM = {
    "name": "Night Shelter",
    "description": "Beds for women",
    "category": "shelter",
    "languages": ["ar", "en"],
    "genders": ["female"],
    "min_age": "",
    "max_age": "",
    "accepts_children": "y",
    "wheelchair_access": "y",
    "hours_0": "09:00-12:00, 13:00-17:00",
    "hours_5": "24h",
    "hours_6": "22:00-06:00",
    "timezone": "Europe/Paris",
    "intake_phone": "(415) 555-0123",
    "beds_total": "10",
    "beds_available": "4",
    "active": "y",
}


# --- reading ---------------------------------------------------------------------------------


def test_staff_browse_and_search(client: Any) -> None:
    mine = factories.make_service(name="Alpha Refuge", category="shelter")
    factories.make_service(name="Beta Legal", category="legal")
    signed_in(client, "caseworker")
    page = client.get("/directory/")
    assert page.status_code == 200
    assert b"Alpha Refuge" in page.data and b"Beta Legal" in page.data
    found = client.get("/directory/?q=alpha")
    assert b"Alpha Refuge" in found.data and b"Beta Legal" not in found.data
    legal = client.get("/directory/?category=legal")
    assert b"Beta Legal" in legal.data and b"Alpha Refuge" not in legal.data
    detail = client.get(f"/directory/services/{mine.id}")
    assert detail.status_code == 200 and b"Alpha Refuge" in detail.data
    assert b"Edit service" not in detail.data  # read-only for caseworkers
    assert client.get(f"/directory/services/{mine.id}/edit").status_code == 403
    assert (
        client.post(f"/directory/services/{mine.id}/beds", data={"beds_available": 1}).status_code
        == 403
    )
    assert client.get("/directory/services/999999").status_code == 404


def test_provider_sees_only_own_services(client: Any) -> None:
    org = factories.make_org("provider")
    own = factories.make_service(organization=org, name="Own Service")
    other = factories.make_service(name="Other Service")
    signed_in(client, "provider", org)
    listing = client.get("/directory/")
    assert b"Own Service" in listing.data and b"Other Service" not in listing.data
    assert client.get(f"/directory/services/{own.id}").status_code == 200
    assert client.get(f"/directory/services/{other.id}").status_code == 404


def test_anonymous_is_sent_to_login(client: Any) -> None:
    s = factories.make_service()
    db.session.commit()
    for url in (
        "/directory/",
        f"/directory/services/{s.id}",
        "/directory/match",
        "/directory/areas",
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/auth/login" in response.headers["Location"]


# --- admin editing ---------------------------------------------------------------------------


def test_admin_creates_service_with_every_field(client: Any) -> None:
    org = factories.make_org("provider", name="Harbour House")
    area = Area(name="Docks")
    db.session.add(area)
    db.session.flush()
    signed_in(client, "admin")
    assert client.get("/directory/services/new").status_code == 200
    response = client.post(
        "/directory/services/new", data=dict(FORM, organization_id=org.id, areas=[area.id])
    )
    assert response.status_code == 302, response.data
    db.session.expire_all()
    s = db.session.scalar(select(Service).where(Service.name == "Night Shelter"))
    assert s is not None and s.organization_id == org.id
    assert s.language_list == ("en", "ar")
    assert s.genders == ("female",)
    assert (s.min_age, s.max_age) == (None, None)  # all ages
    assert s.accepts_children and s.wheelchair_access and not s.hearing_access
    assert s.hours == [
        [0, "09:00", "12:00"],
        [0, "13:00", "17:00"],
        [5, "00:00", "24:00"],
        [6, "22:00", "06:00"],
    ]
    assert s.timezone == "Europe/Paris"
    assert s.intake_phone == "+14155550123"
    assert s.intake_phone_index == blind_index("+14155550123")
    assert (s.beds_total, s.beds_available) == (10, 4)
    assert [a.name for a in s.areas] == ["Docks"]
    assert s.hsds_id  # every service gets an HSDS id for export
    assert ("service.create", "service", str(s.id)) in actions()
    # The phone number is stored sealed: not in the row in clear.
    raw = db.session.execute(
        text("SELECT intake_phone FROM service WHERE id = :id"), {"id": s.id}
    ).scalar()
    assert b"4155550123" not in bytes(raw)


def test_bad_input_rerenders_with_field_errors(client: Any) -> None:
    org = factories.make_org("provider")
    signed_in(client, "admin")
    bad = dict(
        FORM,
        organization_id=org.id,
        hours_2="nine to five",
        timezone="Mars/Olympus",
        intake_phone="12",
        beds_available="11",
        latitude="95",
    )
    response = client.post("/directory/services/new", data=bad)
    assert response.status_code == 400
    text = response.get_data(as_text=True)
    assert "Use a timezone name" in text
    assert "No more than 10 beds can be free now" in text  # the bed rule, with the rest
    assert "has-error" in text
    fixed = dict(bad, timezone="UTC", beds_available="3", latitude="")
    response = client.post("/directory/services/new", data=fixed)
    assert response.status_code == 400
    assert "Write hours like" in response.get_data(as_text=True)
    response = client.post("/directory/services/new", data=dict(fixed, hours_2="09:00-17:00"))
    assert response.status_code == 400
    assert "not a phone number" in response.get_data(as_text=True)
    assert db.session.scalar(select(Service)) is None
    assert [a for a in actions() if a[0].startswith("service.")] == []


def test_the_service_form_keeps_exact_ages(client: Any) -> None:
    """Exact minimum and maximum ages (issue 13.11): "12+" stays 12+, never a band."""
    org = factories.make_org("provider")
    s = factories.make_service(organization=org, category="shelter", min_age=18)
    db.session.commit()
    signed_in(client, "provider", org)
    page = client.get(f"/directory/services/{s.id}/edit").get_data(as_text=True)
    assert 'name="min_age"' in page and 'value="18"' in page and 'inputmode="numeric"' in page
    data = dict(FORM, min_age="12", max_age="", beds_total="", beds_available="")
    assert client.post(f"/directory/services/{s.id}/edit", data=data).status_code == 302
    db.session.expire_all()
    assert (s.min_age, s.max_age) == (12, None)
    detail = client.get(f"/directory/services/{s.id}").get_data(as_text=True)
    assert "Ages 12+" in detail
    for bad, field_error in (
        ({"min_age": "30", "max_age": "20"}, "The minimum age cannot be above the maximum age."),
        ({"min_age": "-1"}, "Number must be between 0 and 150."),
        ({"max_age": "twelve"}, "Not a valid integer value."),
    ):
        response = client.post(f"/directory/services/{s.id}/edit", data=dict(data, **bad))
        assert response.status_code == 400
        assert field_error in response.get_data(as_text=True)
    db.session.expire_all()
    assert (s.min_age, s.max_age) == (12, None)


def test_admin_edits_any_service(client: Any) -> None:
    s = factories.make_service(name="Before")
    signed_in(client, "admin")
    form = client.get(f"/directory/services/{s.id}/edit")
    assert form.status_code == 200 and b"Before" in form.data
    data = dict(
        FORM,
        name="After",
        organization_id=s.organization_id,
        category="legal",
        beds_total="",  # only shelters keep a bed count
        beds_available="",
    )
    assert client.post(f"/directory/services/{s.id}/edit", data=data).status_code == 302
    db.session.expire_all()
    assert (s.name, s.category) == ("After", "legal")
    assert ("service.update", "service", str(s.id)) in actions()


# --- provider editing ------------------------------------------------------------------------


def test_provider_edits_own_service_but_not_category_or_org(client: Any) -> None:
    org = factories.make_org("provider")
    s = factories.make_service(organization=org, category="shelter", beds_total=5, beds_available=1)
    elsewhere = factories.make_org("provider")
    signed_in(client, "provider", org)
    page = client.get(f"/directory/services/{s.id}/edit")
    assert page.status_code == 200
    assert b'name="category"' not in page.data and b'name="organization_id"' not in page.data
    data = dict(FORM, category="legal", organization_id=elsewhere.id, name="Renamed")
    assert client.post(f"/directory/services/{s.id}/edit", data=data).status_code == 302
    db.session.expire_all()
    assert s.name == "Renamed" and s.category == "shelter" and s.organization_id == org.id
    assert s.beds_available == 4
    assert client.get("/directory/services/new").status_code == 403


def test_changing_the_intake_phone_is_audited_with_ids_only(client: Any) -> None:
    """The intake phone is the number Haven trusts for ACCEPT, DECLINE and BEDS (issue
    13.8): an admin or the provider changes it on the service form, and each change writes
    ``service.intake_phone_change`` (ids only); saving without a change writes none."""
    org = factories.make_org("provider")
    s = factories.make_service(organization=org, category="shelter", intake_phone="+14155550123")
    db.session.commit()
    user = signed_in(client, "provider", org)
    data = dict(FORM, beds_total="", beds_available="")
    assert client.post(f"/directory/services/{s.id}/edit", data=data).status_code == 302
    assert [a for a in actions() if a[0] == "service.intake_phone_change"] == []
    data["intake_phone"] = "+1 415 555 0144"
    assert client.post(f"/directory/services/{s.id}/edit", data=data).status_code == 302
    db.session.expire_all()
    assert s.intake_phone == "+14155550144"
    [event] = db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == "service.intake_phone_change")
    ).all()
    assert (event.object_type, event.object_id) == ("service", str(s.id))
    assert (event.actor_user_id, event.actor_org_id) == (user.id, org.id)
    data["intake_phone"] = ""  # removed: a change too
    assert client.post(f"/directory/services/{s.id}/edit", data=data).status_code == 302
    assert [a for a in actions() if a[0] == "service.intake_phone_change"] == [
        ("service.intake_phone_change", "service", str(s.id))
    ] * 2
    # A new service given a number: its first trusted number is a change as well.
    admin = signed_in(client, "admin")
    assert admin.role == "admin"
    response = client.post(
        "/directory/services/new", data=dict(FORM, organization_id=org.id, name="Second")
    )
    assert response.status_code == 302
    second = db.session.scalar(select(Service).where(Service.name == "Second"))
    assert ("service.intake_phone_change", "service", str(second.id)) in actions()


def test_provider_of_another_org_gets_404(client: Any) -> None:
    s = factories.make_service(beds_total=5, beds_available=2)
    signed_in(client, "provider", factories.make_org("provider"))
    assert client.get(f"/directory/services/{s.id}/edit").status_code == 404
    assert client.post(f"/directory/services/{s.id}/edit", data=FORM).status_code == 404
    assert (
        client.post(f"/directory/services/{s.id}/beds", data={"beds_available": 0}).status_code
        == 404
    )
    db.session.expire_all()
    assert s.beds_available == 2
    assert [a for a in actions() if a[0].startswith("service.")] == []


def test_provider_updates_beds(client: Any) -> None:
    org = factories.make_org("provider")
    s = factories.make_service(organization=org, beds_total=5, beds_available=2)
    signed_in(client, "provider", org)
    page = client.get(f"/directory/services/{s.id}")
    assert b"Update free beds" in page.data
    assert (
        client.post(f"/directory/services/{s.id}/beds", data={"beds_available": 0}).status_code
        == 302
    )
    db.session.expire_all()
    assert s.beds_available == 0
    assert ("service.beds_update", "service", str(s.id)) in actions()
    too_many = client.post(f"/directory/services/{s.id}/beds", data={"beds_available": 6})
    assert too_many.status_code == 400
    assert b"No more than 5 beds can be free now" in too_many.data
    assert (
        client.post(f"/directory/services/{s.id}/beds", data={"beds_available": "x"}).status_code
        == 400
    )
    db.session.expire_all()
    assert s.beds_available == 0


def test_csrf_is_enforced_on_edits(app_factory: Any) -> None:
    app = app_factory(WTF_CSRF_ENABLED=True)
    with app.app_context():
        try:
            org = factories.make_org("provider")
            s = factories.make_service(organization=org, beds_total=5, beds_available=2)
            user = factories.make_user("provider", organization=org)
            db.session.commit()
            client = app.test_client()
            login_session(client, user)
            response = client.post(f"/directory/services/{s.id}/beds", data={"beds_available": 1})
            assert response.status_code == 400
            db.session.expire_all()
            assert s.beds_available == 2
        finally:
            from tests.conftest import _empty_all_tables

            db.session.remove()
            _empty_all_tables()
            db.session.remove()


# --- areas -----------------------------------------------------------------------------------


def test_admin_manages_areas(client: Any) -> None:
    signed_in(client, "admin")
    assert client.get("/directory/areas").status_code == 200
    assert (
        client.post(
            "/directory/areas/new",
            data={"name": "County", "parent_id": 0, "latitude": "34.0", "longitude": "-118"},
        ).status_code
        == 302
    )
    county = db.session.scalar(select(Area).where(Area.name == "County"))
    assert county is not None and county.latitude == 34.0
    assert (
        client.post(
            "/directory/areas/new", data={"name": "Town", "parent_id": county.id}
        ).status_code
        == 302
    )
    town = db.session.scalar(select(Area).where(Area.name == "Town"))
    assert town.parent_id == county.id
    dup = client.post("/directory/areas/new", data={"name": "county", "parent_id": 0})
    assert dup.status_code == 400 and b"exists" in dup.data
    # A parent cannot be the area itself or one of its descendants (no cycles).
    cycle = client.post(
        f"/directory/areas/{county.id}", data={"name": "County", "parent_id": town.id}
    )
    assert cycle.status_code == 400
    assert (
        client.post(
            f"/directory/areas/{county.id}", data={"name": "Big County", "parent_id": 0}
        ).status_code
        == 302
    )
    db.session.expire_all()
    assert county.name == "Big County"
    assert [a[0] for a in actions() if a[0].startswith("area.")] == [
        "area.create",
        "area.create",
        "area.update",
    ]


def test_admin_approves_an_sms_label_for_an_area(client: Any) -> None:
    """The label the hotline may send for an area: checked by the one discretion rule,
    refused with a clear error (the form comes back with what was typed), optional."""
    signed_in(client, "admin")
    form = {"name": "Harbour District", "parent_id": 0, "sms_label": "  Harbour   North "}
    assert client.post("/directory/areas/new", data=form).status_code == 302
    harbour = db.session.scalar(select(Area).where(Area.name == "Harbour District"))
    assert harbour is not None and harbour.sms_label == "Harbour North"
    listed = client.get("/directory/areas").get_data(as_text=True)
    assert "Harbour North" in listed
    refusals = {
        "Harbour Shelter": "Shelter",
        "Clínica Norte": "Clínica",
        "www harbour org": "link",
        "Harbour-North": "letters, digits",
        "x" * 25: "24",
        "Call 4155550123": "phone number",
    }
    for label, said in refusals.items():
        response = client.post(
            f"/directory/areas/{harbour.id}",
            data={"name": "Harbour District", "parent_id": 0, "sms_label": label},
        )
        page = response.get_data(as_text=True)
        assert response.status_code == 400, label
        assert said in page and 'aria-invalid="true"' in page, label
    db.session.expire_all()
    assert harbour.sms_label == "Harbour North"  # nothing changed by the refusals
    taken = client.post("/directory/areas/new",
                        data={"name": "Other", "parent_id": 0, "sms_label": "harbour north"})
    assert taken.status_code == 400 and b"Another area" in taken.data
    # Empty: no label, the hotline offers the area by its number only.
    cleared = client.post(f"/directory/areas/{harbour.id}",
                          data={"name": "Harbour District", "parent_id": 0, "sms_label": ""})
    assert cleared.status_code == 302
    db.session.expire_all()
    assert harbour.sms_label is None


def test_only_admins_manage_areas(client: Any) -> None:
    signed_in(client, "supervisor")
    assert client.get("/directory/areas").status_code == 403
    assert (
        client.post("/directory/areas/new", data={"name": "X", "parent_id": 0}).status_code == 403
    )


# --- anonymous matching page -------------------------------------------------------------------


def test_match_page_shows_reasons_marks_and_exclusions(client: Any) -> None:
    area = Area(name="Harbour")
    db.session.add(area)
    db.session.flush()
    free = factories.make_service(
        name="Free Shelter", languages="ar", beds_total=4, beds_available=2, areas=[area]
    )
    full = factories.make_service(name="Full Shelter", beds_total=4, beds_available=0)
    women = factories.make_service(name="Women Only", genders=("female",))
    signed_in(client, "caseworker")
    assert client.get("/directory/match").status_code == 200
    response = client.post(
        "/directory/match",
        data={
            "categories": "shelter",
            "urgency": "immediate",
            "language": "ar",
            "gender": "male",
            "area_id": area.id,
            "show_excluded": "y",
        },
    )
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    assert text.index("Free Shelter") < text.index("Full Shelter")
    assert "2 beds free" in text and "serves this area" in text and "speaks العربية" in text
    assert "Information only" in text
    assert "Women Only" in text and "not for this gender" in text
    assert free.id and full.id and women.id
    no_need = client.post("/directory/match", data={"language": "ar"})
    assert no_need.status_code == 400 and b"Choose at least one need" in no_need.data
    bad = client.post("/directory/match", data={"categories": "spaceship"})
    assert bad.status_code == 400
    # The criteria travel in the body: nothing about the survivor in the URL.
    assert "?" not in response.request.url


def test_match_page_roles(client: Any) -> None:
    signed_in(client, "provider")
    assert client.get("/directory/match").status_code == 403


# --- demo seed --------------------------------------------------------------------------------


def test_seed_demo_adds_directory(app: Any) -> None:
    result = app.test_cli_runner().invoke(args=["seed-demo"])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    services = db.session.scalars(select(Service)).all()
    by_org = {s.organization.name for s in services}
    assert {"Riverside Shelter", "Justice Legal Aid", "Community Health Clinic"} <= by_org
    shelter = next(s for s in services if s.category == "shelter")
    assert shelter.beds_total and shelter.beds_available is not None
    assert db.session.scalar(select(Area).where(Area.name == "Riverside")) is not None
