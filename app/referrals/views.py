"""Caseworker views: thin — parse, call ``app.referrals``, commit, render."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from app.cases import service as cases
from app.consent import service as consent
from app.core import audit
from app.core.extensions import db
from app.core.inputs import parse_id, query_id
from app.core.security import get_or_404, roles
from app.core.vocab import CATEGORY_LABELS, URGENCY_LABELS
from app.directory import matching
from app.models import Case, Organization, Service
from app.models.referrals import Referral, Release
from app.referrals import service as referrals
from app.referrals.forms import ActionForm, send_form

bp = Blueprint("referrals", __name__)

STAFF = ("caseworker", "supervisor")
MAX_SERVICES = 10


def status_labels() -> dict[str, str]:
    return {
        "pending": _("Waiting for an answer"),
        "accepted": _("Accepted"),
        "declined": _("Declined"),
        "expired": _("Expired"),
        "cancelled": _("Cancelled"),
        "arrived": _("Arrived"),
        "no_show": _("Did not arrive"),
        "completed": _("Completed"),
    }


def reason_labels() -> dict[str, str]:
    return {
        "full": _("No space"),
        "ineligible": _("Not eligible"),
        "unreachable": _("Could not reach the survivor"),
        "other": _("Other reason"),
        "caseworker": _("Cancelled by a caseworker"),
        "consent_withdrawn": _("Consent withdrawn"),
        "release_withdrawn": _("Release withdrawn"),
        "case_erased": _("Case erased"),
        "placed_elsewhere": _("Placed at another shelter"),
    }


def _criteria(case: Case) -> matching.MatchCriteria:
    states = consent.current_consents(case)
    return matching.MatchCriteria(
        needs=tuple((n.category, n.urgency) for n in case.needs),
        language=case.language,
        age_band=case.age_band,
        gender=case.gender,
        area_id=case.area_id,
        children=bool(case.children_accompanying),
        consented_share_categories=frozenset(
            c for c in CATEGORY_LABELS if consent.permits(case, f"share:{c}", states=states)
        ),
    )


# --- the case page's section (a template global, so the intake view needs no change) -----


@bp.app_template_global("case_referrals")
def case_referrals(case: Case) -> list[Referral]:
    if case is None or case.is_erased:
        return []
    return referrals.for_case(case)


@bp.app_template_global("referral_labels")
def referral_labels() -> dict[str, Any]:
    return {"status": status_labels(), "reason": reason_labels()}


# --- choose -------------------------------------------------------------------------------


@bp.get("/cases/<int:case_id>/new")
@roles(*STAFF)
def choose(case_id: int) -> Any:
    case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
    results = matching.match(_criteria(case)) if case.needs and case.status == "open" else []
    preselect = query_id("service_id")
    audit.record("case.match", "case", case.id)
    db.session.commit()
    return render_template(
        "referrals/choose.html",
        case=case,
        results=results,
        preselect=preselect,
        open_service_ids={r.service_id for r in referrals.for_case(case) if r.is_open},
        form=ActionForm(),
        category_labels=CATEGORY_LABELS,
        urgency_labels=URGENCY_LABELS,
    )


# --- preview and send ---------------------------------------------------------------------


def _chosen_services(raw: list[str]) -> list[Service]:
    """The ticked services; 400 for a value that is not a service id (app.inputs)."""
    ids: list[int] = []
    for value in raw[: MAX_SERVICES + 1]:
        service_id = parse_id(value)
        if service_id is None:
            abort(400)
        if service_id not in ids:
            ids.append(service_id)
    if not ids or len(ids) > MAX_SERVICES:
        return []
    found = {
        s.id: s
        for s in db.session.scalars(
            select(Service).where(Service.id.in_(ids), Service.active.is_(True))
        )
    }
    return [found[i] for i in ids if i in found]


def _groups(case: Case, services: list[Service]) -> list[dict[str, Any]]:
    """Services grouped by recipient organization, each with exactly what it will see."""
    ordered = sorted(services, key=lambda s: (s.organization_id, s.id))
    groups = []
    for org_id, group in groupby(ordered, key=lambda s: s.organization_id):
        members = list(group)
        groups.append(
            {
                "organization": db.session.get(Organization, org_id),
                "release": referrals.valid_release(case, org_id),
                "services": [
                    {
                        "service": s,
                        "view": referrals.provider_view(case, s.category, code=None),
                        "permitted": consent.permits(case, f"share:{s.category}"),
                    }
                    for s in members
                ],
            }
        )
    return groups


def _render_preview(
    case: Case, services: list[Service], form: Any, status: int = 200, error: str | None = None
) -> Any:
    groups = _groups(case, services)
    return render_template(
        "referrals/preview.html",
        case=case,
        services=services,
        groups=groups,
        form=form,
        error=error,
        category_labels=CATEGORY_LABELS,
    ), status


def _form_for(case: Case, services: list[Service]) -> Any:
    org_ids = sorted({s.organization_id for s in services})
    on_file = {oid for oid in org_ids if referrals.valid_release(case, oid) is not None}
    return send_form(org_ids, on_file, referrals.release_validity().days)


@bp.post("/cases/<int:case_id>/preview")
@roles(*STAFF)
def preview(case_id: int) -> Any:
    case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
    if not ActionForm().validate_on_submit():
        abort(400)
    services = _chosen_services(request.form.getlist("services"))
    if not services:
        flash(_("Choose at least one service (at most %(n)s).", n=MAX_SERVICES), "error")
        return redirect(url_for("referrals.choose", case_id=case.id))
    form = _form_for(case, services)
    form.token.data = cases.new_intake_token()
    audit.record("case.referral_preview", "case", case.id)
    db.session.commit()
    return _render_preview(case, services, form)


@bp.post("/cases/<int:case_id>/send")
@roles(*STAFF)
def send(case_id: int) -> Any:
    case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
    services = _chosen_services(request.form.getlist("services"))
    if not services:
        flash(_("Choose at least one service (at most %(n)s).", n=MAX_SERVICES), "error")
        return redirect(url_for("referrals.choose", case_id=case.id))
    form = _form_for(case, services)
    if not form.validate_on_submit():
        return _render_preview(case, services, form, 400)
    token = form.token.data
    found = (
        referrals.existing_batch(case, token, [s.id for s in services])
        if referrals.TOKEN_RE.match(token or "")
        else []
    )
    if found:
        flash(_("These referrals were already sent."), "info")
        return redirect(url_for("intake.case_page", case_id=case.id))
    requests: list[referrals.ReferralRequest] = []
    specs: dict[int, referrals.ReleaseSpec | None] = {}
    for oid in sorted({s.organization_id for s in services}):
        method = form[f"method_{oid}"].data
        if method == "on_file":
            specs[oid] = None
            continue
        spec = referrals.ReleaseSpec(
            organization_id=oid,
            method=method,
            signature=form[f"signature_{oid}"].data or None,
            days=form[f"days_{oid}"].data,
        )
        try:
            referrals.check_release_spec(spec)
        except referrals.ReferralError as exc:
            field = form[f"signature_{oid}"] if method == "written" else form[f"days_{oid}"]
            field.errors = [str(exc.message)]
            return _render_preview(case, services, form, 400)
        specs[oid] = spec
    requests.extend(
        referrals.ReferralRequest(service.id, specs[service.organization_id])
        for service in services
    )
    try:
        made, created = referrals.create_referrals(
            case, requests, current_user.id, idempotency_key=token
        )
    except referrals.ReferralError as exc:
        db.session.rollback()
        case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
        services = _chosen_services(request.form.getlist("services"))
        return _render_preview(case, services, form, 400, error=str(exc.message))
    db.session.commit()
    if created:
        flash(_("Referrals sent: %(codes)s.", codes=", ".join(r.code for r in made)), "success")
    else:
        flash(_("These referrals were already sent."), "info")
    return redirect(url_for("intake.case_page", case_id=case.id))


# --- waiting list, cancel, release withdrawal ---------------------------------------------


@bp.get("/")
@roles(*STAFF)
def waiting() -> Any:
    rows = referrals.waiting_for_organization(current_user.organization_id)
    audit.record("referral.list", "organization", current_user.organization_id)
    db.session.commit()
    return render_template("referrals/waiting.html", rows=rows, category_labels=CATEGORY_LABELS)


@bp.post("/<int:referral_id>/cancel")
@roles(*STAFF)
def cancel(referral_id: int) -> Any:
    referral = get_or_404(Referral, referral_id, Referral.referring_organization_id)
    case_id = referral.case_id
    if ActionForm().validate_on_submit():
        if referrals.cancel(referral, current_user.id, reason="caseworker"):
            db.session.commit()
            flash(_("Referral cancelled; the provider is told by code only."), "success")
        else:
            db.session.rollback()
            flash(_("This referral is no longer open."), "error")
    return redirect(url_for("intake.case_page", case_id=case_id))


@bp.post("/releases/<int:release_id>/withdraw")
@roles(*STAFF)
def withdraw_release(release_id: int) -> Any:
    release = get_or_404(
        Release, release_id, Case.organization_id, join=(Case, Case.id == Release.case_id)
    )
    case_id = release.case_id
    if ActionForm().validate_on_submit():
        cancelled = referrals.withdraw_release(release, current_user.id)
        db.session.commit()
        flash(_("Release withdrawn. Referrals cancelled: %(n)s.", n=len(cancelled)), "success")
    return redirect(url_for("intake.case_page", case_id=case_id))


@bp.app_template_global("case_releases")
def case_releases(case: Case) -> list[Release]:
    if case is None or case.is_erased:
        return []
    return list(
        db.session.scalars(
            select(Release)
            .where(Release.case_id == case.id)
            .order_by(Release.granted_at.desc(), Release.id.desc())
        )
    )
