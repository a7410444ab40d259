"""The hotline simulator (issue 18): a staff page that sends each message through the real
webhook (signed), shows replies with segments and encoding, and is refused in production
unless HAVEN_SIMULATOR=1."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from app.core import devenv
from app.core.extensions import db
from app.models import Case, HotlineSession, Message
from tests import factories
from tests.conftest import login_session
from tests.sms_support import AUTH_TOKEN

PHONE = "+14155550142"


@pytest.fixture
def sim_app(app_factory: Any) -> Any:
    app = app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                      PUBLIC_BASE_URL="https://haven.example.org")
    with app.app_context():
        yield app
        db.session.remove()


def _signed_in(app: Any, role: str = "caseworker") -> Any:
    org = factories.make_org("ngo", name="Hotline NGO")
    user = factories.make_user(role, organization=org, totp=False)
    db.session.commit()
    client = app.test_client()
    login_session(client, user)
    return client


def say(client: Any, text: str, channel: str = "sms", **extra: str) -> str:
    data = {"number": PHONE, "channel": channel, "message": text, **extra}
    response = client.post("/dev/hotline", data=data)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def test_a_whole_sms_conversation_through_the_real_webhook(sim_app: Any) -> None:
    client = _signed_in(sim_app)
    page = say(client, "hello")
    assert "Reply 1 English" in page
    assert re.search(r"1 segment[s]?, (GSM-7|UCS-2)", page), page
    assert "YES" in say(client, "1")
    say(client, "yes")
    page = say(client, "1")
    assert "Your reference is" in page
    db.session.expire_all()
    case = db.session.scalar(select(Case))
    assert case is not None and case.channel == "sms" and case.status == "open"
    # It went through the webhook: inbound rows with Twilio-like SIDs, one per message.
    assert db.session.scalar(
        select(func.count(Message.id)).where(Message.direction == "in")) == 4


def test_whatsapp_in_the_simulator(sim_app: Any) -> None:
    client = _signed_in(sim_app)
    say(client, "hola", channel="whatsapp")
    db.session.expire_all()
    session = db.session.scalar(select(HotlineSession))
    assert session is not None and session.channel == "whatsapp"


def test_bad_input_re_renders_with_field_errors(sim_app: Any) -> None:
    client = _signed_in(sim_app)

    def bad(**data: str) -> str:
        response = client.post("/dev/hotline", data={"number": PHONE, "channel": "sms",
                                                     "message": "hi", **data})
        assert response.status_code == 400
        return str(response.get_data(as_text=True))

    assert "Enter a valid phone number" in bad(number="not a number")
    assert "Write a message." in bad(message="")
    assert "press keys" in bad(channel="voice", message="hello")
    assert "Not a valid choice" in bad(channel="fax")
    bad(channel="voice", message="1", next_step="/admin/users")
    assert db.session.scalar(select(func.count(Message.id))) == 0


def test_without_a_token_the_simulator_says_so(app_factory: Any) -> None:
    app = app_factory(TWILIO_AUTH_TOKEN="")
    with app.app_context():
        client = _signed_in(app)
        page = say(client, "hello")
        assert "needs TWILIO_AUTH_TOKEN" in page
        assert db.session.scalar(select(func.count(Message.id))) == 0
        db.session.remove()


def test_signed_out_is_sent_to_sign_in(sim_app: Any) -> None:
    response = sim_app.test_client().post("/dev/hotline", data={"number": PHONE,
                                                                "channel": "sms",
                                                                "message": "hi"})
    assert response.status_code in (302, 401)
    assert db.session.scalar(select(func.count(Message.id))) == 0


@pytest.mark.parametrize("role", ["admin", "supervisor", "caseworker", "provider"])
def test_any_staff_role_may_use_it(sim_app: Any, role: str) -> None:
    client = _signed_in(sim_app, role)
    assert client.get("/dev/hotline").status_code == 200


def test_refused_in_production_unless_enabled(sim_app: Any) -> None:
    client = _signed_in(sim_app)
    sim_app.config["HAVEN_ENV"] = "production"
    assert client.get("/dev/hotline").status_code == 404
    assert client.post("/dev/hotline", data={"number": PHONE, "channel": "sms",
                                             "message": "hi"}).status_code == 404
    assert db.session.scalar(select(func.count(Message.id))) == 0
    sim_app.config["HAVEN_SIMULATOR"] = True
    assert client.get("/dev/hotline").status_code == 200


def test_development_env_gets_a_webhook_token_and_base_url(tmp_path: Any) -> None:
    path = str(tmp_path / ".env")
    devenv.main(path)
    with open(path) as handle:
        values = dict(line.split("=", 1) for line in handle.read().splitlines()
                      if "=" in line and not line.startswith("#"))
    assert len(values["TWILIO_AUTH_TOKEN"]) >= 32
    assert values["PUBLIC_BASE_URL"].startswith("http://127.0.0.1")
    other = str(tmp_path / "other.env")
    devenv.main(other)
    with open(other) as handle:
        assert values["TWILIO_AUTH_TOKEN"] not in handle.read()
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"


def test_a_voice_call_through_the_simulator(sim_app: Any) -> None:
    client = _signed_in(sim_app)
    page = client.post("/dev/hotline", data={"number": PHONE, "channel": "voice",
                                             "message": ""}).get_data(as_text=True)
    assert "press 1" in page
    call_sid = re.search(r'name="call_sid" type="hidden" value="(CA[0-9a-f]{32})"', page)
    step = re.search(r'name="next_step" type="hidden" value="([^"]+)"', page)
    assert call_sid and step and step.group(1) == "/voice/step?n=1"
    page = client.post("/dev/hotline", data={
        "number": PHONE, "channel": "voice", "message": "1",
        "call_sid": call_sid.group(1), "next_step": step.group(1),
    }).get_data(as_text=True)
    assert "Press 1 to agree" in page
    assert "/voice/step?n=2" in page
