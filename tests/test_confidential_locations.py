"""Confidential locations (issue 17): a setting per service, ticked for a new service on
the form, set by admins or the provider; shown on staff pages; matching still ranks by
distance with it; the HSDS export and API never carry the place (tests/test_hsds_export.py,
tests/test_hsds_api.py)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.core import vocab
from app.core.extensions import db
from app.directory.matching import MatchCriteria, match
from app.directory.seed import seed_directory
from app.models import Area, Organization, Service
from tests import factories
from tests.conftest import login_session

FORM = {
    "name": "Night Shelter",
    "category": "shelter",
    "timezone": "Europe/Paris",
    "active": "y",
}


def signed_in(client: Any, role: str, org: Organization | None = None) -> Any:
    user = factories.make_user(role, organization=org)
    db.session.commit()
    login_session(client, user)
    return user


def test_the_new_service_form_starts_confidential_and_admins_can_change_it(client: Any) -> None:
    org = factories.make_org("provider")
    signed_in(client, "admin")
    page = client.get("/directory/services/new").get_data(as_text=True)
    [box] = re.findall(r'<input[^>]*name="location_confidential"[^>]*>', page)
    assert "checked" in box
    response = client.post(
        "/directory/services/new",
        data=dict(FORM, organization_id=org.id, location_confidential="y", latitude="34.5",
                  longitude="-118.5"),
    )
    assert response.status_code == 302
    db.session.expire_all()
    saved = db.session.scalar(select(Service).where(Service.name == "Night Shelter"))
    assert saved is not None and saved.location_confidential
    assert (saved.latitude, saved.longitude) == (34.5, -118.5)  # kept for staff and matching
    detail = client.get(f"/directory/services/{saved.id}").get_data(as_text=True)
    assert "Confidential location" in detail
    # Unticked (a browser sends nothing for an unticked box): no longer confidential.
    client.post(f"/directory/services/{saved.id}/edit", data=dict(FORM, organization_id=org.id))
    db.session.expire_all()
    assert not saved.location_confidential


def test_a_provider_sets_it_on_its_own_service(client: Any) -> None:
    org = factories.make_org("provider")
    service = factories.make_service(org, category="shelter", location_confidential=False)
    signed_in(client, "provider", org)
    data = {"name": service.name, "timezone": "UTC", "active": "y", "location_confidential": "y"}
    assert client.post(f"/directory/services/{service.id}/edit", data=data).status_code == 302
    db.session.expire_all()
    assert service.location_confidential


def test_matching_still_uses_a_confidential_place(app: Any) -> None:
    area = Area(name="Town", latitude=34.05, longitude=-118.25)
    db.session.add(area)
    db.session.flush()
    near = factories.make_service(name="Near", latitude=34.06, longitude=-118.24,
                                  location_confidential=True)
    far = factories.make_service(name="Far", latitude=40.7, longitude=-74.0)
    criteria = MatchCriteria(
        needs=(("shelter", "routine"),),
        consented_share_categories=frozenset(vocab.SERVICE_CATEGORIES),
        area_id=area.id,
    )
    with app.test_request_context():
        [need] = match(criteria, now=datetime(2026, 1, 7, 12, tzinfo=UTC))
        reasons = {m.service_id: [str(r) for r in m.reasons] for m in need.matches}
    assert [m.service_id for m in need.matches] == [near.id, far.id]
    assert any(r.endswith("km away") for r in reasons[near.id])


def test_demo_shelters_are_confidential(app: Any) -> None:
    orgs = {
        name: factories.make_org("provider", name=name)
        for name in ("Riverside Shelter", "Justice Legal Aid")
    }
    seed_directory(orgs)
    shelters = db.session.scalars(select(Service).where(Service.category == "shelter")).all()
    assert shelters and all(s.location_confidential for s in shelters)
