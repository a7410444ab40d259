"""Consent state, the consent × action matrix, and change_consent's effects (DESIGN §3)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings, strategies
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.cases import erasure
from app.consent import changes
from app.consent import service as consent
from app.core.extensions import db
from app.core.vocab import SERVICE_CATEGORIES
from app.models import AuditEvent, Case, Consent, DataKey, utcnow
from app.referrals import service as referrals
from app.sms import messaging
from tests import factories
from tests.conftest import login_session
from tests.test_intake import consent_form

SCOPES = factories.ALL_CONSENT_SCOPES
# A scope's state in the matrix: never asked, granted, withdrawn, granted but expired.
STATES = ("none", "granted", "withdrawn", "expired")


def expected(action: str, state: dict[str, str], do_not_text: bool = False) -> bool:
    """The rule written out independently of app.consent.permits."""
    def on(scope: str) -> bool:
        return state.get(scope) == "granted"

    if not on("store"):
        return False
    if action in ("store", "export"):
        return True
    if action == "sms":
        return on("contact_sms") and not do_not_text
    if action == "sms_explicit":
        return on("contact_sms") and on("explicit_wording") and not do_not_text
    if action == "share_identity":
        return on("share_identity")
    return on("share_" + action.split(":", 1)[1])


def set_states(case: Case, state: dict[str, str], now) -> None:
    validity = timedelta(days=365)
    for scope, kind in state.items():
        if kind == "none":
            continue
        if kind == "granted":
            rec = {"granted": True, "recorded_at": now - timedelta(days=1),
                       "expires_at": now + validity}
        elif kind == "withdrawn":
            # granted earlier, withdrawn later: the newest record decides
            db.session.add(Consent(case_id=case.id, scope=scope, granted=True, method="verbal",
                                   text_version="2026-11", language="en",
                                   recorded_at=now - timedelta(days=10),
                                   expires_at=now + validity))
            rec = {"granted": False, "recorded_at": now - timedelta(days=1), "expires_at": None}
        else:  # expired
            rec = {"granted": True, "recorded_at": now - timedelta(days=400),
                       "expires_at": now - timedelta(days=35)}
        db.session.add(Consent(case_id=case.id, scope=scope, method="verbal",
                               text_version="2026-11", language="en", **rec))
    db.session.flush()


def _matrix_states():
    """Every state of `store` × every state of each other scope, plus combinations where
    the other scope is the only one set (so a stray grant elsewhere cannot hide a bug)."""
    for store_state, (scope, other_state) in itertools.product(
        STATES, [(s, st) for s in SCOPES if s != "store" for st in STATES]
    ):
        yield {"store": store_state, scope: other_state}
    # sms_explicit needs two scopes at once
    for a, b in itertools.product(STATES, STATES):
        yield {"store": "granted", "contact_sms": a, "explicit_wording": b}


def test_matrix_every_consent_state_by_every_action(app):
    org = factories.make_org()
    now = utcnow()
    checked = 0
    for state in _matrix_states():
        case = factories.make_case(org, consents={})
        set_states(case, state, now)
        for action in consent.ACTIONS:
            want = expected(action, state)
            got = consent.permits(case, action, at=now)
            assert got is want, (state, action)
            checked += 1
    assert set(consent.ACTIONS) >= {
        "store", "sms", "share_identity", "export", *(f"share:{c}" for c in SERVICE_CATEGORIES)
    }
    assert checked > 300


def test_matrix_through_time_expiry_counts_as_withdrawn(app):
    org = factories.make_org()
    start = utcnow() - timedelta(days=500)
    case = factories.make_case(org, at=start)  # all granted 500 days ago, valid 365 days
    assert consent.permits(case, "share:shelter", at=start + timedelta(days=364))
    for action in consent.ACTIONS:
        assert consent.permits(case, action, at=start + timedelta(days=366)) is False
    state = consent.current_consents(case, start + timedelta(days=366))["store"]
    assert state.expired and not state.granted
    assert consent.has_consent(case, "store", at=start + timedelta(days=366)) is False


def test_do_not_text_blocks_sms_even_with_consent(app):
    case = factories.make_case(do_not_text=True)
    assert consent.permits(case, "share:legal")
    assert not consent.permits(case, "sms")
    assert not consent.permits(case, "sms_explicit")


def test_erased_case_permits_nothing(app):
    case = factories.make_case()
    erasure.erase_case(case, None)
    for action in consent.ACTIONS:
        assert not consent.permits(case, action)


def test_unknown_action_and_scope_raise(app):
    case = factories.make_case()
    with pytest.raises(ValueError, match="unknown action"):
        consent.permits(case, "share:weapons")
    with pytest.raises(ValueError, match="unknown consent scope"):
        consent.has_consent(case, "everything")


def test_change_consent_appends_and_newest_decides(app):
    user = factories.make_user("caseworker")
    case = factories.make_case(user.organization)
    before = db.session.query(Consent).filter_by(case_id=case.id).count()
    changes.change_consent(case, "share_legal", False, "verbal", user.id, language="en")
    assert not consent.permits(case, "share:legal")
    changes.change_consent(case, "share_legal", True, "verbal", user.id, language="en")
    assert consent.permits(case, "share:legal")
    assert db.session.query(Consent).filter_by(case_id=case.id).count() == before + 2
    actions = [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.seq)]
    assert actions[-2:] == ["consent.withdraw", "consent.grant"]
    new = db.session.query(Consent).filter_by(case_id=case.id).order_by(Consent.id.desc()).first()
    assert new.expires_at - new.recorded_at == app.config["CONSENT_VALIDITY"]
    assert new.recorded_by_id == user.id and new.text_version == consent.CURRENT_VERSION


def test_consent_records_are_append_only(app):
    case = factories.make_case()
    record = db.session.query(Consent).filter_by(case_id=case.id).first()
    record.granted = not record.granted
    with pytest.raises(ValueError, match="append-only"):
        db.session.flush()
    db.session.rollback()


def test_withdrawal_effects_run_at_once(app, monkeypatch):
    calls = []
    apply_withdrawal = changes.apply_withdrawal

    def effect(case, scope, actor_id, at):
        calls.append((case.id, scope, actor_id))
        apply_withdrawal(case, scope, actor_id, at)

    monkeypatch.setattr(changes, "apply_withdrawal", effect)
    user = factories.make_user("caseworker")
    case = factories.make_case(user.organization)
    changes.change_consent(case, "contact_sms", True, "verbal", user.id, language="en")
    assert calls == []  # grants have no effects
    changes.change_consent(case, "contact_sms", False, "sms", None, language="en")
    assert calls == [(case.id, "contact_sms", None)]


def test_withdrawing_store_erases_the_case(app, monkeypatch):
    hooks = []
    forget_cases = messaging.forget_cases

    def spy(case_ids):
        hooks.extend(case_ids)
        forget_cases(case_ids)

    # The erasure pipeline's first step, spied on: withdrawing store runs the whole pipeline.
    monkeypatch.setattr(messaging, "forget_cases", spy)
    user = factories.make_user("caseworker")
    case = factories.make_case(user.organization)
    key_id = case.data_key_id
    changes.change_consent(case, "store", False, "verbal", user.id, language="en")
    db.session.commit()
    assert hooks == [case.id]
    assert case.status == "erased"
    assert db.session.get(DataKey, key_id) is None
    assert db.session.query(Consent).filter_by(case_id=case.id).count() == 0
    with pytest.raises(consent.ConsentError):
        changes.change_consent(case, "store", True, "verbal", user.id, language="en")


def test_a_failing_effect_leaves_nothing_changed(app, monkeypatch):
    def boom(case, scope, actor_id, at):
        raise RuntimeError("provider unreachable")

    monkeypatch.setattr(referrals, "cancel_for_withdrawal", boom)
    case = factories.make_case()
    db.session.commit()
    case_id = case.id
    with pytest.raises(RuntimeError):
        changes.change_consent(case, "store", False, "verbal", None, language="en")
    db.session.rollback()
    case = db.session.get(Case, case_id)
    assert case.status == "open" and case.alias == "Rosa"
    assert consent.has_consent(case, "store")


def test_consent_text_falls_back_to_english_and_says_so(app):
    texts, shown = consent.texts_for("sw")
    english, shown_en = consent.texts_for("en")
    assert shown_en == "en"
    if texts == english:
        assert shown == "en"
    for scope in SCOPES:
        assert texts[scope]
    # every version names every scope
    for version, table in consent.CONSENT_TEXTS.items():
        assert set(table) == set(SCOPES), version


# --- grant, withdrawal, refusal (issue 13 item 12) -----------------------------------------


class WithdrawalSpy:
    """Wraps the withdrawal effects (``app.consent.changes.apply_withdrawal``): it records
    which scopes' effects ran, and runs them."""

    def __init__(self) -> None:
        self.scopes: list[str] = []
        self.original = changes.apply_withdrawal

    def __call__(self, case, scope, actor_id, at) -> None:
        self.scopes.append(scope)
        self.original(case, scope, actor_id, at)

    def __enter__(self) -> WithdrawalSpy:
        changes.apply_withdrawal = self  # type: ignore[assignment]
        return self

    def __exit__(self, *exc) -> None:
        changes.apply_withdrawal = self.original  # type: ignore[assignment]


