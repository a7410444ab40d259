"""The SMS outbox and worker: enqueue in the caller's transaction, consent at send time,
Twilio errors through the real SDK over a stub network, backoff, leases, rate limit,
deletion at Twilio, and no number or body left in the database or the logs."""

from __future__ import annotations

import logging
import random
import threading
from datetime import timedelta
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from app.cases import erasure
from app.consent import changes
from app.consent import service as consent
from app.core.extensions import db
from app.models import Consent, Message, SmsOptOut, utcnow
from app.sms import messaging
from app.sms import status as sms_status
from app.sms.worker import RateLimiter, Worker, backoff_seconds
from tests import factories
from tests.sms_support import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    StubNetwork,
    message_created,
    new_sid,
    scan_database,
    twilio_error,
)

# Behaviour that depends on the database, run on both: workers claiming rows (SKIP LOCKED on
# PostgreSQL) and concurrent workers.
pytestmark = pytest.mark.both_databases

SURVIVOR = "+14155550123"
PROVIDER = "+14155550188"


def no_sleep(seconds: float) -> None:
    return None


@pytest.fixture
def network() -> StubNetwork:
    return StubNetwork()


@pytest.fixture
def twilio_app(app_factory: Any, network: StubNetwork) -> Any:
    app = app_factory(
        SMS_BACKEND="twilio", TWILIO_HTTP_CLIENT=network, TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_FROM_NUMBER=FROM_NUMBER,
        SMS_BACKOFF_BASE_SECONDS=10, SMS_BACKOFF_CAP_SECONDS=300, SMS_MAX_ATTEMPTS=3,
        SMS_RATE_PER_SECOND=1000.0,
    )
    with app.app_context():
        yield app
        db.session.remove()


def worker(app: Any, **kwargs: Any) -> Worker:
    return Worker(app, sleep=no_sleep, **kwargs)


def survivor_case(**kwargs: Any) -> Any:
    kwargs.setdefault("phone", SURVIVOR)
    return factories.make_case(**kwargs)


def one(message_id: int) -> Message:
    db.session.expire_all()
    message = db.session.get(Message, message_id)
    assert message is not None
    return message


# --- enqueue ---------------------------------------------------------------------------


def test_enqueue_is_part_of_the_callers_transaction(app: Any) -> None:
    case = survivor_case()
    message = messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    assert message is not None and message.status == "queued"
    db.session.rollback()
    assert db.session.scalar(select(func.count(Message.id))) == 0


def test_enqueue_keeps_no_number_and_no_body(app: Any) -> None:
    case = survivor_case()
    service = factories.make_service(intake_phone=PROVIDER)
    messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    messaging.enqueue("provider.referral_cancelled", service=service, params={"code": "R7K-2MX"})
    messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                      params={"code": "R7K-2MX"}, audience="staff")
    db.session.commit()
    hits = scan_database(app, ["4155550123", "4155550188", "4155550177", "was cancelled",
                               "news about"])
    assert hits == []


def test_enqueue_refuses_free_text_and_numbers_in_parameters(app: Any) -> None:
    case = survivor_case()
    for bad in ("Rosa lives at 5 Main St.", "+14155550123", "14155550123", "x" * 80, "<b>"):
        with pytest.raises(messaging.MessagingError):
            messaging.enqueue("survivor.update", case=case, params={"reference": bad})
    with pytest.raises(messaging.MessagingError):
        messaging.enqueue("survivor.update", case=case, params={"alias": "Rosa"})
    with pytest.raises(messaging.MessagingError):
        messaging.enqueue("survivor.update", to_e164=SURVIVOR, params={"reference": "K7Q-4MX"})
    with pytest.raises(messaging.MessagingError):
        messaging.enqueue("no.such.template", case=case)


