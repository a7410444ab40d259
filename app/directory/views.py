"""Directory views: browse/search (staff), service editing (admins: everything; providers:
their own organization's services, hours and beds), the Area list (admins), and matching in
anonymous mode (caseworkers, supervisors). Every change is audited in its own transaction."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import func, or_, select
from werkzeug.wrappers import Response

from app.core import audit, vocab
from app.core.crypto import InvalidPhoneNumber, format_phone, normalize_phone
from app.core.extensions import db
from app.core.inputs import query_id
from app.core.security import get_or_404, roles
from app.directory import capacity, matching
from app.directory.forms import (
    WEEKDAY_LABELS,
    AreaForm,
    BedsForm,
    MatchForm,
    ServiceForm,
    format_day_hours,
)
from app.models import Area, Organization, Service
from app.models.base import utcnow

bp = Blueprint("directory", __name__)

STAFF = ("admin", "supervisor", "caseworker", "provider")


def _area_choices() -> list[tuple[int, str]]:
    return [(a.id, a.name) for a in db.session.scalars(select(Area).order_by(Area.name))]


def _service_for_reading(service_id: int) -> Service:
    """The directory is shared with every staff role; a provider sees only its own
    organization's services (others answer 404, like any other organization's object)."""
    scoped = current_user.role == "provider"
    return get_or_404(Service, service_id, Service.organization_id if scoped else None)


def _service_for_editing(service_id: int) -> Service:
    """Admins edit every service; a provider only its own organization's."""
    scoped = current_user.role != "admin"
    return get_or_404(Service, service_id, Service.organization_id if scoped else None)


@bp.get("/")
@roles(*STAFF)
def index() -> str:
    q = (request.args.get("q") or "").strip()[:100]
    category = request.args.get("category") or ""
    area_id = query_id("area_id") or 0
    query = select(Service).join(Organization).order_by(Service.name, Service.id).limit(200)
    if current_user.role == "provider":
        query = query.where(Service.organization_id == current_user.organization_id)
    if q:
        pattern = "%" + q.lower().replace("\\", "").replace("%", "").replace("_", "") + "%"
        query = query.where(
            or_(func.lower(Service.name).like(pattern), func.lower(Organization.name).like(pattern))
        )
    if category in vocab.SERVICE_CATEGORIES:
        query = query.where(Service.category == category)
    if area_id:
        query = query.where(Service.areas.any(Area.id == area_id))
    services = db.session.scalars(query).all()
    return render_template(
        "directory/index.html",
        services=services,
        q=q,
        category=category,
        area_id=area_id,
        areas=_area_choices(),
        category_labels=vocab.CATEGORY_LABELS,
        now=utcnow(),
    )


@bp.get("/services/<int:service_id>")
@roles(*STAFF)
def service_detail(service_id: int) -> str:
    service = _service_for_reading(service_id)
    can_edit = current_user.role == "admin" or (
        current_user.role == "provider" and service.organization_id == current_user.organization_id
    )
    beds_form = BedsForm(obj=service) if can_edit and service.is_shelter else None
    return render_template(
        "directory/service_detail.html",
        service=service,
        can_edit=can_edit,
        beds_form=beds_form,
        phone=format_phone(service.intake_phone) if service.intake_phone else None,
        open_now=service.open_at(utcnow()),
        weekdays=WEEKDAY_LABELS,
        day_hours=[format_day_hours(service.hours, d) for d in range(7)],
        vocab=vocab,
    )


@bp.route("/services/new", methods=["GET", "POST"])
@roles("admin")
def service_new() -> Response | str | tuple[str, int]:
    return _service_form(None)


@bp.route("/services/<int:service_id>/edit", methods=["GET", "POST"])
@roles("admin", "provider")
def service_edit(service_id: int) -> Response | str | tuple[str, int]:
    return _service_form(_service_for_editing(service_id))


def _fill(form: ServiceForm, service: Service) -> None:
    form.languages.data = list(service.language_list)
    form.genders.data = [] if len(service.genders) == len(vocab.GENDERS) else list(service.genders)
    form.areas.data = [a.id for a in service.areas]
    for day, f in enumerate(form.hours_fields()):
        f.data = format_day_hours(service.hours, day)
    form.intake_phone.data = format_phone(service.intake_phone) if service.intake_phone else ""


