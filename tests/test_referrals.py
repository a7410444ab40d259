"""Referrals: consent and release checked at the moment of sending, all-or-nothing batches,
the shared-fields matrix, release expiry and withdrawal, the closed loop's messages and
audit events, idempotency, the SMS ACCEPT/DECLINE hook, erasure, and the caseworker views."""

from __future__ import annotations

from datetime import timedelta
from itertools import product

import pytest
from sqlalchemy import func, select

from app.cases.erasure import erase_case
from app.consent import changes
from app.core.extensions import db
from app.models import AuditEvent, Message, Referral, Release, Service, utcnow
from app.referrals import service as referrals
from app.sms import hotline
from tests import factories
from tests.conftest import login_session
from tests.test_intake import png_data_url

TOKEN = "ref_" + "b" * 30


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model)) or 0


def outbox(template: str | None = None) -> list[Message]:
    query = select(Message).where(Message.direction == "out").order_by(Message.id)
    if template:
        query = query.where(Message.template_key == template)
    return list(db.session.scalars(query))


def events(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


@pytest.fixture(autouse=True)
def request_context(app):
    """Labels are translated: the domain is called as from a request (English)."""
    with app.test_request_context():
        yield


@pytest.fixture
def ngo(app):
    return factories.make_org("ngo")


@pytest.fixture
def survivor(ngo):
    case = factories.make_case(
        ngo,
        needs={"shelter": "immediate", "legal": "soon", "medical": "routine"},
        children_accompanying=2,
        accessibility=True,
    )
    return case


def provider_service(category: str, **fields):
    org = factories.make_org("provider")
    return factories.make_service(
        organization=org, category=category, intake_phone="+14155550100", **fields
    )


def request_for(case, service, *, spec: bool = True):
    release = referrals.ReleaseSpec(service.organization_id, "verbal") if spec else None
    return referrals.ReferralRequest(service.id, release)


# --- sending ----------------------------------------------------------------------------


def test_one_step_refers_to_shelter_legal_and_medical(app, survivor):
    shelter = provider_service("shelter", beds_total=5, beds_available=2)
    legal = provider_service("legal")
    medical = provider_service("medical")
    made, created = referrals.create_referrals(
        survivor,
        [request_for(survivor, s) for s in (shelter, legal, medical)],
        None,
        idempotency_key=TOKEN,
    )
    db.session.commit()
    assert created and len(made) == 3
    assert {r.category for r in made} == {"shelter", "legal", "medical"}
    assert all(r.status == "pending" for r in made)
    assert {r.organization_id for r in made} == {
        shelter.organization_id,
        legal.organization_id,
        medical.organization_id,
    }
    # One release per organization, naming it.
    assert count(Release) == 3
    assert all(r.release.organization_id == r.organization_id for r in made)
    # The shelter's bed is held at once; others hold nothing.
    db.session.refresh(shelter)
    assert shelter.beds_available == 1
    assert {r.category: r.hold_status for r in made} == {
        "shelter": "held",
        "legal": "none",
        "medical": "none",
    }
    # Each provider gets the new-referral SMS with the code; each creation is audited.
    new = outbox("provider.referral_new")
    assert sorted(m.params["code"] for m in new) == sorted(r.code for r in made)
    assert {m.service_id for m in new} == {shelter.id, legal.id, medical.id}
    assert len(events("referral.create")) == 3
    # What was shared is a list of field names, no values.
    assert made[0].shared_fields == list(referrals.ALL_FIELDS)


def test_without_category_consent_nothing_is_written(app, ngo):
    case = factories.make_case(
        ngo,
        consents=dict.fromkeys(factories.ALL_CONSENT_SCOPES, True) | {"share_medical": False},
        needs={"legal": "soon", "medical": "soon"},
    )
    legal, medical = provider_service("legal"), provider_service("medical")
    before = (count(Referral), count(Release), count(Message), count(AuditEvent))
    with pytest.raises(referrals.NoConsent) as raised:
        referrals.create_referrals(
            case,
            [request_for(case, legal), request_for(case, medical)],
            None,
            idempotency_key=TOKEN,
        )
    assert raised.value.service_id == medical.id
    assert "medical" in str(raised.value.message)
    db.session.rollback()
    assert (count(Referral), count(Release), count(Message), count(AuditEvent)) == before


def test_without_a_valid_release_no_referral(app, survivor):
    legal = provider_service("legal")
    with pytest.raises(referrals.NoRelease):
        referrals.create_referrals(
            survivor, [request_for(survivor, legal, spec=False)], None, idempotency_key=None
        )
    # A release to ANOTHER organization does not count.
    other = factories.make_org("provider")
    wrong = factories.make_release(survivor, other)
    with pytest.raises(referrals.NoRelease):
        referrals.create_referrals(
            survivor, [referrals.ReferralRequest(legal.id, wrong)], None, idempotency_key=None
        )
    assert count(Referral) == 0


def test_release_expiry_and_withdrawal(app, survivor):
    legal = provider_service("legal")
    now = utcnow()
    expired = factories.make_release(survivor, legal.organization, at=now - timedelta(days=31))
    assert not expired.valid_at(now)
    assert referrals.valid_release(survivor, legal.organization_id, now) is None
    with pytest.raises(referrals.NoRelease):
        referrals.create_referrals(
            survivor, [referrals.ReferralRequest(legal.id, expired)], None, idempotency_key=None
        )
    fresh = factories.make_release(survivor, legal.organization, at=now - timedelta(days=29))
    assert referrals.valid_release(survivor, legal.organization_id, now) == fresh
    # A release recorded now lasts RELEASE_VALIDITY (30 days) by default.
    recorded = referrals.record_release(
        survivor, referrals.ReleaseSpec(legal.organization_id, "verbal"), None, at=now
    )
    assert recorded.expires_at - recorded.granted_at == timedelta(days=30)
    with pytest.raises(referrals.BadRelease):
        referrals.record_release(
            survivor, referrals.ReleaseSpec(legal.organization_id, "verbal", days=31), None
        )
    with pytest.raises(referrals.BadRelease):  # written needs a signature
        referrals.record_release(
            survivor, referrals.ReleaseSpec(legal.organization_id, "written"), None
        )
    signed = referrals.record_release(
        survivor,
        referrals.ReleaseSpec(legal.organization_id, "written", signature=png_data_url()),
        None,
    )
    assert signed.signature is not None and signed.signature.image_enc != png_data_url().encode()
    [referral], _ = referrals.create_referrals(
        survivor, [referrals.ReferralRequest(legal.id, signed)], None, idempotency_key=None
    )
    cancelled = referrals.withdraw_release(signed, None)
    db.session.commit()
    assert cancelled == [referral]
    assert referral.status == "cancelled" and referral.cancel_reason == "release_withdrawn"
    # The provider is told by code only.
    [told] = outbox("provider.referral_cancelled")
    assert told.params == {"code": referral.code} and told.service_id == legal.id
    assert referrals.referral_view(referral).withheld


def test_the_provider_view_stops_when_the_release_expires(app, survivor):
    legal = provider_service("legal")
    at = utcnow()
    release = factories.make_release(survivor, legal.organization, at=at, days=12)
    [referral], _ = referrals.create_referrals(
        survivor,
        [referrals.ReferralRequest(legal.id, release)],
        None,
        idempotency_key=None,
        at=at + timedelta(minutes=1),
    )
    referral.status = "accepted"
    db.session.flush()
    assert not referrals.referral_view(referral, at=at + timedelta(days=11)).withheld
    later = referrals.referral_view(referral, at=at + timedelta(days=12, seconds=1))
    assert later.withheld and later.fields == () and later.code == referral.code


# --- the shared-fields matrix ---------------------------------------------------------------

MATRIX = list(product((True, False), (True, False), ("valid", "expired", "withdrawn", "other")))


@pytest.mark.parametrize(("share_category", "share_identity", "release_state"), MATRIX)
def test_shared_fields_matrix(app, ngo, share_category, share_identity, release_state):
    """consent (category × identity) × release (valid, expired, withdrawn, naming another
    organization) → whether a referral can be sent and exactly which fields the provider
    sees; the caseworker's preview shows the same fields as the portal."""
    consents = dict.fromkeys(factories.ALL_CONSENT_SCOPES, True)
    consents["share_legal"] = share_category
    consents["share_identity"] = share_identity
    case = factories.make_case(
        ngo, consents=consents, needs={"legal": "soon"}, children_accompanying=1
    )
    legal = provider_service("legal")
    now = utcnow()
    org = legal.organization if release_state != "other" else factories.make_org("provider")
    release = factories.make_release(
        case,
        org,
        at=now - (timedelta(days=31) if release_state == "expired" else timedelta(minutes=1)),
        withdrawn=release_state == "withdrawn",
    )
    expected: tuple[str, ...] = ()
    if share_category:
        expected = referrals.BASE_FIELDS + (referrals.IDENTITY_FIELDS if share_identity else ())
    preview = referrals.provider_view(case, "legal", code=None)
    assert preview.names == expected
    request = referrals.ReferralRequest(legal.id, release)
    if not (share_category and release_state == "valid"):
        error = referrals.NoConsent if not share_category else referrals.NoRelease
        with pytest.raises(error):
            referrals.create_referrals(case, [request], None, idempotency_key=None)
        assert count(Referral) == 0
        return
    [referral], _ = referrals.create_referrals(case, [request], None, idempotency_key=None)
    view = referrals.referral_view(referral)
    assert view.names == preview.names == expected
    assert referral.shared_fields == list(expected)
    values = {f.name: f.value for f in view.fields}
    assert values["reference"] == referral.code
    assert values["needs"] == "Legal aid: Soon (days)"
    assert values["age_band"] == "25–34" and values["language"] == "English"
    assert values["children"] == "1" and values["accessibility"] == "No"
    if share_identity:
        assert values["alias"] == "Rosa" and values["phone"] == "+1 415-555-0123"
    else:
        assert "Rosa" not in repr(view) and "555" not in repr(view)


def test_the_portal_follows_consent_changes_after_sending(app, ngo):
    case = factories.make_case(ngo, needs={"legal": "soon"})
    legal = provider_service("legal")
    referral = factories.make_referral(case, legal)
    assert "alias" in referrals.referral_view(referral).names
    changes.change_consent(case, "share_identity", False, "verbal", None, language="en")
    assert referrals.referral_view(referral).names == referrals.BASE_FIELDS
    # Granting identity again does not widen what was released at sending... it does
    # only within the snapshot, which had identity; a snapshot without it stays without.
    changes.change_consent(case, "share_legal", False, "verbal", None, language="en")
    assert referral.status == "cancelled"
    assert referrals.referral_view(referral).withheld


def test_needs_kept_private_are_not_shared(app, ngo):
    consents = dict.fromkeys(factories.ALL_CONSENT_SCOPES, True) | {"share_medical": False}
    case = factories.make_case(
        ngo, consents=consents, needs={"shelter": "immediate", "medical": "soon"}
    )
    view = referrals.provider_view(case, "shelter", code="ABC-DEF")
    needs = {f.name: f.value for f in view.fields}["needs"]
    assert "Shelter" in needs and "Medical" not in needs


def test_a_provider_sees_only_the_need_of_its_referrals_category(app, survivor):
    """A shelter learned of the survivor's legal and medical needs (issue 13.6): the
    preview, the portal and the referral SMS now carry the referral's category and its
    urgency only, although the survivor consented to share all three categories."""
    shelter = provider_service("shelter", beds_total=5, beds_available=2)
    legal = provider_service("legal")
    preview = referrals.provider_view(survivor, "shelter", code=None)
    assert {f.name: f.value for f in preview.fields}["needs"] == "Shelter: Immediate"
    made, _ = referrals.create_referrals(
        survivor, [request_for(survivor, s) for s in (shelter, legal)], None, idempotency_key=TOKEN
    )
    by_category = {r.category: r for r in made}
    portal = {f.name: f.value for f in referrals.referral_view(by_category["shelter"]).fields}
    assert portal["needs"] == "Shelter: Immediate"
    legal_view = {f.name: f.value for f in referrals.referral_view(by_category["legal"]).fields}
    assert legal_view["needs"] == "Legal aid: Soon (days)"
    sms = {m.service_id: m.params["needs"] for m in outbox("provider.referral_new")}
    assert sms == {shelter.id: "shelter:immediate", legal.id: "legal:soon"}
    body = referrals.messaging.render("provider.referral_new", "en", {
        "code": made[0].code, "needs": sms[shelter.id], "age_band": "25_34", "language": "en"})
    assert "needs shelter: immediate;" in body
    assert "legal" not in body.lower() and "medical" not in body.lower()


def test_a_referral_without_a_recorded_need_of_its_category_names_the_category(app, ngo):
    case = factories.make_case(ngo, needs={"medical": "immediate"})
    legal = provider_service("legal")
    [referral], _ = referrals.create_referrals(
        case, [request_for(case, legal)], None, idempotency_key=None
    )
    view = {f.name: f.value for f in referrals.referral_view(referral).fields}
    assert view["needs"] == "Legal aid"
    [sms] = outbox("provider.referral_new")
    assert sms.params["needs"] == "legal"


# --- idempotency and rollback -----------------------------------------------------------------


@pytest.mark.both_databases
def test_a_resent_batch_makes_nothing_new(app, survivor):
    legal, medical = provider_service("legal"), provider_service("medical")
    requests = [request_for(survivor, legal), request_for(survivor, medical)]
    first, created = referrals.create_referrals(survivor, requests, None, idempotency_key=TOKEN)
    db.session.commit()
    again, created_again = referrals.create_referrals(
        survivor, requests, None, idempotency_key=TOKEN
    )
    db.session.commit()
    assert created and not created_again
    assert [r.id for r in again] == [r.id for r in first]
    assert count(Referral) == 2 and count(Release) == 2
    assert len(outbox("provider.referral_new")) == 2


@pytest.mark.both_databases
def test_a_failure_after_the_row_is_added_leaves_nothing(app, survivor, monkeypatch):
    shelter = provider_service("shelter", beds_total=3, beds_available=3)
    legal = provider_service("legal")
    db.session.commit()
    before = (count(Referral), count(Release), count(Message), count(AuditEvent))
    real = referrals.messaging.enqueue
    calls = []

    def enqueue_then_fail(*args, **kwargs):
        calls.append(real(*args, **kwargs))
        if len(calls) == 2:  # the second referral's row, audit event and message exist
            raise RuntimeError("disk full")
        return calls[-1]

    monkeypatch.setattr(referrals.messaging, "enqueue", enqueue_then_fail)
    with pytest.raises(RuntimeError):
        referrals.create_referrals(
            survivor,
            [request_for(survivor, shelter), request_for(survivor, legal)],
            None,
            idempotency_key=TOKEN,
        )
    # The first referral's row, release, audit event and message were written before the
    # failure; the savepoint undid them all, the bed included, before the caller's rollback.
    assert len(calls) == 2 and calls[0] is not None
    assert (count(Referral), count(Release), count(Message), count(AuditEvent)) == before
    assert db.session.get(Service, shelter.id).beds_available == 3
    db.session.rollback()
    assert (count(Referral), count(Release), count(Message), count(AuditEvent)) == before


def test_a_rollback_after_sending_leaves_no_orphans(app, survivor):
    """The caller's transaction fails after the referrals were added (say, its commit):
    no referral, release, outbox row, audit event or held bed survives."""
    shelter = provider_service("shelter", beds_total=3, beds_available=3)
    db.session.commit()
    before = (count(Referral), count(Release), count(Message), count(AuditEvent))
    referrals.create_referrals(
        survivor, [request_for(survivor, shelter)], None, idempotency_key=TOKEN
    )
    assert count(Referral) == 1 and len(outbox("provider.referral_new")) == 1
    assert events("referral.create")
    db.session.rollback()
    assert (count(Referral), count(Release), count(Message), count(AuditEvent)) == before
    assert db.session.get(Service, shelter.id).beds_available == 3


@pytest.mark.both_databases
def test_two_open_referrals_to_one_service_are_refused(app, survivor):
    legal = provider_service("legal")
    referrals.create_referrals(survivor, [request_for(survivor, legal)], None, idempotency_key=None)
    with pytest.raises(referrals.NotReferable):
        referrals.create_referrals(
            survivor, [request_for(survivor, legal)], None, idempotency_key=None
        )


# --- the closed loop --------------------------------------------------------------------------


def test_accept_tells_the_survivor_neutrally_in_their_language(app, ngo):
    case = factories.make_case(ngo, needs={"legal": "soon"})
    case.language = "es"
    legal = provider_service("legal")
    [referral], _ = referrals.create_referrals(
        case, [request_for(case, legal)], None, idempotency_key=None
    )
    referrals.accept(referral, None)
    db.session.commit()
    [message] = outbox("survivor.referral_accepted")
    assert message.case_id == case.id and message.language == "es"
    assert message.params == {"reference": case.reference, "category": "legal"}
    assert events("referral.accept")
    # Neutral unless explicit_wording (the worker picks the variant at send time).
    body = referrals.messaging.render("survivor.referral_accepted", "en", message.params)
    assert "legal" not in body.lower()
    with pytest.raises(referrals.BadTransition):
        referrals.accept(referral, None)


def test_no_sms_to_a_survivor_without_contact_sms(app, ngo):
    consents = dict.fromkeys(factories.ALL_CONSENT_SCOPES, True) | {"contact_sms": False}
    case = factories.make_case(ngo, consents=consents, needs={"legal": "soon"})
    legal = provider_service("legal")
    [referral], _ = referrals.create_referrals(
        case, [request_for(case, legal)], None, idempotency_key=None
    )
    referrals.accept(referral, None)
    assert outbox("survivor.referral_accepted") == []
    assert referral.status == "accepted"


def test_withdrawing_a_category_cancels_its_open_referrals(app, survivor):
    shelter = provider_service("shelter", beds_total=2, beds_available=2)
    legal = provider_service("legal")
    made, _ = referrals.create_referrals(
        survivor,
        [request_for(survivor, shelter), request_for(survivor, legal)],
        None,
        idempotency_key=None,
    )
    changes.change_consent(survivor, "share_shelter", False, "verbal", None, language="en")
    db.session.commit()
    by_category = {r.category: db.session.get(Referral, r.id) for r in made}
    assert by_category["shelter"].status == "cancelled"
    assert by_category["shelter"].cancel_reason == "consent_withdrawn"
    assert by_category["shelter"].hold_status == "returned"
    assert db.session.get(Service, shelter.id).beds_available == 2
    assert by_category["legal"].status == "pending"
    [told] = outbox("provider.referral_cancelled")
    assert told.params == {"code": by_category["shelter"].code}


def test_erasure_cancels_open_referrals_first(app, survivor):
    shelter = provider_service("shelter", beds_total=1, beds_available=1)
    [referral], _ = referrals.create_referrals(
        survivor, [request_for(survivor, shelter)], None, idempotency_key=None
    )
    referrals.accept(referral, None)
    referral.status = "pending"  # (to check a pending one too below)
    db.session.flush()
    referral_id, code = referral.id, referral.code
    erase_case(survivor, None)
    db.session.commit()
    # Cancelled first (the bed given back, the provider told by code, audited), then the
    # referral and release rows go with the case, on this path as in a retention batch.
    assert db.session.get(Service, shelter.id).beds_available == 1
    assert any(m.params == {"code": code} for m in outbox("provider.referral_cancelled"))
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.action == "referral.cancel", AuditEvent.object_id == str(referral_id)))
    assert db.session.get(Referral, referral_id) is None
    assert not db.session.scalar(select(func.count(Release.id)).where(
        Release.case_id == survivor.id))


