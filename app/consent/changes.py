"""What happens when a survivor's consent changes (DESIGN §3): the one function that records
an answer, and the effects of a withdrawal, in order, in one place.

* every withdrawal (explicit, not expiry: the retention run applies an expiry's effects with
  ``apply_withdrawal``) has these effects, in this order —
  1. ``contact_sms`` or ``store``: the survivor's queued SMS are cancelled
     (``app.sms.messaging.cancel_queued``);
  2. ``share_<category>``: open referrals of that category are cancelled and the provider is
     told by code (``app.referrals.service.cancel_for_withdrawal``).
  Nothing here commits; a failing step raises and the caller rolls the whole change back.
* withdrawing ``store`` then erases the case (``app.cases.erasure``). So does refusing it:
  without ``store`` nothing may be kept (DESIGN §1.1), whatever the record is called.

What a state of consent permits is ``app.consent.service``.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app

from app.cases import erasure
from app.consent.service import (
    CONSENT_TEXTS,
    CURRENT_VERSION,
    ConsentError,
    decision_for,
)
from app.core import audit
from app.core.extensions import db
from app.models.base import utcnow
from app.models.cases import CONSENT_METHODS, CONSENT_SCOPES, Case, Consent, ConsentSignature
from app.referrals import service as referrals
from app.sms import messaging


def change_consent(
    case: Case,
    scope: str,
    granted: bool,
    method: str,
    actor_id: int | None,
    *,
    language: str,
    text_version: str = CURRENT_VERSION,
    signature: ConsentSignature | None = None,
    at: datetime | None = None,
) -> Consent:
    """Record the survivor's answer for ``scope`` — a grant, a withdrawal or a refusal
    (``decision_for``) — and apply its effects now (DESIGN §3). Never commits: the record
    joins the session's pending changes and is flushed by the next query or the commit.
    ``actor_id`` is the staff user (None for the SMS hotline)."""
    if scope not in CONSENT_SCOPES:
        raise ConsentError("unknown scope")
    if method not in CONSENT_METHODS:
        raise ConsentError("unknown method")
    if text_version not in CONSENT_TEXTS:
        raise ConsentError("unknown consent text version")
    if case.status == "erased":
        raise ConsentError("the case was erased")
    at = at or utcnow()
    decision = decision_for(case, scope, granted, at)
    validity = current_app.config["CONSENT_VALIDITY"]
    record = Consent(
        case=case,
        scope=scope,
        granted=granted,
        decision=decision,
        method=method,
        text_version=text_version,
        language=language,
        recorded_by_id=actor_id,
        recorded_at=at,
        expires_at=at + validity if granted else None,
        signature=signature,
    )
    db.session.add(record)  # a grant is flushed with the caller's other changes
    audit.record(
        f"consent.{decision}", "case", case.id,
        actor_user_id=actor_id, actor_org_id=case.organization_id if actor_id else None,
    )
    if not granted:
        db.session.flush()  # the effects below may read or bulk-delete consent rows
    if decision == "withdraw":
        apply_withdrawal(case, scope, actor_id, at)
    if not granted and scope == "store":
        erasure.erase_case(case, actor_id, reason="consent_withdrawn", at=at)
    return record


def apply_withdrawal(case: Case, scope: str, actor_id: int | None, at: datetime) -> None:
    """The effects of withdrawing ``scope`` (the module docstring's list, in its order)."""
    if scope in ("contact_sms", "store"):
        messaging.cancel_queued(case_ids=[case.id])
    referrals.cancel_for_withdrawal(case, scope, actor_id, at)
