"""Haven: a consent-first survivor support referral system.

``create_app`` assembles the application from small steps and has no side effects beyond
the app object: no migrations, no network, no writes.
"""

from __future__ import annotations

import logging
import os

import click
from flask import Flask, current_app, request, session
from flask_login import current_user
from werkzeug.middleware.proxy_fix import ProxyFix

from app.admin.views import bp as admin_bp
from app.auth.accounts import session_user
from app.auth.views import bp as auth_bp
from app.cases.views import bp as intake_bp
from app.core import cli, crypto, errors, formatting, security, templating
from app.core.database import init_engine_events
from app.core.extensions import babel, csrf, db, login_manager, migrate
from app.core.formatting import request_zone
from app.core.inputs import IdConverter
from app.core.security import RequestIdFilter
from app.directory.views import bp as directory_bp
from app.hsds_api.views import bp as hsds_api_bp
from app.main.views import bp as main_bp
from app.provider.views import bp as provider_bp
from app.referrals.views import bp as referrals_bp
from app.reports.views import bp as reports_bp
from app.simulator.views import bp as simulator_bp
from app.sms.views import bp as sms_bp
from app.voice.views import bp as voice_bp
from config import DEBUG_REFUSED, BaseConfig, ConfigError, config_from_env

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


class Haven(Flask):
    """Flask, except that a production app cannot be switched into debug mode after it was
    built: `flask run` sets ``app.debug`` from FLASK_DEBUG / ``--debug`` once the app is
    loaded, and ``app.run(debug=True)`` sets it too."""

    @property
    def debug(self) -> bool:
        return bool(self.config["DEBUG"])

    @debug.setter
    def debug(self, value: bool) -> None:
        if value and self.config.get("HAVEN_ENV") == "production":
            raise ConfigError([DEBUG_REFUSED])
        Flask.debug.fset(self, value)  # type: ignore[attr-defined]


def _debugger_on_the_command_line() -> bool:
    """`flask run --debugger` wraps the app in the Werkzeug debugger without setting
    ``app.debug``; the command's own parameters say so while it loads the app."""
    ctx = click.get_current_context(silent=True)
    return bool(ctx is not None and ctx.info_name == "run" and ctx.params.get("debugger"))


def create_app(config: BaseConfig | type[BaseConfig] | None = None) -> Flask:
    if config is None:
        config = config_from_env()
    elif isinstance(config, type):
        config = config()
    problems = config.problems()
    if config.HAVEN_ENV == "production" and _debugger_on_the_command_line():
        problems.append(DEBUG_REFUSED)
    if problems:
        raise ConfigError(problems)

    app = Haven(
        __name__,
        template_folder=os.path.join(ROOT, "templates"),
        static_folder=os.path.join(HERE, "static"),
        instance_path=os.path.join(ROOT, "instance"),
    )
    app.config.from_object(config)
    # Before any rule is added: every <int:...> is a database id (app/inputs.py).
    app.url_map.converters["int"] = IdConverter
    register_proxy(app)
    register_logging(app)
    register_extensions(app)
    register_blueprints(app)
    register_errorhandlers(app)
    register_template_helpers(app)
    register_cli(app)
    return app


def register_proxy(app: Flask) -> None:
    count = app.config["PROXY_COUNT"]
    if count:
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=count, x_proto=count, x_host=count, x_port=count, x_prefix=count
        )


def register_logging(app: Flask) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s [%(request_id)s] %(name)s: %(message)s")
    )
    handler.addFilter(RequestIdFilter())
    app.logger.handlers[:] = [handler]
    app.logger.setLevel(logging.INFO)
    app.logger.propagate = False


def _select_locale() -> str | None:
    languages = current_app.config["LANGUAGES"]
    forced = session.get("locale") if session else None
    if forced in languages:
        return str(forced)
    if current_user and current_user.is_authenticated and current_user.locale in languages:
        return str(current_user.locale)
    return request.accept_languages.best_match(languages) or "en"


def register_extensions(app: Flask) -> None:
    crypto.init_app(app)
    db.init_app(app)
    init_engine_events(app)
    migrate.init_app(
        app, db, directory=os.path.join(ROOT, "migrations"), render_as_batch=True, compare_type=True
    )
    babel.init_app(app, locale_selector=_select_locale, timezone_selector=request_zone)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "strong"
    login_manager.user_loader(_load_user)
    # The gate runs before CSRF checks so an anonymous POST is refused for lack of a login
    # rather than told about tokens.
    security.init_app(app)
    csrf.init_app(app)


def _load_user(session_id: str):  # type: ignore[no-untyped-def]
    """Flask-Login's loader: the cookie names a server-side session, not a user."""

    return session_user(session_id)


def register_blueprints(app: Flask) -> None:
    app.register_blueprint(main_bp)
    app.register_blueprint(auth_bp, url_prefix="/auth")
    app.register_blueprint(admin_bp, url_prefix="/admin")
    app.register_blueprint(directory_bp, url_prefix="/directory")
    app.register_blueprint(sms_bp, url_prefix="/sms")
    app.register_blueprint(intake_bp, url_prefix="/cases")
    app.register_blueprint(reports_bp, url_prefix="/reports")
    app.register_blueprint(referrals_bp, url_prefix="/referrals")
    app.register_blueprint(provider_bp, url_prefix="/provider")
    app.register_blueprint(hsds_api_bp, url_prefix="/hsds")
    app.register_blueprint(simulator_bp, url_prefix="/dev")
    app.register_blueprint(voice_bp, url_prefix="/voice")


def register_errorhandlers(app: Flask) -> None:
    errors.register(app)


def register_template_helpers(app: Flask) -> None:
    templating.register(app)
    formatting.register(app)


def register_cli(app: Flask) -> None:
    cli.register(app)
