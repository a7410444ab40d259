"""Consent-first intake on a tablet, the case list and case page, consent changes and
survivor rights (export, erase now). Views parse, call ``app.cases`` / ``app.consent``,
commit and render.

State between intake steps lives on the server only: the consent step creates the case (with
its consent records) and later steps address it by id; before that, the only thing the
browser carries is a random, non-identifying intake token in a hidden field."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import and_, exists, false, func, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload

from app.auth import org_settings
from app.cases import danger, erasure, followups
from app.cases import search as case_search
from app.cases import service as cases
from app.cases.day_forms import AssignForm, CloseCaseForm, FollowUpForm
from app.cases.forms import (
    ActionForm,
    AnonymousForm,
    CaseSearchForm,
    ChangeConsentForm,
    ConsentStepForm,
    DangerAcknowledgeForm,
    EraseForm,
    NeedsForm,
    ProfileForm,
    language_choices,
)
from app.consent import changes, safe_hours
from app.consent import service as consent
from app.core import audit
from app.core.crypto import InvalidPhoneNumber, format_phone, normalize_phone
from app.core.extensions import db
from app.core.inputs import parse_id
from app.core.security import get_or_404, roles
from app.core.vocab import (
    AGE_BAND_LABELS,
    CATEGORY_LABELS,
    CLOSE_REASON_LABELS,
    GENDER_LABELS,
    SERVICE_CATEGORIES,
    SURVIVOR_LANGUAGE_LABELS,
    SURVIVOR_LANGUAGES,
    URGENCY_LABELS,
)
from app.models import AnonymousContact, Area, Case, Need
from app.models.base import utcnow
from app.models.cases import CONSENT_SCOPES
from app.referrals import service as referrals
from app.sms import channels, messaging

bp = Blueprint("intake", __name__)

STAFF = ("caseworker", "supervisor")
# Cases the hotline opened that no caseworker has taken up yet (no profile recorded), and any
# case whose survivor reported danger until a caseworker acknowledges it (issue 13).
SMS_QUEUE = (
    Case.status == "open",
    or_(
        and_(Case.channel == "sms", Case.profile_completed_at.is_(None)),
        danger.pending_clause(),
    ),
)
# Danger not yet acknowledged first (the longest waiting first), then cases with an
# immediate need, then the oldest.
SMS_QUEUE_ORDER = (
    sql_case((danger.pending_clause(), 0), else_=1),
    sql_case((danger.pending_clause(), Case.danger_reported_at)),
    sql_case(
        (exists().where(Need.case_id == Case.id, Need.urgency == "immediate"), 0), else_=1
    ),
    Case.created_at,
    Case.id,
)
PAGE_SIZE = 50
SEARCH_ERRORS = {
    "empty": lambda: _("Type a reference code, a name or a phone number."),
    "phone": lambda: _(
        "This is not a phone number we can use. Include the country code, e.g. +44."
    ),
}
RESEND_WINDOW = timedelta(seconds=60)


def _area_choices(blank: str) -> list[tuple[str, str]]:
    areas = db.session.scalars(select(Area).order_by(Area.name)).all()
    return [("", blank), *((str(a.id), a.name) for a in areas)]


def _survivor_language(raw: str | None) -> str:
    if raw in SURVIVOR_LANGUAGES:
        return str(raw)
    # Until the caseworker picks the survivor's language: the interface language shown now.
    ui = str(get_locale() or "en")
    return ui if ui in SURVIVOR_LANGUAGES else "en"


def _contact_rules(case: Case) -> safe_hours.ContactRules:
    return safe_hours.contact_rules(case, current_app.config["HAVEN_DEFAULT_TIMEZONE"])


def _labels() -> dict[str, Any]:
    return {
        "scope_labels": consent.SCOPE_LABELS,
        "method_labels": consent.METHOD_LABELS,
        "decision_labels": consent.DECISION_LABELS,
        "category_labels": CATEGORY_LABELS,
        "urgency_labels": URGENCY_LABELS,
        "age_band_labels": AGE_BAND_LABELS,
        "gender_labels": GENDER_LABELS,
        "language_labels": SURVIVOR_LANGUAGE_LABELS,
    }


# --- case list --------------------------------------------------------------------------


def _tab_filter(tab: str) -> tuple[Any, ...]:
    """Which cases a tab of the case list shows ("mine": the cases she is responsible for)."""
    if tab == "sms":
        return tuple(SMS_QUEUE)
    if tab == "drafts":
        return (Case.is_draft,)
    if tab == "open":
        return (Case.status == "open", ~Case.is_draft)
    if tab == "mine":
        return (Case.status == "open", Case.assigned_to_id == current_user.id)
    if tab == "unassigned":
        return (Case.status == "open", ~Case.is_draft, Case.assigned_to_id.is_(None))
    return (Case.status == tab,)


@bp.route("/", methods=["GET", "POST"])
@roles(*STAFF)
def case_list() -> Any:
    # A caseworker opens on her own cases, a supervisor on the organization's (issue 16).
    default_tab = "mine" if current_user.role == "caseworker" else "open"
    tab = request.args.get("tab", default_tab)
    if tab not in ("open", "drafts", "closed", "sms", "mine", "unassigned"):
        tab = default_tab
    search_form = CaseSearchForm(formdata=request.form if request.method == "POST" else None)
    if request.method == "POST":
        raw_query = (search_form.q.data or "").strip() if search_form.validate() else ""
        if not raw_query and not search_form.errors:
            search_form.q.errors = [SEARCH_ERRORS["empty"]()]
    else:  # a reference code in a link (?q=K7Q-4MX)
        raw_query = (request.args.get("q") or "").strip()[:20]
        search_form.q.data = raw_query
    query_error = search_form.q.errors[0] if search_form.q.errors else None
    stmt = (
        select(Case)
        .where(Case.organization_id == current_user.organization_id)
        .options(selectinload(Case.data_key), selectinload(Case.area), selectinload(Case.needs))
    )
    searched = None
    if query_error:
        stmt = stmt.where(false())
    elif raw_query:
        try:
            searched = case_search.find_cases(
                current_user.organization_id, raw_query,
                phone_region=org_settings.phone_region(
                    current_user.organization, current_app.config["HAVEN_PHONE_REGION"]
                ),
            )
        except case_search.SearchError as exc:
            query_error = SEARCH_ERRORS[exc.kind]()
        stmt = stmt.where(false())
    else:
        stmt = stmt.where(*_tab_filter(tab))
    page = parse_id(request.args.get("page", "1")) or 1
    page_number = page if page < 10_000 else 1
    if tab == "sms" and not raw_query:
        stmt = stmt.order_by(*SMS_QUEUE_ORDER)
    else:
        stmt = stmt.order_by(Case.created_at.desc(), Case.id.desc())
    rows = db.session.scalars(
        stmt.offset((page_number - 1) * PAGE_SIZE).limit(PAGE_SIZE + 1)
    ).all()
    has_more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    if searched is not None:
        rows, has_more = searched.cases, False
        audit.record("case.search", "organization", current_user.organization_id)
    if raw_query and len(rows) == 1 and query_error is None:
        db.session.commit()
        return redirect(url_for("intake.case_page", case_id=rows[0].id))
    counts = dict(
        db.session.execute(
            select(Case.status, func.count(Case.id))
            .where(Case.organization_id == current_user.organization_id)
            .group_by(Case.status)
        ).all()
    )
    sms_queue = db.session.scalar(
        select(func.count(Case.id)).where(
            Case.organization_id == current_user.organization_id, *SMS_QUEUE
        )
    )
    draft_count = db.session.scalar(
        select(func.count(Case.id)).where(
            Case.organization_id == current_user.organization_id, Case.is_draft
        )
    ) or 0
    counts["open"] = counts.get("open", 0) - draft_count  # drafts have their own tab
    if not query_error:  # a refused search shows nothing and changes nothing
        audit.record("case.list", "organization", current_user.organization_id)
        db.session.commit()
    page_html = render_template(
        "intake/list.html", cases=rows, tab=tab, q=raw_query, query_error=query_error,
        search_form=search_form, searched=searched,
        page=page_number, has_more=has_more,
        counts=counts, sms_queue=sms_queue, draft_count=draft_count, **_labels(),
    )
    return page_html, 400 if query_error else 200


# --- intake: consent step first -----------------------------------------------------------


@bp.route("/new", methods=["GET", "POST"])
@roles(*STAFF)
def start() -> Any:
    form = ConsentStepForm()
    if request.method == "GET":
        language = _survivor_language(request.args.get("lang"))
        form.token.data = cases.new_intake_token()
        return _render_consent_step(form, language)
    language = form.language.data if form.language.data in SURVIVOR_LANGUAGES else "en"
    if not form.validate_on_submit():
        return _render_consent_step(form, language, status=400)
    signature = form.signature.data or ""
    if form.method.data == "written":
        try:
            cases.check_signature(signature)
        except cases.CaseError:
            form.signature.errors = [_("Ask the survivor to sign in the box.")]
            return _render_consent_step(form, language, status=400)
    # The language the texts were shown in (English when not translated).
    _texts, shown_language = consent.texts_for(language, form.text_version.data)
    answers = {s: getattr(form, f"scope_{s}").data == "yes" for s in CONSENT_SCOPES}
    token = form.token.data
    if not answers["store"]:
        # Anonymous mode: no case, no signature, no identifying data. Only a count later.
        return redirect(url_for("intake.anonymous", token=token))
    try:
        case, created = cases.create_case(
            current_user.organization_id, current_user.id,
            idempotency_key=token, language=language,
        )
    except cases.CaseError:
        db.session.rollback()
        form.token.errors = [_("This form is out of date. Please start again.")]
        return _render_consent_step(form, language, status=400)
    if created:
        stored_signature = (
            cases.store_signature(case, signature) if form.method.data == "written" else None
        )
        at = utcnow()
        for scope in CONSENT_SCOPES:
            changes.change_consent(
                case, scope, answers[scope], form.method.data, current_user.id,
                language=shown_language, text_version=form.text_version.data,
                signature=stored_signature, at=at,
            )
        db.session.commit()
    if case.is_erased:
        abort(404)
    if case.profile_completed_at is not None:
        return redirect(url_for("intake.case_page", case_id=case.id))
    return redirect(url_for("intake.profile", case_id=case.id))


def _render_consent_step(form: Any, language: str, status: int = 200) -> Any:
    version = form.text_version.data if form.text_version.data in consent.CONSENT_TEXTS \
        else consent.CURRENT_VERSION
    texts, shown = consent.texts_for(language, version)
    form.language.data = language
    form.text_version.data = version
    return render_template(
        "intake/consent_step.html", form=form, texts=texts, shown_language=shown,
        language=language, languages=language_choices(), version=version,
        scopes=CONSENT_SCOPES, **_labels(),
    ), status


@bp.route("/anonymous", methods=["GET", "POST"])
@roles(*STAFF)
def anonymous() -> Any:
    form = AnonymousForm()
    form.area_id.choices = _area_choices(_("Not given"))
    if request.method == "GET":
        form.token.data = request.args.get("token", "")
        if not cases.valid_token(form.token.data):
            form.token.data = cases.new_intake_token()
        return _render_anonymous(form)
    if not form.validate_on_submit():
        return _render_anonymous(form, status=400)
    area_id = int(form.area_id.data) if form.area_id.data else None
    exists = db.session.scalar(
        select(AnonymousContact.id).where(AnonymousContact.idempotency_key == form.token.data)
    )
    if exists is None:
        row = AnonymousContact(
            day=utcnow().date(),
            organization_id=current_user.organization_id,
            area_id=area_id,
            need_categories=cases.need_categories(form.needs.data or []),
            idempotency_key=form.token.data,
        )
        try:
            with db.session.begin_nested():
                db.session.add(row)
                db.session.flush()
        except IntegrityError:
            pass  # the same form arrived twice: counted once
        else:
            audit.record("anonymous_contact.record", "anonymous_contact", row.id)
        db.session.commit()
    match = "directory.match" if "directory.match" in current_app.view_functions else None
    return render_template("intake/anonymous_done.html", match_endpoint=match)


def _render_anonymous(form: Any, status: int = 200) -> Any:
    match = "directory.match" if "directory.match" in current_app.view_functions else None
    return render_template("intake/anonymous.html", form=form, match_endpoint=match), status


# --- intake: profile and needs ------------------------------------------------------------


def _require_store(case: Case) -> Any:
    if not consent.has_consent(case, "store"):
        flash(_("Record the survivor's consent to keep a record first."), "error")
        return redirect(url_for("intake.change_consent", case_id=case.id))
    return None


@bp.route("/<int:case_id>/profile", methods=["GET", "POST"])
@roles(*STAFF)
def profile(case_id: int) -> Any:
    case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
    refused = _require_store(case)
    if refused is not None:
        return refused
    form = ProfileForm()
    form.language.choices = language_choices()
    form.area_id.choices = _area_choices("—")
    rules = _contact_rules(case)
    zones = safe_hours.zone_choices([current_app.config["HAVEN_DEFAULT_TIMEZONE"], rules.zone])
    if request.method == "GET":
        # Prefilled from the case: an SMS case already has a phone (and maybe needs).
        phone = case.phone
        form.alias.data = case.alias
        form.phone.data = format_phone(phone) if phone else ""
        form.age_band.data = case.age_band or ""
        form.gender.data = case.gender or ""
        form.area_id.data = str(case.area_id) if case.area_id else ""
        form.children_accompanying.data = case.children_accompanying
        form.accessibility.data = case.accessibility
        for entry, window in zip(form.safe_hours, rules.windows, strict=False):
            entry.form.days.data = sorted(window.days)
            entry.form.start.data = safe_hours.hhmm(window.start)
            entry.form.end.data = safe_hours.hhmm(window.end)
        form.timezone.data = case.timezone or ""
        form.no_voicemail.data = case.no_voicemail
        form.do_not_text.data = case.do_not_text
        form.note.data = case.note
        form.language.data = case.language or "en"
        if case.alias_enc is not None or case.phone_enc is not None:
            audit.record("case.profile_view", "case", case.id)
            db.session.commit()
        return render_template("intake/profile.html", form=form, case=case, rules=rules,
                               zones=zones)
    valid = form.validate_on_submit()
    windows = form.safe_windows()
    if windows is None:
        valid = False
    elif not windows and rules.needs_check and not form.safe_hours_any_time.data:
        # Saving the profile for another reason must not lift the block by accident.
        form.safe_hours_any_time.errors = [
            _("Enter her safe hours as days and times, or tick “Any time is safe”.")
        ]
        valid = False
    phone_e164 = None
    if form.phone.data and not form.phone.errors:
        try:
            phone_e164 = normalize_phone(form.phone.data)
        except InvalidPhoneNumber:
            form.phone.errors = [*form.phone.errors, _("This is not a phone number we can use. "
                                                       "Include the country code, e.g. +44.")]
            valid = False
        else:
            form.phone.data = format_phone(phone_e164)  # shown back formatted
    if not valid:
        return render_template("intake/profile.html", form=form, case=case, rules=rules,
                               zones=zones), 400
    cases.set_profile(
        case,
        alias=(form.alias.data or "").strip(),
        phone_e164=phone_e164,
        language=form.language.data,
        age_band=form.age_band.data,
        gender=form.gender.data or None,
        area_id=int(form.area_id.data),
        children_accompanying=form.children_accompanying.data,
        accessibility=bool(form.accessibility.data),
        safe_hours=windows or [],
        timezone=form.timezone.data or None,
        no_voicemail=bool(form.no_voicemail.data),
        do_not_text=bool(form.do_not_text.data),
        note=(form.note.data or "").strip() or None,
    )
    db.session.commit()
    return redirect(url_for("intake.needs", case_id=case.id))


@bp.route("/<int:case_id>/needs", methods=["GET", "POST"])
@roles(*STAFF)
def needs(case_id: int) -> Any:
    case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
    refused = _require_store(case)
    if refused is not None:
        return refused
    form = NeedsForm()
    if request.method == "GET":
        for need in case.needs:
            getattr(form, f"need_{need.category}").data = need.urgency
        phone = case.phone
        audit.record("case.needs_view", "case", case.id)
        db.session.commit()
        return render_template(
            "intake/needs.html", form=form, case=case,
            phone=format_phone(phone) if phone else None, rules=_contact_rules(case),
            **_labels(),
        )
    if not form.validate_on_submit():
        return render_template("intake/needs.html", form=form, case=case, phone=None,
                               **_labels()), 400
    chosen = {
        c: getattr(form, f"need_{c}").data
        for c in SERVICE_CATEGORIES
        if getattr(form, f"need_{c}").data
    }
    cases.set_needs(case, chosen)
    db.session.commit()
    flash(_("Saved."), "success")
    return redirect(url_for("intake.case_page", case_id=case.id))


# --- case page ----------------------------------------------------------------------------


@bp.get("/<int:case_id>")
@roles(*STAFF)
def case_page(case_id: int) -> Any:
    case = get_or_404(Case, case_id, Case.organization_id)
    audit.record("case.view", "case", case.id)
    db.session.commit()
    if case.is_erased:
        return render_template("intake/case_erased.html", case=case)
    states = consent.current_consents(case)
    permitted = {a: consent.permits(case, a, states=states) for a in consent.ACTIONS}
    phone = case.phone
    return render_template(
        "intake/case.html", case=case, states=states, permitted=permitted,
        phone=format_phone(phone) if phone else None, rules=_contact_rules(case),
        events=cases.case_audit_events(case, limit=100), action_form=ActionForm(),
        danger_pending=danger.is_pending(case), **_labels(), **_day(case),
        reply=channels.case_channels(case), channel_labels=channels.CHANNEL_LABELS,
        reason_labels=channels.FAILURE_REASON_LABELS,
    )


def _day(case: Case) -> dict[str, Any]:
    """The case page's part of the caseworker's day (issue 16): follow-ups, assignment."""
    people = (
        cases.assignable_users(case.organization_id)
        if current_user.role == "supervisor" and case.status == "open" else []
    )
    return {
        "follow_ups": followups.for_case(case),
        "follow_up_labels": {"kind": followups.KIND_LABELS, "outcome": followups.OUTCOME_LABELS},
        "assignees": people,
        "close_reason_labels": CLOSE_REASON_LABELS,
    }


@bp.post("/<int:case_id>/danger/acknowledge")
@roles(*STAFF)
def acknowledge_danger(case_id: int) -> Any:
    """A caseworker or supervisor took up a danger report (from the home page or the case
    page). Idempotent: a double tap records one acknowledgement."""
    case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
    form = DangerAcknowledgeForm()
    here = url_for("intake.case_page", case_id=case.id)
    seen = form.seen() if form.validate_on_submit() else None
    if seen is None:
        flash(_("The danger report could not be acknowledged. Please try again."), "error")
        return redirect(here)
    try:
        acknowledged = danger.acknowledge(case, current_user.id, seen=seen)
    except danger.NewerDangerReport:
        db.session.rollback()
        flash(_("The survivor reported danger again after the report you saw. Read the case, "
                "then acknowledge the new report."), "error")
        return redirect(here)
    db.session.commit()
    if acknowledged:
        flash(_("Danger report acknowledged."), "success")
    else:
        flash(_("This danger report was already acknowledged."), "success")
    return redirect(url_for("main.index") if form.back.data == "home" else here)


@bp.route("/<int:case_id>/consent", methods=["GET", "POST"])
@roles(*STAFF)
def change_consent(case_id: int) -> Any:
    case = get_or_404(Case, case_id, Case.organization_id)
    if case.is_erased:  # e.g. a resent "withdraw store": show what happened, not a 404
        return redirect(url_for("intake.case_page", case_id=case.id))
    form = ChangeConsentForm()
    form.scope.choices = [(s, str(consent.SCOPE_LABELS[s])) for s in CONSENT_SCOPES]
    raw_language = request.args.get("lang") if request.method == "GET" else form.language.data
    language = raw_language if raw_language in SURVIVOR_LANGUAGES else (case.language or "en")
    if request.method == "POST" and form.validate_on_submit():
        ok = True
        granted = form.decision.data == "grant"
        if form.scope.data == "store" and not granted and not form.confirm_erase.data:
            form.confirm_erase.errors = [_("Tick this box to confirm the erasure.")]
            ok = False
        signature = None
        if ok and form.method.data == "written":
            try:
                cases.check_signature(form.signature.data or "")
            except cases.CaseError:
                form.signature.errors = [_("Ask the survivor to sign in the box.")]
                ok = False
        if ok and _is_resend(case, form.scope.data, granted, form.method.data):
            return redirect(url_for("intake.case_page", case_id=case.id))
        if ok:
            _texts, shown = consent.texts_for(language, form.text_version.data)
            if form.method.data == "written":
                signature = cases.store_signature(case, form.signature.data or "")
            record = changes.change_consent(
                case, form.scope.data, granted, form.method.data, current_user.id,
                language=shown, text_version=form.text_version.data, signature=signature,
            )
            refused = record.decision == "refuse"
            erased = case.is_erased
            db.session.commit()
            if erased:
                flash(_("The survivor withdrew consent to keep a record: the case was erased."),
                      "success")
                return redirect(url_for("intake.case_list"))
            if refused:
                flash(_("Recorded as a refusal: this consent had not been given, so there "
                        "was nothing to withdraw."), "success")
            else:
                flash(_("Consent recorded."), "success")
            return redirect(url_for("intake.case_page", case_id=case.id))
    status = 400 if request.method == "POST" else 200
    version = form.text_version.data if form.text_version.data in consent.CONSENT_TEXTS \
        else consent.CURRENT_VERSION
    texts, shown = consent.texts_for(language, version)
    form.language.data = language
    form.text_version.data = version
    if request.method == "GET":
        preset = request.args.get("scope")
        if preset in CONSENT_SCOPES:
            form.scope.data = preset
        audit.record("case.consent_view", "case", case.id)
        db.session.commit()
    return render_template(
        "intake/change_consent.html", form=form, case=case, texts=texts, shown_language=shown,
        language=language, languages=language_choices(), states=consent.current_consents(case),
        scopes=CONSENT_SCOPES, **_labels(),
    ), status


def _is_resend(case: Case, scope: str, granted: bool, method: str) -> bool:
    """The same change by the same person moments ago: a double tap or a resent form."""
    latest = consent.current_consents(case)[scope].record
    return bool(
        latest is not None
        and latest.granted == granted
        and latest.method == method
        and latest.recorded_by_id == current_user.id
        and utcnow() - latest.recorded_at < RESEND_WINDOW
    )


# --- status ---------------------------------------------------------------------------------


@bp.post("/<int:case_id>/reopen")
@roles(*STAFF)
def reopen(case_id: int) -> Any:
    case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
    if ActionForm().validate_on_submit() and case.status == "closed":
        cases.reopen_case(case)
        db.session.commit()
        flash(_("Case reopened."), "success")
    return redirect(url_for("intake.case_page", case_id=case.id))


@bp.route("/<int:case_id>/discard", methods=["GET", "POST"])
@roles(*STAFF)
def discard_draft(case_id: int) -> Any:
    """An abandoned intake (a draft): asks for confirmation, then erases it (audited; one
    de-identified count stays)."""
    case = get_or_404(Case, case_id, Case.organization_id)
    if case.is_erased:  # a double tap on "discard": the first one did it
        return redirect(url_for("intake.case_list", tab="drafts"))
    form = ActionForm()
    if case.is_draft and request.method == "POST" and form.validate_on_submit():
        try:
            erasure.discard_draft(case, current_user.id)
        except cases.NotADraft:
            db.session.rollback()  # its profile was saved meanwhile: keep it
        else:
            db.session.commit()
            flash(_("Draft discarded. Only a de-identified count remains."), "success")
            return redirect(url_for("intake.case_list", tab="drafts"))
    if not case.is_draft:
        flash(_("This case is not a draft: its profile is recorded. It can be closed or "
                "erased from its page."), "error")
        return redirect(url_for("intake.case_page", case_id=case.id))
    status = 400 if request.method == "POST" else 200
    return render_template("intake/discard.html", case=case, form=form), status


# --- survivor rights ------------------------------------------------------------------------


def _exportable(case_id: int) -> Case:
    case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
    if not consent.permits(case, "export"):
        abort(403)
    return case


@bp.get("/<int:case_id>/export")
@roles(*STAFF)
def export(case_id: int) -> Any:
    case = _exportable(case_id)
    data = cases.export_data(case)
    audit.record("case.export", "case", case.id)
    db.session.commit()
    return render_template(
        "intake/export.html", case=case, data=data, field_labels=referrals.FIELD_LABELS,
        message_labels=messaging.MESSAGE_LABELS, rules=_contact_rules(case), **_labels(),
    )


@bp.get("/<int:case_id>/export.json")
@roles(*STAFF)
def export_json(case_id: int) -> Response:
    case = _exportable(case_id)
    data = cases.export_data(case)
    audit.record("case.export_json", "case", case.id)
    db.session.commit()
    body = json.dumps(data, ensure_ascii=False, indent=2)
    return Response(
        body, mimetype="application/json",
        headers={"Content-Disposition": f'attachment; filename="haven-{case.reference}.json"'},
    )


@bp.route("/<int:case_id>/erase", methods=["GET", "POST"])
@roles(*STAFF)
def erase(case_id: int) -> Any:
    case = get_or_404(Case, case_id, Case.organization_id)
    if case.is_erased:  # a double tap on "erase": the first one did it
        return redirect(url_for("intake.case_page", case_id=case.id))
    form = EraseForm()
    if request.method == "POST" and form.validate_on_submit():
        if cases.normalize_reference(form.reference.data or "") != case.reference:
            form.reference.errors = [_("The reference code does not match this case.")]
        else:
            erasure.erase_case(case, current_user.id, reason="survivor_request")
            db.session.commit()
            flash(_("The case was erased. Only de-identified statistics remain."), "success")
            return redirect(url_for("intake.case_list"))
    status = 400 if request.method == "POST" else 200
    return render_template("intake/erase.html", form=form, case=case), status


# --- the caseworker's day on a case (issue 16): follow-up, close with a reason, assign, take

UNASSIGNED = ""


@bp.route("/<int:case_id>/follow-up", methods=["GET", "POST"])
@roles(*STAFF)
def follow_up(case_id: int) -> Any:
    case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
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
    case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
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
    case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
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
    case = get_or_404(Case, case_id, Case.organization_id, Case.status != "erased")
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