def test_accepting_a_shelter_releases_the_cases_other_shelter_holds(app, survivor):
    """One survivor held beds at two shelters for ever (issue 13.10): when one shelter
    accepts, the case's other open shelter referrals are cancelled at once (reason
    ``placed_elsewhere``), their beds given back and their providers told by code only, in
    the same transaction; other categories and other cases are left alone."""
    first = provider_service("shelter", beds_total=3, beds_available=3)
    second = provider_service("shelter", beds_total=3, beds_available=3)
    third = provider_service("shelter")  # capacity not tracked: holds nothing
    legal = provider_service("legal")
    made, _ = referrals.create_referrals(
        survivor,
        [request_for(survivor, s) for s in (first, second, third, legal)],
        None,
        idempotency_key=TOKEN,
    )
    someone_else = factories.make_case(needs={"shelter": "immediate"})
    [other_case_referral], _ = referrals.create_referrals(
        someone_else, [request_for(someone_else, second)], None, idempotency_key=None
    )
    db.session.commit()
    by_service = {r.service_id: r for r in made}
    assert db.session.get(Service, second.id).beds_available == 1

    referrals.accept(by_service[first.id], None)
    db.session.commit()

    def fresh(referral):
        return db.session.get(Referral, referral.id)

    assert fresh(by_service[first.id]).status == "accepted"
    assert fresh(by_service[first.id]).hold_status == "held"
    for released in (by_service[second.id], by_service[third.id]):
        row = fresh(released)
        assert (row.status, row.cancel_reason) == ("cancelled", "placed_elsewhere")
    assert fresh(by_service[second.id]).hold_status == "returned"
    assert db.session.get(Service, second.id).beds_available == 2  # the other case's hold stays
    assert fresh(by_service[legal.id]).status == "pending"
    assert fresh(other_case_referral).status == "pending"
    told = {m.service_id: m.params for m in outbox("provider.referral_cancelled")}
    assert told == {
        second.id: {"code": by_service[second.id].code},
        third.id: {"code": by_service[third.id].code},
    }
    cancelled = {e.object_id for e in events("referral.cancel")}
    assert cancelled == {str(by_service[second.id].id), str(by_service[third.id].id)}


