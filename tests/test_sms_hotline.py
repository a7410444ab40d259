"""The Twilio webhooks and the SMS hotline, through signed requests (RequestValidator), in
every shipped language: the conversation, keywords, danger, replays, garbage, providers'
commands, delivery callbacks — and no number or text left in logs or tables."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from sqlalchemy import func, select

from app.consent import service as consent
from app.core import audit
from app.core.extensions import db
from app.models import AuditEvent, Case, HotlineSession, Message, Need, Service, SmsOptOut
from app.sms import hotline, messaging
from app.sms.worker import Worker
from tests import factories
from tests.sms_support import (
    ACCOUNT_SID,
    AUTH_TOKEN,
    FROM_NUMBER,
    StubNetwork,
    inbound_params,
    message_created,
    new_sid,
    post_signed,
    scan_database,
    sign,
)

# Behaviour that depends on the database, run on both: inbound deduplication and sessions by
# upsert, racing retries.
pytestmark = pytest.mark.both_databases

PHONE = "+14155550123"
PROVIDER_PHONE = "+14155550188"


@pytest.fixture
def sms_app(app_factory: Any) -> Any:
    app = app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID)
    with app.app_context():
        factories.make_org("ngo", name="Hotline NGO")
        db.session.commit()
        yield app
        db.session.remove()


@pytest.fixture
def client(sms_app: Any) -> Any:
    return sms_app.test_client()


def replies(response: Any) -> list[str]:
    assert response.status_code == 200, response.status_code
    assert response.content_type.startswith("text/xml")
    root = ET.fromstring(response.data)  # noqa: S314 - our own reply
    assert root.tag == "Response"
    return [m.text or "" for m in root.iter("Message")]


def text(client: Any, body: str, sender: str = PHONE, sid: str | None = None) -> list[str]:
    return replies(post_signed(client, "/sms/inbound", inbound_params(sender, body, sid)))


def session_of(phone: str = PHONE) -> HotlineSession | None:
    from app.core.crypto import blind_index

    db.session.expire_all()
    return db.session.scalar(
        select(HotlineSession).where(HotlineSession.phone_index == blind_index(phone))
    )


def the_case(phone: str = PHONE) -> Case | None:
    from app.core.crypto import blind_index

    db.session.expire_all()
    return db.session.scalar(select(Case).where(Case.phone_index == blind_index(phone)))


# Each shipped language: how to choose it, say yes, write digits.
LANGUAGES = {
    "en": {"choice": "1", "yes": "Yes", "digits": str.maketrans("", "")},
    "es": {"choice": "2", "yes": "Sí", "digits": str.maketrans("", "")},
    "fr": {"choice": "3", "yes": "oui", "digits": str.maketrans("", "")},
    "ar": {"choice": "٤", "yes": "نعم", "digits": str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")},
}


def rendered(key: str, language: str, **params: Any) -> str:
    return messaging.render(key, language, params)


# --- signatures and fields -------------------------------------------------------------


def test_unsigned_or_badly_signed_requests_are_refused(client: Any) -> None:
    params = inbound_params(PHONE, "hello")
    assert client.post("/sms/inbound", data=params).status_code == 403
    assert post_signed(client, "/sms/inbound", params, signature="bm90IGl0").status_code == 403
    wrong = sign("http://localhost/sms/inbound", params, token="another-token")
    assert post_signed(client, "/sms/inbound", params, signature=wrong).status_code == 403
    # Signed for another URL, or the body changed after signing.
    other = sign("http://localhost/sms/status", params)
    assert post_signed(client, "/sms/inbound", params, signature=other).status_code == 403
    good = sign("http://localhost/sms/inbound", params)
    tampered = dict(params, Body="something else")
    assert post_signed(client, "/sms/inbound", tampered, signature=good).status_code == 403
    assert client.post("/sms/status", data={"MessageSid": new_sid(),
                                            "MessageStatus": "delivered"}).status_code == 403
    assert db.session.scalar(select(func.count(Message.id))) == 0


def test_no_auth_token_means_every_request_is_refused(app_factory: Any) -> None:
    app = app_factory(TWILIO_AUTH_TOKEN="")
    params = inbound_params(PHONE, "hello")
    response = post_signed(app.test_client(), "/sms/inbound", params)
    assert response.status_code == 403


def test_signature_checked_against_public_base_url(app_factory: Any) -> None:
    app = app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN, PUBLIC_BASE_URL="https://haven.example.org")
    client = app.test_client()
    params = inbound_params(PHONE, "hello")
    assert post_signed(client, "/sms/inbound", params).status_code == 403  # signed for localhost
    response = post_signed(client, "/sms/inbound", params, base="https://haven.example.org")
    assert response.status_code == 200


def test_signature_through_the_proxy(app_factory: Any) -> None:
    app = app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN, PROXY_COUNT=1)
    client = app.test_client()
    params = inbound_params(PHONE, "hello")
    sig = sign("https://haven.example.org/sms/inbound", params)
    response = client.post("/sms/inbound", data=params, headers={
        "X-Twilio-Signature": sig, "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "haven.example.org", "X-Forwarded-For": "203.0.113.9"})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "change",
    [
        {"MessageSid": None},
        {"MessageSid": "SM123"},
        {"MessageSid": "XX" + "a" * 32},
        {"From": None},
        {"From": ""},
        {"Body": None},
        {"NumMedia": "x"},
    ],
    ids=["no-sid", "short-sid", "bad-sid", "no-from", "empty-from", "no-body", "bad-media"],
)
def test_missing_or_malformed_fields_are_400(client: Any, change: dict[str, Any]) -> None:
    params = inbound_params(PHONE, "hello")
    for key, value in change.items():
        if value is None:
            params.pop(key)
        else:
            params[key] = value
    assert post_signed(client, "/sms/inbound", params).status_code == 400
    assert db.session.scalar(select(func.count(Message.id))) == 0


def test_csrf_does_not_apply_to_webhooks(app_factory: Any) -> None:
    app = app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN, WTF_CSRF_ENABLED=True)
    response = post_signed(app.test_client(), "/sms/inbound", inbound_params(PHONE, "hello"))
    assert response.status_code == 200


# --- the conversation ------------------------------------------------------------------


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_full_conversation_in_every_language(
    client: Any, sms_app: Any, language: str
) -> None:
    north = factories.make_area("North district", sms_label="North")
    factories.make_area("South district")  # no SMS label: offered by number only
    db.session.commit()
    spec = LANGUAGES[language]
    first = text(client, "hello")
    assert first == [rendered("hotline.language_menu", "en")]
    assert text(client, spec["choice"]) == [rendered("hotline.consent", language)]
    assert the_case() is None  # nothing kept before consent
    assert text(client, spec["yes"]) == [rendered("hotline.needs_menu", language)]
    area_menu = text(client, "1 3".translate(spec["digits"]))
    assert area_menu == [rendered(
        "hotline.area_menu", language,
        options="1 North, " + rendered("hotline.area_unnamed", language, number=2),
    )]
    assert "district" not in area_menu[0]
    case = the_case()
    assert case is not None
    done = text(client, "1".translate(spec["digits"]))
    case = the_case()
    assert case is not None
    assert done == [rendered("hotline.confirm", language, reference=case.reference)]
    assert (case.channel, case.status, case.language, case.area_id) == (
        "sms", "open", language, north.id)
    assert case.phone == PHONE
    assert sorted(n.category for n in case.needs) == ["medical", "shelter"]
    assert {n.urgency for n in case.needs} == {"soon"}
    assert consent.has_consent(case, "store") and consent.has_consent(case, "contact_sms")
    assert not consent.has_consent(case, "explicit_wording")
    assert {c.method for c in case.consents} == {"sms"}
    session = session_of()
    assert session is not None and session.step == "done"
    # Audited, in order, on an intact chain: the case, its two consents, the area.
    events = db.session.execute(
        select(AuditEvent.action, AuditEvent.object_id).order_by(AuditEvent.seq)
    ).all()
    assert [tuple(e) for e in events] == [
        ("case.create", str(case.id)), ("consent.grant", str(case.id)),
        ("consent.grant", str(case.id)), ("case.needs_update", str(case.id)),
        ("case.profile_update", str(case.id)),
    ]
    assert audit.verify_chain().ok


def test_no_consent_keeps_nothing(client: Any) -> None:
    text(client, "hello")
    text(client, "1")
    reply = text(client, "no")
    assert reply == [rendered("hotline.declined", "en")]
    assert "911" in reply[0]
    assert session_of() is None and the_case() is None
    assert db.session.scalar(select(func.count(Case.id))) == 0


def test_texting_again_resumes_the_case(client: Any) -> None:
    for body in ("hi", "1", "yes", "2"):
        text(client, body)
    case = the_case()
    assert case is not None
    again = text(client, "hello, any news?")
    assert again == [rendered("hotline.resume", "en", reference=case.reference)]
    # The session is gone (e.g. retention), the case is closed: still the same case, reopened.
    from app.cases import service as cases

    cases.close_case(case, "goals_met")
    db.session.execute(HotlineSession.__table__.delete())
    db.session.commit()
    resumed = text(client, "hello")
    assert resumed == [rendered("hotline.resume", "en", reference=case.reference)]
    assert db.session.scalar(select(func.count(Case.id))) == 1
    assert the_case().status == "open"  # type: ignore[union-attr]


def test_unclear_answers_reask_then_offer_a_callback(client: Any) -> None:
    text(client, "hi")
    text(client, "1")
    first = text(client, "maybe?")
    assert first == [rendered("hotline.unclear", "en"), rendered("hotline.consent", "en")]
    text(client, "what")
    third = text(client, "hmm")
    assert third[0] == rendered("hotline.offer_callback", "en") and "CALL" in third[0]
    assert third[1] == rendered("hotline.consent", "en")
    # CALL without consent: the consent question (a call back needs the number kept).
    assert text(client, "call") == [rendered("hotline.consent", "en")]
    text(client, "yes")
    case = the_case()
    assert case is not None
    for _ in range(3):
        reply = text(client, "12345678")
    assert reply[0] == rendered("hotline.offer_callback", "en")
    assert reply[1] == rendered("hotline.needs_menu", "en")
    assert text(client, "LLAMAR") == [rendered("hotline.callback_ok", "en",
                                               reference=case.reference)]


@pytest.mark.parametrize("word", ["danger", "PELIGRO", "Urgence!", "خطر"])
def test_danger_gets_the_emergency_number_first(client: Any, word: str) -> None:
    text(client, "hi")
    text(client, "1")
    reply = text(client, word)
    assert reply[0] == rendered("hotline.danger", "en") and "911" in reply[0]


def test_danger_option_in_needs_makes_needs_immediate(client: Any) -> None:
    for body in ("hi", "2", "si"):
        text(client, body)
    reply = text(client, "0")
    assert reply == [rendered("hotline.danger", "es"), rendered("hotline.needs_menu", "es")]
    text(client, "1")
    case = the_case()
    assert case is not None
    assert [(n.category, n.urgency) for n in case.needs] == [("shelter", "immediate")]


def test_emergency_number_from_config(app_factory: Any) -> None:
    app = app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN, HAVEN_EMERGENCY_NUMBER="112")
    with app.app_context():
        reply = text(app.test_client(), "SOS")
        assert "112" in reply[0]
        db.session.remove()


@pytest.mark.parametrize("language", list(LANGUAGES))
def test_help_in_every_language(client: Any, language: str) -> None:
    word = {"en": "HELP", "es": "ayuda", "fr": "Aide", "ar": "مساعدة"}[language]
    reply = text(client, word)
    assert reply == [rendered("hotline.help", language)]
    assert "911" in reply[0]


@pytest.mark.parametrize(
    ("stop", "start", "language"),
    [("STOP", "START", "en"), ("Parar", "iniciar", "es"), ("ARRÊT", "démarrer", "fr"),
     ("توقف", "ابدأ", "ar")],
)
def test_stop_and_start_in_every_language(
    client: Any, stop: str, start: str, language: str
) -> None:
    for body in ("hi", LANGUAGES[language]["choice"], LANGUAGES[language]["yes"]):
        text(client, body)
    case = the_case()
    assert case is not None
    queued = messaging.enqueue("survivor.update", case=case, params={"reference": case.reference})
    assert queued is not None
    db.session.commit()
    assert text(client, stop) == [rendered("hotline.stopped", language)]
    case = the_case()
    assert case is not None and not consent.has_consent(case, "contact_sms")
    assert db.session.get(Message, queued.id).status == "cancelled"  # type: ignore[union-attr]
    assert db.session.scalar(select(func.count(SmsOptOut.id))) == 1
    assert messaging.enqueue("survivor.update", case=case,
                             params={"reference": case.reference}) is None
    assert text(client, start) == [rendered("hotline.started", language)]
    case = the_case()
    assert case is not None and consent.has_consent(case, "contact_sms")
    assert db.session.scalar(select(func.count(SmsOptOut.id))) == 0


def test_lang_switches_and_returns_to_the_step(client: Any) -> None:
    for body in ("hi", "1", "yes"):
        text(client, body)
    assert text(client, "LANG") == [rendered("hotline.language_menu", "en")]
    assert text(client, "3") == [rendered("hotline.needs_menu", "fr")]
    case = the_case()
    assert case is not None and case.language == "fr"
    assert text(client, "idioma") == [rendered("hotline.language_menu", "en")]


@pytest.mark.parametrize("word", ["FORGET", "olvidar", "Oublier", "احذف"])
def test_forget_erases_everything_about_the_number(
    client: Any, sms_app: Any, word: str
) -> None:
    factories.make_area("North")
    db.session.commit()
    for body in ("hi", "1", "yes", "1", "1"):
        text(client, body)
    case = the_case()
    assert case is not None
    case_id, reference = case.id, case.reference
    messaging.enqueue("survivor.update", case=case, params={"reference": reference})
    db.session.commit()
    reply = text(client, word)
    assert len(reply) == 1 and reply[0] in {rendered("hotline.forgotten", lang)
                                            for lang in LANGUAGES}
    db.session.expire_all()
    erased = db.session.get(Case, case_id)
    assert erased is not None and erased.status == "erased" and erased.phone_index is None
    assert session_of() is None
    assert db.session.scalar(select(func.count(Message.id)).where(
        Message.counterpart_index.is_not(None))) == 0
    assert db.session.scalar(select(Message.status).where(Message.direction == "out")) == (
        "cancelled")
    from app.core.crypto import blind_index

    assert scan_database(sms_app, [blind_index(PHONE), "4155550123"]) == []
    # A new conversation starts from scratch.
    assert text(client, "hello") == [rendered("hotline.language_menu", "en")]


def test_same_message_sid_is_handled_once(client: Any) -> None:
    text(client, "hi")
    sid = new_sid()
    first = text(client, "1", sid=sid)
    assert first == [rendered("hotline.consent", "en")]
    assert text(client, "1", sid=sid) == []  # Twilio's retry
    session = session_of()
    assert session is not None and session.step == "consent" and session.failures == 0
    assert db.session.scalar(select(func.count(Message.id)).where(
        Message.twilio_sid == sid)) == 1


@pytest.mark.parametrize(
    "body",
    ["", "   ", "🙂🙂🙂", "😀 1", "x" * 1600, "ã" * 5000, "\u202e\u0000\ufeff",
     "SELECT * FROM case", "<Response><Message>hi</Message></Response>",
     "%(emergency)s %s {0}", "ACCEPTANCE",
     "STOP please now", "9", "-1", "1.5", "١٢٣٤٥٦٧٨٩"],
)
def test_garbage_gets_the_options_again(client: Any, body: str) -> None:
    text(client, "hi")
    text(client, "1")
    reply = text(client, body)
    assert reply[-1] == rendered("hotline.consent", "en")
    assert all(messaging.segments(r).segments <= 2 for r in reply)


def test_unknown_keyword_and_emoji_at_the_start(client: Any) -> None:
    assert text(client, "🆘") == [rendered("hotline.language_menu", "en")]
    assert text(client, "BLORP") == [rendered("hotline.unclear", "en"),
                                     rendered("hotline.language_menu", "en")]


def test_reply_is_escaped_twiml(client: Any) -> None:
    response = post_signed(client, "/sms/inbound", inbound_params(PHONE, "<b>&"))
    assert b"<b>" not in response.data
    assert replies(response)


def test_long_area_lists_are_paged_within_two_segments(client: Any) -> None:
    for i in range(40):
        factories.make_area(f"District number {i:02d} of the river valley",
                            sms_label=f"River valley {i:02d}")
    db.session.commit()
    for body in ("hi", "1", "yes"):
        text(client, body)
    first_page = text(client, "1")[0]
    assert messaging.segments(first_page).segments <= 2
    assert first_page.endswith(rendered("hotline.area_more", "en"))
    second_page = text(client, "0")[0]
    assert second_page != first_page and messaging.segments(second_page).segments <= 2
    done = text(client, "2")
    case = the_case()
    assert case is not None and case.area is not None
    assert case.area.sms_label in second_page and case.area.name not in second_page
    assert done == [rendered("hotline.confirm", "en", reference=case.reference)]


def test_only_approved_labels_reach_the_survivor(client: Any) -> None:
    """Area names (typed by admins, imported from HSDS feeds) never reach a survivor's
    phone: only an approved SMS label, else the area's number. A label is checked again
    when it is sent, so one written around the admin form, or approved before a word joined
    the discretion list, is not sent either."""
    named = factories.make_area("Bay", sms_label="Bay")
    factories.make_area("Shelter for trafficking victims http://x.example")
    factories.make_area("Old Town Refuge", sms_label="Refugio Viejo")  # not through the form
    db.session.commit()
    for body in ("hi", "1", "yes"):
        text(client, body)
    [menu] = text(client, "1")
    assert menu == rendered("hotline.area_menu", "en", options=", ".join([
        "1 Bay",
        rendered("hotline.area_unnamed", "en", number=2),
        rendered("hotline.area_unnamed", "en", number=3),
    ]))
    for word in ("Shelter", "trafficking", "http", "example", "Refug", "Viejo", "Old Town"):
        assert word not in menu
    assert text(client, "1") == [rendered("hotline.confirm", "en",
                                          reference=the_case().reference)]  # type: ignore[union-attr]
    assert the_case().area_id == named.id  # type: ignore[union-attr]


# --- nothing kept, nothing logged ------------------------------------------------------


def test_no_number_or_text_in_logs_or_tables(
    client: Any, sms_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    factories.make_area("North")
    db.session.commit()
    secret = "mysecretwords he took my passport"
    bodies = ["hi " + secret, "1", "yes " + secret, "1 2", "1", secret, "HELP", "STOP",
              "START", secret + " 🙂"]
    sms_app.logger.addHandler(caplog.handler)  # the app's logger does not propagate
    try:
        with caplog.at_level(logging.DEBUG):
            for body in bodies:
                text(client, body)
            for body in ("ACCEPT ABC-234 " + secret, "BEDS 3", "DECLINE K7Q-4MX full"):
                text(client, body, sender="+14155550177")
            text(client, "hi", sender="+14155550166")  # an unreadable body is a 400 below
            post_signed(client, "/sms/inbound", {"MessageSid": new_sid(), "From": "+1415",
                                                 "Body": secret})
            sms_app.logger.warning("canary")
    finally:
        sms_app.logger.removeHandler(caplog.handler)
    assert "canary" in caplog.text  # the capture sees the app's logger
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    for needle in ("4155550123", "4155550177", "mysecretwords", "passport"):
        assert needle not in logged
    assert scan_database(sms_app, ["4155550123", "4155550177", "mysecretwords", "passport"]) == []


# --- providers -------------------------------------------------------------------------


@pytest.fixture
def shelter(sms_app: Any) -> Service:
    service = factories.make_service(category="shelter", intake_phone=PROVIDER_PHONE,
                                      beds_total=10, beds_available=2)
    db.session.commit()
    return service


def test_beds_from_the_intake_phone(client: Any, shelter: Service) -> None:
    assert text(client, "BEDS 7", sender=PROVIDER_PHONE) == [
        rendered("provider.beds_updated", "en", beds=7)]
    db.session.expire_all()
    assert db.session.get(Service, shelter.id).beds_available == 7  # type: ignore[union-attr]
    event = db.session.scalars(select(AuditEvent).where(
        AuditEvent.action == "service.beds_update")).one()
    assert (event.object_type, event.object_id) == ("service", str(shelter.id))
    assert text(client, "camas 11", sender=PROVIDER_PHONE) == [
        rendered("provider.beds_invalid", "es", total=10)]
    assert text(client, "BEDS lots", sender=PROVIDER_PHONE) == [rendered("provider.help", "en")]
    assert text(client, "hello", sender=PROVIDER_PHONE) == [rendered("provider.help", "en")]
    db.session.expire_all()
    assert db.session.get(Service, shelter.id).beds_available == 7  # type: ignore[union-attr]


def test_beds_from_another_number_changes_nothing(client: Any, shelter: Service) -> None:
    reply = text(client, "BEDS 0", sender="+14155550177")
    assert reply == [rendered("hotline.language_menu", "en")]
    db.session.expire_all()
    assert db.session.get(Service, shelter.id).beds_available == 2  # type: ignore[union-attr]


def test_accept_and_decline_reveal_nothing_without_a_match(
    client: Any, shelter: Service
) -> None:
    not_found = [rendered("provider.not_found", "en")]
    assert text(client, "ACCEPT K7Q-4MX", sender=PROVIDER_PHONE) == not_found
    assert text(client, "ACCEPT K7Q-4MX", sender="+14155550177") == not_found
    assert text(client, "DECLINE K7Q-4MX full", sender="+14155550177") == not_found
    assert session_of("+14155550177") is None  # strangers' commands start no conversation


def test_accept_and_decline_call_the_referral_hook(
    client: Any, shelter: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Any, ...]] = []

    def responder(services: list[Service], action: str, code: str, reason: str | None,
                  at: Any) -> str | None:
        calls.append((tuple(s.id for s in services), action, code, reason))
        if code == "K7Q-4MX":
            return "accepted" if action == "accept" else "declined"
        return None

    monkeypatch.setattr(hotline.referrals, "respond_by_sms", responder)
    assert text(client, "accept k7q-4mx", sender=PROVIDER_PHONE) == [
        rendered("provider.accepted", "en", code="K7Q-4MX")]
    assert text(client, "RECHAZAR K7Q-4MX lleno", sender=PROVIDER_PHONE) == [
        rendered("provider.declined", "es", code="K7Q-4MX")]
    assert text(client, "DECLINE ZZZ-999 not eligible", sender=PROVIDER_PHONE) == [
        rendered("provider.not_found", "en")]
    # A stranger never reaches the hook.
    assert text(client, "ACCEPT K7Q-4MX", sender="+14155550177") == [
        rendered("provider.not_found", "en")]
    assert calls == [
        ((shelter.id,), "accept", "K7Q-4MX", None),
        ((shelter.id,), "decline", "K7Q-4MX", "full"),
        ((shelter.id,), "decline", "ZZZ-999", "ineligible"),
    ]


# --- delivery callbacks ----------------------------------------------------------------


def test_status_callbacks_then_deletion_at_twilio(app_factory: Any) -> None:
    network = StubNetwork()
    app = app_factory(SMS_BACKEND="twilio", TWILIO_HTTP_CLIENT=network,
                      TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                      TWILIO_FROM_NUMBER=FROM_NUMBER, SMS_RATE_PER_SECOND=1000.0)
    with app.app_context():
        client = app.test_client()
        case = factories.make_case(phone=PHONE)
        sid = new_sid()
        network.push(message_created(sid, "accepted"))
        message = messaging.enqueue("survivor.update", case=case,
                                    params={"reference": case.reference})
        assert message is not None
        db.session.commit()
        Worker(app, sleep=lambda _s: None).run(once=True)

        def status(value: str, **extra: str) -> Any:
            params = {"MessageSid": sid, "MessageStatus": value, "AccountSid": ACCOUNT_SID,
                      **extra}
            return post_signed(client, "/sms/status", params)

        assert status("sending").status_code == 200
        assert status("sent").status_code == 200
        db.session.expire_all()
        assert db.session.get(Message, message.id).status == "sent"  # type: ignore[union-attr]
        assert status("bogus").status_code == 400
        assert status("delivered", ErrorCode="x1").status_code == 400
        assert status("delivered").status_code == 200
        assert status("sent").status_code == 200  # late, out of order: ignored
        db.session.expire_all()
        final = db.session.get(Message, message.id)
        assert final is not None and final.status == "delivered" and final.final_at
        unknown = post_signed(client, "/sms/status", {"MessageSid": new_sid(),
                                                      "MessageStatus": "delivered"})
        assert unknown.status_code == 200
        Worker(app, sleep=lambda _s: None).run(once=True)
        db.session.expire_all()
        assert db.session.get(Message, message.id).remote_deleted_at  # type: ignore[union-attr]
        assert [r["method"] for r in network.requests] == ["POST", "DELETE"]
        db.session.remove()


def test_undelivered_with_21610_records_the_opt_out(client: Any) -> None:
    case = factories.make_case(phone=PHONE)
    sid = new_sid()
    db.session.add(Message(direction="out", audience="survivor", template_key="survivor.update",
                           language="en", params={}, status="sent", twilio_sid=sid,
                           case_id=case.id, counterpart_index=case.phone_index))
    db.session.commit()
    response = post_signed(client, "/sms/status", {"MessageSid": sid,
                                                   "MessageStatus": "undelivered",
                                                   "ErrorCode": "21610"})
    assert response.status_code == 200
    db.session.expire_all()
    case = db.session.get(Case, case.id)
    assert not consent.has_consent(case, "contact_sms")
    assert db.session.scalar(select(func.count(SmsOptOut.id))) == 1


def test_inbound_messages_are_deleted_at_twilio_after_parsing(app_factory: Any) -> None:
    network = StubNetwork()
    app = app_factory(SMS_BACKEND="twilio", TWILIO_HTTP_CLIENT=network,
                      TWILIO_ACCOUNT_SID=ACCOUNT_SID, TWILIO_AUTH_TOKEN=AUTH_TOKEN,
                      TWILIO_FROM_NUMBER=FROM_NUMBER)
    with app.app_context():
        sid = new_sid()
        text(app.test_client(), "hello", sid=sid)
        Worker(app, sleep=lambda _s: None).run(once=True)
        assert [r["method"] for r in network.requests] == ["DELETE"]
        assert network.requests[0]["uri"].endswith(f"/Messages/{sid}.json")
        db.session.remove()


def test_need_rows_only_after_consent(client: Any) -> None:
    text(client, "hi")
    text(client, "1")
    text(client, "1 2")  # needs before consent: unclear, nothing stored
    assert db.session.scalar(select(func.count(Need.id))) == 0


# --- concurrency (two web processes) ---------------------------------------------------


def _race(apps: list[Any], bodies: list[dict[str, str]]) -> list[list[str]]:
    import threading

    barrier = threading.Barrier(len(apps))
    results: list[Any] = [None] * len(apps)

    def run(i: int) -> None:
        client = apps[i].test_client()
        barrier.wait()
        results[i] = replies(post_signed(client, "/sms/inbound", bodies[i]))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(apps))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_a_retry_racing_the_original_is_handled_once(app_factory: Any) -> None:
    apps = [app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN) for _ in range(2)]
    with apps[0].app_context():
        factories.make_org("ngo")
        db.session.commit()
        for _ in range(5):
            params = inbound_params(PHONE, "hello")
            results = _race(apps, [params, params])
            assert sorted(bool(r) for r in results) == [False, True]
        assert db.session.scalar(select(func.count(Message.id))) == 5
        assert db.session.scalar(select(func.count(HotlineSession.id))) == 1
        db.session.remove()


def test_two_first_messages_at_once_make_one_session_and_one_case(app_factory: Any) -> None:
    apps = [app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN) for _ in range(2)]
    with apps[0].app_context():
        factories.make_org("ngo")
        db.session.commit()
        results = _race(apps, [inbound_params(PHONE, "hi"), inbound_params(PHONE, "2")])
        assert all(results)
        assert db.session.scalar(select(func.count(HotlineSession.id))) == 1
        text(apps[0].test_client(), "2")
        results = _race(apps, [inbound_params(PHONE, "si"), inbound_params(PHONE, "sí")])
        assert db.session.scalar(select(func.count(Case.id))) == 1
        db.session.remove()
