"""The caseworker's day (issue 16): the work queue, follow-ups, closing with a reason,
assignment and handover. Real databases; time moves by passing ``now``, never by sleeping."""

from __future__ import annotations

import logging
import os
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import event, func, select

from app.cases import danger, erasure, followups, workqueue
from app.cases import service as cases
from app.core.crypto import keyring
from app.core.extensions import db
from app.models import AuditEvent, Case, CaseStatistic, DataKey, FollowUp, Referral
from app.referrals import service as referrals
from app.retention import service as retention
from tests import factories
from tests.conftest import login_session

# A Wednesday: two working days before it are plain weekdays.
NOW = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)
T = workqueue.Thresholds()


def build(org: Any, user: Any = None, now: datetime = NOW) -> workqueue.Queue:
    return workqueue.build(
        org.id, user_id=user.id if user is not None else None, now=now, thresholds=T,
        supervisor=user is None,
    )


def kinds(queue: workqueue.Queue) -> list[tuple[str, str]]:
    return [(i.kind, i.reference) for i in queue.items]


def count(model: Any, *where: Any) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


@pytest.fixture
def office(app: Any) -> dict[str, Any]:
    ngo = factories.make_org("ngo")
    worker = factories.make_user("caseworker", organization=ngo)
    colleague = factories.make_user("caseworker", organization=ngo)
    supervisor = factories.make_user("supervisor", organization=ngo)
    db.session.commit()
    return {"ngo": ngo, "worker": worker, "colleague": colleague, "supervisor": supervisor}


def mine(office: dict[str, Any], **kwargs: Any) -> Case:
    case = factories.make_case(office["ngo"], assigned_to_id=office["worker"].id, **kwargs)
    return case


def referral(case: Case, category: str, *, status: str, at: datetime, **fields: Any) -> Referral:
    service = factories.make_service(category=category)
    made = factories.make_referral(case, service, status=status, **fields)
    made.created_at = at
    db.session.flush()
    return made


# --- the queue ---------------------------------------------------------------------------


def test_a_declined_referral_waits_until_it_is_re_referred(office):
    case = mine(office, needs={"shelter": "immediate"})
    first = referral(case, "shelter", status="pending", at=NOW - timedelta(hours=1))
    referrals.decline(first, "full", None, None, at=NOW - timedelta(minutes=30))
    db.session.commit()
    assert kinds(build(office["ngo"], office["worker"])) == [("declined", case.reference)]
    # Re-referred to another shelter: the declined one has been acted on.
    referral(case, "shelter", status="pending", at=NOW - timedelta(minutes=10))
    db.session.commit()
    assert kinds(build(office["ngo"], office["worker"])) == []


def test_an_expired_referral_is_in_the_queue(office):
    case = mine(office, needs={"legal": "soon"})
    referral(case, "legal", status="expired", at=NOW - timedelta(days=3),
             updated_at=NOW - timedelta(days=1))
    db.session.commit()
    assert kinds(build(office["ngo"], office["worker"])) == [("expired", case.reference)]


def test_a_shelter_referral_unanswered_for_four_hours(office):
    case = mine(office)
    made = referral(case, "shelter", status="pending", at=NOW - timedelta(hours=4))
    db.session.commit()
    assert kinds(build(office["ngo"], office["worker"], NOW - timedelta(seconds=1))) == []
    assert kinds(build(office["ngo"], office["worker"])) == [("unanswered", case.reference)]
    assert build(office["ngo"], office["worker"]).items[0].referral_id == made.id


def test_other_referrals_wait_two_working_days_and_weekends_do_not_count(office):
    case = mine(office, needs={"legal": "soon"})
    friday = datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
    referral(case, "legal", status="pending", at=friday)
    db.session.commit()
    monday, tuesday = friday + timedelta(days=3), friday + timedelta(days=4)
    # Friday 15:00 + two working days = Tuesday 15:00 (Saturday and Sunday skipped).
    assert kinds(build(office["ngo"], office["worker"], monday)) == []
    assert kinds(build(office["ngo"], office["worker"], tuesday - timedelta(minutes=1))) == []
    assert kinds(build(office["ngo"], office["worker"], tuesday)) == [
        ("unanswered", case.reference)]