def test_an_arrival_releases_holds_sent_after_the_acceptance(app, survivor):
    """A caseworker may try another shelter after one accepted; once the survivor arrives
    somewhere, no other shelter keeps a bed for her."""
    first = provider_service("shelter", beds_total=2, beds_available=2)
    second = provider_service("shelter", beds_total=2, beds_available=2)
    [placed], _ = referrals.create_referrals(
        survivor, [request_for(survivor, first)], None, idempotency_key=None
    )
    referrals.accept(placed, None)
    [backup], _ = referrals.create_referrals(
        survivor, [request_for(survivor, second)], None, idempotency_key=None
    )
    assert backup.status == "pending"
    referrals.record_outcome(placed, "arrived", None)
    db.session.commit()
    backup = db.session.get(Referral, backup.id)
    assert (backup.status, backup.cancel_reason, backup.hold_status) == (
        "cancelled",
        "placed_elsewhere",
        "returned",
    )
    assert db.session.get(Service, second.id).beds_available == 2


def test_a_failed_acceptance_releases_nothing(app, survivor):
    first = provider_service("shelter", beds_total=2, beds_available=2)
    second = provider_service("shelter", beds_total=2, beds_available=2)
    made, _ = referrals.create_referrals(
        survivor, [request_for(survivor, s) for s in (first, second)], None, idempotency_key=None
    )
    referrals.decline(made[0], "full", None, None)
    with pytest.raises(referrals.BadTransition):
        referrals.accept(made[0], None)
    assert db.session.get(Referral, made[1].id).status == "pending"
    assert db.session.get(Service, second.id).beds_available == 1


