"""Referrals that respect consent: releases, bed holds, the provider's view and a closed
loop (DESIGN §1–3, issue 5).

Domain functions flush, never commit: the view, CLI command or SMS webhook owns the
transaction. Every status change writes, in that same transaction, its audit event and the
outbox messages it causes, so a rollback leaves neither behind.

Sending (``create_referrals``). One step may refer one case to several services (shelter +
legal + medical); all are made or none. Each is checked *at that moment* against consent
(``permits(case, "share:<category>")``) and a valid release naming that one organization;
otherwise a ``ReferralError`` subclass with a translated reason is raised and nothing is
written. A form token makes a resent form find the referrals it already made.

What the provider sees (``provider_view``). ONE function decides the fields shown, used by
the caseworker's preview and by the provider portal (``referral_view``), so the two cannot
differ: the reference code, the need of the referral's own category with its urgency (a
shelter never learns of a legal or medical need), age band, language, children,
accessibility; alias and phone only with ``share_identity``, and with the phone always her
contact rules (do not text, no voicemail, safe hours in her zone). The portal reads the
values at the moment of viewing and shows them only while the release is valid and the
consent still allows; otherwise the code alone.

Bed holds. A referral to a shelter whose capacity is tracked takes one bed at once with a
conditional ``UPDATE service SET beds_available = beds_available - 1 WHERE id = :id AND
beds_available > 0`` and checks the row count: on PostgreSQL concurrent senders queue on the
row lock and re-check the condition after the winner commits; on SQLite writers are
serialised (``BEGIN IMMEDIATE``). So a shelter is never overbooked. Accepting keeps the
hold; decline, expiry, cancellation and a no-show give the bed back (at most once: every
status change is a compare-and-set on the old status); an arrival uses it. One survivor
holds one bed: a shelter's acceptance (or her arrival at one) cancels her case's other open
shelter referrals at once (``placed_elsewhere``), giving their beds back.

Capacity rule (providers and holds never fight): ``beds_available`` means "free for new
referrals". A provider's update *sets* that number through ``app.capacity.set_beds`` (the
one rule: 0 <= free, free + held <= total); beds held for open Haven referrals are not part
of it (the portal shows them apart), so an update neither cancels holds nor is undone by
them. A returned hold adds its bed back, never above ``beds_total``.

Expiry (``expire_due``). A pending referral with no answer is flagged ``REFERRAL_FLAG_BEFORE``
before its window (``REFERRAL_HOLD``, default 4 h) ends — the provider is reminded and the
caseworker sees it flagged — and expires at the end, giving its bed back.

Consent. Withdrawing ``share_<category>`` cancels the case's open referrals of that category;
withdrawing a release cancels the open referrals resting on it; erasure cancels every open
referral first. The provider is told by code only.

Lock order (no deadlocks on PostgreSQL): the audit chain's lock first (``audit.lock()``),
then referral rows, then service rows. Every audited transaction takes the audit lock
anyway; taking it first means a consent withdrawal (which audits, then cancels referrals
and gives beds back) and a referral being sent to the same shelter queue instead of
deadlocking. Provider bed updates (directory, BEDS by SMS) take it first too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from flask import current_app
from flask_babel import LazyString
from flask_babel import lazy_gettext as _l
from sqlalchemy import delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.cases.service import (
    CaseError,
    check_signature,
    new_reference,
    normalize_reference,
    store_signature,
)
from app.consent import safe_hours
from app.consent.service import ConsentState, current_consents, permits
from app.core import audit
from app.core.crypto import format_phone
from app.core.database import any_of
from app.core.extensions import db
from app.core.vocab import (
    AGE_BAND_LABELS,
    CATEGORY_LABELS,
    SURVIVOR_LANGUAGE_LABELS,
    URGENCY_LABELS,
)
from app.models.base import utcnow
from app.models.cases import Case
from app.models.directory import Service
from app.models.referrals import (
    DECLINE_REASONS,
    OPEN_STATUSES,
    RELEASE_METHODS,
    Referral,
    Release,
)
from app.models.retention import ReferralStatistic
from app.sms import messaging

# --- errors -----------------------------------------------------------------------------


class ReferralError(ValueError):
    """A referral that may not be made or changed; ``message`` is translated for the user."""

    default = _l("This referral cannot be made.")

    def __init__(self, message: Any = None, *, service_id: int | None = None) -> None:
        self.message = message if message is not None else self.default
        self.service_id = service_id
        super().__init__(type(self).__name__)


class NoConsent(ReferralError):
    default = _l("The survivor has not consented to share with this kind of service.")


class NoRelease(ReferralError):
    default = _l("There is no valid release for this organization.")


class NoBedFree(ReferralError):
    default = _l("This shelter has no free bed now.")


class NotReferable(ReferralError):
    default = _l("This case or service cannot receive a referral now.")


class BadRelease(ReferralError):
    default = _l("The release is not complete.")


class BadTransition(ReferralError):
    default = _l("This referral cannot be changed that way now.")


# --- configuration ------------------------------------------------------------------------


def hold_window() -> timedelta:
    return current_app.config["REFERRAL_HOLD"]  # type: ignore[no-any-return]


def release_validity() -> timedelta:
    return current_app.config["RELEASE_VALIDITY"]  # type: ignore[no-any-return]


def flag_before() -> timedelta:
    return current_app.config["REFERRAL_FLAG_BEFORE"]  # type: ignore[no-any-return]


# --- releases -----------------------------------------------------------------------------


def valid_release(case: Case, organization_id: int, at: datetime | None = None) -> Release | None:
    """The release in force for ``organization_id`` at ``at`` (the one lasting longest)."""
    at = at or utcnow()
    return db.session.scalars(
        select(Release)
        .where(
            Release.case_id == case.id,
            Release.organization_id == organization_id,
            Release.withdrawn_at.is_(None),
            Release.granted_at <= at,
            Release.expires_at > at,
        )
        .order_by(Release.expires_at.desc(), Release.id.desc())
        .limit(1)
    ).first()


@dataclass(frozen=True)
class ReleaseSpec:
    """A release the caseworker is recording now, for one organization."""

    organization_id: int
    method: str
    signature: str | None = None  # PNG data URL, written releases only
    days: int | None = None  # default RELEASE_VALIDITY


def check_release_spec(spec: ReleaseSpec) -> None:
    """Raise ``BadRelease`` unless the spec can be recorded (no writes)."""
    if spec.method not in RELEASE_METHODS:
        raise BadRelease(_l("Choose how the survivor gave the release."))
    top = release_validity().days
    if spec.days is not None and not 1 <= spec.days <= top:
        raise BadRelease(_l("A release lasts from 1 to %(days)s days.", days=top))
    if spec.method == "written":
        try:
            check_signature(spec.signature or "")
        except CaseError as exc:
            raise BadRelease(_l("Ask the survivor to sign the release in the box.")) from exc


def record_release(
    case: Case, spec: ReleaseSpec, actor_id: int | None, *, at: datetime | None = None
) -> Release:
    """Record the survivor's release to one organization (flush, audit, no commit)."""
    at = at or utcnow()
    if case.is_erased or case.status != "open" or not permits(case, "store", at):
        raise NotReferable()
    check_release_spec(spec)
    days = spec.days if spec.days is not None else release_validity().days
    signature = store_signature(case, spec.signature or "") if spec.method == "written" else None
    release = Release(
        case_id=case.id,
        organization_id=spec.organization_id,
        method=spec.method,
        signature_id=signature.id if signature is not None else None,
        recorded_by_id=actor_id,
        granted_at=at,
        expires_at=at + timedelta(days=days),
    )
    db.session.add(release)
    db.session.flush()
    audit.record("release.grant", "case", case.id)
    return release


