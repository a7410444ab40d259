"""WhatsApp and voice calls of the real Twilio SDK against Prism serving Twilio's spec
(as tests/test_sms_prism.py does for SMS): a template send with whatsapp: addresses, the
deletion of an inbound message with its media, and of a finished call's record."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from app.core.extensions import db
from app.sms import messaging
from tests.sms_support import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, LocalTwilioHttpClient
from tests.test_sms_prism import MESSAGES, network, prism  # noqa: F401 - fixtures

pytestmark = pytest.mark.usefixtures("prism")
CONTENT_SID = "HX" + "cd" * 16


@pytest.fixture
def twilio_app(app_factory: Any, network: LocalTwilioHttpClient) -> Iterator[Any]:  # noqa: F811
    app = app_factory(
        SMS_BACKEND="twilio", TWILIO_HTTP_CLIENT=network, TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_FROM_NUMBER=FROM_NUMBER,
        TWILIO_WHATSAPP_FROM="+15005550007",
    )
    with app.app_context():
        yield app
        db.session.remove()


def test_whatsapp_template_send_is_valid_for_twilios_spec(
    twilio_app: Any, network: LocalTwilioHttpClient  # noqa: F811
) -> None:
    backend = messaging.backend(twilio_app)
    result = backend.send("+14155550123", "unused", "survivor.update", channel="whatsapp",
                          content_sid=CONTENT_SID, content_variables='{"1": "K7Q-4MX"}')
    assert result.sid.startswith(("SM", "MM"))
    sent = network._test_only_last_request
    assert sent is not None
    data: Any = sent.data
    assert data["To"] == "whatsapp:+14155550123"
    assert data["From"] == "whatsapp:+15005550007"
    assert data["ContentSid"] == CONTENT_SID and "Body" not in data
    assert network.seen[-1] == ("POST", network.base_url + MESSAGES, 201)


def test_whatsapp_free_text_send_is_valid_for_twilios_spec(
    twilio_app: Any, network: LocalTwilioHttpClient  # noqa: F811
) -> None:
    backend = messaging.backend(twilio_app)
    backend.send("+14155550123", "Haven: test", "survivor.update", channel="whatsapp")
    assert network.seen[-1] == ("POST", network.base_url + MESSAGES, 201)


def test_inbound_media_and_message_are_deleted(
    twilio_app: Any, network: LocalTwilioHttpClient  # noqa: F811
) -> None:
    sid = "MM" + "a" * 32
    assert messaging.backend(twilio_app).delete(sid, "whatsapp")
    methods = [(m, u.rsplit("/Accounts/", 1)[1]) for m, u, _ in network.seen]
    assert methods[0] == ("GET", f"{ACCOUNT_SID}/Messages/{sid}/Media.json")
    assert methods[-1] == ("DELETE", f"{ACCOUNT_SID}/Messages/{sid}.json")
    assert all(status < 400 for _, _, status in network.seen), network.seen


def test_a_finished_calls_record_is_deleted(
    twilio_app: Any, network: LocalTwilioHttpClient  # noqa: F811
) -> None:
    sid = "CA" + "b" * 32
    assert messaging.backend(twilio_app).delete(sid, "voice")
    assert network.seen[-1] == (
        "DELETE", f"{network.base_url}/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{sid}.json", 204
    )
