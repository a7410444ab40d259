"""The survivor's export (issue 13 item 13): besides her record, every recipient of her data
— referrals with what was shared under which release and their status history, releases,
and the text messages about her (no bodies, no numbers). GDPR Art. 15(1)(c)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.consent import changes
from app.core.extensions import db
from app.models import AuditEvent, Message, utcnow
from app.referrals import service as referrals
from tests import factories
from tests.conftest import login_session

PHONE = "+14155550177"
PROVIDER_PHONE = "+14155550166"


@pytest.fixture
def story(app, client):
    """A case referred to a legal service that accepted (its provider texted, the survivor
    told), a withdrawn release to a shelter organization, and a text she sent the hotline;
    plus another survivor's case and referral that must not appear in her export."""
    worker = factories.make_user("caseworker")
    ngo = worker.organization
    case = factories.make_case(ngo, alias="Ilse", phone=PHONE,
                               needs={"legal": "soon", "shelter": "immediate"})
    legal_org = factories.make_org("provider", name="Advocates of the Harbour")
    service = factories.make_service(legal_org, category="legal", intake_phone=PROVIDER_PHONE)
    referral = factories.make_referral(case, service)
    referrals.accept(referral, None)
    shelter_org = factories.make_org("provider", name="Northside Housing Trust")
    withdrawn = factories.make_release(case, shelter_org, withdrawn=True)
    db.session.add(Message(
        direction="in", audience="survivor", status="received", twilio_sid="SMfromher",
        counterpart_index=case.phone_index, created_at=utcnow() - timedelta(hours=2),
        final_at=utcnow() - timedelta(hours=2),
    ))

    other = factories.make_case(ngo, alias="Someone Else", phone="+14155550188",
                                needs={"legal": "soon"})
    other_referral = factories.make_referral(other, service)
    referrals.accept(other_referral, None)
    db.session.commit()
    login_session(client, worker)
    return {
        "case": case, "referral": referral, "legal_org": legal_org, "shelter_org": shelter_org,
        "withdrawn": withdrawn, "service": service, "other_referral": other_referral,
    }


def test_json_export_names_every_recipient_and_what_they_received(client, story):
    case, referral = story["case"], story["referral"]
    response = client.get(f"/cases/{case.id}/export.json")
    assert response.status_code == 200
    data = response.get_json()

    [exported] = data["referrals"]
    assert exported["code"] == referral.code
    assert exported["recipient_organization"] == "Advocates of the Harbour"
    assert exported["category"] == "legal"
    assert exported["created_at"] == referral.created_at.isoformat()
    assert exported["shared_fields"] == list(referral.shared_fields)
    assert {"alias", "phone", "needs"} <= set(exported["shared_fields"])
    assert exported["status"] == "accepted"
    assert [e["action"] for e in exported["status_history"]] == [
        "referral.create", "referral.accept"]
    assert all(e["at"] for e in exported["status_history"])
    release = referral.release
    assert exported["release"] == {
        "recipient_organization": "Advocates of the Harbour",
        "method": release.method,
        "granted_at": release.granted_at.isoformat(),
    }

    releases = {r["recipient_organization"]: r for r in data["releases"]}
    assert set(releases) == {"Advocates of the Harbour", "Northside Housing Trust"}
    assert releases["Advocates of the Harbour"]["withdrawn_at"] is None
    assert releases["Northside Housing Trust"]["withdrawn_at"] == (
        story["withdrawn"].withdrawn_at.isoformat())
    assert releases["Northside Housing Trust"]["expires_at"] == (
        story["withdrawn"].expires_at.isoformat())
    assert releases["Northside Housing Trust"]["method"] == "verbal"

    messages = {(m["direction"], m["template"]): m for m in data["messages"]}
    assert set(messages) == {
        ("out", "provider.referral_new"),  # her referral, to the provider's phone
        ("out", "survivor.referral_accepted"),  # to her
        ("in", None),  # the text she sent (its words were never kept)
    }
    to_provider = messages[("out", "provider.referral_new")]
    assert to_provider["audience"] == "provider" and to_provider["referral_code"] == referral.code
    assert messages[("out", "survivor.referral_accepted")]["status"] == "queued"
    assert messages[("in", None)]["status"] == "received"
    for message in data["messages"]:
        assert set(message) == {
            "template", "audience", "direction", "created_at", "sent_at", "status",
            "referral_code",
        }