def withdraw_release(
    release: Release, actor_id: int | None, *, at: datetime | None = None
) -> list[Referral]:
    """The survivor withdraws a release: it stops at once, and the open referrals resting
    on it are cancelled (provider told by code only). Returns those referrals."""
    at = at or utcnow()
    if release.withdrawn_at is not None:
        return []
    cancelled = [
        r
        for r in _open_referrals(Referral.release_id == release.id)
        if cancel(r, actor_id, reason="release_withdrawn", at=at)
    ]
    release.withdrawn_at = at
    release.withdrawn_by_id = actor_id
    db.session.flush()
    audit.record("release.withdraw", "case", release.case_id)
    return cancelled


# --- what the provider sees -----------------------------------------------------------------

BASE_FIELDS = ("reference", "needs", "age_band", "language", "children", "accessibility")
IDENTITY_FIELDS = ("alias", "phone")
ALL_FIELDS = BASE_FIELDS + IDENTITY_FIELDS
FIELD_LABELS = {
    "reference": _l("Referral code"),
    "needs": _l("Needs"),
    "age_band": _l("Age range"),
    "language": _l("Language"),
    "children": _l("Children with the survivor"),
    "accessibility": _l("Needs an accessible service"),
    "alias": _l("Name (chosen by the survivor)"),
    "phone": _l("Phone"),
}


