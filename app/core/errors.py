"""Generic error pages that leak nothing: no tracebacks, no ids, no internals."""

from __future__ import annotations

from flask import Flask, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from app.core.extensions import db


def _messages() -> dict[int, str]:
    return {
        400: _("The request could not be understood. Please go back and try again."),
        401: _("Please sign in to continue."),
        403: _("You do not have access to this page."),
        404: _("This page does not exist or you do not have access to it."),
        405: _("This action is not allowed here."),
        413: _("What was sent is too large."),
        429: _("Too many attempts. Please wait and try again."),
        500: _("Something went wrong on our side. Nothing was saved. Please try again."),
    }


def render_error(code: int, message: str | None = None) -> tuple[str, int]:
    text = message or _messages().get(code) or _messages()[500]
    return render_template("error.html", code=code, message=text), code


def register(app: Flask) -> None:
    @app.errorhandler(CSRFError)
    def csrf_error(_error: CSRFError) -> tuple[str, int]:
        return render_error(
            400,
            _("This form has expired or was already sent. Please reload the page and try again."),
        )

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[str, int] | HTTPException:
        code = error.code or 500
        if code < 400:
            return error
        return render_error(code)

    @app.errorhandler(Exception)
    def unexpected(error: Exception) -> tuple[str, int]:
        db.session.rollback()
        # Log the type and place only: exception messages can hold submitted values.
        tb = error.__traceback__
        where = ""
        while tb is not None:
            where = f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"
            tb = tb.tb_next
        app.logger.error("unhandled %s at %s on %s", type(error).__name__, where, request.endpoint)
        return render_error(500)