def test_enqueue_writes_nothing_without_sms_consent(app: Any) -> None:
    scopes = dict.fromkeys(factories.ALL_CONSENT_SCOPES, True)
    no_sms = survivor_case(consents={**scopes, "contact_sms": False})
    dnt = survivor_case(phone="+14155550124", do_not_text=True)
    no_phone = survivor_case(phone=None)
    for case in (no_sms, dnt, no_phone):
        assert messaging.enqueue(
            "survivor.update", case=case, params={"reference": case.reference}
        ) is None
    assert db.session.scalar(select(func.count(Message.id))) == 0


# --- sending ---------------------------------------------------------------------------


def test_console_backend_logs_template_and_masked_number_only(
    app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    case = survivor_case()
    message = messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    assert message is not None
    db.session.commit()
    app.logger.addHandler(caplog.handler)  # the app's logger does not propagate to root
    try:
        with caplog.at_level(logging.DEBUG):
            result = worker(app).run(once=True)
    finally:
        app.logger.removeHandler(caplog.handler)
    assert result.sent == 1
    sent = one(message.id)
    assert sent.status == "delivered" and sent.twilio_sid and sent.final_at
    text = caplog.text
    assert "survivor.update" in text and "+1********23" in text
    assert "4155550123" not in text and "news about" not in text


def test_twilio_send_through_the_sdk(twilio_app: Any, network: StubNetwork) -> None:
    case = survivor_case()
    sid = new_sid()
    network.push(message_created(sid, "queued"))
    message = messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    assert message is not None
    db.session.commit()
    assert worker(twilio_app).run(once=True).sent == 1
    sent = one(message.id)
    assert (sent.status, sent.twilio_sid, sent.attempts) == ("submitted", sid, 1)
    assert sent.recipient is None and sent.lease_owner is None
    request = network.requests[0]
    assert request["method"] == "POST" and request["uri"].endswith(
        f"/Accounts/{ACCOUNT_SID}/Messages.json")
    assert request["data"]["To"] == SURVIVOR and request["data"]["From"] == FROM_NUMBER
    assert case.reference in request["data"]["Body"]
    # Neutral wording: the survivor did not choose explicit wording... (all scopes granted
    # here, so this template's explicit variant does not exist: plain text).
    for word in ("shelter", "trafficking", "abuse"):
        assert word not in request["data"]["Body"].lower()


def test_explicit_wording_only_with_that_consent(twilio_app: Any, network: StubNetwork) -> None:
    scopes = dict.fromkeys(factories.ALL_CONSENT_SCOPES, True)
    discreet = survivor_case(consents={**scopes, "explicit_wording": False})
    explicit = survivor_case(phone="+14155550124")
    for case in (discreet, explicit):
        referral = factories.make_referral(case, status="accepted")  # what the text is about
        messaging.enqueue("survivor.referral_accepted", case=case, referral_id=referral.id,
                          params={"reference": case.reference, "category": "shelter"})
    db.session.commit()
    worker(twilio_app).run(once=True)
    bodies = {r["data"]["To"]: r["data"]["Body"] for r in network.requests}
    assert "shelter" not in bodies[SURVIVOR].lower()
    assert "shelter" in bodies["+14155550124"].lower()


def test_provider_message_reads_the_intake_phone_at_send_time(
    twilio_app: Any, network: StubNetwork
) -> None:
    service = factories.make_service(intake_phone=PROVIDER)
    messaging.enqueue("provider.referral_new", service=service,
                      params={"code": "R7K-2MX", "needs": "shelter,legal", "age_band": "18_24",
                              "language": "es"})
    service.set_intake_phone("+14155550199")  # changed before sending: the new one is used
    db.session.commit()
    worker(twilio_app).run(once=True)
    data = network.requests[0]["data"]
    assert data["To"] == "+14155550199"
    assert "R7K-2MX" in data["Body"] and "18–24" in data["Body"] and "Español" in data["Body"]


def test_consent_withdrawn_after_enqueue_cancels_instead_of_sending(
    twilio_app: Any, network: StubNetwork
) -> None:
    case = survivor_case()
    other = survivor_case(phone="+14155550124")
    first = messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    second = messaging.enqueue("survivor.update", case=other,
                               params={"reference": other.reference})
    assert first is not None and second is not None
    db.session.commit()
    # Withdrawal through the consent module cancels at once (the outbox's effect)...
    changes.change_consent(case, "contact_sms", False, "verbal", None, language="en")
    # ... and a withdrawal written behind the module's back is caught by the worker.
    db.session.add(Consent(case_id=other.id, scope="contact_sms", granted=False,
                           method="verbal", text_version=consent.CURRENT_VERSION,
                           language="en", recorded_at=utcnow()))
    db.session.commit()
    assert one(first.id).status == "cancelled"
    result = worker(twilio_app).run(once=True)
    assert result.cancelled == 1 and network.requests == []
    assert one(second.id).status == "cancelled"


def test_expired_consent_and_erased_case_cancel(twilio_app: Any, network: StubNetwork) -> None:
    old = utcnow() - timedelta(days=400)
    expired = survivor_case(at=old)
    erased = survivor_case(phone="+14155550124")
    ids = []
    for case in (expired, erased):
        db.session.add(Message(direction="out", audience="survivor", template_key="survivor.update",
                               language="en", params={"reference": case.reference},
                               status="queued", case_id=case.id,
                               counterpart_index=case.phone_index, next_attempt_at=utcnow()))
    db.session.flush()
    ids = list(db.session.scalars(select(Message.id).order_by(Message.id)))
    erasure.erase_case(erased, None)
    db.session.commit()
    assert one(ids[1]).status == "cancelled" and one(ids[1]).counterpart_index is None
    worker(twilio_app).run(once=True)
    assert one(ids[0]).status == "cancelled"
    assert network.requests == []


# --- Twilio errors ---------------------------------------------------------------------


def test_21610_records_withdrawal_and_stops_that_number(
    twilio_app: Any, network: StubNetwork
) -> None:
    case = survivor_case()
    service = factories.make_service(intake_phone=SURVIVOR)  # same number, another sender path
    network.push(twilio_error(21610, 400, "Attempt to send to unsubscribed recipient"))
    first = messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    later = messaging.enqueue("provider.referral_cancelled", service=service,
                              params={"code": "R7K-2MX"})
    assert first is not None and later is not None
    later.next_attempt_at = utcnow() + timedelta(minutes=5)
    db.session.commit()
    worker(twilio_app).run(once=True)
    failed = one(first.id)
    assert (failed.status, failed.error_code) == ("failed", 21610)
    assert not consent.has_consent(case, "contact_sms")
    newest = db.session.scalars(select(Consent).where(
        Consent.case_id == case.id, Consent.scope == "contact_sms"
    ).order_by(Consent.recorded_at.desc(), Consent.id.desc())).first()
    assert newest is not None and (newest.granted, newest.method) == (False, "sms")
    assert one(later.id).status == "cancelled"
    assert db.session.scalar(select(SmsOptOut.source)) == "twilio_21610"
    assert messaging.enqueue("provider.referral_cancelled", service=service,
                             params={"code": "R7K-2MX"}) is None
    assert len(network.requests) == 1


@pytest.mark.parametrize("code", [21211, 21614, 21408])
def test_invalid_number_fails_for_good(twilio_app: Any, network: StubNetwork, code: int) -> None:
    network.push(twilio_error(code, 400, "The 'To' number is not a valid phone number."))
    message = messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                                params={"code": "R7K-2MX"}, audience="staff")
    assert message is not None
    db.session.commit()
    worker(twilio_app).run(once=True)
    failed = one(message.id)
    assert (failed.status, failed.error_code, failed.attempts) == ("failed", code, 1)
    assert failed.recipient is None and failed.final_at is not None
    later = worker(twilio_app, now=lambda: utcnow() + timedelta(hours=5)).run(once=True)
    assert later.claimed == 0 and len(network.requests) == 1