def test_working_days_before():
    wednesday = datetime(2026, 12, 9, 9, 0, tzinfo=UTC)
    assert workqueue.working_days_before(wednesday, 2) == wednesday - timedelta(days=2)
    monday = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    assert workqueue.working_days_before(monday, 2) == monday - timedelta(days=4)


def test_accepted_without_arrival_is_chased_then_escalated_then_gone_on_arrival(office):
    case = mine(office)
    made = referral(case, "shelter", status="pending", at=NOW - timedelta(hours=1))
    accepted_at = NOW
    referrals.accept(made, None, at=accepted_at)
    db.session.commit()
    worker, ngo = office["worker"], office["ngo"]
    hours = timedelta(hours=1)
    assert kinds(build(ngo, worker, accepted_at + 47 * hours)) == []
    assert kinds(build(ngo, worker, accepted_at + 48 * hours)) == [("no_arrival", case.reference)]
    assert kinds(build(ngo, None, accepted_at + 48 * hours)) == [("no_arrival", case.reference)]
    # A day later still open: escalated, on the supervisor's queue as well as hers.
    later = accepted_at + 72 * hours
    assert kinds(build(ngo, worker, later)) == [("escalated", case.reference)]
    assert kinds(build(ngo, None, later)) == [("escalated", case.reference)]
    referrals.record_outcome(db.session.get(Referral, made.id), "arrived", None, at=later)
    db.session.commit()
    assert kinds(build(ngo, worker, later + hours)) == []


def test_a_follow_up_is_due_on_its_next_day_and_only_the_newest_counts(office):
    case = mine(office)
    spec = followups.FollowUpSpec(NOW.date(), "call", "reached",
                                  next_on=NOW.date() + timedelta(days=2))
    followups.record(case, spec, office["worker"].id, at=NOW)
    db.session.commit()
    worker, ngo = office["worker"], office["ngo"]
    assert kinds(build(ngo, worker, NOW + timedelta(days=1))) == []
    assert kinds(build(ngo, worker, NOW + timedelta(days=2))) == [("follow_up", case.reference)]
    later = NOW + timedelta(days=3)
    followups.record(case, followups.FollowUpSpec(later.date(), "meeting", "needs_met"),
                     worker.id, at=later)
    db.session.commit()
    assert kinds(build(ngo, worker, later)) == []


def test_most_urgent_first_and_each_caseworker_sees_her_own(office):
    ngo, worker, colleague = office["ngo"], office["worker"], office["colleague"]
    hers = mine(office, alias="Amal")
    theirs = factories.make_case(ngo, assigned_to_id=colleague.id, alias="Bea")
    for case in (hers, theirs):
        referral(case, "shelter", status="pending", at=NOW - timedelta(hours=5))
    danger_case = factories.make_case(ngo, channel="sms", danger_reported_at=NOW)
    danger_case.profile_completed_at = None
    hotline = factories.make_case(ngo, channel="sms", alias=None)
    hotline.profile_completed_at = None
    followups.record(hers, followups.FollowUpSpec(NOW.date(), "call", "not_reached",
                                                  next_on=NOW.date()), worker.id, at=NOW)
    db.session.commit()
    queue = workqueue.build(ngo.id, user_id=worker.id, now=NOW, thresholds=T,
                            danger_cases=danger.pending_cases(ngo.id))
    assert kinds(queue) == [
        ("danger", danger_case.reference),
        ("new_sms", hotline.reference),
        ("unanswered", hers.reference),
        ("follow_up", hers.reference),
    ]
    assert queue.items[2].alias == "Amal"
    # The supervisor's is the team's: both caseworkers' referrals.
    team = build(ngo)
    assert {r for k, r in kinds(team) if k == "unanswered"} == {hers.reference, theirs.reference}