@dataclass(frozen=True)
class SharedField:
    name: str
    label: str
    value: str


@dataclass(frozen=True)
class ProviderView:
    """Exactly what a provider sees of one referral (or will see, in the preview)."""

    code: str | None
    category: str
    fields: tuple[SharedField, ...]
    withheld: bool = False  # release or consent no longer allow: the code alone
    # Her contact rules, shown next to her phone (only when the phone is shown).
    contact: safe_hours.ContactRules | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


def fields_allowed(
    case: Case,
    category: str,
    at: datetime | None = None,
    states: dict[str, ConsentState] | None = None,
) -> tuple[str, ...]:
    """Names of the fields consent allows a ``category`` service to see now (consent only:
    the release is checked by the callers)."""
    if case.is_erased:
        return ()
    states = states if states is not None else current_consents(case, at)
    if not permits(case, f"share:{category}", at, states=states):
        return ()
    if permits(case, "share_identity", at, states=states):
        return ALL_FIELDS
    return BASE_FIELDS


def shared_needs(
    case: Case,
    category: str,
    at: datetime | None = None,
    states: dict[str, ConsentState] | None = None,
) -> list[tuple[str, str | None]]:
    """(category, urgency) of the needs a ``category`` provider is told of: the case's needs
    of that category only, with their urgency — a shelter does not learn of a legal or
    medical need, even one the survivor agreed to share with legal or medical services.
    The category alone (urgency None) when no need of it was recorded; nothing without
    consent to share with that category. The portal, the caseworker's preview and the
    referral SMS all read this."""
    states = states if states is not None else current_consents(case, at)
    if not permits(case, f"share:{category}", at, states=states):
        return []
    return [(n.category, n.urgency) for n in case.needs if n.category == category] or [
        (category, None)
    ]


def needs_param(needs: Sequence[tuple[str, str | None]]) -> str:
    """``shared_needs`` as the referral SMS's "needs" parameter ("shelter:immediate")."""
    return ",".join(f"{c}:{u}" if u else c for c, u in needs)


def provider_view(
    case: Case,
    category: str,
    *,
    code: str | None,
    at: datetime | None = None,
    only: Iterable[str] | None = None,
) -> ProviderView:
    """The fields a ``category`` provider sees of ``case`` now, limited to ``only`` (a
    referral's snapshot). Used for the preview (``code=None``) and the portal."""
    states = current_consents(case, at) if not case.is_erased else {}
    names = fields_allowed(case, category, at, states)
    if only is not None:
        keep = set(only)
        names = tuple(n for n in names if n in keep)
    values: dict[str, str] = {}
    contact = None
    for name in names:
        if name == "reference":
            values[name] = code or str(_l("given when the referral is sent"))
        elif name == "needs":
            values[name] = (
                "; ".join(
                    f"{CATEGORY_LABELS[c]}: {URGENCY_LABELS[u]}" if u else str(CATEGORY_LABELS[c])
                    for c, u in shared_needs(case, category, at, states)
                )
                or "—"
            )
        elif name == "age_band":
            values[name] = str(AGE_BAND_LABELS.get(case.age_band or "", "—"))
        elif name == "language":
            values[name] = SURVIVOR_LANGUAGE_LABELS.get(case.language or "", "—")
        elif name == "children":
            values[name] = str(case.children_accompanying or 0)
        elif name == "accessibility":
            values[name] = str(_l("Yes") if case.accessibility else _l("No"))
        elif name == "alias":
            values[name] = case.alias or "—"
        elif name == "phone":
            phone = case.phone
            values[name] = format_phone(phone) if phone else "—"
            if phone:
                contact = safe_hours.contact_rules(
                    case, current_app.config["HAVEN_DEFAULT_TIMEZONE"]
                )
    fields = tuple(SharedField(n, str(FIELD_LABELS[n]), values[n]) for n in names)
    return ProviderView(
        code=code, category=category, fields=fields, withheld=not fields, contact=contact
    )