def test_expiry_flags_then_expires(app, survivor):
    shelter = provider_service("shelter", beds_total=2, beds_available=2)
    at = utcnow()
    [referral], _ = referrals.create_referrals(
        survivor, [request_for(survivor, shelter)], None, idempotency_key=None, at=at
    )
    db.session.commit()
    assert referrals.expire_due(at + timedelta(hours=1)) == referrals.ExpiryResult(0, 0)
    flagged = referrals.expire_due(at + timedelta(hours=3, minutes=5))
    db.session.commit()
    assert flagged == referrals.ExpiryResult(flagged=1, expired=0)
    assert db.session.get(Referral, referral.id).flagged_at is not None
    assert len(outbox("provider.referral_reminder")) == 1
    # Flagged once only.
    assert referrals.expire_due(at + timedelta(hours=3, minutes=30)).flagged == 0
    result = referrals.expire_due(at + timedelta(hours=4))
    db.session.commit()
    assert result.expired == 1
    referral = db.session.get(Referral, referral.id)
    assert referral.status == "expired" and referral.hold_status == "returned"
    assert db.session.get(Service, shelter.id).beds_available == 2
    assert events("referral.expire")
    assert referrals.expire_due(at + timedelta(hours=5)) == referrals.ExpiryResult(0, 0)


