"""The caseworker's day on a case (issue 16): record a follow-up, close with a reason,
assign (supervisors) or take (anyone on staff) a case. Views parse, call ``app.followups``
/ ``app.cases``, commit and render; every case is looked up in the signed-in user's
organization only (another organization's case answers 404)."""

from __future__ import annotations

from typing import Any

from flask import flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user

from app import cases, followups
from app.extensions import db
from app.intake import bp
from app.intake.day_forms import AssignForm, CloseCaseForm, FollowUpForm
from app.intake.forms import ActionForm
from app.intake.routes import STAFF, _live_case_or_404
from app.models.base import utcnow
from app.security import roles

UNASSIGNED = ""


@bp.route("/<int:case_id>/follow-up", methods=["GET", "POST"])
@roles(*STAFF)
def follow_up(case_id: int) -> Any:
    case = _live_case_or_404(case_id)
    form = FollowUpForm()
    if request.method == "GET":
        form.occurred_on.data = utcnow().date()
    if form.validate_on_submit():
        spec = followups.FollowUpSpec(
            occurred_on=form.occurred_on.data,
            kind=form.kind.data,
            outcome=form.outcome.data,
            next_on=form.next_on.data,
            note=form.note.data or None,
        )
        try:
            followups.record(case, spec, current_user.id)
        except followups.FollowUpError as exc:
            db.session.rollback()
            form.form_errors.append(str(exc.message))
        else:
            db.session.commit()
            flash(_("Follow-up recorded."), "success")
            return redirect(url_for("intake.case_page", case_id=case.id))
    status = 400 if request.method == "POST" else 200
    return render_template("intake/follow_up.html", case=case, form=form), status


@bp.route("/<int:case_id>/close", methods=["GET", "POST"])
@roles(*STAFF)
def close(case_id: int) -> Any:
    """Closing asks for confirmation and a reason from the list."""
    case = _live_case_or_404(case_id)
    if case.status != "open":
        return redirect(url_for("intake.case_page", case_id=case.id))
    form = CloseCaseForm()
    if form.validate_on_submit():
        cases.close_case(case, form.reason.data)
        db.session.commit()
        flash(_("Case closed."), "success")
        return redirect(url_for("intake.case_page", case_id=case.id))
    status = 400 if request.method == "POST" else 200
    return render_template("intake/close.html", case=case, form=form), status


@bp.post("/<int:case_id>/assign")
@roles("supervisor")
def assign(case_id: int) -> Any:
    """A supervisor assigns or reassigns a case within her organization (audited)."""
    case = _live_case_or_404(case_id)
    form = AssignForm()
    people = cases.assignable_users(case.organization_id)
    form.assignee.choices = [(UNASSIGNED, _("Unassigned")), *((str(u.id), u.username)
                                                             for u in people)]
    if form.validate_on_submit():
        chosen = form.assignee.data
        try:
            changed = cases.assign(
                case, int(chosen) if chosen else None, current_user.id
            )
        except cases.CaseError:
            db.session.rollback()
            flash(_("This case cannot be assigned to that person now."), "error")
        else:
            db.session.commit()
            if changed:
                flash(_("Case assigned."), "success")
    else:
        flash(_("Choose someone from the list."), "error")
    return redirect(url_for("intake.case_page", case_id=case.id))


@bp.post("/<int:case_id>/take")
@roles(*STAFF)
def take(case_id: int) -> Any:
    """Take an unassigned case: it becomes one of 'my cases'."""
    case = _live_case_or_404(case_id)
    if ActionForm().validate_on_submit():
        try:
            cases.take(case, current_user.id)
        except cases.AlreadyAssigned:
            db.session.rollback()
            flash(_("Someone else took this case a moment ago."), "error")
        except cases.CaseError:
            db.session.rollback()
            flash(_("Only an open case can be taken."), "error")
        else:
            db.session.commit()
            flash(_("The case is yours now."), "success")
    return redirect(url_for("intake.case_page", case_id=case.id))
