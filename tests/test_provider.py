"""The provider portal through the real views: only referrals addressed to the provider's
organization, only the fields release and consent allow (the same as the caseworker's
preview), accept / decline / outcomes with audit events and messages, bed counts, and 404
for everything of another organization."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.consent import changes
from app.core.extensions import db
from app.models import AuditEvent, Message, Organization, Referral, Service
from app.referrals import service as referrals
from tests import factories
from tests.conftest import login_session


@pytest.fixture
def provider_org(app):
    return factories.make_org("provider")


@pytest.fixture
def provider(app, client, provider_org):
    user = factories.make_user("provider", organization=provider_org)
    db.session.commit()
    login_session(client, user)
    return user


@pytest.fixture
def shelter(provider_org):
    return factories.make_service(
        organization=provider_org,
        category="shelter",
        beds_total=6,
        beds_available=3,
        intake_phone="+14155550100",
    )


def make_referral(service, *, identity: bool = True, **case_fields):
    consents = dict.fromkeys(factories.ALL_CONSENT_SCOPES, True)
    consents["share_identity"] = identity
    case = factories.make_case(
        consents=consents, needs={service.category: "immediate"}, **case_fields
    )
    referral = factories.make_referral(case, service)
    db.session.commit()
    return referral


def audited(action: str, referral_id: int) -> bool:
    return (
        db.session.scalar(
            select(func.count(AuditEvent.id)).where(
                AuditEvent.action == action, AuditEvent.object_id == str(referral_id)
            )
        )
        > 0
    )


def test_the_list_shows_only_this_organizations_referrals(app, client, provider, shelter):
    mine = make_referral(shelter)
    theirs = make_referral(
        factories.make_service(category="shelter", beds_total=2, beds_available=2)
    )
    page = client.get("/provider/").get_data(as_text=True)
    assert mine.code in page and theirs.code not in page
    assert "Rosa" not in page  # the list shows codes, not people
    assert client.get("/provider/?tab=nonsense").status_code == 200


def test_detail_shows_exactly_the_preview(app, client, provider, shelter):
    with_identity = make_referral(shelter, identity=True)
    without = make_referral(shelter, identity=False)
    page = client.get(f"/provider/referrals/{with_identity.id}").get_data(as_text=True)
    assert with_identity.code in page and "Rosa" in page and "+1 415-555-0123" in page
    assert "Prefers mornings" not in page  # the case note is never shared
    page = client.get(f"/provider/referrals/{without.id}").get_data(as_text=True)
    assert without.code in page and "Rosa" not in page and "555-0123" not in page
    assert "25–34" in page and "Shelter: Immediate" in page
    with app.test_request_context():
        case = db.session.get(Referral, without.id).case
        preview = referrals.provider_view(case, "shelter", code=without.code)
        for f in preview.fields:
            assert f.value in page
    assert audited("referral.view", without.id)


def test_the_portal_shows_only_the_need_of_the_referrals_category(app, client, provider, shelter):
    """A shelter saw "Legal aid: soon" (issue 13.6): only the shelter need, with urgency."""
    case = factories.make_case(
        needs={"shelter": "immediate", "legal": "soon", "medical": "routine"}
    )
    referral = factories.make_referral(case, shelter)
    db.session.commit()
    page = client.get(f"/provider/referrals/{referral.id}").get_data(as_text=True)
    assert "Shelter: Immediate" in page
    assert "Legal aid" not in page and "Medical" not in page and "Soon (days)" not in page


def test_a_shelter_released_by_another_acceptance_learns_nothing_more(
    app, client, provider, shelter
):
    """The survivor was placed at another shelter: this one sees its referral cancelled and
    its bed back, by code only — not where, nor that she was placed."""
    case = factories.make_case(needs={"shelter": "immediate"})
    mine = factories.make_referral(case, shelter)
    elsewhere = factories.make_service(category="shelter", beds_total=2, beds_available=2)
    theirs = factories.make_referral(case, elsewhere)
    referrals.accept(theirs, None)
    db.session.commit()
    assert db.session.get(Referral, mine.id).cancel_reason == "placed_elsewhere"
    assert db.session.get(Service, shelter.id).beds_available == 3
    page = client.get(f"/provider/referrals/{mine.id}").get_data(as_text=True)
    assert mine.code in page and "Cancelled" in page
    assert "another shelter" not in page and elsewhere.name not in page


def test_withdrawn_consent_leaves_the_code_only(app, client, provider, shelter):
    referral = make_referral(shelter)
    client.post(f"/provider/referrals/{referral.id}/accept")
    case = db.session.get(Referral, referral.id).case
    changes.change_consent(case, "share_identity", False, "verbal", None, language="en")
    db.session.commit()
    page = client.get(f"/provider/referrals/{referral.id}").get_data(as_text=True)
    assert "Rosa" not in page and "Shelter: Immediate" in page
    changes.change_consent(case, "share_shelter", False, "verbal", None, language="en")
    db.session.commit()
    page = client.get(f"/provider/referrals/{referral.id}").get_data(as_text=True)
    assert referral.code in page and "Shelter: Immediate" not in page and "25–34" not in page


def test_accept_then_outcomes(app, client, provider, shelter):
    referral = make_referral(shelter)
    assert db.session.get(Service, shelter.id).beds_available == 2
    response = client.post(f"/provider/referrals/{referral.id}/accept")
    assert response.status_code == 302
    row = db.session.get(Referral, referral.id)
    assert row.status == "accepted" and row.hold_status == "held"
    assert audited("referral.accept", referral.id)
    assert (
        db.session.scalar(
            select(func.count(Message.id)).where(
                Message.template_key == "survivor.referral_accepted"
            )
        )
        == 1
    )
    # Accepting twice is a clear message, not an error page.
    again = client.post(f"/provider/referrals/{referral.id}/accept", follow_redirects=True)
    assert again.status_code == 200 and b"cannot be changed" in again.data
    # completed before arrival: refused with a field error.
    bad = client.post(f"/provider/referrals/{referral.id}/outcome", data={"outcome": "completed"})
    assert bad.status_code == 400
    assert (
        client.post(
            f"/provider/referrals/{referral.id}/outcome", data={"outcome": "arrived"}
        ).status_code
        == 302
    )
    assert (
        client.post(
            f"/provider/referrals/{referral.id}/outcome", data={"outcome": "completed"}
        ).status_code
        == 302
    )
    row = db.session.get(Referral, referral.id)
    assert row.status == "completed" and row.hold_status == "used"
    assert audited("referral.arrive", referral.id) and audited("referral.complete", referral.id)


def test_decline_with_reason_and_text(app, client, provider, shelter):
    referral = make_referral(shelter)
    missing = client.post(f"/provider/referrals/{referral.id}/decline", data={"text": "x"})
    assert missing.status_code == 400 and b"Choose a reason" in missing.data
    too_long = client.post(
        f"/provider/referrals/{referral.id}/decline", data={"reason": "other", "text": "x" * 201}
    )
    assert too_long.status_code == 400
    response = client.post(
        f"/provider/referrals/{referral.id}/decline",
        data={"reason": "ineligible", "text": "men only this week"},
    )
    assert response.status_code == 302
    row = db.session.get(Referral, referral.id)
    assert row.status == "declined" and row.response_reason == "ineligible"
    assert row.response_text == "men only this week"
    assert db.session.get(Service, shelter.id).beds_available == 3
    page = client.get(f"/provider/referrals/{referral.id}").get_data(as_text=True)
    assert "Rosa" not in page  # a declined referral shows the code only
    # The caseworker sees the answer on the case page.
    ngo = db.session.get(Organization, row.referring_organization_id)
    caseworker = factories.make_user("caseworker", organization=ngo)
    db.session.commit()
    login_session(client, caseworker)
    case_page = client.get(f"/cases/{row.case_id}").get_data(as_text=True)
    assert "Not eligible" in case_page and "men only this week" in case_page


def test_bed_counts(app, client, provider, shelter):
    make_referral(shelter)  # holds one: 2 free, 1 held, 6 in total
    page = client.get("/provider/").get_data(as_text=True)
    assert "1 held for referrals" in page
    field = f"s{shelter.id}-beds_available"
    assert (
        client.post(f"/provider/services/{shelter.id}/beds", data={field: "5"}).status_code == 302
    )
    assert db.session.get(Service, shelter.id).beds_available == 5
    too_many = client.post(f"/provider/services/{shelter.id}/beds", data={field: "6"})
    assert too_many.status_code == 400 and b"cannot be more than" in too_many.data
    garbage = client.post(f"/provider/services/{shelter.id}/beds", data={field: "lots"})
    assert garbage.status_code == 400
    assert db.session.get(Service, shelter.id).beds_available == 5


def test_another_organizations_referral_answers_404(app, client, provider, shelter):
    elsewhere = factories.make_service(category="shelter", beds_total=2, beds_available=2)
    theirs = make_referral(elsewhere)
    for method, url in [
        ("GET", f"/provider/referrals/{theirs.id}"),
        ("POST", f"/provider/referrals/{theirs.id}/accept"),
        ("POST", f"/provider/referrals/{theirs.id}/decline"),
        ("POST", f"/provider/referrals/{theirs.id}/outcome"),
        ("POST", f"/provider/services/{elsewhere.id}/beds"),
    ]:
        assert client.open(url, method=method, data={"reason": "full"}).status_code == 404
    assert db.session.get(Referral, theirs.id).status == "pending"
    assert db.session.get(Service, elsewhere.id).beds_available == 1


def test_staff_cannot_use_the_portal(app, client, shelter):
    referral = make_referral(shelter)
    login_session(client, factories.make_user("caseworker"))
    db.session.commit()
    assert client.get("/provider/").status_code == 403
    assert client.get(f"/provider/referrals/{referral.id}").status_code == 403


def test_portal_pages_fit_a_phone(app, client, provider, shelter):
    referral = make_referral(shelter)
    page = client.get(f"/provider/referrals/{referral.id}").get_data(as_text=True)
    assert 'name="viewport" content="width=device-width' in page
    assert "<script>" not in page and "style=" not in page
    from pathlib import Path

    css = (Path(app.static_folder) / "haven.css").read_text()
    section = css[css.index("Referrals and the provider portal") :]
    assert "@media (max-width: 600px)" in section