def consent_actions(case) -> list[str]:
    return list(db.session.scalars(
        select(AuditEvent.action)
        .where(AuditEvent.object_type == "case", AuditEvent.object_id == str(case.id),
               AuditEvent.action.like("consent.%"))
        .order_by(AuditEvent.seq)
    ))


def test_no_to_a_scope_never_granted_is_a_refusal_without_withdrawal_effects(app):
    user = factories.make_user("caseworker")
    case = factories.make_case(user.organization, consents={"store": True})
    with WithdrawalSpy() as spy:
        refused = changes.change_consent(case, "share_legal", False, "verbal", user.id,
                                         language="en")
        assert refused.decision == "refuse" and not refused.granted
        assert spy.scopes == []
        state = consent.current_consents(case)["share_legal"]
        assert not state.granted and state.record is refused  # a refusal counts as "no"
        assert not consent.permits(case, "share:legal")

        granted = changes.change_consent(case, "share_legal", True, "verbal", user.id,
                                         language="en")
        assert granted.decision == "grant" and consent.permits(case, "share:legal")
        withdrawn = changes.change_consent(case, "share_legal", False, "verbal", user.id,
                                           language="en")
        assert withdrawn.decision == "withdraw" and spy.scopes == ["share_legal"]
        # Asked again after withdrawing, she says no again: nothing is in force to
        # withdraw, so that answer is a refusal (and its effects already ran).
        again = changes.change_consent(case, "share_legal", False, "verbal", user.id,
                                       language="en")
        assert again.decision == "refuse" and spy.scopes == ["share_legal"]
    assert consent_actions(case) == [
        "consent.refuse", "consent.grant", "consent.withdraw", "consent.refuse"]