def test_cli_expire(app, ngo):
    at = utcnow() - timedelta(hours=5)
    survivor = factories.make_case(ngo, needs={"legal": "soon"}, at=at - timedelta(hours=1))
    legal = provider_service("legal")
    referrals.create_referrals(
        survivor, [request_for(survivor, legal)], None, idempotency_key=None, at=at
    )
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["referrals", "expire"])
    assert result.exit_code == 0, result.output
    assert "expired 1" in result.output
    assert db.session.scalar(select(Referral.status)) == "expired"


# --- SMS ACCEPT / DECLINE -----------------------------------------------------------------


def test_provider_accepts_and_declines_by_sms(app, ngo):
    case = factories.make_case(ngo, needs={"shelter": "immediate", "legal": "soon"})
    shelter = provider_service("shelter", beds_total=3, beds_available=3)
    legal = provider_service("legal")
    made, _ = referrals.create_referrals(
        case,
        [request_for(case, shelter), request_for(case, legal)],
        None,
        idempotency_key=None,
    )
    db.session.commit()
    codes = {r.category: r.code for r in made}
    reply = hotline.handle_inbound(
        "SM" + "1" * 32, "+14155550100", f"accept {codes['shelter'].lower().replace('-', '')}"
    )
    db.session.commit()
    assert "accepted" in reply[0]
    # The other service's code is not this phone's to answer... both services share the
    # test number here, so use a number that is not an intake phone:
    reply = hotline.handle_inbound("SM" + "2" * 32, "+14155550177", f"ACCEPT {codes['legal']}")
    assert "no open request" in reply[0].lower()
    reply = hotline.handle_inbound(
        "SM" + "3" * 32, "+14155550100", f"DECLINE {codes['legal']} no space"
    )
    db.session.commit()
    statuses = {r.category: db.session.get(Referral, r.id) for r in made}
    assert statuses["shelter"].status == "accepted"
    assert statuses["shelter"].hold_status == "held"
    assert statuses["legal"].status == "declined"
    assert statuses["legal"].response_reason == "full"
    assert "declined" in reply[0]


