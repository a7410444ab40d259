"""Provider portal views. Every query is filtered by the provider's organization: another
organization's referral or service answers 404. What a referral shows comes from
``referrals.referral_view`` — the same function as the caseworker's preview."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.auth import org_settings
from app.core import audit
from app.core.extensions import db
from app.core.security import get_or_404, roles
from app.core.vocab import CATEGORY_LABELS
from app.directory import capacity
from app.models import Organization, Service
from app.models.referrals import Referral
from app.provider.forms import ActionForm, BedsForm, DeclineForm, OutcomeForm
from app.referrals import service as referrals
from app.referrals.views import reason_labels, status_labels

bp = Blueprint("provider", __name__)

TABS = {
    "waiting": ("pending",),
    "active": ("accepted", "arrived"),
    "closed": ("declined", "expired", "cancelled", "no_show", "completed"),
}
PAGE_SIZE = 100


def _shelters(errors_for: tuple[int, Any] | None = None) -> list[dict[str, Any]]:
    services = db.session.scalars(
        select(Service)
        .where(
            Service.organization_id == current_user.organization_id,
            Service.category == "shelter",
            Service.active.is_(True),
        )
        .order_by(Service.name)
    ).all()
    rows = []
    for s in services:
        if s.beds_total is None:
            continue
        form = (
            errors_for[1]
            if errors_for and errors_for[0] == s.id
            else BedsForm(obj=s, prefix=f"s{s.id}")
        )
        rows.append({"service": s, "held": capacity.beds_held(s.id), "form": form})
    return rows


def _render_index(tab: str, status: int = 200, errors_for: tuple[int, Any] | None = None) -> Any:
    rows = db.session.scalars(
        select(Referral)
        .where(
            Referral.organization_id == current_user.organization_id,
            Referral.status.in_(TABS[tab]),
        )
        .options(selectinload(Referral.service))
        .order_by(Referral.created_at.desc(), Referral.id.desc())
        .limit(PAGE_SIZE)
    ).all()
    return render_template(
        "provider/index.html",
        rows=rows,
        tab=tab,
        shelters=_shelters(errors_for),
        labels=status_labels(),
        category_labels=CATEGORY_LABELS,
    ), status


@bp.get("/")
@roles("provider")
def index() -> Any:
    tab = request.args.get("tab", "waiting")
    return _render_index(tab if tab in TABS else "waiting")


def _render_detail(
    referral: Referral, status: int = 200, decline_form: Any = None, outcome_form: Any = None
) -> Any:
    view = referrals.referral_view(referral)
    audit.record("referral.view", "referral", referral.id)
    db.session.commit()
    outcome_form = outcome_form or OutcomeForm()
    allowed = {"accepted": ("arrived", "no_show"), "arrived": ("completed",)}.get(
        referral.status, ()
    )
    outcome_form.outcome.choices = [
        c
        for c in outcome_form.outcome.choices
        if c[0] in allowed  # type: ignore[union-attr]
    ]
    return render_template(
        "provider/referral.html",
        referral=referral,
        view=view,
        service=db.session.get(Service, referral.service_id),
        referrer=org_settings.contact_line(
            db.session.get(Organization, referral.referring_organization_id) or abort(404)
        ),
        action_form=ActionForm(),
        decline_form=decline_form or DeclineForm(),
        outcome_form=outcome_form,
        labels=status_labels(),
        reasons=provider_reason_labels(),
        category_labels=CATEGORY_LABELS,
    ), status


def provider_reason_labels() -> dict[str, str]:
    """The reasons a provider may read: not that the survivor was placed elsewhere (she is
    the caseworker's to follow; the provider learns its referral was cancelled, by code)."""
    return {k: v for k, v in reason_labels().items() if k != "placed_elsewhere"}


@bp.get("/referrals/<int:referral_id>")
@roles("provider")
def referral(referral_id: int) -> Any:
    return _render_detail(get_or_404(Referral, referral_id, Referral.organization_id))


@bp.post("/referrals/<int:referral_id>/accept")
@roles("provider")
def accept(referral_id: int) -> Any:
    referral = get_or_404(Referral, referral_id, Referral.organization_id)
    if ActionForm().validate_on_submit():
        try:
            referrals.accept(referral, current_user.id)
        except referrals.ReferralError as exc:
            db.session.rollback()
            flash(str(exc.message), "error")
        else:
            db.session.commit()
            flash(_("Referral %(code)s accepted.", code=referral.code), "success")
    return redirect(url_for("provider.referral", referral_id=referral_id))


@bp.post("/referrals/<int:referral_id>/decline")
@roles("provider")
def decline(referral_id: int) -> Any:
    referral = get_or_404(Referral, referral_id, Referral.organization_id)
    form = DeclineForm()
    if not form.validate_on_submit():
        return _render_detail(referral, 400, decline_form=form)
    try:
        referrals.decline(referral, form.reason.data, form.text.data, current_user.id)
    except referrals.ReferralError as exc:
        db.session.rollback()
        form.reason.errors = [str(exc.message)]
        referral = get_or_404(Referral, referral_id, Referral.organization_id)
        return _render_detail(referral, 400, decline_form=form)
    db.session.commit()
    flash(_("Referral %(code)s declined.", code=referral.code), "success")
    return redirect(url_for("provider.referral", referral_id=referral_id))


@bp.post("/referrals/<int:referral_id>/outcome")
@roles("provider")
def outcome(referral_id: int) -> Any:
    referral = get_or_404(Referral, referral_id, Referral.organization_id)
    form = OutcomeForm()
    if not form.validate_on_submit():
        return _render_detail(referral, 400, outcome_form=form)
    try:
        referrals.record_outcome(referral, form.outcome.data, current_user.id)
    except referrals.ReferralError as exc:
        db.session.rollback()
        form.outcome.errors = [str(exc.message)]
        referral = get_or_404(Referral, referral_id, Referral.organization_id)
        return _render_detail(referral, 400, outcome_form=form)
    db.session.commit()
    flash(_("Outcome saved."), "success")
    return redirect(url_for("provider.referral", referral_id=referral_id))


@bp.post("/services/<int:service_id>/beds")
@roles("provider")
def beds(service_id: int) -> Any:
    service = get_or_404(Service, service_id, Service.organization_id)
    form = BedsForm(prefix=f"s{service.id}")
    if form.validate_on_submit():
        try:
            capacity.set_beds(service, free=form.beds_available.data)
        except capacity.BedCountError as exc:
            db.session.rollback()
            form.beds_available.errors = [str(exc.message)]
        else:
            db.session.commit()
            flash(_("Beds updated."), "success")
            return redirect(url_for("provider.index"))
    return _render_index("waiting", 400, errors_for=(service_id, form))