def test_no_after_a_grant_expired_is_a_withdrawal_with_its_effects(app):
    start = utcnow() - timedelta(days=400)
    case = factories.make_case(consents={"store": True, "contact_sms": True}, at=start)
    assert consent.current_consents(case)["contact_sms"].expired
    with WithdrawalSpy() as spy:
        record = changes.change_consent(case, "contact_sms", False, "sms", None, language="en")
    assert record.decision == "withdraw" and spy.scopes == ["contact_sms"]


def test_no_to_store_on_a_case_without_a_store_grant_still_erases_it(app):
    """Unreachable from the views (a case is only made with `store`), but without `store`
    nothing may be kept (DESIGN §1.1), whatever the record is called."""
    case = factories.make_case(consents={})
    with WithdrawalSpy() as spy:
        record = changes.change_consent(case, "store", False, "verbal", None, language="en")
    assert record.decision == "refuse" and spy.scopes == []
    assert case.status == "erased"


def test_the_database_refuses_a_record_that_contradicts_itself(app):
    case = factories.make_case(consents={})
    base = {"case_id": case.id, "scope": "contact_sms", "method": "verbal",
            "text_version": consent.CURRENT_VERSION, "language": "en"}
    for wrong in ({"granted": False, "decision": "grant"},
                  {"granted": True, "decision": "refuse"},
                  {"granted": False, "decision": "maybe"}):
        db.session.add(Consent(**base, **wrong))
        with pytest.raises(IntegrityError):
            db.session.flush()
        db.session.rollback()
        case = factories.make_case(consents={})
        base["case_id"] = case.id


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(answers=strategies.lists(strategies.booleans(), min_size=1, max_size=6))
def test_any_sequence_of_answers_is_classified_and_the_newest_decides(app, answers):
    case = factories.make_case(consents={"store": True})
    start = utcnow() - timedelta(hours=1)
    try:
        with WithdrawalSpy() as spy:
            decisions = [
                changes.change_consent(
                    case, "contact_sms", yes, "verbal", None, language="en",
                    at=start + timedelta(minutes=i),
                ).decision
                for i, yes in enumerate(answers)
            ]
        # Written out independently: a yes is a grant; a no withdraws the grant just
        # before it, and is a refusal when there is none.
        expected_decisions = [
            "grant" if yes else ("withdraw" if i and answers[i - 1] else "refuse")
            for i, yes in enumerate(answers)
        ]
        assert decisions == expected_decisions
        assert spy.scopes == ["contact_sms"] * expected_decisions.count("withdraw")
        assert consent.has_consent(case, "contact_sms") is answers[-1]
        assert consent_actions(case)[-len(answers):] == [f"consent.{d}" for d in decisions]
    finally:
        db.session.rollback()


