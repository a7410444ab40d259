"""Drafts (issue 13 item 14): an intake on the tablet that recorded consent but no profile
yet. Listed on their own (case list tab, caseworker's home page), discarded by a caseworker
after confirming or by retention once untouched for HAVEN_RETENTION_DRAFT_HOURS; a discarded
draft is erased like any case and leaves one de-identified count."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from app.cases import erasure
from app.cases import service as cases
from app.core import audit
from app.core.extensions import db
from app.models import AuditEvent, Case, CaseStatistic, Consent, ConsentSignature, DataKey
from app.reports import figures
from app.retention import service as retention
from tests import factories
from tests.conftest import login_session
from tests.test_intake import consent_form, png_data_url

T0 = datetime(2020, 3, 15, 10, 0, tzinfo=UTC)


def count(model, *where) -> int:
    return int(db.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def actions(case_id: int) -> list[str]:
    return list(db.session.scalars(
        select(AuditEvent.action)
        .where(AuditEvent.object_type == "case", AuditEvent.object_id == str(case_id))
        .order_by(AuditEvent.seq)
    ))


@pytest.fixture
def worker(app, client):
    user = factories.make_user("caseworker")
    db.session.commit()
    login_session(client, user)
    return user


def start_intake(client, token_tag: str, *, signature: bool = False) -> Case:
    """The consent step only, as a caseworker who then walks away."""
    form = consent_form(token="tok_" + token_tag * 30, method="written" if signature else "verbal",
                        signature=png_data_url() if signature else "")
    response = client.post("/cases/new", data=form)
    assert response.status_code == 302 and response.headers["Location"].endswith("/profile")
    return db.session.scalar(select(Case).order_by(Case.id.desc()))


def make_draft(org, at=T0, **fields):
    """A draft as the consent step leaves it: consent records, no profile, no needs."""
    case = factories.make_case(org, at=at, updated_at=at, alias=None, phone=None, note=None,
                               needs={}, **fields)
    # One statement, so that updated_at stays ``at`` (the ORM's onupdate would make it now).
    db.session.execute(
        update(Case).where(Case.id == case.id)
        .values(profile_completed_at=None, area_id=None, age_band=None, updated_at=at)
    )
    db.session.expire(case)
    return case


# --- listing ------------------------------------------------------------------------------


def test_drafts_are_listed_on_their_own_not_among_open_cases(worker, client):
    draft = start_intake(client, "d")
    finished = factories.make_case(worker.organization, alias="Finished One")
    sms = factories.make_case(worker.organization, alias=None, channel="sms", needs={})
    sms.profile_completed_at = None
    elsewhere = make_draft(factories.make_org(), at=datetime.now(UTC))
    db.session.commit()

    open_tab = client.get("/cases/?tab=open").get_data(as_text=True)
    assert finished.reference in open_tab and draft.reference not in open_tab
    assert "Open (2)" in open_tab  # the finished case and the SMS case, not the draft
    assert "Drafts (1)" in open_tab
    drafts_tab = client.get("/cases/?tab=drafts").get_data(as_text=True)
    assert draft.reference in drafts_tab
    for absent in (finished.reference, sms.reference, elsewhere.reference):
        assert absent not in drafts_tab
    assert f'href="/cases/{draft.id}/profile"' in drafts_tab
    assert f'href="/cases/{draft.id}/discard"' in drafts_tab
    assert "(profile not yet recorded)" not in drafts_tab
    # The SMS queue is the hotline's, not drafts.
    assert sms.reference in client.get("/cases/?tab=sms").get_data(as_text=True)

    # Once the profile is recorded it is an open case like any other.
    data = {"alias": "Mira", "phone": "", "language": "en", "age_band": "18_24",
            "area_id": str(factories.make_area().id)}
    db.session.commit()
    assert client.post(f"/cases/{draft.id}/profile", data=data).status_code == 302
    assert draft.reference in client.get("/cases/?tab=open").get_data(as_text=True)
    assert draft.reference not in client.get("/cases/?tab=drafts").get_data(as_text=True)


def test_the_caseworkers_home_page_lists_drafts_to_finish_or_discard(worker, client):
    assert "Drafts to finish or discard" not in client.get("/").get_data(as_text=True)
    draft = start_intake(client, "h")
    make_draft(factories.make_org(), at=datetime.now(UTC))  # another organization's
    db.session.commit()
    home = client.get("/").get_data(as_text=True)
    assert "Drafts to finish or discard" in home
    assert draft.reference in home
    assert f'href="/cases/{draft.id}/profile"' in home
    assert f'href="/cases/{draft.id}/discard"' in home
    assert home.count('/discard"') == 1


# --- discarding by hand -------------------------------------------------------------------


def test_discarding_a_draft_asks_first_then_erases_it_and_keeps_a_count(worker, client):
    draft = start_intake(client, "x", signature=True)
    key_id = draft.data_key_id
    assert key_id is not None and count(ConsentSignature) == 1
    page = client.get(f"/cases/{draft.id}/discard")
    assert page.status_code == 200 and b'method="post"' in page.data
    assert db.session.get(Case, draft.id).status == "open"  # asking changed nothing

    response = client.post(f"/cases/{draft.id}/discard", follow_redirects=True)
    assert response.status_code == 200 and b"Draft discarded" in response.data
    db.session.expire_all()
    case = db.session.get(Case, draft.id)
    assert case.status == "erased"
    assert count(Consent) == 0 and count(ConsentSignature) == 0
    assert db.session.get(DataKey, key_id) is None
    [stat] = db.session.scalars(select(CaseStatistic)).all()
    assert (stat.reason, stat.channel, stat.organization_id) == (
        "draft_discarded", "tablet", worker.organization_id)
    assert actions(draft.id)[-2:] == ["case.discard_draft", "case.erase"]
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "case.discard_draft"))
    assert event.actor_user_id == worker.id
    assert audit.verify_chain().ok

    # A second tap: nothing more happens.
    again = client.post(f"/cases/{draft.id}/discard")
    assert again.status_code == 302
    assert count(CaseStatistic) == 1 and actions(draft.id).count("case.erase") == 1


def test_a_case_with_a_profile_is_not_a_draft_and_is_not_discarded(worker, client):
    case = factories.make_case(worker.organization)
    db.session.commit()
    for method in ("get", "post"):
        response = getattr(client, method)(f"/cases/{case.id}/discard", follow_redirects=True)
        assert response.status_code == 200 and b"not a draft" in response.data, method
    db.session.expire_all()
    assert db.session.get(Case, case.id).status == "open" and count(CaseStatistic) == 0
    assert "case.discard_draft" not in actions(case.id)
    with pytest.raises(cases.NotADraft):
        erasure.discard_draft(case, worker.id)


def test_discarding_reads_the_case_again_so_a_profile_saved_meanwhile_is_kept(app):
    """The caseworker's page loaded the draft; its profile was saved (elsewhere) before the
    discard arrived. The discard decides on the row as it is now, not as it was loaded."""
    draft = make_draft(factories.make_org(), at=datetime.now(UTC))
    db.session.commit()
    assert draft.is_draft
    db.session.execute(  # behind the session's back, as another request's commit would be
        update(Case).where(Case.id == draft.id)
        .values(profile_completed_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    assert draft.is_draft  # what this session loaded
    with pytest.raises(cases.NotADraft):
        erasure.discard_draft(draft, None)
    db.session.rollback()
    assert db.session.get(Case, draft.id).status == "open" and count(CaseStatistic) == 0


def test_the_case_page_of_a_draft_offers_to_discard_it(worker, client):
    draft = start_intake(client, "p")
    page = client.get(f"/cases/{draft.id}").get_data(as_text=True)
    assert f'href="/cases/{draft.id}/discard"' in page
    finished = factories.make_case(worker.organization)
    db.session.commit()
    assert "/discard" not in client.get(f"/cases/{finished.id}").get_data(as_text=True)


# --- retention ----------------------------------------------------------------------------


def test_retention_discards_drafts_untouched_for_the_period(app):
    org = factories.make_org()
    idle = make_draft(org)
    touched = make_draft(org)
    audit.record("case.view", "case", touched.id, at=T0 + timedelta(hours=20))
    consented = make_draft(org)
    db.session.add(Consent(case_id=consented.id, scope="contact_sms", granted=False,
                           decision="refuse", method="verbal", text_version="2026-11",
                           language="en", recorded_at=T0 + timedelta(hours=30)))
    finished = factories.make_case(org, at=T0, updated_at=T0)
    hotline = make_draft(org, channel="sms")
    db.session.commit()

    due = T0 + timedelta(hours=24)
    assert {r.name: r.count for r in retention.preview(due - timedelta(seconds=1))}[
        "drafts"] == 0
    assert {r.name: r.count for r in retention.preview(due)}["drafts"] == 1
    report = retention.run(due + timedelta(seconds=1))
    db.session.expire_all()
    assert {r.name: r.count for r in report.results}["drafts"] == 1
    assert db.session.get(Case, idle.id).status == "erased"
    for kept in (touched, consented, finished, hotline):
        assert db.session.get(Case, kept.id).status == "open"
    assert actions(idle.id)[-2:] == ["case.discard_draft", "case.erase"]
    [stat] = db.session.scalars(select(CaseStatistic)).all()
    assert stat.reason == "draft_discarded"

    # The one looked at later goes 24 hours after that look; the one with a later consent
    # record 24 hours after it.
    later = {r.name: r for r in retention.preview(T0 + timedelta(hours=60))}["drafts"]
    assert later.count == 2
    assert later.oldest_due == T0 + timedelta(hours=44)
    retention.run(T0 + timedelta(hours=60))
    db.session.expire_all()
    assert db.session.get(Case, touched.id).status == "erased"
    assert db.session.get(Case, consented.id).status == "erased"
    assert db.session.get(Case, finished.id).status == "open"
    assert db.session.get(Case, hotline.id).status == "open"
    assert audit.verify_chain().ok


def test_the_draft_period_comes_from_the_environment():
    from config import TestingConfig
    from tests.conftest import TEST_ENV

    assert timedelta(hours=24) == TestingConfig(dict(TEST_ENV)).RETENTION_DRAFT
    config = TestingConfig(dict(TEST_ENV, HAVEN_RETENTION_DRAFT_HOURS="6"))
    assert timedelta(hours=6) == config.RETENTION_DRAFT


def test_retention_and_a_caseworker_leave_the_same_after_discarding(app):
    org = factories.make_org()
    by_hand, by_rule = make_draft(org), make_draft(org)
    db.session.commit()
    erasure.discard_draft(by_hand, None, at=T0 + timedelta(days=2))
    db.session.commit()
    retention.run(T0 + timedelta(days=2))
    db.session.expire_all()

    def left(case_id: int) -> tuple:
        case = db.session.get(Case, case_id)
        return (case.status, case.alias_enc, case.data_key_id, case.idempotency_key,
                case.area_id, case.language, actions(case_id)[-2:])

    assert left(by_hand.id) == left(by_rule.id)
    stats = db.session.scalars(select(CaseStatistic)).all()
    assert [(s.reason, s.month) for s in stats] == [("draft_discarded", date(2020, 3, 1))] * 2


# --- figures ------------------------------------------------------------------------------


def test_drafts_are_not_counted_as_people_helped_before_or_after_discarding(app):
    org = factories.make_org()
    now = datetime.now(UTC)
    month = now.strftime("%Y-%m")
    column = ["tablet", "sms", "anonymous"].index("tablet")
    for _ in range(5):
        factories.make_case(org, needs={"legal": "soon"})
    drafts = [make_draft(org, at=now) for _ in range(3)]
    db.session.commit()

    def tablet_cases() -> int:
        table = figures.cases_by_month(org.id)
        return table.cells[table.rows.index(month)][column]

    assert tablet_cases() == 5
    for draft in drafts:
        erasure.discard_draft(draft, None)
    db.session.commit()
    assert tablet_cases() == 5
    assert count(CaseStatistic, CaseStatistic.reason == "draft_discarded") == 3
