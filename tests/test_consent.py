"""Consent state, the consent × action matrix, and change_consent's effects (DESIGN §3)."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from app import cases, consent
from app.extensions import db
from app.models import AuditEvent, Case, Consent, DataKey, utcnow
from app.vocab import SERVICE_CATEGORIES
from tests import factories

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
    cases.erase_case(case, None)
    for action in consent.ACTIONS:
        assert not consent.permits(case, action)


def test_unknown_action_and_scope_raise(app):
    case = factories.make_case()
    with pytest.raises(ValueError):
        consent.permits(case, "share:weapons")
    with pytest.raises(ValueError):
        consent.has_consent(case, "everything")


def test_change_consent_appends_and_newest_decides(app):
    user = factories.make_user("caseworker")
    case = factories.make_case(user.organization)
    before = db.session.query(Consent).filter_by(case_id=case.id).count()
    consent.change_consent(case, "share_legal", False, "verbal", user.id, language="en")
    assert not consent.permits(case, "share:legal")
    consent.change_consent(case, "share_legal", True, "verbal", user.id, language="en")
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


def test_withdrawal_effects_run_at_once(app):
    calls = []

    def effect(case, scope, actor_id, at):
        calls.append((case.id, scope, actor_id))

    consent.on_withdrawal(effect)
    try:
        user = factories.make_user("caseworker")
        case = factories.make_case(user.organization)
        consent.change_consent(case, "contact_sms", True, "verbal", user.id, language="en")
        assert calls == []  # grants have no effects
        consent.change_consent(case, "contact_sms", False, "sms", None, language="en")
        assert calls == [(case.id, "contact_sms", None)]
    finally:
        consent.WITHDRAWAL_EFFECTS.remove(effect)


def test_withdrawing_store_erases_the_case(app):
    hooks = []
    hook = cases.on_erasure(lambda case, actor, at: hooks.append(case.id))
    try:
        user = factories.make_user("caseworker")
        case = factories.make_case(user.organization)
        key_id = case.data_key_id
        consent.change_consent(case, "store", False, "verbal", user.id, language="en")
        db.session.commit()
        assert hooks == [case.id]
        assert case.status == "erased"
        assert db.session.get(DataKey, key_id) is None
        assert db.session.query(Consent).filter_by(case_id=case.id).count() == 0
        with pytest.raises(consent.ConsentError):
            consent.change_consent(case, "store", True, "verbal", user.id, language="en")
    finally:
        # Only this test's hook: the SMS outbox and referrals register theirs at import.
        cases.ERASURE_HOOKS.remove(hook)


def test_a_failing_effect_leaves_nothing_changed(app):
    def boom(case, scope, actor_id, at):
        raise RuntimeError("provider unreachable")

    consent.on_withdrawal(boom)
    try:
        case = factories.make_case()
        db.session.commit()
        case_id = case.id
        with pytest.raises(RuntimeError):
            consent.change_consent(case, "store", False, "verbal", None, language="en")
        db.session.rollback()
        case = db.session.get(Case, case_id)
        assert case.status == "open" and case.alias == "Rosa"
        assert consent.has_consent(case, "store")
    finally:
        consent.WITHDRAWAL_EFFECTS.remove(boom)


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