@pytest.mark.parametrize(
    "problem",
    [
        twilio_error(20500, 500, "Internal Server Error"),
        twilio_error(20503, 503, "Service unavailable"),
        twilio_error(20429, 429, "Too Many Requests"),
        requests.exceptions.ConnectTimeout("timed out"),
        requests.exceptions.ReadTimeout("timed out"),
        requests.exceptions.ConnectionError("connection reset"),
    ],
    ids=["500", "503", "429", "connect-timeout", "read-timeout", "reset"],
)
def test_server_and_network_errors_retry_with_backoff_then_fail(
    twilio_app: Any, network: StubNetwork, problem: Any
) -> None:
    network.push(problem, problem, problem)
    message = messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                                params={"code": "R7K-2MX"}, audience="staff")
    assert message is not None
    db.session.commit()
    start = utcnow()
    assert worker(twilio_app, now=lambda: start).run(once=True).retried == 1
    first = one(message.id)
    assert first.status == "queued" and first.attempts == 1 and first.lease_owner is None
    assert first.recipient == "+14155550177"  # still needed for the retry
    delay = (first.next_attempt_at - start).total_seconds()
    assert 8 <= delay <= 12  # base 10 s +-20 %
    # Not due yet: nothing is claimed.
    assert worker(twilio_app, now=lambda: start + timedelta(seconds=5)).run(once=True).claimed == 0
    second_at = start + timedelta(seconds=13)
    worker(twilio_app, now=lambda: second_at).run(once=True)
    second = one(message.id)
    assert second.attempts == 2 and 16 <= (second.next_attempt_at - second_at).total_seconds() <= 24
    worker(twilio_app, now=lambda: start + timedelta(minutes=5)).run(once=True)
    last = one(message.id)
    assert (last.status, last.attempts) == ("failed", 3)  # SMS_MAX_ATTEMPTS
    assert last.recipient is None and len(network.requests) == 3


