from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, select
from werkzeug.wrappers import Response

from app.admin.forms import OrganizationForm, UserEditForm, UserForm
from app.auth import accounts, org_settings
from app.auth.views import password_problem_message
from app.core import audit
from app.core.crypto import format_phone
from app.core.extensions import db
from app.core.security import get_or_404, roles
from app.models import AuditEvent, Organization, User

bp = Blueprint("admin", __name__)

SETTINGS_ERRORS = {
    "timezone": lambda: _("Use a timezone name such as Europe/Paris."),
    "contact_phone": lambda: _(
        "This is not a phone number we can use. Include the country code, e.g. +44."
    ),
    "dialing_region": lambda: _("Use a two-letter country code such as FR."),
}


def _org_choices() -> list[tuple[int, str]]:
    return [
        (o.id, o.name) for o in db.session.scalars(select(Organization).order_by(Organization.name))
    ]


@bp.get("/users")
@roles("admin")
def users() -> str:
    rows = db.session.scalars(select(User).order_by(User.username)).all()
    return render_template("admin/users.html", users=rows)


@bp.route("/users/new", methods=["GET", "POST"])
@roles("admin")
def user_new() -> Response | str | tuple[str, int]:
    form = UserForm()
    form.organization_id.choices = _org_choices()
    if form.validate_on_submit():
        org = db.session.get(Organization, form.organization_id.data)
        problem = accounts.password_problem(form.password.data or "", form.username.data or "")
        if org is None:
            form.organization_id.errors = [_("Choose an organization.")]
        elif problem:
            form.password.errors = [password_problem_message(problem)]
        else:
            try:
                user = accounts.create_user(
                    org, form.username.data or "", form.password.data or "", form.role.data or ""
                )
            except accounts.UsernameTaken:
                db.session.rollback()
                form.username.errors = [_("This username is taken.")]
            else:
                db.session.commit()
                flash(_("User created."), "success")
                return redirect(url_for("admin.users", _anchor=f"user-{user.id}"))
        return render_template("admin/user_new.html", form=form,
                           min_password_length=accounts.MIN_PASSWORD_LENGTH), 400
    status = 400 if request.method == "POST" else 200
    return render_template("admin/user_new.html", form=form,
                           min_password_length=accounts.MIN_PASSWORD_LENGTH), status


@bp.route("/users/<int:user_id>", methods=["GET", "POST"])
@roles("admin")
def user_edit(user_id: int) -> Response | str | tuple[str, int]:
    user = get_or_404(User, user_id, None)
    form = UserEditForm(obj=user)
    form.organization_id.choices = _org_choices()
    if form.validate_on_submit():
        if user.id == current_user.id and (not form.active.data or form.role.data != "admin"):
            form.role.errors = [_("You cannot remove your own administrator access.")]
            return render_template("admin/user_edit.html", form=form, user=user), 400
        if form.new_password.data:
            try:
                accounts.set_password(user, form.new_password.data)
            except accounts.PasswordPolicyError as exc:
                form.new_password.errors = [password_problem_message(exc.reason)]
                return render_template("admin/user_edit.html", form=form, user=user), 400
            audit.record("user.password_reset", "user", user.id)
        changed_access = (
            user.role != form.role.data
            or user.organization_id != form.organization_id.data
            or user.active != form.active.data
        )
        user.role = form.role.data or user.role
        user.organization_id = form.organization_id.data or user.organization_id
        user.active = bool(form.active.data)
        if form.reset_totp.data:
            user.totp_secret = None
            user.totp_last_counter = None
            audit.record("user.totp_reset", "user", user.id)
        if changed_access:
            # A change of role, organization or status ends the user's current sessions.
            accounts.end_sessions(user)
        audit.record("user.update", "user", user.id)
        db.session.commit()
        flash(_("Saved."), "success")
        return redirect(url_for("admin.users"))
    status = 400 if request.method == "POST" else 200
    return render_template("admin/user_edit.html", form=form, user=user), status


@bp.get("/organizations")
@roles("admin")
def organizations() -> str:
    rows = db.session.scalars(select(Organization).order_by(Organization.name)).all()
    return render_template("admin/organizations.html", organizations=rows)


@bp.route("/organizations/new", methods=["GET", "POST"])
@roles("admin")
def organization_new() -> Response | str | tuple[str, int]:
    return _organization_form(None)


@bp.route("/organizations/<int:organization_id>", methods=["GET", "POST"])
@roles("admin")
def organization_edit(organization_id: int) -> Response | str | tuple[str, int]:
    org = get_or_404(Organization, organization_id, None)
    return _organization_form(org)


def _organization_form(org: Organization | None) -> Response | str | tuple[str, int]:
    original = org
    form = OrganizationForm(obj=org)
    if org is not None and request.method == "GET":
        form.dialing_region.data = org.phone_region or ""
        if org.contact_phone:
            form.contact_phone.data = format_phone(org.contact_phone)
    if form.validate_on_submit():
        name = (form.name.data or "").strip()
        clash = db.session.scalar(
            select(Organization.id).where(func.lower(Organization.name) == name.lower())
        )
        if clash is not None and (org is None or clash != org.id):
            form.name.errors = [_("An organization with this name exists.")]
            return render_template("admin/organization_form.html", form=form, org=org), 400
        if org is None:
            org = Organization(
                name=name, kind=form.kind.data, totp_required=form.totp_required.data
            )
            db.session.add(org)
            db.session.flush()
            audit.record("organization.create", "organization", org.id)
        else:
            org.name = name
            org.kind = form.kind.data or org.kind
            org.totp_required = bool(form.totp_required.data)
            audit.record("organization.update", "organization", org.id)
        try:
            org_settings.update(
                org,
                timezone=form.timezone.data or "",
                contact_phone=form.contact_phone.data,
                region=form.dialing_region.data,
                default_region=current_app.config["HAVEN_PHONE_REGION"],
            )
        except org_settings.SettingsError as exc:
            db.session.rollback()
            getattr(form, exc.field).errors = [SETTINGS_ERRORS[exc.field]()]
            return render_template("admin/organization_form.html", form=form, org=original), 400
        db.session.commit()
        flash(_("Saved."), "success")
        return redirect(url_for("admin.organizations"))
    status = 400 if request.method == "POST" else 200
    return render_template("admin/organization_form.html", form=form, org=org), status


@bp.get("/audit")
@roles("admin", "supervisor")
def audit_log() -> str:
    """Newest events first. Supervisors see events caused by their organization's users."""
    query = select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(200)
    if current_user.role != "admin":
        query = query.where(AuditEvent.actor_org_id == current_user.organization_id)
    events = db.session.scalars(query).all()
    return render_template("admin/audit.html", events=events)