def referral_view(referral: Referral, at: datetime | None = None) -> ProviderView:
    """What the recipient provider may see of ``referral`` now: the snapshot's fields while
    the referral is live, its release valid and the consent still allowing; else the code."""
    at = at or utcnow()
    code_only = ProviderView(referral.code, referral.category, (), withheld=True)
    if referral.status in ("declined", "expired", "cancelled"):
        return code_only
    case = referral.case
    if case is None or case.is_erased or not referral.release.valid_at(at):
        return code_only
    return provider_view(
        case, referral.category, code=referral.code, at=at, only=referral.shared_fields
    )


# --- sending --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReferralRequest:
    """One service to refer to, and the release it rests on: an existing ``Release`` or a
    ``ReleaseSpec`` recorded in the same step (None: the release on file, if valid)."""

    service_id: int
    release: Release | ReleaseSpec | None = None


TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{20,64}$")


def _keys(token: str, service_ids: Sequence[int]) -> list[str]:
    return [f"{token}:{sid}" for sid in service_ids]


def existing_batch(case: Case, token: str, service_ids: Sequence[int]) -> list[Referral]:
    """Referrals a form with ``token`` already made (empty when none)."""
    if not service_ids:
        return []
    found = list(
        db.session.scalars(
            select(Referral)
            .where(Referral.idempotency_key.in_(_keys(token, service_ids)))
            .order_by(Referral.id)
        )
    )
    if any(r.case_id != case.id for r in found):
        raise NotReferable()
    return found


def _check_request(
    case: Case,
    service: Service | None,
    request: ReferralRequest,
    at: datetime,
    states: dict[str, ConsentState],
) -> Release | ReleaseSpec:
    if service is None or not service.active:
        raise NotReferable(_l("This service is not available."), service_id=request.service_id)
    name = service.name
    if not permits(case, f"share:{service.category}", at, states=states):
        raise NoConsent(
            _l(
                "No referral to %(service)s: the survivor has not consented to share with "
                "%(category)s services.",
                service=name,
                category=LazyString(lambda: str(CATEGORY_LABELS[service.category]).lower()),
            ),
            service_id=service.id,
        )
    release = request.release
    if isinstance(release, ReleaseSpec):
        if release.organization_id != service.organization_id:
            raise NoRelease(service_id=service.id)
        try:
            check_release_spec(release)
        except BadRelease as exc:
            raise BadRelease(exc.message, service_id=service.id) from exc
        return release
    if release is None:
        release = valid_release(case, service.organization_id, at)
    if (
        release is None
        or release.case_id != case.id
        or release.organization_id != service.organization_id
        or not release.valid_at(at)
    ):
        raise NoRelease(
            _l(
                "No referral to %(service)s: there is no valid release for this "
                "organization. Record the survivor's release first.",
                service=name,
            ),
            service_id=service.id,
        )
    if service.category == "shelter" and service.beds_available == 0:
        raise NoBedFree(
            _l("No referral to %(service)s: it has no free bed now.", service=name),
            service_id=service.id,
        )
    return release