def test_retry_then_success(twilio_app: Any, network: StubNetwork) -> None:
    sid = new_sid()
    network.push(twilio_error(20500, 500), message_created(sid))
    message = messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                                params={"code": "R7K-2MX"}, audience="staff")
    assert message is not None
    db.session.commit()
    worker(twilio_app).run(once=True)
    worker(twilio_app, now=lambda: utcnow() + timedelta(minutes=1)).run(once=True)
    done = one(message.id)
    assert (done.status, done.twilio_sid, done.attempts, done.error_code) == (
        "submitted", sid, 2, None)


def test_backoff_is_exponential_and_capped() -> None:
    rng = random.Random(7)
    values = [backoff_seconds(n, 30, 3600, rng) for n in range(1, 12)]
    for n, value in enumerate(values, start=1):
        assert min(3600, 30 * 2 ** (n - 1)) * 0.8 <= value <= min(3600, 30 * 2 ** (n - 1) * 1.2)
    assert max(values) <= 3600 and values[-1] >= 3600 * 0.8


def test_rate_limiter_spaces_sends() -> None:
    now = [100.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    limiter = RateLimiter(4.0, clock=lambda: now[0], sleep=sleep)
    for _ in range(9):
        limiter.wait()
    assert now[0] == pytest.approx(102.0)  # 9 sends at 4/s: 8 gaps of 0.25 s
    assert all(s == pytest.approx(0.25) for s in slept)


def test_worker_respects_the_rate(app_factory: Any, network: StubNetwork) -> None:
    app = app_factory(SMS_BACKEND="twilio", TWILIO_HTTP_CLIENT=network,
                      TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                      TWILIO_FROM_NUMBER=FROM_NUMBER, SMS_RATE_PER_SECOND=2.0)
    with app.app_context():
        for _ in range(5):
            messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                              params={"code": "R7K-2MX"}, audience="staff")
        db.session.commit()
        clock = [0.0]

        def sleep(seconds: float) -> None:
            clock[0] += seconds

        result = Worker(app, clock=lambda: clock[0], sleep=sleep).run(once=True)
        assert result.sent == 5
        assert clock[0] == pytest.approx(2.0)  # 5 sends at 2/s
        db.session.remove()


# --- leases and crashes ----------------------------------------------------------------


