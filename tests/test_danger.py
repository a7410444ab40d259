"""Issue 13 item 5: "I am in danger" on the hotline leaves a trace caseworkers see. The
survivor gets the emergency number first; the number's case is flagged with the time of the
report (carried from the hotline session when consent creates the case), shown at the top
of the home page of every caseworker and supervisor of the case's organization and of the
SMS queue, until one of them acknowledges it (audited, once, however often it is tapped)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select

from app.cases import danger, erasure
from app.cases import service as cases
from app.core.crypto import blind_index
from app.core.extensions import db
from app.models import AuditEvent, Case, HotlineSession, Organization
from app.sms import hotline, messaging
from tests import factories
from tests.conftest import login_session
from tests.sms_support import ACCOUNT_SID, AUTH_TOKEN, inbound_params, new_sid, post_signed

PHONE = "+14155550123"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def minutes(n: int) -> datetime:
    return T0 + timedelta(minutes=n)


@pytest.fixture
def sms_app(app_factory: Any) -> Any:
    app = app_factory(TWILIO_AUTH_TOKEN=AUTH_TOKEN, TWILIO_ACCOUNT_SID=ACCOUNT_SID)
    with app.app_context():
        factories.make_org("ngo", name="Hotline NGO")
        db.session.commit()
        yield app
        db.session.remove()


@pytest.fixture
def hotline_org(sms_app: Any) -> Any:
    return db.session.scalar(select(Organization).where(Organization.name == "Hotline NGO"))


def say(body: str, at: datetime, phone: str = PHONE) -> list[str]:
    """One inbound SMS handled at ``at`` (the domain entry point the webhook calls)."""
    replies = hotline.handle_inbound(new_sid(), phone, body, at=at)
    db.session.commit()
    return replies


def webhook(client: Any, body: str, phone: str = PHONE) -> list[str]:
    response = post_signed(client, "/sms/inbound", inbound_params(phone, body))
    assert response.status_code == 200
    root = ET.fromstring(response.data)  # noqa: S314 - our own reply
    return [m.text or "" for m in root.iter("Message")]


def the_case(phone: str = PHONE) -> Case | None:
    db.session.expire_all()
    return db.session.scalar(select(Case).where(Case.phone_index == blind_index(phone)))


def the_session(phone: str = PHONE) -> HotlineSession | None:
    db.session.expire_all()
    return db.session.scalar(
        select(HotlineSession).where(HotlineSession.phone_index == blind_index(phone))
    )


def actions(action: str) -> list[AuditEvent]:
    return list(db.session.scalars(
        select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
    ))


def danger_text(language: str = "en") -> str:
    return messaging.render("hotline.danger", language)


def finished_conversation(start: datetime) -> Case:
    for i, body in enumerate(("hi", "1", "yes", "2")):
        say(body, start + timedelta(seconds=i))
    case = the_case()
    assert case is not None and case.danger_reported_at is None
    return case


# --- the hotline ------------------------------------------------------------------------


def test_danger_before_consent_is_kept_on_the_session_then_carried_onto_the_case(
    sms_app: Any,
) -> None:
    say("hi", minutes(0))
    reply = say("help, I am in danger", minutes(1))
    assert reply[0] == danger_text()  # the emergency number first
    # No case before consent: the report waits on the hotline session, with its time.
    assert db.session.scalar(select(func.count(Case.id))) == 0
    session = the_session()
    assert session is not None and session.danger_reported_at == minutes(1)
    say("1", minutes(2))
    say("yes", minutes(3))
    case = the_case()
    assert case is not None
    assert case.danger_reported_at == minutes(1)  # when it was reported, not consent time
    assert case.danger_acknowledged_at is None and danger.is_pending(case)
    assert the_session().danger_reported_at is None  # type: ignore[union-attr]
    [event] = actions("case.danger_report")
    assert (event.object_type, event.object_id) == ("case", str(case.id))


def test_danger_then_no_consent_keeps_nothing(sms_app: Any) -> None:
    say("SOS", minutes(0))
    say("1", minutes(1))
    say("no", minutes(2))
    assert the_session() is None
    assert db.session.scalar(select(func.count(Case.id))) == 0
    assert actions("case.danger_report") == []


@pytest.mark.parametrize(
    ("word", "language"), [("danger", "en"), ("PELIGRO", "en"), ("Urgence !", "en"),
                           ("خطر", "en"), ("I feel unsafe", "en")],
)
def test_a_danger_word_after_the_conversation_flags_the_case(
    sms_app: Any, word: str, language: str
) -> None:
    case = finished_conversation(minutes(0))
    reply = say(word, minutes(30))
    assert reply[0] == danger_text(language)
    case = the_case()
    assert case is not None and case.danger_reported_at == minutes(30)
    assert danger.is_pending(case)


def test_the_danger_option_of_the_needs_menu_flags_the_case(sms_app: Any) -> None:
    for i, body in enumerate(("hi", "2", "si")):
        say(body, minutes(i))
    reply = say("0", minutes(5))
    assert reply[0] == danger_text("es")
    case = the_case()
    assert case is not None and case.danger_reported_at == minutes(5)
    say("1", minutes(6))
    case = the_case()
    assert [(n.category, n.urgency) for n in case.needs] == [("shelter", "immediate")]


def test_danger_through_the_webhook_answers_the_emergency_number_first(
    sms_app: Any, hotline_org: Any
) -> None:
    client = sms_app.test_client()
    for body in ("hi", "1", "yes", "2"):
        webhook(client, body)
    reply = webhook(client, "danger")
    assert reply[0] == danger_text() and "911" in reply[0]
    case = the_case()
    assert case is not None and case.organization_id == hotline_org.id
    assert danger.is_pending(case)


def test_reports_before_an_acknowledgement_keep_the_first_time_and_after_it_flag_again(
    sms_app: Any,
) -> None:
    finished_conversation(minutes(0))
    say("danger", minutes(10))
    say("still in danger", minutes(20))
    case = the_case()
    assert case is not None and case.danger_reported_at == minutes(10)
    assert len(actions("case.danger_report")) == 2  # each report is in the case's activity
    user = factories.make_user(
        "caseworker", organization=db.session.get(Organization, case.organization_id)
    )
    assert danger.acknowledge(case, user.id, seen=minutes(10), at=minutes(25)) is True
    db.session.commit()
    case = the_case()
    assert case is not None and not danger.is_pending(case)
    assert (case.danger_acknowledged_at, case.danger_acknowledged_by_id) == (minutes(25), user.id)
    say("danger again", minutes(40))
    case = the_case()
    assert case is not None and danger.is_pending(case)
    assert case.danger_reported_at == minutes(40)
    assert case.danger_acknowledged_at is None and case.danger_acknowledged_by_id is None


def test_a_danger_report_reopens_a_closed_case(sms_app: Any) -> None:
    case = finished_conversation(minutes(0))
    cases.close_case(case, "goals_met")
    db.session.commit()
    say("LANG", minutes(10))  # the conversation is at the language menu, not "done"
    reply = say("danger", minutes(11))
    assert reply[0] == danger_text()
    case = the_case()
    assert case is not None and case.status == "open" and danger.is_pending(case)


def test_forget_and_erasure_leave_no_danger_flag(sms_app: Any) -> None:
    finished_conversation(minutes(0))
    say("danger", minutes(5))
    case_id = the_case().id  # type: ignore[union-attr]
    say("FORGET", minutes(6))
    erased = db.session.get(Case, case_id)
    assert erased is not None and erased.status == "erased"
    assert (erased.danger_reported_at, erased.danger_acknowledged_at,
            erased.danger_acknowledged_by_id) == (None, None, None)
    # The retention path (batch erasure) leaves the same.
    org = factories.make_org("ngo")
    user = factories.make_user("caseworker", organization=org)
    flagged = factories.make_case(org, danger_reported_at=minutes(1),
                                  danger_acknowledged_at=minutes(2),
                                  danger_acknowledged_by_id=user.id)
    db.session.commit()
    erased = erasure.erase_cases([flagged.id], None, reason="retention", at=minutes(3))
    assert erased == [flagged.id]
    db.session.commit()
    db.session.expire_all()
    row = db.session.get(Case, flagged.id)
    assert row is not None and row.status == "erased"
    assert (row.danger_reported_at, row.danger_acknowledged_at,
            row.danger_acknowledged_by_id) == (None, None, None)


# --- what caseworkers see -----------------------------------------------------------------


@pytest.fixture
def office(app: Any) -> dict[str, Any]:
    ngo = factories.make_org("ngo", name="Hotline NGO")
    other = factories.make_org("ngo", name="Other NGO")
    people = {
        "caseworker": factories.make_user("caseworker", organization=ngo),
        "second_caseworker": factories.make_user("caseworker", organization=ngo),
        "supervisor": factories.make_user("supervisor", organization=ngo),
        "stranger": factories.make_user("caseworker", organization=other),
        "provider": factories.make_user("provider"),
        "admin": factories.make_user("admin"),
    }
    flagged = factories.make_case(ngo, alias="Rosa", channel="sms",
                                  danger_reported_at=minutes(0))
    flagged.profile_completed_at = None
    quiet = factories.make_case(ngo, alias="Quiet One", channel="sms")
    db.session.commit()
    return {"ngo": ngo, "flagged": flagged, "quiet": quiet, **people}


def home(client: Any, user: Any) -> str:
    login_session(client, user)
    response = client.get("/")
    assert response.status_code == 200
    return str(response.get_data(as_text=True))


def test_every_caseworker_and_supervisor_of_the_organization_sees_it_at_the_top(
    client: Any, office: dict[str, Any]
) -> None:
    flagged = office["flagged"]
    for role in ("caseworker", "second_caseworker", "supervisor"):
        page = home(client, office[role])
        assert flagged.reference in page and "Rosa" in page, role
        assert "reported danger at" in page
        assert f'action="/cases/{flagged.id}/danger/acknowledge"' in page
        assert office["quiet"].reference not in page
        # At the top: before the tiles of the home page.
        assert page.index(flagged.reference) < page.index('class="tiles"')
    for role in ("stranger", "provider", "admin"):
        page = home(client, office[role])
        assert flagged.reference not in page and "Rosa" not in page, role
    # Showing an alias is a view of survivor data: audited (ids only).
    shown = actions("case.danger_list")
    assert [e.object_id for e in shown] == [str(office["ngo"].id)] * 3


def acknowledge(client: Any, case: Any, seen: datetime | str | None, **extra: str) -> Any:
    data = dict(extra)
    if seen is not None:
        data["reported_at"] = seen if isinstance(seen, str) else seen.isoformat()
    return client.post(f"/cases/{case.id}/danger/acknowledge", data=data)


def test_acknowledging_is_audited_once_and_a_double_tap_changes_nothing(
    client: Any, office: dict[str, Any]
) -> None:
    flagged, worker = office["flagged"], office["caseworker"]
    login_session(client, worker)
    first = acknowledge(client, flagged, minutes(0), back="home")
    assert first.status_code == 302 and first.headers["Location"].endswith("/")
    again = acknowledge(client, flagged, minutes(0), back="home")
    assert again.status_code == 302
    db.session.expire_all()
    case = db.session.get(Case, flagged.id)
    assert case is not None and not danger.is_pending(case)
    assert case.danger_acknowledged_by_id == worker.id and case.danger_acknowledged_at
    [event] = actions("case.danger_acknowledge")
    assert (event.object_type, event.object_id, event.actor_user_id) == (
        "case", str(flagged.id), worker.id)
    # Gone from everyone's danger list (the hotline case without a profile stays in the work
    # queue as a new hotline case, issue 16), and the case page says who took it up and when.
    supervisor_home = home(client, office["supervisor"])
    assert f'action="/cases/{flagged.id}/danger/acknowledge"' not in supervisor_home
    assert 'id="danger-title"' not in supervisor_home
    page = client.get(f"/cases/{flagged.id}").get_data(as_text=True)
    assert "acknowledged" in page and "/danger/acknowledge" not in page


def test_a_report_newer_than_the_one_on_screen_is_not_acknowledged(
    client: Any, office: dict[str, Any]
) -> None:
    flagged = office["flagged"]
    danger.acknowledge(flagged, office["supervisor"].id, seen=minutes(0), at=minutes(1))
    danger.report(flagged, minutes(9))  # she texted danger again
    db.session.commit()
    login_session(client, office["caseworker"])
    stale = acknowledge(client, flagged, minutes(0), back="home")  # a page loaded before
    assert stale.status_code == 302
    assert stale.headers["Location"].endswith(f"/cases/{flagged.id}")
    db.session.expire_all()
    case = db.session.get(Case, flagged.id)
    assert case is not None and danger.is_pending(case)
    assert case.danger_reported_at == minutes(9)
    assert len(actions("case.danger_acknowledge")) == 1  # the supervisor's only
    page = client.get(f"/cases/{flagged.id}").get_data(as_text=True)
    assert "reported danger again" in page


@pytest.mark.parametrize(
    "seen",
    [None, "", "yesterday", "2026-03-02T09:00:00", "9" * 400, "2026-03-02T09:00:00+00:00\x00"],
    ids=["missing", "empty", "words", "naive", "huge", "nul"],
)
def test_malformed_acknowledgements_change_nothing(
    client: Any, office: dict[str, Any], seen: str | None
) -> None:
    flagged = office["flagged"]
    login_session(client, office["caseworker"])
    response = acknowledge(client, flagged, seen, back="nowhere")
    assert response.status_code in (302, 400)
    db.session.expire_all()
    assert danger.is_pending(db.session.get(Case, flagged.id))  # type: ignore[arg-type]
    assert actions("case.danger_acknowledge") == []


def test_acknowledge_needs_the_csrf_token(app_factory: Any, app: Any) -> None:
    production_like = app_factory(WTF_CSRF_ENABLED=True)
    with production_like.app_context():
        ngo = factories.make_org("ngo")
        user = factories.make_user("caseworker", organization=ngo)
        flagged = factories.make_case(ngo, danger_reported_at=minutes(0))
        db.session.commit()
        client = production_like.test_client()
        login_session(client, user)
        response = acknowledge(client, flagged, minutes(0))
        assert response.status_code in (302, 400)
        db.session.expire_all()
        assert danger.is_pending(db.session.get(Case, flagged.id))  # type: ignore[arg-type]
        # With the token from the home page, it works.
        page = client.get("/").get_data(as_text=True)
        token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page)
        assert token is not None
        done = acknowledge(client, flagged, minutes(0), csrf_token=token.group(1))
        assert done.status_code == 302
        db.session.expire_all()
        assert not danger.is_pending(db.session.get(Case, flagged.id))  # type: ignore[arg-type]
        db.session.remove()


def test_the_sms_queue_puts_danger_first_then_immediate_needs_then_the_oldest(
    client: Any, office: dict[str, Any]
) -> None:
    ngo = office["ngo"]

    def sms_case(alias: str, created: int, needs: dict[str, str], **fields: Any) -> Case:
        case = factories.make_case(ngo, alias=alias, channel="sms", at=minutes(created),
                                   needs=needs, **fields)
        case.profile_completed_at = None
        return case

    old_routine = sms_case("Old routine", -300, {"legal": "routine"})
    new_immediate = sms_case("New immediate", -100, {"shelter": "immediate"})
    newer_routine = sms_case("Newer routine", -50, {"legal": "soon"})
    acknowledged = sms_case("Acknowledged", -60, {"legal": "soon"},
                            danger_reported_at=minutes(-55), danger_acknowledged_at=minutes(-54))
    late_danger = sms_case("Late danger", -20, {"legal": "routine"},
                           danger_reported_at=minutes(-10))
    # A case taken up from the tablet whose survivor texted "danger": in the queue until
    # acknowledged, although its profile is recorded.
    tablet_danger = factories.make_case(ngo, alias="Tablet danger", at=minutes(-400),
                                        needs={}, danger_reported_at=minutes(-30))
    tablet_quiet = factories.make_case(ngo, alias="Tablet quiet", needs={})
    db.session.execute(
        Case.__table__.update().where(Case.id.in_([office["flagged"].id, office["quiet"].id]))
        .values(status="closed")
    )
    db.session.commit()
    login_session(client, office["caseworker"])
    page = client.get("/cases/?tab=sms").get_data(as_text=True)
    shown = [c for c in (tablet_danger, late_danger, new_immediate, old_routine,
                         acknowledged, newer_routine) if c.reference in page]
    assert tablet_quiet.reference not in page
    order = sorted(shown, key=lambda c: page.index(c.reference))
    assert [c.alias for c in order] == [
        "Tablet danger",  # danger, reported first
        "Late danger",  # danger, reported later
        "New immediate",  # immediate needs
        "Old routine",  # then the oldest first
        "Acknowledged",
        "Newer routine",
    ]
    assert "(6)" in page  # the tab's count includes the tablet case in danger


def test_the_survivors_export_holds_the_danger_report(client: Any, office: dict[str, Any]) -> None:
    flagged = office["flagged"]
    login_session(client, office["caseworker"])
    data = client.get(f"/cases/{flagged.id}/export.json").get_json()
    assert data["danger_reported_at"] == minutes(0).isoformat()
    assert data["danger_acknowledged_at"] is None
    page = client.get(f"/cases/{flagged.id}/export").get_data(as_text=True)
    assert minutes(0).isoformat() in page


@pytest.mark.both_databases
def test_two_caseworkers_acknowledging_at_once_record_one_acknowledgement(
    app_factory: Any,
) -> None:
    """Two web processes (their own app and connection pool), two colleagues tapping at the
    same moment: one acknowledgement, one audit event, no error for either."""
    import threading

    apps = [app_factory() for _ in range(2)]
    with apps[0].app_context():
        ngo = factories.make_org("ngo")
        users = [factories.make_user("caseworker", organization=ngo) for _ in apps]
        flagged = factories.make_case(ngo, danger_reported_at=minutes(0))
        db.session.commit()
        target = SimpleNamespace(id=flagged.id)  # read in the threads, outside this context
        clients = []
        for process, user in zip(apps, users, strict=True):
            client = process.test_client()
            login_session(client, user)
            clients.append(client)
        db.session.commit()  # this thread's read transaction holds SQLite's lock otherwise
        barrier = threading.Barrier(len(clients))
        statuses: list[int] = []

        def tap(client: Any) -> None:
            barrier.wait()
            statuses.append(acknowledge(client, target, minutes(0), back="home").status_code)

        threads = [threading.Thread(target=tap, args=(c,)) for c in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert statuses == [302, 302]
        db.session.expire_all()
        assert not danger.is_pending(db.session.get(Case, flagged.id))  # type: ignore[arg-type]
        assert len(actions("case.danger_acknowledge")) == 1
        db.session.remove()
