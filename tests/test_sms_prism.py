"""The real Twilio SDK against a local Stoplight Prism mock serving Twilio's own OpenAPI
description (twilio_api_v2010.json from @twilio/cli-core 9.0.0). Prism validates each
request against the spec (path, auth, required fields) and answers with the spec's example.

Needs `tests/tools/install_prism.sh` (CI runs it). Without it these tests FAIL with that
instruction; they are not skipped.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from app.core.extensions import db
from app.models import Message
from app.sms import messaging
from app.sms import status as sms_status
from app.sms.worker import Worker
from tests import factories
from tests.sms_support import ACCOUNT_SID, AUTH_TOKEN, FROM_NUMBER, LocalTwilioHttpClient

ROOT = Path(__file__).resolve().parent.parent
PRISM = ROOT / ".tools" / "prism" / "node_modules" / ".bin" / "prism"
SPEC = ROOT / ".tools" / "twilio-oai" / "twilio_api_v2010.json"
MESSAGES = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"

pytestmark = pytest.mark.usefixtures("prism")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def prism() -> Iterator[str]:
    if not (PRISM.exists() and SPEC.exists()):
        pytest.fail("Prism is not installed: run tests/tools/install_prism.sh", pytrace=False)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(os.devnull, "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(SPEC)],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                pytest.fail("Prism exited during start-up", pytrace=False)
            try:
                requests.get(base + MESSAGES, auth=(ACCOUNT_SID, AUTH_TOKEN), timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):
                # Not listening yet, or listening but slow to answer its first request on a
                # loaded machine: both mean "not ready", until the deadline.
                if time.monotonic() > deadline:
                    pytest.fail("Prism did not start within 90 s", pytrace=False)
                time.sleep(0.3)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def network(prism: str) -> LocalTwilioHttpClient:
    return LocalTwilioHttpClient(prism, timeout=10)


@pytest.fixture
def twilio_app(app_factory: Any, network: LocalTwilioHttpClient) -> Iterator[Any]:
    app = app_factory(
        SMS_BACKEND="twilio", TWILIO_HTTP_CLIENT=network, TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_FROM_NUMBER=FROM_NUMBER,
        PUBLIC_BASE_URL="https://haven.example.org", SMS_RATE_PER_SECOND=1000.0,
    )
    with app.app_context():
        yield app
        db.session.remove()


def test_the_mock_validates_requests_against_twilios_spec(prism: str) -> None:
    auth = (ACCOUNT_SID, AUTH_TOKEN)
    missing_to = requests.post(prism + MESSAGES, data={"From": FROM_NUMBER, "Body": "x"},
                               auth=auth, timeout=10)
    assert missing_to.status_code == 422
    unauthenticated = requests.post(prism + MESSAGES, data={"To": "+14155550123",
                                                            "From": FROM_NUMBER, "Body": "x"},
                                    timeout=10)
    assert unauthenticated.status_code == 401


def test_worker_sends_a_survivor_message_through_the_sdk(
    twilio_app: Any, network: LocalTwilioHttpClient
) -> None:
    case = factories.make_case(phone="+14155550123")
    message = messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    assert message is not None
    db.session.commit()
    result = Worker(twilio_app, sleep=lambda _s: None).run(once=True)
    assert result.sent == 1, result
    db.session.expire_all()
    sent = db.session.get(Message, message.id)
    assert sent is not None and sent.status == "submitted"
    assert sent.twilio_sid and sent.twilio_sid.startswith("SM") and len(sent.twilio_sid) == 34
    assert network.seen == [("POST", network.base_url + MESSAGES, 201)]


def test_messaging_service_and_status_callback(
    app_factory: Any, network: LocalTwilioHttpClient
) -> None:
    app = app_factory(
        SMS_BACKEND="twilio", TWILIO_HTTP_CLIENT=network, TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_MESSAGING_SERVICE_SID="MG" + "1" * 32,
        PUBLIC_BASE_URL="https://haven.example.org",
    )
    with app.app_context():
        backend = messaging.backend(app)
        result = backend.send("+14155550123", "Haven: test", "survivor.update")
        assert result.status == "submitted" and result.sid.startswith("SM")
        sent = network._test_only_last_request
        assert sent is not None
        assert sent.data["MessagingServiceSid"] == "MG" + "1" * 32  # type: ignore[index]
        assert "From" not in sent.data  # type: ignore[operator]
        assert sent.data["StatusCallback"] == (  # type: ignore[index]
            "https://haven.example.org/sms/status")
        db.session.remove()


def test_final_message_is_deleted_at_twilio(
    twilio_app: Any, network: LocalTwilioHttpClient
) -> None:
    message = messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                                params={"code": "R7K-2MX"}, audience="staff")
    assert message is not None
    db.session.commit()
    worker = Worker(twilio_app, sleep=lambda _s: None)
    worker.run(once=True)
    db.session.expire_all()
    sid = db.session.get(Message, message.id).twilio_sid  # type: ignore[union-attr]
    assert sid is not None
    sms_status.apply_status(sid, "delivered", None)
    db.session.commit()
    worker.run(once=True)
    db.session.expire_all()
    assert db.session.get(Message, message.id).remote_deleted_at is not None  # type: ignore[union-attr]
    method, url, status = network.seen[-1]
    assert (method, status) == ("DELETE", 204)
    assert url.endswith(f"/Accounts/{ACCOUNT_SID}/Messages/{sid}.json")