def test_accept_by_sms_releases_the_other_shelter_and_the_caseworker_sees_why(
    app, client, ngo
):
    case = factories.make_case(ngo, needs={"shelter": "immediate"})
    first = provider_service("shelter", beds_total=2, beds_available=2)
    second = factories.make_service(
        organization=factories.make_org("provider"),
        category="shelter",
        intake_phone="+14155550111",
        beds_total=2,
        beds_available=2,
    )
    made, _ = referrals.create_referrals(
        case, [request_for(case, s) for s in (first, second)], None, idempotency_key=None
    )
    db.session.commit()
    reply = hotline.handle_inbound("SM" + "4" * 32, "+14155550111", f"ACCEPT {made[1].code}")
    db.session.commit()
    assert "accepted" in reply[0]
    released = db.session.get(Referral, made[0].id)
    assert (released.status, released.cancel_reason) == ("cancelled", "placed_elsewhere")
    assert db.session.get(Service, first.id).beds_available == 2
    login_session(client, factories.make_user("caseworker", organization=ngo))
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert "Placed at another shelter" in page


# --- caseworker views -------------------------------------------------------------------------


@pytest.fixture
def caseworker(app, client, ngo):
    user = factories.make_user("caseworker", organization=ngo)
    db.session.commit()
    login_session(client, user)
    return user