def test_another_organizations_cases_never_appear(office):
    stranger_org = factories.make_org("ngo")
    stranger = factories.make_user("caseworker", organization=stranger_org)
    case = factories.make_case(stranger_org, assigned_to_id=stranger.id)
    referral(case, "shelter", status="declined", at=NOW - timedelta(hours=2))
    hotline = factories.make_case(stranger_org, channel="sms")
    hotline.profile_completed_at = None
    db.session.commit()
    assert build(office["ngo"]).items == []
    assert build(office["ngo"], office["worker"]).items == []
    assert len(build(stranger_org).items) == 2


def test_the_queue_costs_the_same_queries_for_one_case_or_twenty(office, app):
    def statements(n_cases: int) -> int:
        for _ in range(n_cases):
            case = mine(office)
            referral(case, "shelter", status="declined", at=NOW - timedelta(hours=2))
            followups.record(case, followups.FollowUpSpec(
                NOW.date(), "call", "reached", next_on=NOW.date()), None, at=NOW)
        db.session.commit()
        db.session.expire_all()
        seen: list[str] = []

        def count_it(*args: Any) -> None:
            seen.append(args[2])

        engine = db.engine
        event.listen(engine, "before_cursor_execute", count_it)
        try:
            queue = build(office["ngo"], office["worker"])
            aliases = [i.alias for i in queue.items]
        finally:
            event.remove(engine, "before_cursor_execute", count_it)
        assert len(aliases) >= 2 * n_cases and all(aliases)
        return len(seen)

    one = statements(1)
    twenty_one = statements(20)
    assert twenty_one == one


# --- the home page ------------------------------------------------------------------------


def test_the_home_page_is_the_queue_with_reference_alias_and_reason_only(office, client, app):
    case = mine(office, alias="Noor", phone="+14155550177", note="secret meeting place")
    made = referral(case, "shelter", status="pending", at=utcnow_minus(hours=1))
    referrals.decline(made, "full", "no room for her", None)
    db.session.commit()
    login_session(client, office["worker"])
    page = client.get("/").get_data(as_text=True)
    assert "Needs you now" in page and case.reference in page and "Noor" in page
    assert "Referral declined" in page
    assert f'href="/referrals/cases/{case.id}/new"' in page  # re-refer: the next matches
    for private in ("+1415", "4155550177", "secret meeting place", "no room for her"):
        assert private not in page, private
    assert '<span class="count">1<' in page  # the count in the navigation
    # Supervisors see the team's queue, the unassigned cases and each caseworker's load.
    factories.make_case(office["ngo"], alias="Nobody's")
    db.session.commit()
    login_session(client, office["supervisor"])
    page = client.get("/").get_data(as_text=True)
    assert case.reference in page and "1 unassigned case" in page
    assert office["worker"].username in page and "Open cases per caseworker" in page


def nav_count_on(page: str) -> int | None:
    """The number next to Home in the navigation of ``page``, None when there is none."""
    marker = '<span class="count">'
    if marker not in page:
        return None
    return int(page.split(marker, 1)[1].split("<", 1)[0])


def busy_office(office: dict[str, Any], at: datetime | None = None) -> Case:
    """One item of each kind the counts can hold, and a draft; returns the worker's case.
    ``at``: the test's clock (None: the real one, for pages)."""
    ngo, worker = office["ngo"], office["worker"]
    now = at or datetime.now(UTC)
    hers = mine(office, alias="Amal")
    referral(hers, "shelter", status="pending", at=now - timedelta(hours=5))
    declined = referral(mine(office), "legal", status="pending", at=now - timedelta(hours=1))
    referrals.decline(declined, "full", None, None)
    theirs = factories.make_case(ngo, assigned_to_id=office["colleague"].id)
    referral(theirs, "shelter", status="pending", at=now - timedelta(hours=5))
    factories.make_case(ngo, channel="sms", danger_reported_at=now).profile_completed_at = None
    factories.make_case(ngo, channel="sms", alias=None).profile_completed_at = None
    factories.make_case(ngo).profile_completed_at = None  # a draft
    followups.record(hers, followups.FollowUpSpec(now.date(), "call", "not_reached",
                                                  next_on=now.date()), worker.id, at=at)
    db.session.commit()
    return hers