def create_referrals(
    case: Case,
    requests: Sequence[ReferralRequest],
    actor_id: int | None,
    *,
    idempotency_key: str | None,
    at: datetime | None = None,
) -> tuple[list[Referral], bool]:
    """Refer ``case`` to every requested service, all or none (see the module docstring).

    Returns ``(referrals, created)``; ``created`` is False when ``idempotency_key`` already
    made them. Raises a ``ReferralError`` (nothing written) when one may not be sent."""
    at = at or utcnow()
    if not requests:
        raise NotReferable(_l("Choose at least one service."))
    service_ids = [r.service_id for r in requests]
    if len(set(service_ids)) != len(service_ids):
        raise NotReferable(_l("Each service can be chosen once."))
    if idempotency_key is not None:
        if not TOKEN_RE.match(idempotency_key):
            raise NotReferable(_l("This form is out of date. Please start again."))
        found = existing_batch(case, idempotency_key, service_ids)
        if found:
            return found, False
    if case.is_erased or case.status != "open":
        raise NotReferable(_l("Only an open case can be referred."))
    states = current_consents(case, at)
    if not permits(case, "store", at, states=states):
        raise NoConsent(_l("There is no current consent to keep this record."))
    services = {
        s.id: s for s in db.session.scalars(select(Service).where(Service.id.in_(service_ids)))
    }
    releases = [_check_request(case, services.get(r.service_id), r, at, states) for r in requests]
    open_same = db.session.scalar(
        select(Referral.service_id)
        .where(
            Referral.case_id == case.id,
            Referral.service_id.in_(service_ids),
            Referral.status.in_(OPEN_STATUSES),
        )
        .limit(1)
    )
    if open_same is not None:
        raise NotReferable(
            _l(
                "%(service)s already has an open referral for this case.",
                service=services[open_same].name,
            ),
            service_id=open_same,
        )
    keys = _keys(idempotency_key, service_ids) if idempotency_key else [None] * len(requests)
    try:
        with db.session.begin_nested():
            made = _insert_all(case, requests, services, releases, keys, actor_id, at)
    except (IntegrityError, ReferralError) as exc:
        # A resent form racing the first (which may also have taken the last bed): the
        # winner committed; show what it made. The savepoint undid everything of ours.
        if idempotency_key is not None:
            found = existing_batch(case, idempotency_key, service_ids)
            if found:
                return found, False
        if isinstance(exc, IntegrityError):
            # Another form made an open referral to one of these services at the same
            # moment (uq_referral_open_case_service): refused like the check above.
            raise NotReferable() from None
        raise
    return made, True


def _insert_all(
    case: Case,
    requests: Sequence[ReferralRequest],
    services: dict[int, Service],
    releases: list[Release | ReleaseSpec],
    keys: Sequence[str | None],
    actor_id: int | None,
    at: datetime,
) -> list[Referral]:
    # The audit lock, then beds (service rows, in id order), then rows (see lock order).
    audit.lock()
    held: dict[int, bool] = {}
    for sid in sorted(services):
        service = services[sid]
        if service.category == "shelter" and service.beds_available is not None:
            if not take_bed(sid):
                raise NoBedFree(
                    _l("No referral to %(service)s: it has no free bed now.", service=service.name),
                    service_id=sid,
                )
            held[sid] = True
    recorded: dict[int, Release] = {}
    made = []
    states = current_consents(case, at)
    for request, release, key in zip(requests, releases, keys, strict=True):
        service = services[request.service_id]
        if isinstance(release, ReleaseSpec):
            if release.organization_id not in recorded:
                recorded[release.organization_id] = record_release(case, release, actor_id, at=at)
            release = recorded[release.organization_id]
        referral = Referral(
            code=new_reference(),
            case_id=case.id,
            service_id=service.id,
            category=service.category,
            organization_id=service.organization_id,
            referring_organization_id=case.organization_id,
            release_id=release.id,
            shared_fields=list(fields_allowed(case, service.category, at, states)),
            status="pending",
            created_by_id=actor_id,
            idempotency_key=key,
            created_at=at,
            updated_at=at,
            hold_expires_at=at + hold_window(),
            hold_status="held" if held.get(service.id) else "none",
            data_key_id=case.data_key_id,
        )
        db.session.add(referral)
        db.session.flush()
        audit.record("referral.create", "referral", referral.id)
        messaging.enqueue(
            "provider.referral_new",
            language=provider_language(service),
            params={
                "code": referral.code,
                "needs": needs_param(shared_needs(case, service.category, at, states)),
                "age_band": case.age_band or "",
                "language": case.language or "",
            },
            service=service,
        )
        made.append(referral)
    return made


def provider_language(service: Service) -> str:
    shipped = current_app.config["LANGUAGES"]
    return next((code for code in service.language_list if code in shipped), "en")


# --- beds -------------------------------------------------------------------------------------