def test_crash_between_claim_and_send_loses_nothing(twilio_app: Any, network: StubNetwork) -> None:
    message = messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                                params={"code": "R7K-2MX"}, audience="staff")
    assert message is not None
    db.session.commit()
    crashed = worker(twilio_app, owner="crashed")
    assert crashed.claim() == [message.id]  # ... and the process dies here
    held = one(message.id)
    assert held.lease_owner == "crashed" and held.status == "queued"
    # While the lease is live, nobody else takes it.
    assert worker(twilio_app, owner="other").run(once=True).claimed == 0
    later = utcnow() + timedelta(seconds=twilio_app.config["SMS_LEASE_SECONDS"] + 1)
    result = worker(twilio_app, owner="other", now=lambda: later).run(once=True)
    assert result.sent == 1 and len(network.requests) == 1
    assert one(message.id).attempts == 2


def test_lost_lease_is_not_sent(twilio_app: Any, network: StubNetwork) -> None:
    message = messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                                params={"code": "R7K-2MX"}, audience="staff")
    assert message is not None
    db.session.commit()
    slow = worker(twilio_app, owner="slow")
    slow.claim()
    later = utcnow() + timedelta(seconds=twilio_app.config["SMS_LEASE_SECONDS"] + 1)
    fast = worker(twilio_app, owner="fast", now=lambda: later)
    assert fast.run(once=True).sent == 1
    assert slow.process(message.id) == "skipped"  # it lost the row: no second send
    assert len(network.requests) == 1


def test_two_workers_never_send_the_same_message(
    app_factory: Any, network: StubNetwork
) -> None:
    """Two worker processes (two apps, two connection pools) claiming concurrently."""
    apps = [
        app_factory(SMS_BACKEND="twilio", TWILIO_HTTP_CLIENT=network,
                    TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                    TWILIO_FROM_NUMBER=FROM_NUMBER, SMS_RATE_PER_SECOND=1000.0,
                    SMS_LEASE_SECONDS=60)
        for _ in range(2)
    ]
    with apps[0].app_context():
        for _ in range(40):
            messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                              params={"code": "R7K-2MX"}, audience="staff")
        db.session.commit()
        db.session.remove()
    lock = threading.Lock()
    sent: list[str] = []
    original = StubNetwork.request

    def counting(self: StubNetwork, *args: Any, **kwargs: Any) -> Any:
        with lock:
            response = original(self, *args, **kwargs)
            sent.append(args[1])
            return response

    errors: list[BaseException] = []

    def run(app: Any) -> None:
        try:
            with app.app_context():
                w = Worker(app, sleep=no_sleep)
                w.batch = 3
                w.run(once=True)
                db.session.remove()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    StubNetwork.request = counting  # type: ignore[method-assign]
    try:
        threads = [threading.Thread(target=run, args=(a,)) for a in apps]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        StubNetwork.request = original  # type: ignore[method-assign]
    assert errors == []
    assert len(sent) == 40
    with apps[0].app_context():
        statuses = db.session.execute(
            select(Message.status, func.count()).group_by(Message.status)
        ).all()
        assert dict(statuses) == {"submitted": 40}
        sids = db.session.scalars(select(Message.twilio_sid)).all()
        assert len(set(sids)) == 40
        db.session.remove()


# --- status callbacks and deletion at Twilio -------------------------------------------


def test_status_mapping_is_monotonic_and_final(app: Any) -> None:
    db.session.add(Message(direction="out", audience="staff", template_key="survivor.update",
                           language="en", params={}, status="submitted",
                           twilio_sid="SM" + "a" * 32))
    db.session.commit()
    sid = "SM" + "a" * 32
    assert sms_status.apply_status(sid, "sent", None).status == "sent"  # type: ignore[union-attr]
    assert sms_status.apply_status(sid, "queued", None).status == "sent"  # type: ignore[union-attr]
    done = sms_status.apply_status(sid, "delivered", None)
    assert done is not None and done.status == "delivered" and done.final_at is not None
    assert sms_status.apply_status(sid, "undelivered", 30003).status == "delivered"  # type: ignore[union-attr]
    assert sms_status.apply_status("SM" + "b" * 32, "delivered", None) is None