def send_form(services, token=TOKEN, **methods):
    data = {"token": token, "services": [str(s.id) for s in services]}
    for s in services:
        data[f"method_{s.organization_id}"] = methods.get(str(s.organization_id), "verbal")
        data[f"days_{s.organization_id}"] = "30"
    return data


def test_case_page_to_sent_referrals(app, client, caseworker, survivor):
    area = survivor.area
    shelter = provider_service("shelter", beds_total=4, beds_available=4, areas=[area])
    legal = provider_service("legal", areas=[area])
    db.session.commit()
    page = client.get(f"/cases/{survivor.id}")
    assert page.status_code == 200 and b"Refer to services" in page.data
    choose = client.get(f"/referrals/cases/{survivor.id}/new")
    assert choose.status_code == 200
    assert shelter.name.encode() in choose.data and legal.name.encode() in choose.data
    preview = client.post(
        f"/referrals/cases/{survivor.id}/preview",
        data={"services": [str(shelter.id), str(legal.id)]},
    )
    assert preview.status_code == 200
    html = preview.get_data(as_text=True)
    # The preview shows exactly the provider's view: alias included (share_identity).
    assert "Rosa" in html and "given when the referral is sent" in html
    assert "Prefers mornings" not in html  # the note is never shared
    response = client.post(f"/referrals/cases/{survivor.id}/send", data=send_form([shelter, legal]))
    assert response.status_code == 302
    assert count(Referral) == 2
    # A double submit makes nothing new.
    again = client.post(f"/referrals/cases/{survivor.id}/send", data=send_form([shelter, legal]))
    assert again.status_code == 302
    assert count(Referral) == 2 and count(Release) == 2
    page = client.get(f"/cases/{survivor.id}").get_data(as_text=True)
    codes = [r.code for r in db.session.scalars(select(Referral))]
    assert all(code in page for code in codes)
    waiting = client.get("/referrals/").get_data(as_text=True)
    assert all(code in waiting for code in codes)


