"""Issue 18: senders that are not phone numbers, and WhatsApp on the same webhook and
outbox as SMS (window, templates, media), with every privacy rule of SMS."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core.crypto import blind_index
from app.core.extensions import db
from app.models import Case, HotlineSession, IgnoredSender, Message
from app.models.base import utcnow
from app.sms import channels, hotline, messaging
from app.sms.worker import Worker
from tests import factories
from tests.sms_support import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    StubNetwork,
    inbound_params,
    post_signed,
    scan_database,
)

PHONE = "+14155550123"
WA = "whatsapp:" + PHONE
PROFILE = "Zaynab Qadri-Profile"
CONTENT_SID = "HX" + "ab" * 16


@pytest.fixture
def network() -> StubNetwork:
    return StubNetwork()


@pytest.fixture
def wa_app(app_factory: Any, network: StubNetwork) -> Any:
    app = app_factory(
        TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID, SMS_BACKEND="twilio",
        TWILIO_HTTP_CLIENT=network, TWILIO_FROM_NUMBER=FROM_NUMBER,
        TWILIO_WHATSAPP_FROM="+15005550007", SMS_RATE_PER_SECOND=1000.0,
        TWILIO_WHATSAPP_CONTENT_SIDS=json.dumps({"survivor.update": {"es": CONTENT_SID}}),
    )
    with app.app_context():
        factories.make_org("ngo", name="Hotline NGO")
        db.session.commit()
        yield app
        db.session.remove()


@pytest.fixture
def client(wa_app: Any) -> Any:
    return wa_app.test_client()


def replies(response: Any) -> list[str]:
    assert response.status_code == 200, response.status_code
    root = ET.fromstring(response.data)  # noqa: S314 - our own reply
    assert root.tag == "Response"
    return [m.text or "" for m in root.iter("Message")]


def wa_params(body: str, **extra: str) -> dict[str, str]:
    params = inbound_params(WA, body)
    params.update({"To": "whatsapp:+15005550007", "ProfileName": PROFILE,
                   "WaId": PHONE.lstrip("+")})
    params.update(extra)
    return params


def wa(client: Any, body: str, **extra: str) -> list[str]:
    return replies(post_signed(client, "/sms/inbound", wa_params(body, **extra)))


def sms(client: Any, body: str) -> list[str]:
    return replies(post_signed(client, "/sms/inbound", inbound_params(PHONE, body)))


def converse_to_case(client: Any, send: Any = wa, language: str = "2") -> None:
    send(client, "hola")
    send(client, language)
    send(client, "si")
    send(client, "2")


# --- senders that are not phone numbers ---------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "kind"),
    [("12345", "short_code"), ("VERIFY", "alphanumeric"), ("+1415", "invalid"),
     ("14155550123", "invalid"), ("whatsapp:+1415", "invalid"), ("+1555000000099", "invalid")],
)
def test_non_phone_senders_get_empty_twiml_are_counted_and_nothing_is_kept(
    client: Any, wa_app: Any, sender: str, kind: str
) -> None:
    response = post_signed(client, "/sms/inbound", inbound_params(sender, "hello VERIFY-BODY"))
    assert replies(response) == []
    response = post_signed(client, "/sms/inbound", inbound_params(sender, "again"))
    assert replies(response) == []
    assert channels.ignored_senders(utcnow().date()) == {kind: 2}
    assert db.session.scalar(select(func.count(Message.id))) == 0
    assert db.session.scalar(select(func.count(HotlineSession.id))) == 0
    assert scan_database(wa_app, [sender, "VERIFY-BODY"]) == []


def test_non_phone_sender_still_needs_a_signature(client: Any) -> None:
    response = post_signed(client, "/sms/inbound", inbound_params("12345", "x"), signature="bad")
    assert response.status_code == 403
    assert db.session.scalar(select(func.count(IgnoredSender.id))) == 0


# --- WhatsApp inbound ---------------------------------------------------------------------


def test_whatsapp_conversation_makes_a_case_and_keeps_no_profile_name(
    client: Any, wa_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    assert "Reply 1 English" in wa(client, "hello")[0]
    assert "YES" in wa(client, "1")[0]
    assert "What help" in wa(client, "yes")[0]
    confirm = wa(client, "1 3",
                 Latitude="37.7749", Longitude="-122.4194", Address="221B Secret St")
    assert "Your reference is" in confirm[0]
    db.session.expire_all()
    case = db.session.scalar(select(Case))
    assert case is not None and case.phone_index == blind_index(PHONE)
    session = db.session.scalar(select(HotlineSession))
    assert session is not None and session.channel == "whatsapp"
    assert {m.channel for m in db.session.scalars(select(Message))} == {"whatsapp"}
    leaked = scan_database(wa_app, [PROFILE, "221B Secret St", "37.7749", PHONE.lstrip("+")])
    assert leaked == []
    assert PROFILE not in caplog.text and PHONE not in caplog.text
    assert "221B" not in caplog.text


def test_one_number_on_sms_and_whatsapp_is_one_case_with_two_conversations(
    client: Any,
) -> None:
    converse_to_case(client, wa)
    reply = sms(client, "hello")
    assert "Su referencia" in reply[0] or "referencia" in reply[0].lower()
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Case.id))) == 1
    sessions = {s.channel for s in db.session.scalars(select(HotlineSession))}
    assert sessions == {"sms", "whatsapp"}


def test_media_is_never_read_and_she_is_told_in_her_language(
    client: Any, wa_app: Any, network: StubNetwork
) -> None:
    wa(client, "hola")
    wa(client, "2")  # Spanish
    Worker(wa_app, sleep=lambda _s: None).run(once=True)  # earlier texts deleted at Twilio
    before = len(network.requests)
    media_url = "https://api.twilio.com/2010-04-01/Accounts/AC/Messages/MM1/Media/ME1"
    params = wa_params("", NumMedia="1", MediaUrl0=media_url, MediaContentType0="image/jpeg")
    params["MessageSid"] = "MM" + "1" * 32
    reply = replies(post_signed(client, "/sms/inbound", params))
    assert reply == [messaging.render("hotline.text_only", "es")]
    # (Translated once the lead extracts the new text; the language is hers already.)
    assert hotline.replies_language(blind_index(PHONE)) == "es"
    assert len(network.requests) == before  # nothing fetched
    assert scan_database(wa_app, [media_url, "image/jpeg"]) == []
    # The worker deletes the message and its media at Twilio.
    network.push(json_response(200, {"media_list": [{"sid": "ME" + "2" * 32}],
                                     "first_page_uri": "", "next_page_uri": None,
                                     "page": 0, "page_size": 50}))
    Worker(wa_app, sleep=lambda _s: None).run(once=True)
    deletes = [r["uri"] for r in network.requests if r["method"] == "DELETE"]
    assert any(u.endswith("/Messages/" + "MM" + "1" * 32 + "/Media/ME" + "2" * 32 + ".json")
               for u in deletes), deletes
    assert any(u.endswith("/Messages/" + "MM" + "1" * 32 + ".json") for u in deletes), deletes


def test_button_text_answers_when_the_body_is_empty(client: Any) -> None:
    wa(client, "hi")
    assert "YES" in wa(client, "", ButtonText="1")[0]


def json_response(status: int, body: dict[str, Any]) -> Any:
    from twilio.http.response import Response

    return Response(status, json.dumps(body))


# --- WhatsApp outbound --------------------------------------------------------------------


def _whatsapp_case(client: Any) -> Case:
    converse_to_case(client, wa)
    db.session.expire_all()
    case = db.session.scalar(select(Case))
    assert case is not None
    return case


def test_outbound_inside_the_window_is_free_text_to_whatsapp_addresses(
    client: Any, wa_app: Any, network: StubNetwork
) -> None:
    case = _whatsapp_case(client)
    message = messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    assert message is not None and message.channel == "whatsapp"
    db.session.commit()
    result = Worker(wa_app, sleep=lambda _s: None).run(once=True)
    assert result.sent == 1
    sent = [r for r in network.requests if r["method"] == "POST"]
    assert sent[-1]["data"]["To"] == WA
    assert sent[-1]["data"]["From"] == "whatsapp:+15005550007"
    assert case.reference in sent[-1]["data"]["Body"]
    assert "ContentSid" not in sent[-1]["data"]


def _age_inbound(days: int) -> None:
    db.session.execute(
        Message.__table__.update()
        .where(Message.direction == "in")
        .values(created_at=utcnow() - timedelta(days=days))
    )
    db.session.commit()


def test_outside_the_window_an_approved_template_is_sent(
    client: Any, wa_app: Any, network: StubNetwork
) -> None:
    case = _whatsapp_case(client)  # Spanish: a template is configured for es
    _age_inbound(2)
    message = messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    assert message is not None
    db.session.commit()
    assert Worker(wa_app, sleep=lambda _s: None).run(once=True).sent == 1
    data = [r for r in network.requests if r["method"] == "POST"][-1]["data"]
    assert data["ContentSid"] == CONTENT_SID
    assert json.loads(data["ContentVariables"]) == {"1": case.reference}
    assert "Body" not in data


def test_outside_the_window_without_a_template_fails_with_a_reason_never_sms(
    client: Any, wa_app: Any, network: StubNetwork
) -> None:
    converse_to_case(client, wa, language="1")  # English: no template configured
    db.session.expire_all()
    case = db.session.scalar(select(Case))
    assert case is not None
    _age_inbound(2)
    message = messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    assert message is not None
    db.session.commit()
    assert Worker(wa_app, sleep=lambda _s: None).run(once=True).failed == 1
    db.session.expire_all()
    failed = db.session.get(Message, message.id)
    assert failed is not None and failed.status == "failed"
    assert failed.failure_reason == "whatsapp_window"
    assert [r for r in network.requests if r["method"] == "POST"] == []


def test_read_status_is_delivered(client: Any, wa_app: Any, network: StubNetwork) -> None:
    case = _whatsapp_case(client)
    message = messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    assert message is not None
    db.session.commit()
    Worker(wa_app, sleep=lambda _s: None).run(once=True)
    db.session.expire_all()
    sid = db.session.get(Message, message.id).twilio_sid  # type: ignore[union-attr]
    assert sid
    response = post_signed(client, "/sms/status", {
        "MessageSid": sid, "MessageStatus": "read", "AccountSid": ACCOUNT_SID,
        "ChannelPrefix": "whatsapp",
    })
    assert response.status_code == 200
    db.session.expire_all()
    assert db.session.get(Message, message.id).status == "delivered"  # type: ignore[union-attr]


def test_bad_content_sid_configuration_is_refused() -> None:
    from config import TestingConfig

    bad = TestingConfig({}, TWILIO_WHATSAPP_CONTENT_SIDS='{"survivor.update": {"en": "x"}}')
    assert any("TWILIO_WHATSAPP_CONTENT_SIDS" in p for p in bad.problems())
    good = TestingConfig({}, TWILIO_WHATSAPP_CONTENT_SIDS=json.dumps(
        {"survivor.update": {"en": CONTENT_SID}}))
    assert not any("TWILIO_WHATSAPP_CONTENT_SIDS" in p for p in good.problems())


def test_the_case_page_shows_the_channel_to_answer_on_and_why_a_message_was_not_sent(
    client: Any, wa_app: Any, network: StubNetwork
) -> None:
    from tests.conftest import login_session

    converse_to_case(client, wa, language="1")
    db.session.expire_all()
    case = db.session.scalar(select(Case))
    assert case is not None
    _age_inbound(2)
    messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    db.session.commit()
    Worker(wa_app, sleep=lambda _s: None).run(once=True)
    from app.models import Organization

    organization = db.session.get(Organization, case.organization_id)
    caseworker = factories.make_user("caseworker", organization=organization, totp=False)
    db.session.commit()
    staff = wa_app.test_client()
    login_session(staff, caseworker)
    page = staff.get(f"/cases/{case.id}").get_data(as_text=True)
    section = page[page.index('id="channels"'):]
    assert "WhatsApp" in section.split("</dd>")[0]
    assert "no approved WhatsApp template" in section
    # Another organization's caseworker sees nothing of it.
    other = factories.make_user("caseworker", organization=factories.make_org("ngo"),
                                totp=False)
    db.session.commit()
    outsider = wa_app.test_client()
    login_session(outsider, other)
    response = outsider.get(f"/cases/{case.id}")
    assert response.status_code == 404
    assert "no approved WhatsApp template" not in response.get_data(as_text=True)
