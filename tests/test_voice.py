"""The voice line (issue 18): the same conversation as SMS behind <Gather> key presses,
spoken in the caller's language; nothing recorded or transcribed; danger first, then the
on-call number; the call's record deleted at Twilio when it ends."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from sqlalchemy import func, select

from app.consent import service as consent
from app.core.crypto import blind_index
from app.core.extensions import db
from app.models import Case, HotlineSession, Message
from app.models.base import utcnow
from app.sms import channels
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

PHONE = "+14155550166"
ON_CALL = "+14155550100"
CALL = "CA" + "c" * 32


@pytest.fixture
def network() -> StubNetwork:
    return StubNetwork()


@pytest.fixture
def voice_app(app_factory: Any, network: StubNetwork) -> Any:
    app = app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID,
                      SMS_BACKEND="twilio", TWILIO_HTTP_CLIENT=network,
                      TWILIO_FROM_NUMBER=FROM_NUMBER, HAVEN_ON_CALL_NUMBER=ON_CALL)
    with app.app_context():
        factories.make_org("ngo", name="Hotline NGO")
        db.session.commit()
        yield app
        db.session.remove()


@pytest.fixture
def client(voice_app: Any) -> Any:
    return voice_app.test_client()


def twiml(response: Any) -> ET.Element:
    assert response.status_code == 200, response.status_code
    assert response.content_type.startswith("text/xml")
    root = ET.fromstring(response.data)  # noqa: S314 - our own reply
    assert root.tag == "Response"
    for node in root.iter():
        # Nothing recorded, transcribed or heard as speech, ever.
        assert node.tag not in ("Record", "Transcription", "Stream", "Connect")
        assert "speech" not in (node.get("input") or "")
        assert not any("transcri" in k.lower() or k == "record" for k in node.attrib)
    return root


def said(root: ET.Element) -> list[str]:
    return [n.text or "" for n in root.iter("Say")]


def call_params(sid: str = CALL, sender: str = PHONE, **extra: str) -> dict[str, str]:
    return {"CallSid": sid, "AccountSid": ACCOUNT_SID, "From": sender, "To": FROM_NUMBER,
            "CallStatus": "in-progress", "Direction": "inbound", **extra}


def ring(client: Any, sid: str = CALL, sender: str = PHONE) -> ET.Element:
    params = call_params(sid, sender, CallStatus="ringing")
    return twiml(post_signed(client, "/voice/inbound", params))


def press(client: Any, step: int, digits: str, sid: str = CALL) -> ET.Element:
    return twiml(post_signed(client, f"/voice/step?n={step}",
                             call_params(sid, Digits=digits)))


def next_action(root: ET.Element) -> str:
    gather = root.find("Gather")
    assert gather is not None
    assert gather.get("input") == "dtmf"
    return gather.get("action") or ""


def test_a_whole_call_in_english(client: Any) -> None:
    root = ring(client)
    assert "press 1" in said(root)[0] and "English" in said(root)[0]
    assert next_action(root).endswith("/voice/step?n=1")
    root = press(client, 1, "1")
    assert "Press 1 to agree" in said(root)[0]
    root = press(client, 2, "1")
    assert "What help do you need" in said(root)[0]
    root = press(client, 3, "13#")
    db.session.expire_all()
    case = db.session.scalar(select(Case))
    assert case is not None and case.status == "open"
    spelled = ", ".join(ch for ch in case.reference if ch.isalnum())
    assert any(spelled in text for text in said(root)), said(root)
    assert consent.has_consent(case, "store") and consent.has_consent(case, "contact_sms")
    assert {n.category for n in case.needs} == {"shelter", "medical"}
    session = db.session.scalar(select(HotlineSession))
    assert session is not None and session.channel == "voice"


def test_the_language_menu_speaks_each_language_in_its_own_voice(client: Any) -> None:
    root = ring(client)
    says = list(root.iter("Say"))[:4]
    assert [s.get("language") for s in says] == ["en-US", "es-US", "fr-FR", "arb"]
    assert "2" in (says[1].text or "") and "4" in (says[3].text or "")


def test_arabic_is_spoken_with_an_arabic_voice(client: Any) -> None:
    ring(client)
    root = press(client, 1, "4")
    says = list(root.iter("Say"))
    assert says[0].get("language") == "arb" and says[0].get("voice") == "Polly.Zeina"


def test_three_agrees_without_texts(client: Any) -> None:
    ring(client)
    press(client, 1, "1")
    press(client, 2, "3")
    db.session.expire_all()
    case = db.session.scalar(select(Case))
    assert case is not None
    assert consent.has_consent(case, "store")
    assert not consent.has_consent(case, "contact_sms")


def test_danger_speaks_the_emergency_number_then_dials_on_call(client: Any,
                                                                voice_app: Any) -> None:
    ring(client)
    press(client, 1, "1")
    press(client, 2, "1")
    root = press(client, 3, "0")
    texts = said(root)
    assert voice_app.config["HAVEN_EMERGENCY_NUMBER"] in texts[0]
    dial = root.find("Dial")
    assert dial is not None and dial.text == ON_CALL
    assert [n.tag for n in root].index("Dial") > [n.tag for n in root].index("Say")
    db.session.expire_all()
    case = db.session.scalar(select(Case))
    assert case is not None and case.danger_reported_at is not None


def test_danger_without_on_call_number_keeps_asking(app_factory: Any) -> None:
    app = app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN, HAVEN_ON_CALL_NUMBER="")
    with app.app_context():
        factories.make_org("ngo", name="Hotline NGO")
        db.session.commit()
        client = app.test_client()
        ring(client)
        press(client, 1, "1")
        press(client, 2, "1")
        root = press(client, 3, "0")
        assert root.find("Dial") is None
        gather = root.find("Gather")
        assert gather is not None
        assert app.config["HAVEN_EMERGENCY_NUMBER"] in (gather.find("Say").text or "")  # type: ignore[union-attr]
        db.session.remove()


def test_a_retried_step_changes_nothing_twice(client: Any) -> None:
    ring(client)
    press(client, 1, "1")
    first = said(press(client, 2, "1"))
    again = said(press(client, 2, "1"))
    assert again == first  # the current question again
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Case.id))) == 1
    ring(client)  # a retried start
    assert db.session.scalar(
        select(func.count(Message.id)).where(Message.twilio_sid == CALL)) == 1


def test_the_calls_record_is_deleted_at_twilio_when_it_ends(
    client: Any, voice_app: Any, network: StubNetwork
) -> None:
    ring(client)
    press(client, 1, "1")
    Worker(voice_app, sleep=lambda _s: None).run(once=True)
    calls_deleted = [r for r in network.requests if "/Calls/" in r["uri"]]
    assert calls_deleted == []  # not while the call is going on
    response = post_signed(client, "/voice/status", call_params(CallStatus="completed"))
    assert response.status_code == 200
    Worker(voice_app, sleep=lambda _s: None).run(once=True)
    deletes = [r for r in network.requests if r["method"] == "DELETE"]
    assert [r["uri"].rsplit("/Accounts/", 1)[1] for r in deletes] == [
        f"{ACCOUNT_SID}/Calls/{CALL}.json"]


def test_sms_and_voice_from_one_number_are_one_case(client: Any) -> None:
    ring(client)
    press(client, 1, "1")
    press(client, 2, "1")
    reply = post_signed(client, "/sms/inbound", inbound_params(PHONE, "hello"))
    assert reply.status_code == 200
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Case.id))) == 1
    assert {s.channel for s in db.session.scalars(select(HotlineSession))} == {"sms", "voice"}


@pytest.mark.parametrize(
    ("path", "params"),
    [("/voice/inbound", call_params("CA123")),
     ("/voice/step?n=x", call_params(Digits="1")),
     ("/voice/step?n=1", call_params(Digits="1; DROP")),
     ("/voice/status", call_params(CallStatus="<bad>"))],
)
def test_bad_requests_are_400(client: Any, path: str, params: dict[str, str]) -> None:
    assert post_signed(client, path, params).status_code == 400
    assert db.session.scalar(select(func.count(Message.id))) == 0


@pytest.mark.parametrize("path", ["/voice/inbound", "/voice/step?n=1", "/voice/status"])
def test_unsigned_is_403(client: Any, path: str) -> None:
    response = post_signed(client, path, call_params(Digits="1"), signature="nope")
    assert response.status_code == 403


def test_a_withheld_caller_hears_help_and_nothing_is_kept(client: Any) -> None:
    root = ring(client, sender="anonymous")
    assert root.find("Hangup") is not None and said(root)
    assert channels.ignored_senders(utcnow().date()) == {"alphanumeric": 1}
    assert db.session.scalar(select(func.count(Message.id))) == 0


def test_the_number_is_never_in_logs_or_plain_in_the_database(
    client: Any, voice_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ring(client)
    press(client, 1, "1")
    press(client, 2, "1")
    assert PHONE not in caplog.text and PHONE.lstrip("+") not in caplog.text
    assert scan_database(voice_app, [PHONE, PHONE.lstrip("+")]) == []
    assert db.session.scalar(select(Case.phone_index)) == blind_index(PHONE)


def test_an_on_call_number_that_is_not_e164_is_refused() -> None:
    from config import TestingConfig

    bad = TestingConfig({}, HAVEN_ON_CALL_NUMBER="call Maria")
    assert any("HAVEN_ON_CALL_NUMBER" in p for p in bad.problems())
    good = TestingConfig({}, HAVEN_ON_CALL_NUMBER=ON_CALL)
    assert not any("HAVEN_ON_CALL_NUMBER" in p for p in good.problems())