def test_final_messages_are_deleted_at_twilio(twilio_app: Any, network: StubNetwork) -> None:
    sid = new_sid()
    network.push(message_created(sid))
    message = messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                                params={"code": "R7K-2MX"}, audience="staff")
    assert message is not None
    db.session.commit()
    worker(twilio_app).run(once=True)
    assert one(message.id).remote_deleted_at is None  # not final yet
    sms_status.apply_status(sid, "delivered", None)
    db.session.commit()
    network.push(twilio_error(20500, 500))  # first delete fails: tried again next pass
    worker(twilio_app).run(once=True)
    assert one(message.id).remote_deleted_at is None
    assert one(message.id).remote_delete_attempts == 1
    worker(twilio_app).run(once=True)
    assert one(message.id).remote_deleted_at is not None
    deletes = [r for r in network.requests if r["method"] == "DELETE"]
    assert len(deletes) == 2 and deletes[-1]["uri"].endswith(f"/Messages/{sid}.json")


def test_no_deletion_when_disabled(app_factory: Any, network: StubNetwork) -> None:
    app = app_factory(SMS_BACKEND="twilio", TWILIO_HTTP_CLIENT=network,
                      TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                      TWILIO_FROM_NUMBER=FROM_NUMBER, TWILIO_DELETE_AFTER_DELIVERY=False)
    with app.app_context():
        db.session.add(Message(direction="in", audience="survivor", language="en", params={},
                               status="received", twilio_sid=new_sid(), final_at=utcnow()))
        db.session.commit()
        Worker(app, sleep=no_sleep).run(once=True)
        assert network.requests == []
        db.session.remove()