def test_the_navigation_count_is_the_queue_count_in_one_query(office):
    ngo, worker = office["ngo"], office["worker"]
    busy_office(office, NOW)
    seen: list[str] = []

    def count_it(*args: Any) -> None:
        seen.append(args[2])

    for user_id, supervisor in ((worker.id, False), (None, True)):
        queue = workqueue.build(ngo.id, user_id=user_id, now=NOW, thresholds=T,
                                danger_cases=danger.pending_cases(ngo.id),
                                supervisor=supervisor)
        event.listen(db.engine, "before_cursor_execute", count_it)
        try:
            counted = workqueue.nav_count(ngo.id, user_id=user_id, now=NOW, thresholds=T,
                                          supervisor=supervisor)
        finally:
            event.remove(db.engine, "before_cursor_execute", count_it)
        assert counted == queue.count
    assert len(seen) == 2  # one statement each
    # danger, new hotline case, her unanswered + declined + follow-up, the draft
    assert workqueue.nav_count(ngo.id, user_id=worker.id, now=NOW, thresholds=T) == 6


def test_the_count_is_in_the_navigation_of_every_staff_page(office, client):
    hers = busy_office(office)
    stranger_org = factories.make_org("ngo")
    stranger = factories.make_user("caseworker", organization=stranger_org)
    theirs = factories.make_case(stranger_org, assigned_to_id=stranger.id)
    referral(theirs, "shelter", status="declined", at=utcnow_minus(hours=2))
    factories.make_case(stranger_org, channel="sms", danger_reported_at=utcnow_minus(hours=1))
    factories.make_case(stranger_org).profile_completed_at = None  # a draft
    db.session.commit()
    login_session(client, office["worker"])
    home = nav_count_on(client.get("/").get_data(as_text=True))
    assert home == 6  # as in the test above: nothing of the other organization
    assert nav_count_on(client.get("/cases/").get_data(as_text=True)) == home
    assert nav_count_on(client.get(f"/cases/{hers.id}").get_data(as_text=True)) == home
    assert nav_count_on(client.get("/directory/").get_data(as_text=True)) == home
    login_session(client, office["supervisor"])
    team = nav_count_on(client.get("/").get_data(as_text=True))
    # + the colleague's unanswered referral, + the unassigned hotline cases (danger, new)
    assert team == home + 1 + 2
    assert nav_count_on(client.get("/cases/").get_data(as_text=True)) == team
    login_session(client, stranger)
    # theirs: the declined referral, the danger report, the draft; nothing of office
    assert nav_count_on(client.get("/cases/").get_data(as_text=True)) == 3


def test_no_count_in_the_navigation_of_providers_admins_or_strangers(office, client):
    busy_office(office)
    provider = factories.make_user("provider", organization=factories.make_org("provider"))
    admin = factories.make_user("admin", organization=office["ngo"])
    db.session.commit()
    assert nav_count_on(client.get("/auth/login").get_data(as_text=True)) is None
    login_session(client, provider)
    for path in ("/", "/directory/"):
        page = client.get(path)
        assert page.status_code == 200 and nav_count_on(page.get_data(as_text=True)) is None
    login_session(client, admin)
    for path in ("/", "/admin/users"):
        page = client.get(path)
        assert page.status_code == 200 and nav_count_on(page.get_data(as_text=True)) is None


def utcnow_minus(**delta: Any) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


# --- follow-ups ---------------------------------------------------------------------------


def follow_up_form(**fields: Any) -> dict[str, str]:
    form = {"occurred_on": date.today().isoformat(), "kind": "call", "outcome": "reached",
            "next_on": (date.today() + timedelta(days=7)).isoformat(), "note": ""}
    form.update(fields)
    return form