def test_unticked_scopes_at_intake_are_refusals(app, client):
    """The intake asks every scope once: a "no" there refuses something never given. It
    gets its own record and audit action, and no withdrawal effect runs."""
    user = factories.make_user("caseworker")
    db.session.commit()
    login_session(client, user)
    form = consent_form(scope_share_medical="no", scope_explicit_wording="no")
    with WithdrawalSpy() as spy:
        response = client.post("/cases/new", data=form)
    assert response.status_code == 302
    assert spy.scopes == []
    case = db.session.scalar(select(Case))
    decisions = {c.scope: c.decision for c in db.session.scalars(select(Consent))}
    assert decisions == {
        **dict.fromkeys(SCOPES, "grant"), "share_medical": "refuse", "explicit_wording": "refuse"
    }
    actions = consent_actions(case)
    assert actions.count("consent.refuse") == 2 and actions.count("consent.grant") == 7
    assert "consent.withdraw" not in actions

    # The case page's history says "refused", not "withdrawn".
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    history = page.split("Consent history", 1)[1].split("</details>", 1)[0]
    assert history.count(">Refused<") == 2 and "Withdrawn" not in history
    data = {"language": "en", "text_version": consent.CURRENT_VERSION, "method": "verbal",
            "scope": "share_legal", "decision": "withdraw"}
    assert client.post(f"/cases/{case.id}/consent", data=data).status_code == 302
    page = client.get(f"/cases/{case.id}").get_data(as_text=True)
    history = page.split("Consent history", 1)[1].split("</details>", 1)[0]
    assert history.count(">Withdrawn<") == 1 and history.count(">Refused<") == 2
    # "Withdraws" a scope she refused at intake (by text, so not a resend of the intake's
    # answer): still a refusal, and the page says so.
    data.update(scope="share_medical", method="sms")
    page = client.post(f"/cases/{case.id}/consent", data=data,
                       follow_redirects=True).get_data(as_text=True)
    assert "Recorded as a refusal" in page
    assert consent_actions(case)[-1] == "consent.refuse"
