"""Who an audit event names (issue 14 §12). Without an actor argument, ``audit.record``
names the signed-in user; an explicit actor — ``audit.SYSTEM`` (nobody: a worker, retention,
the hotline) or a user id passed through — is kept as given, even inside a request where
somebody else is signed in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask_login import login_user
from sqlalchemy import select

from app.consent import changes
from app.core import audit
from app.core.extensions import db
from app.models import AuditEvent, Case, User, utcnow
from app.referrals import service as referrals
from tests import factories


def events(action: str) -> list[AuditEvent]:
    return list(
        db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)
                           .order_by(AuditEvent.seq))
    )


@pytest.fixture
def signed_in(app: Flask) -> Iterator[User]:
    """A request in which a caseworker is signed in (as in a view)."""
    user = factories.make_user("caseworker")
    db.session.commit()
    with app.test_request_context("/"):
        login_user(user)
        yield user


def test_no_actor_argument_names_the_signed_in_user(signed_in: User) -> None:
    audit.record("case.view", "case", 1)
    [event] = events("case.view")
    assert event.actor_user_id == signed_in.id
    assert event.actor_org_id == signed_in.organization_id


@pytest.mark.parametrize("nobody", [audit.SYSTEM, None], ids=["SYSTEM", "None"])
def test_an_explicit_nobody_is_never_replaced_by_the_signed_in_user(
    signed_in: User, nobody: Any
) -> None:
    audit.record("retention.run", "retention_run", 1, actor_user_id=nobody)
    [event] = events("retention.run")
    assert event.actor_user_id is None and event.actor_org_id is None


def test_an_actor_passed_through_is_kept_with_its_organization(signed_in: User) -> None:
    other = factories.make_user("caseworker")
    audit.record("case.view", "case", 1, actor_user_id=other.id)
    [event] = events("case.view")
    assert event.actor_user_id == other.id
    assert event.actor_org_id == other.organization_id


def test_a_consent_withdrawn_by_sms_names_nobody(signed_in: User) -> None:
    """The hotline (and Twilio's 21610) withdraw consent with no actor: the caseworker who
    happens to be signed in (the hotline simulator) did not act."""
    case = factories.make_case(signed_in.organization)
    referral = factories.make_referral(case, factories.make_service(category="shelter"))
    changes.change_consent(case, "share_shelter", False, "sms", None, language="en")
    [withdrawal] = events("consent.withdraw")
    [cancelled] = events("referral.cancel")
    assert cancelled.object_id == str(referral.id)
    assert withdrawal.actor_user_id is None and cancelled.actor_user_id is None
    assert cancelled.actor_org_id is None


def test_referral_expiry_names_nobody(signed_in: User) -> None:
    referral = factories.make_referral(factories.make_case(signed_in.organization))
    referral.hold_expires_at = utcnow() - timedelta(minutes=1)
    db.session.flush()
    assert referrals.expire_due().expired == 1
    [expired] = events("referral.expire")
    assert expired.actor_user_id is None and expired.actor_org_id is None


def test_a_referral_change_names_the_actor_it_was_given(signed_in: User) -> None:
    """``referrals._audit`` used to drop its actor and name whoever was signed in."""
    provider = factories.make_user("provider")
    service = factories.make_service(organization=provider.organization, category="legal")
    referral = factories.make_referral(
        factories.make_case(signed_in.organization, needs={"legal": "soon"}), service
    )
    referrals.accept(referral, provider.id)
    [accepted] = events("referral.accept")
    assert accepted.actor_user_id == provider.id
    assert accepted.actor_org_id == provider.organization_id
    referrals.record_outcome(referral, "no_show", None)
    [no_show] = events("referral.no_show")
    assert no_show.actor_user_id is None


def test_a_message_event_of_the_worker_names_nobody(signed_in: User) -> None:
    from app.models import Message
    from app.sms import messaging

    case = factories.make_case(signed_in.organization)
    message = Message(case_id=case.id, direction="out", template_key="survivor.referral_accepted")
    db.session.add(message)
    db.session.flush()
    messaging.audit_send(message, "sms.send")
    [sent] = events("sms.send")
    assert sent.actor_user_id is None


def test_the_hotline_names_nobody_even_with_someone_signed_in(signed_in: User) -> None:
    """A whole conversation (new case, consents, area, FORGET) run inside a request where a
    caseworker is signed in, as a hotline simulator would: no event names her."""
    from app.sms import hotline
    from tests.sms_support import new_sid

    factories.make_org("ngo", name="Hotline NGO")
    factories.make_area("Harbour")
    db.session.flush()
    phone = "+14155550177"
    for body in ("hello", "1", "Yes", "1", "1"):
        hotline.handle_inbound(new_sid(), phone, body)
    case = db.session.scalar(select(Case))
    case.status, case.closed_at = "closed", utcnow()  # closed: the next text reopens it
    db.session.flush()
    for body in ("hello again", "FORGET"):
        hotline.handle_inbound(new_sid(), phone, body)
    recorded = list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.seq)))
    actions = {e.action for e in recorded}
    assert {"case.create", "consent.grant", "case.needs_update", "case.reopen",
            "sms.forget"} <= actions, actions
    assert [e.action for e in recorded if e.actor_user_id is not None] == []