def test_recording_a_follow_up_seals_the_note_and_shows_it_on_the_timeline(office, client,
                                                                           caplog):
    case = mine(office)
    db.session.commit()
    login_session(client, office["worker"])
    note = f"call after 6 {uuid.uuid4().hex[:8]}"
    caplog.set_level(logging.DEBUG)
    response = client.post(f"/cases/{case.id}/follow-up", data=follow_up_form(note=note))
    assert response.status_code == 302, response.get_data(as_text=True)
    db.session.expire_all()
    [row] = db.session.scalars(select(FollowUp)).all()
    assert (row.kind, row.outcome, row.recorded_by_id) == ("call", "reached", office["worker"].id)
    assert row.note == note and note.encode() not in bytes(row.note_enc)
    assert row.data_key_id == db.session.get(Case, case.id).data_key_id
    assert note not in caplog.text
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    assert note in page and "Follow-ups" in page
    assert count(AuditEvent, AuditEvent.action == "case.follow_up") == 1
    assert note not in str(db.session.scalars(select(AuditEvent.object_id)).all())


@pytest.mark.parametrize(("fields", "error"), [
    ({"note": "x" * 281}, "280"),
    ({"note": "<b>hi</b>"}, "plain text"),
    ({"kind": ""}, "kind of contact"),
    ({"kind": "visit"}, "Kind of contact"),
    ({"outcome": "great"}, "Outcome"),
    ({"occurred_on": "2026-13-45"}, "date"),
    ({"occurred_on": (date.today() + timedelta(days=2)).isoformat()}, "in the future"),
    ({"next_on": (date.today() - timedelta(days=3)).isoformat()}, "before this one"),
])
def test_a_bad_follow_up_re_renders_with_the_error_and_records_nothing(
        office, client, fields, error):
    case = mine(office)
    db.session.commit()
    login_session(client, office["worker"])
    response = client.post(f"/cases/{case.id}/follow-up", data=follow_up_form(**fields))
    assert response.status_code == 400
    assert error.lower() in response.get_data(as_text=True).lower()
    assert count(FollowUp) == 0


def test_no_follow_up_without_store_consent(office):
    case = mine(office, consents={"store": False})
    with pytest.raises(followups.FollowUpError):
        followups.record(case, followups.FollowUpSpec(NOW.date(), "call", "reached"), None,
                         at=NOW)
    assert count(FollowUp) == 0


def test_follow_ups_are_in_the_survivors_export(office):
    case = mine(office)
    followups.record(case, followups.FollowUpSpec(
        date.today(), "provider_contact", "needs_changed", note="bring ID"), None)
    data = cases.export_data(case)
    assert [(f["kind"], f["outcome"], f["note"]) for f in data["follow_ups"]] == [
        ("provider_contact", "needs_changed", "bring ID")]


def sqlite_file(app: Any) -> str | None:
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    return url[len("sqlite:///"):] if url.startswith("sqlite:///") else None


def raw_bytes(path: str) -> bytes:
    data = b""
    for name in (path, path + "-wal"):
        if os.path.exists(name):
            with open(name, "rb") as fh:
                data += fh.read()
    return data


@pytest.mark.parametrize("path", ["erase_now", "retention"])
def test_an_erased_follow_up_note_is_gone_from_the_database_bytes(office, client, app, path):
    case = mine(office)
    db.session.commit()
    login_session(client, office["worker"])
    note = f"Zephyrine-{uuid.uuid4().hex}"
    assert client.post(f"/cases/{case.id}/follow-up",
                       data=follow_up_form(note=note)).status_code == 302
    db.session.expire_all()
    sealed_note = bytes(db.session.scalar(select(FollowUp.note_enc)))
    key_id = db.session.get(Case, case.id).data_key_id
    wrapped = bytes(db.session.get(DataKey, key_id).wrapped)
    on_sqlite = sqlite_file(app)
    if on_sqlite:
        before = raw_bytes(on_sqlite)
        assert sealed_note in before and note.encode() not in before  # the scan works
    if path == "erase_now":
        assert client.post(f"/cases/{case.id}/erase",
                           data={"reference": case.reference}).status_code == 302
    else:
        erasure.erase_cases([case.id], None, reason="retention", at=datetime.now(UTC))
        db.session.commit()
        cases.checkpoint_sqlite()
    db.session.expire_all()
    assert count(FollowUp) == 0 and db.session.get(DataKey, key_id) is None
    ring = keyring()
    with pytest.raises(InvalidToken):
        ring.multi.decrypt(sealed_note)
    for row in db.session.scalars(select(DataKey)):
        with pytest.raises(InvalidToken):
            Fernet(ring.multi.decrypt(bytes(row.wrapped))).decrypt(sealed_note)
    if on_sqlite:
        after = raw_bytes(on_sqlite)
        assert case.reference.encode() in after  # the tombstone: the scan still works
        assert sealed_note not in after and wrapped not in after


