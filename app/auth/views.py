from __future__ import annotations

import time
from typing import Any

import segno
from cryptography.fernet import InvalidToken
from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user
from werkzeug.wrappers import Response

from app.auth import accounts
from app.auth.forms import LanguageForm, LoginForm, PasswordChangeForm, TotpForm
from app.core import audit
from app.core.crypto import keyring
from app.core.extensions import db
from app.core.security import ANY_ROLE, end_session, is_safe_next, roles, start_session
from app.core.templating import LANGUAGE_NAMES
from app.models import User, utcnow

bp = Blueprint("auth", __name__)

PENDING_TTL = 300  # seconds between the password step and the second factor


def password_problem_message(reason: str) -> str:
    return {
        "too_short": _("Use at least %(n)d characters.", n=accounts.MIN_PASSWORD_LENGTH),
        "too_long": _("Use at most %(n)d characters.", n=accounts.MAX_PASSWORD_LENGTH),
        "contains_username": _("The password must not contain the username."),
        "too_common": _("This password is too common. Choose another."),
    }.get(reason, _("This password cannot be used."))


def _client() -> str:
    return request.remote_addr or "unknown"


def _pending_user() -> User | None:
    pending: Any = session.get("pending")
    if not isinstance(pending, dict):
        return None
    if time.time() - float(pending.get("at", 0)) > PENDING_TTL:
        session.pop("pending", None)
        return None
    uid = pending.get("uid")
    user = db.session.get(User, uid) if isinstance(uid, int) else None
    if user is None or not user.active or user.session_token != pending.get("token"):
        return None
    return user


def _complete_login(user: User, target: str | None) -> Response:
    start_session(user)
    user.last_login_at = utcnow()
    audit.record(
        "auth.login", "user", user.id, actor_user_id=user.id, actor_org_id=user.organization_id
    )
    db.session.commit()
    return redirect(target if target and is_safe_next(target) else url_for("main.index"))