def _service_form(service: Service | None) -> Response | str | tuple[str, int]:
    form = ServiceForm(obj=service)
    admin = current_user.role == "admin"
    if admin:
        form.organization_id.choices = [
            (o.id, o.name)
            for o in db.session.scalars(select(Organization).order_by(Organization.name))
        ]
    else:
        # Providers edit their own services' details, hours and beds; the organization and
        # the category (which decides the consent a referral needs) stay with admins.
        del form.organization_id
        del form.category
    form.areas.choices = _area_choices()
    if request.method == "GET":
        if service is not None:
            _fill(form, service)
        else:
            form.timezone.data = "UTC"
            form.active.data = True
            form.accepts_children.data = True
            # A refuge's place is secret unless someone who knows says otherwise: ticked
            # for a new service (the category list starts at shelter).
            form.location_confidential.data = True

    existing = service  # (``service`` becomes the new row below)

    def again() -> tuple[str, int]:
        return render_template("directory/service_form.html", form=form, service=existing), 400

    if not form.validate_on_submit():
        if request.method == "POST":
            _bed_errors(form, service)  # shown with the other field errors
            return again()
        return render_template("directory/service_form.html", form=form, service=service)
    hours = form.weekly_hours()
    if hours is None:
        return again()
    phone = None
    if form.intake_phone.data:
        try:
            phone = normalize_phone(form.intake_phone.data)
        except InvalidPhoneNumber:
            form.intake_phone.errors = [_("This is not a phone number we can use.")]
            return again()
    served = list(db.session.scalars(select(Area).where(Area.id.in_(form.areas.data or []))))
    org = db.session.get(Organization, form.organization_id.data) if admin else None
    if admin and org is None:
        form.organization_id.errors = [_("Choose an organization.")]
        return again()
    creating = service is None
    audit.lock()  # before the service row: the lock order of app.referrals (bed holds)
    if service is None:
        service = Service()
    if org is not None:
        service.organization = org
        service.category = form.category.data
    service.name = (form.name.data or "").strip()
    service.description = (form.description.data or "").strip()
    service.language_list = form.languages.data or []
    service.genders = form.genders.data or []
    service.min_age = form.min_age.data
    service.max_age = form.max_age.data
    service.accepts_children = bool(form.accepts_children.data)
    service.wheelchair_access = bool(form.wheelchair_access.data)
    service.hearing_access = bool(form.hearing_access.data)
    service.areas = served
    service.latitude = form.latitude.data
    service.longitude = form.longitude.data
    service.location_confidential = bool(form.location_confidential.data)
    service.hours = hours
    service.timezone = (form.timezone.data or "UTC").strip()
    phone_changed = phone != service.intake_phone
    service.set_intake_phone(phone)
    service.active = bool(form.active.data)
    service.updated_at = utcnow()
    db.session.add(service)
    db.session.flush()
    audit.record("service.create" if creating else "service.update", "service", service.id)
    if phone_changed:  # the number trusted for ACCEPT, DECLINE and BEDS (ids only)
        audit.record("service.intake_phone_change", "service", service.id)
    try:
        capacity.set_beds(service, total=form.beds_total.data, free=form.beds_available.data)
    except capacity.BedCountError as exc:
        db.session.rollback()
        _bed_error(form, exc)
        return again()
    db.session.commit()
    flash(_("Saved."), "success")
    return redirect(url_for("directory.service_detail", service_id=service.id))


def _bed_error(form: ServiceForm, exc: capacity.BedCountError) -> None:
    field = form.beds_total if exc.field == "total" else form.beds_available
    field.errors = [*field.errors, str(exc.message)]


def _bed_errors(form: ServiceForm, service: Service | None) -> None:
    """The bed rule's verdict on a form refused for other reasons, so that every field error
    shows at once (``capacity.set_beds`` checks again, under its lock, when it is saved)."""
    if form.beds_total.errors or form.beds_available.errors:
        return
    category = form.category.data if form.category else (service.category if service else "")
    try:
        capacity.check(
            category or "",
            form.beds_total.data,
            form.beds_available.data,
            capacity.beds_held(service.id if service else None),
        )
    except capacity.BedCountError as exc:
        _bed_error(form, exc)