def test_a_follow_up_keeps_a_case_from_being_closed_as_idle(app):
    org = factories.make_org()
    t0 = datetime(2020, 3, 15, 10, 0, tzinfo=UTC)
    case = factories.make_case(org, at=t0, updated_at=t0)
    followups.record(case, followups.FollowUpSpec(
        (t0 + timedelta(days=100)).date(), "call", "reached"), None, at=t0 + timedelta(days=100))
    db.session.commit()
    retention.run(t0 + timedelta(days=200))
    db.session.expire_all()
    assert db.session.get(Case, case.id).status == "open"


# --- closing with a reason ------------------------------------------------------------------


def test_closing_asks_for_a_reason_and_the_reason_outlives_erasure(office, client):
    case = mine(office)
    db.session.commit()
    login_session(client, office["worker"])
    page = client.get(f"/cases/{case.id}/close")
    assert page.status_code == 200 and "Goals met" in page.get_data(as_text=True)
    for bad in ({}, {"reason": "bored"}):
        response = client.post(f"/cases/{case.id}/close", data=bad)
        assert response.status_code == 400 and "reason" in response.get_data(as_text=True)
        db.session.expire_all()
        assert db.session.get(Case, case.id).status == "open"
    assert client.post(f"/cases/{case.id}/close",
                       data={"reason": "moved_away"}).status_code == 302
    db.session.expire_all()
    closed = db.session.get(Case, case.id)
    assert (closed.status, closed.close_reason) == ("closed", "moved_away")
    erasure.erase_case(closed, None, reason="retention")
    db.session.commit()
    stat = db.session.scalar(select(CaseStatistic))
    assert (stat.reason, stat.close_reason) == ("retention", "moved_away")
    assert db.session.get(Case, case.id).close_reason is None


def test_reopening_clears_the_reason(office):
    case = mine(office)
    cases.close_case(case, "lost_contact")
    cases.reopen_case(case, actor=None)
    assert case.close_reason is None
    with pytest.raises(cases.CaseError):
        cases.close_case(case, "whatever")


# --- assignment -----------------------------------------------------------------------------


def test_the_creator_is_assigned_and_a_hotline_case_starts_unassigned(office):
    made, _ = cases.create_case(office["ngo"].id, office["worker"].id, idempotency_key=None,
                                language="en")
    assert made.assigned_to_id == office["worker"].id
    hotline, _ = cases.create_case(office["ngo"].id, None, idempotency_key=None,
                                   language="en", channel="sms")
    assert hotline.assigned_to_id is None


def test_a_supervisor_assigns_within_her_organization_audited(office, client):
    case = mine(office)
    outsider = factories.make_user("caseworker", organization=factories.make_org("ngo"))
    provider = factories.make_user("provider")
    db.session.commit()
    login_session(client, office["supervisor"])
    for bad in (outsider.id, provider.id, 999_999, "x"):
        client.post(f"/cases/{case.id}/assign", data={"assignee": str(bad)})
        db.session.expire_all()
        assert db.session.get(Case, case.id).assigned_to_id == office["worker"].id, bad
    response = client.post(f"/cases/{case.id}/assign",
                           data={"assignee": str(office["colleague"].id)})
    assert response.status_code == 302
    db.session.expire_all()
    assert db.session.get(Case, case.id).assigned_to_id == office["colleague"].id
    [event_] = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "case.assign"))
    assert (event_.object_id, event_.actor_user_id) == (str(case.id), office["supervisor"].id)