def take_bed(service_id: int) -> bool:
    """Take one free bed, or report there is none. One conditional statement: never
    overbooks, whatever runs at the same time."""
    result = db.session.execute(
        update(Service)
        .where(Service.id == service_id, Service.beds_available > 0)
        .values(beds_available=Service.beds_available - 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    taken = int(result.rowcount or 0) == 1  # type: ignore[attr-defined]
    _expire_service(service_id)
    return taken


def _give_bed_back(service_id: int) -> None:
    db.session.execute(
        update(Service)
        .where(
            Service.id == service_id,
            Service.beds_available.is_not(None),
            (Service.beds_total.is_(None)) | (Service.beds_available < Service.beds_total),
        )
        .values(beds_available=Service.beds_available + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    _expire_service(service_id)


def _expire_service(service_id: int) -> None:
    service = db.session.identity_map.get(db.session.identity_key(Service, service_id))
    if service is not None:
        db.session.expire(service, ["beds_available", "updated_at"])


def _end_hold(referral: Referral, outcome: str, at: datetime) -> None:
    """held → returned (bed given back) or used. At most once (compare-and-set)."""
    result = db.session.execute(
        update(Referral)
        .where(Referral.id == referral.id, Referral.hold_status == "held")
        .values(hold_status=outcome, hold_ended_at=at)
        .execution_options(synchronize_session=False)
    )
    if int(result.rowcount or 0) == 1 and outcome == "returned":  # type: ignore[attr-defined]
        _give_bed_back(referral.service_id)
    db.session.expire(referral, ["hold_status", "hold_ended_at"])


# --- status changes ---------------------------------------------------------------------------


def _move(
    referral: Referral, from_statuses: Sequence[str], to: str, at: datetime, **values: Any
) -> bool:
    """Compare-and-set the status: False when another change got there first. Every status
    change goes through here, so here (in the same transaction) the survivor's queued texts
    about this referral are cancelled: what they announce is no longer so."""
    audit.lock()
    result = db.session.execute(
        update(Referral)
        .where(Referral.id == referral.id, Referral.status.in_(tuple(from_statuses)))
        .values(status=to, updated_at=at, **values)
        .execution_options(synchronize_session=False)
    )
    db.session.expire(referral)
    moved = int(result.rowcount or 0) == 1  # type: ignore[attr-defined]
    if moved:
        messaging.cancel_queued(referral_id=referral.id)
    return moved


def accept(referral: Referral, actor_id: int | None, *, at: datetime | None = None) -> None:
    """The provider accepts: the hold is kept; the survivor is told (consent and safe
    hours permitting); a shelter's acceptance releases the case's other shelters."""
    at = at or utcnow()
    if not _move(referral, ("pending",), "accepted", at, responded_at=at):
        raise BadTransition()
    _audit(referral, "referral.accept", actor_id)
    _tell_survivor(referral, "survivor.referral_accepted", at)
    _release_other_shelters(referral, actor_id, at)


def _release_other_shelters(referral: Referral, actor_id: int | None, at: datetime) -> None:
    """One survivor, one bed: when a shelter accepts her (or she arrives at one), every
    other open shelter referral of her case is cancelled at once, reason
    ``placed_elsewhere`` — its bed hold returned, its provider told by code only — in the
    same transaction. The caseworker sees the reason on the case page."""
    if referral.category != "shelter":
        return
    for other in _open_referrals(
        Referral.case_id == referral.case_id,
        Referral.category == "shelter",
        Referral.id != referral.id,
    ):
        cancel(other, actor_id, reason="placed_elsewhere", at=at)


def decline(
    referral: Referral,
    reason: str,
    text: str | None,
    actor_id: int | None,
    *,
    at: datetime | None = None,
) -> None:
    at = at or utcnow()
    if reason not in DECLINE_REASONS:
        raise BadTransition(_l("Choose a reason."))
    if not _move(referral, ("pending",), "declined", at, responded_at=at, response_reason=reason):
        raise BadTransition()
    text = (text or "").strip()
    if text and referral.data_key is not None:
        referral.response_text = text[:RESPONSE_TEXT_MAX]
        db.session.flush()
    _end_hold(referral, "returned", at)
    _audit(referral, "referral.decline", actor_id)


RESPONSE_TEXT_MAX = 200
OUTCOMES = {
    "arrived": (("accepted",), "referral.arrive"),
    "no_show": (("accepted",), "referral.no_show"),
    "completed": (("arrived",), "referral.complete"),
}


def record_outcome(
    referral: Referral, outcome: str, actor_id: int | None, *, at: datetime | None = None
) -> None:
    """arrived (the hold becomes an occupied bed), no_show (the bed is given back),
    completed (after arrival)."""
    at = at or utcnow()
    if outcome not in OUTCOMES:
        raise BadTransition()
    from_statuses, action = OUTCOMES[outcome]
    if not _move(referral, from_statuses, outcome, at, outcome_at=at):
        raise BadTransition()
    if outcome == "arrived":
        _end_hold(referral, "used", at)
        _release_other_shelters(referral, actor_id, at)
    elif outcome == "no_show":
        _end_hold(referral, "returned", at)
    _audit(referral, action, actor_id)


def cancel(
    referral: Referral,
    actor_id: int | None,
    *,
    reason: str = "caseworker",
    at: datetime | None = None,
) -> bool:
    """Cancel an open referral, give its bed back and tell the provider by code only.
    False (nothing done) when it was no longer open."""
    at = at or utcnow()
    if not _move(referral, OPEN_STATUSES, "cancelled", at, cancelled_at=at, cancel_reason=reason):
        return False
    _end_hold(referral, "returned", at)
    _audit(referral, "referral.cancel", actor_id)
    _tell_provider(referral, "provider.referral_cancelled")
    return True


def _audit(referral: Referral, action: str, actor_id: int | None) -> None:
    # The actor as given: a user id from the views, None (nobody) from the SMS webhook and
    # the expiry job, never whoever happens to be signed in.
    audit.record(action, "referral", referral.id, actor_user_id=actor_id)


def _tell_provider(referral: Referral, template: str) -> None:
    service = db.session.get(Service, referral.service_id)
    if service is not None:
        messaging.enqueue(
            template,
            language=provider_language(service),
            params={"code": referral.code},
            service=service,
        )


def _tell_survivor(referral: Referral, template: str, at: datetime) -> None:
    """Only with ``contact_sms`` (enqueue checks), in the survivor's language, neutral unless
    ``explicit_wording`` (the worker picks the wording at send time), inside her safe hours
    on her clock (enqueue schedules it), about this referral (cancelled if it changes)."""
    case = referral.case
    if case is None or case.is_erased:
        return
    messaging.enqueue(
        template,
        language=case.language or "en",
        params={"reference": case.reference, "category": referral.category},
        case=case,
        not_before=at,
        referral_id=referral.id,
    )


# --- queries ----------------------------------------------------------------------------------


def _open_referrals(*where: Any) -> list[Referral]:
    return list(
        db.session.scalars(
            select(Referral).where(Referral.status.in_(OPEN_STATUSES), *where).order_by(Referral.id)
        )
    )


def for_case(case: Case) -> list[Referral]:
    return list(
        db.session.scalars(
            select(Referral)
            .where(Referral.case_id == case.id)
            .options(selectinload(Referral.service))
            .order_by(Referral.created_at.desc(), Referral.id.desc())
        )
    )


def waiting_for_organization(organization_id: int, limit: int = 200) -> list[Referral]:
    """The caseworkers' "referrals waiting" list: open referrals of the NGO's cases, the
    flagged and oldest first."""
    return list(
        db.session.scalars(
            select(Referral)
            .where(
                Referral.referring_organization_id == organization_id,
                Referral.status.in_(OPEN_STATUSES),
            )
            .options(selectinload(Referral.service), selectinload(Referral.case))
            .order_by(Referral.flagged_at.is_(None), Referral.hold_expires_at, Referral.id)
            .limit(limit)
        )
    )


# --- expiry ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpiryResult:
    flagged: int
    expired: int


def expire_due(now: datetime | None = None, *, batch: int = 500) -> ExpiryResult:
    """Flag pending referrals near the end of their window (provider reminded) and expire
    those past it (bed given back, provider told). Flushes; the caller commits. Safe to run
    from several processes: each change is a compare-and-set."""
    now = now or utcnow()
    expired = 0
    for referral in db.session.scalars(
        select(Referral)
        .where(Referral.status == "pending", Referral.hold_expires_at <= now)
        .order_by(Referral.hold_expires_at, Referral.id)
        .limit(batch)
    ).all():
        if _move(referral, ("pending",), "expired", now):
            _end_hold(referral, "returned", now)
            _audit(referral, "referral.expire", None)
            _tell_provider(referral, "provider.referral_cancelled")
            expired += 1
    flagged = 0
    for referral in db.session.scalars(
        select(Referral)
        .where(
            Referral.status == "pending",
            Referral.flagged_at.is_(None),
            Referral.hold_expires_at <= now + flag_before(),
        )
        .order_by(Referral.hold_expires_at, Referral.id)
        .limit(batch)
    ).all():
        audit.lock()
        result = db.session.execute(
            update(Referral)
            .where(
                Referral.id == referral.id,
                Referral.status == "pending",
                Referral.flagged_at.is_(None),
            )
            .values(flagged_at=now)
            .execution_options(synchronize_session=False)
        )
        db.session.expire(referral, ["flagged_at"])
        if int(result.rowcount or 0) == 1:  # type: ignore[attr-defined]
            _audit(referral, "referral.flag", None)
            _tell_provider(referral, "provider.referral_reminder")
            flagged += 1
    return ExpiryResult(flagged, expired)


# --- consent withdrawal, erasure and SMS answers (called in order by app.consent.changes,
# app.cases.erasure and app.sms.hotline) ---------------------------------------------------


def cancel_for_withdrawal(case: Case, scope: str, actor_id: int | None, at: datetime) -> None:
    """Withdrawing ``share_<category>`` cancels the case's open referrals of that category
    (bed given back, provider told by code). Other scopes: nothing."""
    if not scope.startswith("share_") or scope == "share_identity":
        return
    category = scope.removeprefix("share_")
    for referral in _open_referrals(Referral.case_id == case.id, Referral.category == category):
        cancel(referral, actor_id, reason="consent_withdrawn", at=at)


def write_statistics(cases: Sequence[Case]) -> None:
    """Erasure's step before the referrals go: one ``ReferralStatistic`` per referral of
    these cases, with its last real outcome (a pending one counts as cancelled)."""
    area_of = {c.id: c.area_id for c in cases}
    rows = db.session.execute(
        select(
            Referral.case_id,
            Referral.referring_organization_id,
            Referral.category,
            Referral.status,
            Referral.created_at,
            Referral.responded_at,
        ).where(any_of(Referral.case_id, list(area_of)))
    ).all()
    if not rows:
        return
    db.session.execute(
        insert(ReferralStatistic),
        [
            {
                "month": date(r.created_at.year, r.created_at.month, 1),
                "organization_id": r.referring_organization_id,
                "area_id": area_of[r.case_id],
                "category": r.category,
                "outcome": "cancelled" if r.status == "pending" else r.status,
                "answer_hours": (
                    max(0, int((r.responded_at - r.created_at).total_seconds() // 3600))
                    if r.responded_at is not None
                    else None
                ),
            }
            for r in rows
        ],
    )


def erase_for_cases(case_ids: Sequence[int], actor_id: int | None, at: datetime) -> None:
    """Erasure's step for referrals: open referrals are cancelled one by one (bed given
    back, provider told by code); then the referral and release rows go with the cases."""
    for referral in _open_referrals(any_of(Referral.case_id, case_ids)):
        cancel(referral, actor_id, reason="case_erased", at=at)
    db.session.execute(
        delete(Referral)
        .where(any_of(Referral.case_id, case_ids))
        .execution_options(synchronize_session=False)
    )
    db.session.execute(
        delete(Release)
        .where(any_of(Release.case_id, case_ids))
        .execution_options(synchronize_session=False)
    )


def recent_activity(cutoff: datetime) -> Any:
    """A case's referrals count as activity (the retention ``idle_cases`` rule): EXISTS a
    referral of the case updated after ``cutoff``, correlated to ``Case``."""
    return exists().where(Referral.case_id == Case.id, Referral.updated_at > cutoff)


def respond_by_sms(
    services: list[Service], action: str, code: str, reason: str | None, at: datetime
) -> str | None:
    """ACCEPT/DECLINE from a service's registered intake phone (``app.sms.hotline``):
    "accepted" / "declined" when a pending referral of one of these services has this code
    (and was changed), None otherwise. Flushes, never commits."""
    normalized = normalize_reference(code)
    if normalized is None or not services:
        return None
    referral = db.session.scalars(
        select(Referral).where(
            Referral.code == normalized,
            Referral.service_id.in_([s.id for s in services]),
            Referral.status == "pending",
        )
    ).first()
    if referral is None:
        return None
    try:
        if action == "accept":
            accept(referral, None, at=at)
            return "accepted"
        if action == "decline":
            decline(referral, reason if reason in DECLINE_REASONS else "other", None, None, at=at)
            return "declined"
    except BadTransition:
        return None
    return None