def test_cli_worker_once(twilio_app: Any, network: StubNetwork) -> None:
    messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                      params={"code": "R7K-2MX"}, audience="staff")
    db.session.commit()
    result = twilio_app.test_cli_runner().invoke(args=["sms", "worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "1 sent" in result.output
    assert "4155550177" not in result.output


def test_survivor_message_defaults_to_the_case_language(app: Any) -> None:
    case = survivor_case()
    case.language = "ar"
    message = messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    assert message is not None and message.language == "ar"
    other = messaging.enqueue("survivor.update", case=case, language="fr",
                              params={"reference": case.reference})
    assert other is not None and other.language == "fr"


def test_not_before_delays_the_first_try(twilio_app: Any, network: StubNetwork) -> None:
    case = survivor_case()
    later = utcnow() + timedelta(hours=3)
    message = messaging.enqueue("survivor.update", case=case, not_before=later,
                                params={"reference": case.reference})
    assert message is not None
    db.session.commit()
    assert worker(twilio_app).run(once=True).claimed == 0
    result = worker(twilio_app, now=lambda: later + timedelta(seconds=1)).run(once=True)
    assert result.sent == 1 and len(network.requests) == 1


def test_crash_after_twilio_accepted_resends_at_most_once(
    twilio_app: Any, network: StubNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented bound: a crash between Twilio's answer and recording the SID sends
    that message once more after the lease expires, and only once."""
    message = messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                                params={"code": "R7K-2MX"}, audience="staff")
    assert message is not None
    db.session.commit()
    crashing = worker(twilio_app, owner="crashing")

    def crash(message_id: int, result: Any) -> str:
        raise SystemExit("power cut")

    monkeypatch.setattr(crashing, "finish_sent", crash)
    with pytest.raises(SystemExit):
        crashing.run(once=True)
    db.session.rollback()
    assert len(network.requests) == 1
    assert one(message.id).status == "queued" and one(message.id).twilio_sid is None
    later = utcnow() + timedelta(seconds=twilio_app.config["SMS_LEASE_SECONDS"] + 1)
    assert worker(twilio_app, now=lambda: later).run(once=True).sent == 1
    much_later = later + timedelta(hours=1)
    assert worker(twilio_app, now=lambda: much_later).run(once=True).claimed == 0
    assert len(network.requests) == 2
    assert one(message.id).status == "submitted"


# --- the lease margin (issue 14 item 11) -------------------------------------------------


class FakeTime:
    """One clock for the worker's monotonic clock, its wall clock and its sleeps. ``pause``
    seconds are added to every sleep: the process was descheduled (or the host suspended)
    while it waited, as happens on a busy machine."""

    def __init__(self, pause: float = 0.0) -> None:
        self.base = utcnow() + timedelta(seconds=1)
        self.seconds = 0.0
        self.pause = pause
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.seconds

    def now(self) -> Any:
        return self.base + timedelta(seconds=self.seconds)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.seconds += seconds + self.pause


def staff_message() -> Message:
    message = messaging.enqueue("provider.referral_cancelled", to_e164="+14155550177",
                                params={"code": "R7K-2MX"}, audience="staff")
    assert message is not None
    db.session.commit()
    return message


def timed_worker(app: Any, fake: FakeTime, **kwargs: Any) -> Worker:
    return Worker(app, clock=fake.clock, sleep=fake.sleep, now=fake.now, **kwargs)


def test_the_lease_is_checked_after_the_rate_limiter_waited(
    twilio_app: Any, network: StubNetwork
) -> None:
    """The lease (60 s) is fine when the message is prepared; the wait for the rate limiter
    then takes 50 s (a paused process), leaving 10 s of lease for a 15 s HTTP timeout: the
    message must not be sent (another worker may take the row over meanwhile)."""
    message = staff_message()
    fake = FakeTime(pause=50.0)
    w = timed_worker(twilio_app, fake)
    w.limiter.next_slot = 1.0  # a message was just sent: the next one waits
    assert w.claim() == [message.id]
    assert w.process(message.id) == "skipped"
    assert network.requests == []
    skipped = one(message.id)
    assert skipped.status == "queued" and skipped.lease_owner is None
    assert skipped.lease_expires_at is None


def test_a_skip_does_not_count_as_a_try(twilio_app: Any, network: StubNetwork) -> None:
    """Skipped claims give their attempt back: a message skipped more often than
    SMS_MAX_ATTEMPTS (3 here) still has all its tries for real errors."""
    message = staff_message()
    fake = FakeTime()
    w = timed_worker(twilio_app, fake)
    for _ in range(twilio_app.config["SMS_MAX_ATTEMPTS"] + 1):
        assert w.claim() == [message.id]
        fake.seconds += 50  # the worker stalled between claim and send
        assert w.process(message.id) == "skipped"
        assert one(message.id).attempts == 0
    network.queue.append(twilio_error(20500, status=500))
    result = timed_worker(twilio_app, fake).run(once=True)
    assert result.retried == 1 and result.failed == 0
    assert one(message.id).attempts == 1 and one(message.id).status == "queued"


def test_a_pass_that_only_skipped_backs_off(twilio_app: Any, network: StubNetwork) -> None:
    """A configuration that skips every claim (problems() refuses it at start; here it is
    forced after start) must not spin: each pass that only skipped sleeps, and --once
    stops instead of claiming the same rows again and again."""
    staff_message()
    twilio_app.config["SMS_HTTP_TIMEOUT_SECONDS"] = twilio_app.config["SMS_LEASE_SECONDS"] + 5
    fake = FakeTime()
    passes = [0]

    def stop_after(n: int) -> Any:
        def should_stop() -> bool:
            passes[0] += 1
            return passes[0] > n

        return should_stop

    result = timed_worker(twilio_app, fake).run(idle_seconds=2.0, should_stop=stop_after(3))
    assert result.skipped == 3 and result.sent == 0
    assert fake.sleeps == [2.0, 2.0, 2.0]
    passes[0] = 0
    once = timed_worker(twilio_app, fake).run(once=True, should_stop=stop_after(50))
    assert passes[0] == 1 and once.skipped == 1
    assert network.requests == []
    assert one(staff_message().id).attempts == 0