def test_a_caseworker_cannot_assign(office, client):
    case = mine(office)
    db.session.commit()
    login_session(client, office["worker"])
    response = client.post(f"/cases/{case.id}/assign",
                           data={"assignee": str(office["colleague"].id)})
    assert response.status_code == 403
    db.session.expire_all()
    assert db.session.get(Case, case.id).assigned_to_id == office["worker"].id


def test_taking_an_unassigned_case_and_not_one_already_taken(office, client):
    case = factories.make_case(office["ngo"])
    db.session.commit()
    login_session(client, office["colleague"])
    assert client.post(f"/cases/{case.id}/take").status_code == 302
    db.session.expire_all()
    assert db.session.get(Case, case.id).assigned_to_id == office["colleague"].id
    login_session(client, office["worker"])
    client.post(f"/cases/{case.id}/take")
    db.session.expire_all()
    assert db.session.get(Case, case.id).assigned_to_id == office["colleague"].id
    with pytest.raises(cases.AlreadyAssigned):
        cases.take(db.session.get(Case, case.id), office["worker"].id)
    assert count(AuditEvent, AuditEvent.action == "case.take") == 1
    mine_tab = client.get("/cases/?tab=mine").get_data(as_text=True)
    assert case.reference not in mine_tab


def test_my_cases_and_unassigned_tabs(office, client):
    hers = mine(office)
    nobody = factories.make_case(office["ngo"])
    db.session.commit()
    login_session(client, office["worker"])
    # A caseworker's case list opens on her cases; a supervisor's on the open ones.
    page = client.get("/cases/").get_data(as_text=True)
    assert hers.reference in page and nobody.reference not in page
    assert 'href="/cases/?tab=mine" aria-current="page"' in page
    page = client.get("/cases/?tab=nonsense").get_data(as_text=True)
    assert hers.reference in page and nobody.reference not in page
    page = client.get("/cases/?tab=open").get_data(as_text=True)
    assert hers.reference in page and nobody.reference in page
    login_session(client, office["supervisor"])
    page = client.get("/cases/").get_data(as_text=True)
    assert hers.reference in page and nobody.reference in page
    assert 'href="/cases/?tab=open" aria-current="page"' in page
    login_session(client, office["worker"])
    page = client.get("/cases/?tab=mine").get_data(as_text=True)
    assert hers.reference in page and nobody.reference not in page
    page = client.get("/cases/?tab=unassigned").get_data(as_text=True)
    assert nobody.reference in page and hers.reference not in page


def test_the_thresholds_come_from_the_environment():
    from config import TestingConfig

    config = TestingConfig({
        "HAVEN_QUEUE_UNANSWERED_SHELTER_HOURS": "6", "HAVEN_QUEUE_UNANSWERED_WORKING_DAYS": "3",
        "HAVEN_QUEUE_ARRIVAL_SHELTER_HOURS": "24", "HAVEN_QUEUE_ARRIVAL_OTHER_DAYS": "10",
        "HAVEN_QUEUE_ESCALATE_AFTER_HOURS": "12",
    })
    t = workqueue.Thresholds.from_config(vars(config))
    assert t == workqueue.Thresholds(timedelta(hours=6), 3, timedelta(hours=24),
                                     timedelta(days=10), timedelta(hours=12))
    assert workqueue.Thresholds.from_config(vars(TestingConfig({}))) == workqueue.Thresholds()


def test_close_reasons_feed_the_figures_before_and_after_erasure(office):
    from app.reports import figures

    ngo = office["ngo"]
    held = [mine(office) for _ in range(6)]
    for case in held:
        cases.close_case(case, "goals_met")
    erasure.erase_case(held[0], None, reason="retention")
    other = factories.make_org("ngo")
    cases.close_case(factories.make_case(other), "goals_met")
    db.session.commit()
    table = figures.close_reasons(ngo.id)
    row, column = table.rows.index("goals_met"), table.columns.index("tablet")
    assert table.cells[row][column] == 6  # 5 closed cases held + 1 erased statistic
    assert sum(map(sum, table.cells)) == 6  # the other organization's case is not counted
    assert figures.close_reasons(None).cells[row][column] == 7
