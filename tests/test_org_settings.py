"""Organization settings (issue 16): time zone and contact line on the admin's organization
page; every time shown in the viewer's organization's zone, dates and numbers in the UI
language; the provider sees the referring organization's contact line, never a caseworker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from flask_login import login_user
from sqlalchemy import select

from app.auth import org_settings
from app.core import formatting
from app.core.extensions import db
from app.directory.matching import Reason
from app.models import AuditEvent, Organization
from tests import factories
from tests.conftest import login_session


@pytest.fixture
def admin(app, client):
    user = factories.make_user("admin", organization=factories.make_org("operator"))
    db.session.commit()
    login_session(client, user)
    return user


def _settings(org: Organization, **changes: str) -> dict[str, str]:
    data = {"name": org.name, "kind": org.kind, "timezone": "UTC", "contact_phone": "",
            "dialing_region": ""}
    data.update(changes)
    return data


def test_admin_sets_time_zone_contact_line_and_region(admin, client):
    org = factories.make_org("ngo")
    db.session.commit()
    response = client.post(
        f"/admin/organizations/{org.id}",
        data=_settings(org, timezone="Europe/Paris", contact_phone="01 23 45 67 89",
                       dialing_region="fr"),
    )
    assert response.status_code == 302
    db.session.expire_all()
    org = db.session.get(Organization, org.id)
    assert (org.timezone, org.contact_phone, org.phone_region) == (
        "Europe/Paris", "+33123456789", "FR"
    )
    assert db.session.scalar(
        select(AuditEvent.id).where(AuditEvent.action == "organization.settings")
    )
    page = client.get(f"/admin/organizations/{org.id}").get_data(as_text=True)
    assert "Europe/Paris" in page and "+33 1 23 45 67 89" in page and 'value="FR"' in page


@pytest.mark.parametrize(
    ("field", "value"),
    [("timezone", "Mars/Olympus"), ("timezone", "europe/paris"), ("timezone", ""),
     ("contact_phone", "12"), ("contact_phone", "555-CALL-NOW"), ("dialing_region", "ZZ")],
)
def test_bad_settings_re_render_with_a_field_error_and_change_nothing(admin, client, field, value):
    org = factories.make_org("ngo", name="Unchanged NGO")
    db.session.commit()
    response = client.post(
        f"/admin/organizations/{org.id}", data=_settings(org, name="Renamed NGO", **{field: value})
    )
    assert response.status_code == 400
    assert b'aria-invalid="true"' in response.data
    db.session.expire_all()
    org = db.session.get(Organization, org.id)
    assert (org.name, org.timezone, org.contact_phone) == ("Unchanged NGO", "UTC", None)


def test_new_organization_with_a_bad_zone_is_not_created(admin, client):
    response = client.post(
        "/admin/organizations/new",
        data={"name": "Never Made", "kind": "ngo", "timezone": "Nowhere/Else"},
    )
    assert response.status_code == 400
    assert db.session.scalar(select(Organization).where(Organization.name == "Never Made")) is None


@pytest.mark.parametrize("role", ["supervisor", "caseworker", "provider"])
def test_only_admins_change_settings(app, client, role):
    user = factories.make_user(role)
    db.session.commit()
    login_session(client, user)
    org_id = user.organization_id
    response = client.post(
        f"/admin/organizations/{org_id}",
        data={"name": "x" * 5, "kind": "ngo", "timezone": "Asia/Tokyo"},
    )
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(Organization, org_id).timezone == "UTC"


def test_case_list_dates_are_in_the_organizations_zone(app, client):
    org = factories.make_org("ngo", timezone="America/New_York")
    user = factories.make_user("caseworker", organization=org)
    factories.make_case(org, alias="Late Evening", at=datetime(2026, 1, 15, 3, 0, tzinfo=UTC))
    db.session.commit()
    login_session(client, user)
    page = client.get("/cases/?tab=open").get_data(as_text=True)
    assert "Jan 14, 2026" in page and "Jan 15, 2026" not in page


def test_provider_deadline_names_the_zone_and_referrer_contact_line(app, client):
    ngo = factories.make_org("ngo", name="Harbour NGO", contact_phone="+33123456789")
    caseworker = factories.make_user("caseworker", organization=ngo, username="caseworker.rosa")
    provider_org = factories.make_org("provider", timezone="Europe/Paris")
    shelter = factories.make_service(organization=provider_org, category="legal")
    case = factories.make_case(ngo, created_by_id=caseworker.id, needs={"legal": "soon"})
    referral = factories.make_referral(
        case, shelter, hold_expires_at=datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    )
    user = factories.make_user("provider", organization=provider_org)
    db.session.commit()
    login_session(client, user)
    page = client.get(f"/provider/referrals/{referral.id}").get_data(as_text=True)
    assert "Harbour NGO" in page
    assert "+33 1 23 45 67 89" in page and 'href="tel:+33123456789"' in page
    assert "caseworker.rosa" not in page
    assert "Jul 1, 2026, 2:00:00\u202fPM (GMT+02:00)" in page


def test_contact_line_falls_back_to_the_directory_and_else_says_none(app):
    ngo = factories.make_org("ngo")
    assert org_settings.contact_line(ngo).phone is None
    factories.make_service(organization=ngo, category="other", intake_phone="+14155550111")
    db.session.flush()
    assert org_settings.contact_line(ngo).phone == "+1 415-555-0111"
    ngo.contact_phone = "+14155550122"
    assert org_settings.contact_line(ngo).phone == "+1 415-555-0122"


def test_provider_page_without_a_contact_line_says_so(app, client):
    ngo = factories.make_org("ngo")
    provider_org = factories.make_org("provider")
    service = factories.make_service(organization=provider_org, category="legal")
    case = factories.make_case(ngo, needs={"legal": "soon"})
    referral = factories.make_referral(case, service)
    user = factories.make_user("provider", organization=provider_org)
    db.session.commit()
    login_session(client, user)
    page = client.get(f"/provider/referrals/{referral.id}").get_data(as_text=True)
    assert "has not given a contact line" in page


@pytest.mark.parametrize(("locale", "text"), [("es", "4,3 km"), ("fr", "4,3 km"), ("en", "4.3 km")])
def test_distances_use_the_interface_languages_decimal_sign(app, locale, text):
    with app.test_request_context(headers={"Accept-Language": locale}):
        assert text in str(Reason("distance", (("km", 4.3),)))
        assert formatting.km_number(12.0) == "12"


def test_a_time_in_the_repeated_hour_names_its_zone(app):
    org = factories.make_org("ngo", timezone="Europe/Paris")
    user = factories.make_user("caseworker", organization=org)
    db.session.commit()
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = first + timedelta(hours=1)  # 02:30 CET: the same wall-clock time
    plain = datetime(2026, 10, 25, 10, 0, tzinfo=UTC)  # 11:00 CET, once
    assert formatting.ambiguous(first, ZoneInfo("Europe/Paris"))
    assert not formatting.ambiguous(plain, ZoneInfo("Europe/Paris"))
    with app.test_request_context(headers={"Accept-Language": "en"}):
        login_user(user)
        assert formatting.when(first).endswith("(GMT+02:00)")
        assert formatting.when(second).endswith("(GMT+01:00)")
        assert "2:30:00" in formatting.when(first) and "2:30:00" in formatting.when(second)
        assert formatting.when(plain) == "Oct 25, 2026, 11:00:00\u202fAM"
        assert formatting.when(plain, zone=True).endswith("AM (GMT+01:00)")