def throttled_message() -> str:
    """The lock-out message, with the window the deployment really uses
    (``HAVEN_LOGIN_WINDOW_MINUTES``)."""
    minutes = max(1, int(current_app.config["LOGIN_WINDOW"].total_seconds() // 60))
    return ngettext(
        "Too many failed sign-in attempts. Wait %(num)d minute and try again, or ask an "
        "administrator.",
        "Too many failed sign-in attempts. Wait %(num)d minutes and try again, or ask an "
        "administrator.",
        minutes,
    )


@bp.route("/login", methods=["GET", "POST"])
def login() -> Response | str | tuple[str, int]:
    if current_user.is_authenticated:
        return redirect(url_for("main.index"))
    form = LoginForm()
    if request.method == "GET":
        form.next.data = request.args.get("next", "")
    if form.validate_on_submit():
        try:
            user = accounts.authenticate(
                form.username.data or "", form.password.data or "", _client()
            )
        except accounts.LoginThrottledException:
            db.session.commit()
            flash(
                throttled_message(),
                "error",
            )
            return render_template("auth/login.html", form=form), 429
        except accounts.InvalidCredentials:
            db.session.commit()
            flash(_("Wrong username or password."), "error")
            return render_template("auth/login.html", form=form), 401
        target = form.next.data if is_safe_next(form.next.data) else None
        if user.totp_required or user.totp_enrolled:
            session.clear()
            session["pending"] = {
                "uid": user.id,
                "token": user.session_token,
                "at": time.time(),
                "next": target,
            }
            db.session.commit()
            if user.totp_enrolled:
                return redirect(url_for("auth.second_factor"))
            return redirect(url_for("auth.enroll_totp"))
        return _complete_login(user, target)
    if form.refused_nul:
        accounts.note_refused_attempt(form.username.data or "", _client())
        db.session.commit()
    status = 400 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/verify", methods=["GET", "POST"])
def second_factor() -> Response | str | tuple[str, int]:
    user = _pending_user()
    if user is None or not user.totp_enrolled:
        flash(_("Please sign in again."), "info")
        return redirect(url_for("auth.login"))
    form = TotpForm()
    if form.validate_on_submit():
        if accounts.is_throttled(user.username, _client()):
            flash(
                throttled_message(),
                "error",
            )
            return render_template("auth/totp.html", form=form), 429
        try:
            accounts.verify_totp(user, form.code.data or "")
        except accounts.TotpReplayed:
            accounts.note_failure(user.username, _client())
            db.session.commit()
            form.code.errors = [_("This code was already used. Wait for the next one.")]
            return render_template("auth/totp.html", form=form), 400
        except accounts.TotpInvalid:
            accounts.note_failure(user.username, _client())
            db.session.commit()
            form.code.errors = [_("That code is not right. Check your app and try again.")]
            return render_template("auth/totp.html", form=form), 400
        return _complete_login(user, session.get("pending", {}).get("next"))
    if form.refused_nul:
        accounts.note_failure(user.username, _client())
        db.session.commit()
    status = 400 if request.method == "POST" else 200
    return render_template("auth/totp.html", form=form), status


@bp.route("/enroll", methods=["GET", "POST"])
def enroll_totp() -> Response | str | tuple[str, int]:
    """TOTP enrolment: after the password step when required, or later by choice.
    Never for an account that already has a second factor (that would bypass it)."""
    user = current_user if current_user.is_authenticated else _pending_user()
    if user is None:
        return redirect(url_for("auth.login"))
    if user.totp_enrolled:
        flash(_("Two-step sign-in is already set up for this account."), "info")
        return redirect(url_for("main.index" if current_user.is_authenticated else "auth.login"))
    ring = keyring()
    secret = None
    sealed_secret = session.get("enroll_secret")
    if isinstance(sealed_secret, str):
        try:
            secret = ring.multi.decrypt(sealed_secret.encode(), ttl=PENDING_TTL * 2).decode()
        except InvalidToken:
            secret = None
    if secret is None:
        secret = accounts.new_totp_secret()
        session["enroll_secret"] = ring.multi.encrypt(secret.encode()).decode()
    form = TotpForm()
    if form.validate_on_submit():
        try:
            accounts.verify_totp(user, form.code.data or "", secret=secret)
        except accounts.AccountError:
            accounts.note_failure(user.username, _client())
            db.session.commit()
            form.code.errors = [_("That code is not right. Check your app and try again.")]
        else:
            user.totp_secret = secret
            session.pop("enroll_secret", None)
            audit.record(
                "user.totp_enrolled",
                "user",
                user.id,
                actor_user_id=user.id,
                actor_org_id=user.organization_id,
            )
            if current_user.is_authenticated:
                db.session.commit()
                flash(_("Two-step sign-in is set up."), "success")
                return redirect(url_for("main.index"))
            return _complete_login(user, session.get("pending", {}).get("next"))
    uri = accounts.totp_uri(user, secret)
    qr_svg = segno.make(uri, error="m").svg_inline(scale=5, dark="#000", light="#fff")
    status = 400 if request.method == "POST" else 200
    return render_template("auth/enroll.html", form=form, qr_svg=qr_svg, secret=secret), status


@bp.post("/logout")
@roles(*ANY_ROLE)
def logout() -> Response:
    audit.record("auth.logout", "user", current_user.id)
    end_session()
    db.session.commit()
    flash(_("You are signed out."), "info")
    return redirect(url_for("auth.login"))


@bp.route("/password", methods=["GET", "POST"])
@roles(*ANY_ROLE)
def change_password() -> Response | str | tuple[str, int]:
    form = PasswordChangeForm()
    if form.validate_on_submit():
        user: User = current_user._get_current_object()  # type: ignore[attr-defined]
        if not accounts.check_password(user, form.current.data or ""):
            form.current.errors = [_("The current password is not right.")]
        else:
            try:
                # Every other session of hers ends; this one goes on (same lifetime).
                accounts.set_password(
                    user, form.new.data or "", keep_session=session.get("_user_id")
                )
            except accounts.PasswordPolicyError as exc:
                form.new.errors = [password_problem_message(exc.reason)]
            else:
                audit.record("user.password_change", "user", user.id)
                db.session.commit()
                flash(_("Your password was changed. Other sessions were signed out."), "success")
                return redirect(url_for("main.index"))
        return render_template("auth/password.html", form=form,
                           min_password_length=accounts.MIN_PASSWORD_LENGTH), 400
    status = 400 if request.method == "POST" else 200
    return render_template("auth/password.html", form=form,
                           min_password_length=accounts.MIN_PASSWORD_LENGTH), status


@bp.route("/language", methods=["GET", "POST"])
@roles(*ANY_ROLE)
def language() -> Response | str | tuple[str, int]:
    form = LanguageForm()
    form.locale.choices = [(code, LANGUAGE_NAMES[code]) for code in current_app.config["LANGUAGES"]]
    if request.method == "GET":
        form.locale.data = current_user.locale or "en"
    if form.validate_on_submit():
        current_user.locale = form.locale.data
        audit.record("user.locale_change", "user", current_user.id)
        db.session.commit()
        return redirect(url_for("main.index"))
    status = 400 if request.method == "POST" else 200
    return render_template("auth/language.html", form=form), status