def test_json_export_holds_no_body_no_number_and_nothing_of_another_survivor(client, story):
    case = story["case"]
    body = client.get(f"/cases/{case.id}/export.json").get_data(as_text=True)
    service = story["service"]
    for secret in (
        PROVIDER_PHONE, PROVIDER_PHONE[2:], service.intake_phone_index,  # the provider's number
        case.phone_index,  # her number's blind index (her number itself is in her profile)
        story["other_referral"].code, "Someone Else",  # another survivor
        "Reply ACCEPT",  # a message body
    ):
        assert secret not in body, secret
    assert "params" not in json.loads(body)["messages"][0]


def test_export_page_shows_recipients_with_labels_and_is_audited(client, story):
    case, referral = story["case"], story["referral"]
    page = client.get(f"/cases/{case.id}/export").get_data(as_text=True)
    assert "Everything Haven holds about case" in page
    assert "Advocates of the Harbour" in page and "Northside Housing Trust" in page
    assert referral.code in page
    # Shared fields by their labels, not their names.
    assert "Name (chosen by the survivor)" in page and "Age range" in page
    assert "shared_fields" not in page and "age_band" not in page.split("<h2", 3)[-1]
    # Messages by a label, with the template key beside it.
    assert "New referral sent to the service" in page
    assert "provider.referral_new" in page
    assert "Text message from the survivor" in page
    assert "Withdrawn" in page
    assert "Someone Else" not in page and story["other_referral"].code not in page
    actions = list(db.session.scalars(
        select(AuditEvent.action).where(AuditEvent.object_id == str(case.id))))
    assert "case.export" in actions


def test_export_of_a_case_with_no_referrals_or_messages(client, app):
    worker = factories.make_user("caseworker")
    case = factories.make_case(worker.organization, phone=None)
    db.session.commit()
    login_session(client, worker)
    data = client.get(f"/cases/{case.id}/export.json").get_json()
    assert data["referrals"] == [] and data["releases"] == [] and data["messages"] == []
    assert "No referrals" in client.get(f"/cases/{case.id}/export").get_data(as_text=True)


def test_export_consent_history_says_grant_withdrawal_or_refusal(client, app):

    worker = factories.make_user("caseworker")
    case = factories.make_case(worker.organization, consents={"store": True})
    changes.change_consent(case, "share_medical", False, "verbal", worker.id, language="en")
    changes.change_consent(case, "contact_sms", True, "verbal", worker.id, language="en")
    changes.change_consent(case, "contact_sms", False, "verbal", worker.id, language="en")
    db.session.commit()
    login_session(client, worker)
    data = client.get(f"/cases/{case.id}/export.json").get_json()
    assert [(c["scope"], c["decision"]) for c in data["consent_history"]] == [
        ("store", "grant"), ("share_medical", "refuse"), ("contact_sms", "grant"),
        ("contact_sms", "withdraw"),
    ]
    page = client.get(f"/cases/{case.id}/export").get_data(as_text=True)
    assert ">Refused<" in page and ">Withdrawn<" in page


def test_every_message_that_can_concern_a_survivor_has_a_label_for_the_export(app):
    from app.sms import messaging

    about_someone = {
        key for key, template in messaging.TEMPLATES.items()
        if template.audience != "hotline"  # TwiML replies: never a message row
        and {"code", "reference"} & set(template.params)
    }
    assert about_someone <= set(messaging.MESSAGE_LABELS)
    assert set(messaging.MESSAGE_LABELS) <= set(messaging.TEMPLATES)