def test_send_errors_rerender_with_reasons(app, client, caseworker, ngo):
    consents = dict.fromkeys(factories.ALL_CONSENT_SCOPES, True) | {"share_legal": False}
    case = factories.make_case(ngo, consents=consents, needs={"legal": "soon"})
    legal = provider_service("legal")
    db.session.commit()
    response = client.post(f"/referrals/cases/{case.id}/send", data=send_form([legal]))
    assert response.status_code == 400
    assert b"has not consented to share with legal aid services" in response.data
    # Written without a signature: a field error, nothing written.
    case2 = factories.make_case(ngo, needs={"legal": "soon"})
    db.session.commit()
    response = client.post(
        f"/referrals/cases/{case2.id}/send",
        data=send_form([legal], **{str(legal.organization_id): "written"}),
    )
    assert response.status_code == 400 and b"sign the release" in response.data
    # Days out of range and a missing token.
    data = send_form([legal], token="")
    data[f"days_{legal.organization_id}"] = "99"
    response = client.post(f"/referrals/cases/{case2.id}/send", data=data)
    assert response.status_code == 400
    assert count(Referral) == 0 and count(Release) == 0


def test_written_release_through_the_form(app, client, caseworker, survivor):
    legal = provider_service("legal")
    db.session.commit()
    data = send_form([legal], **{str(legal.organization_id): "written"})
    data[f"signature_{legal.organization_id}"] = png_data_url()
    response = client.post(f"/referrals/cases/{survivor.id}/send", data=data)
    assert response.status_code == 302
    release = db.session.scalar(select(Release))
    assert release.method == "written" and release.signature_id is not None


def test_cancel_and_re_refer(app, client, caseworker, survivor):
    shelter = provider_service("shelter", beds_total=1, beds_available=1)
    referral = factories.make_referral(survivor, shelter)
    db.session.commit()
    assert db.session.get(Service, shelter.id).beds_available == 0
    response = client.post(f"/referrals/{referral.id}/cancel")
    assert response.status_code == 302
    referral = db.session.get(Referral, referral.id)
    assert referral.status == "cancelled"
    assert db.session.get(Service, shelter.id).beds_available == 1
    page = client.get(f"/cases/{survivor.id}").get_data(as_text=True)
    assert f"/referrals/cases/{survivor.id}/new?service_id={shelter.id}" in page
    # Re-refer: the release on file is used.
    data = send_form(
        [shelter], token="ref_" + "c" * 30, **{str(shelter.organization_id): "on_file"}
    )
    response = client.post(f"/referrals/cases/{survivor.id}/send", data=data)
    assert response.status_code == 302, response.get_data(as_text=True)
    assert count(Referral) == 2 and count(Release) == 1


def test_another_organizations_referrals_answer_404(app, client, caseworker):
    other_case = factories.make_case(factories.make_org("ngo"), needs={"legal": "soon"})
    referral = factories.make_referral(other_case, provider_service("legal"))
    db.session.commit()
    assert client.post(f"/referrals/{referral.id}/cancel").status_code == 404
    assert client.get(f"/referrals/cases/{other_case.id}/new").status_code == 404
    assert client.post(f"/referrals/releases/{referral.release_id}/withdraw").status_code == 404
    assert referral.code not in client.get("/referrals/").get_data(as_text=True)
    assert db.session.get(Referral, referral.id).status == "pending"