@bp.post("/services/<int:service_id>/beds")
@roles("admin", "provider")
def service_beds(service_id: int) -> Response | tuple[str, int]:
    service = _service_for_editing(service_id)
    form = BedsForm()
    if form.validate_on_submit():
        try:
            capacity.set_beds(service, free=form.beds_available.data)
        except capacity.BedCountError as exc:
            db.session.rollback()
            form.beds_available.errors = [str(exc.message)]
        else:
            db.session.commit()
            flash(_("Beds updated."), "success")
            return redirect(url_for("directory.service_detail", service_id=service.id))
    return render_template(
        "directory/service_detail.html",
        service=service,
        can_edit=True,
        beds_form=form,
        phone=format_phone(service.intake_phone) if service.intake_phone else None,
        open_now=service.open_at(utcnow()),
        weekdays=WEEKDAY_LABELS,
        day_hours=[format_day_hours(service.hours, d) for d in range(7)],
        vocab=vocab,
    ), 400


# --- areas ---------------------------------------------------------------------------------


@bp.get("/areas")
@roles("admin")
def areas() -> str:
    rows = db.session.scalars(select(Area).order_by(Area.name)).all()
    return render_template("directory/areas.html", areas=rows)


@bp.route("/areas/new", methods=["GET", "POST"])
@roles("admin")
def area_new() -> Response | str | tuple[str, int]:
    return _area_form(None)


@bp.route("/areas/<int:area_id>", methods=["GET", "POST"])
@roles("admin")
def area_edit(area_id: int) -> Response | str | tuple[str, int]:
    area = get_or_404(Area, area_id, None)
    return _area_form(area)


def _descendants(area: Area) -> set[int]:
    found: set[int] = {area.id}
    frontier = [area.id]
    while frontier:
        children = db.session.scalars(select(Area.id).where(Area.parent_id.in_(frontier))).all()
        frontier = [c for c in children if c not in found]
        found.update(frontier)
    return found


def _area_form(area: Area | None) -> Response | str | tuple[str, int]:
    form = AreaForm(obj=area)
    excluded = _descendants(area) if area is not None else set()
    form.parent_id.choices = [(0, _("None"))] + [
        (i, n) for i, n in _area_choices() if i not in excluded
    ]
    if request.method == "GET":
        form.parent_id.data = area.parent_id or 0 if area else 0
    if form.validate_on_submit():
        name = (form.name.data or "").strip()
        clash = db.session.scalar(select(Area.id).where(func.lower(Area.name) == name.lower()))
        if clash is not None and (area is None or clash != area.id):
            form.name.errors = [_("An area with this name exists.")]
            return render_template("directory/area_form.html", form=form, area=area), 400
        # Checked by the form (app.discretion); empty: offered by number only.
        sms_label = (form.sms_label.data or "").strip() or None
        if sms_label is not None:
            taken = db.session.scalar(
                select(Area.id).where(func.lower(Area.sms_label) == sms_label.lower())
            )
            if taken is not None and (area is None or taken != area.id):
                form.sms_label.errors = [_("Another area has this SMS label.")]
                return render_template("directory/area_form.html", form=form, area=area), 400
        creating = area is None
        if area is None:
            area = Area(name=name)
            db.session.add(area)
        area.name = name
        area.sms_label = sms_label
        area.parent_id = form.parent_id.data or None
        area.latitude = form.latitude.data
        area.longitude = form.longitude.data
        area.timezone = form.timezone.data or None
        db.session.flush()
        audit.record("area.create" if creating else "area.update", "area", area.id)
        db.session.commit()
        flash(_("Saved."), "success")
        return redirect(url_for("directory.areas"))
    status = 400 if request.method == "POST" else 200
    return render_template("directory/area_form.html", form=form, area=area), status


# --- matching in anonymous mode ----------------------------------------------------------


@bp.route("/match", methods=["GET", "POST"])
@roles("caseworker", "supervisor")
def match() -> str | tuple[str, int]:
    form = MatchForm()
    form.area_id.choices = [(0, _("Not given")), *_area_choices()]
    results: list[Any] | None = None
    if request.method == "POST":
        if not form.validate_on_submit():
            return render_template("directory/match.html", form=form, results=None), 400
        criteria = matching.criteria_from_form(
            {
                "categories": form.categories.data,
                "urgency": form.urgency.data,
                "language": form.language.data,
                "age_band": form.age_band.data,
                "gender": form.gender.data,
                "area_id": form.area_id.data,
                "children": form.children.data,
                "accessibility": form.accessibility.data,
            }
        )
        results = matching.match(criteria, with_excluded=bool(form.show_excluded.data))
    return render_template(
        "directory/match.html",
        form=form,
        results=results,
        category_labels=vocab.CATEGORY_LABELS,
        urgency_labels=vocab.URGENCY_LABELS,
    )
