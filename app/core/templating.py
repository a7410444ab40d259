"""Template globals: text direction, the interface locale, role-aware navigation."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app
from flask_babel import get_locale
from flask_babel import lazy_gettext as _l

RTL_LANGUAGES = {"ar", "fa", "he", "ur"}
LANGUAGE_NAMES = {"en": "English", "es": "Español", "fr": "Français", "ar": "العربية"}

# (endpoint, label, roles) — the gate enforces access; this only hides links a role can't use.
NAVIGATION: list[tuple[str, Any, tuple[str, ...]]] = [
    ("main.index", _l("Home"), ("admin", "supervisor", "caseworker", "provider")),
    ("intake.case_list", _l("Cases"), ("supervisor", "caseworker")),
    ("intake.start", _l("New intake"), ("supervisor", "caseworker")),
    ("referrals.waiting", _l("Referrals"), ("supervisor", "caseworker")),
    ("provider.index", _l("Referrals"), ("provider",)),
    ("directory.match", _l("Find services"), ("supervisor", "caseworker")),
    ("directory.index", _l("Directory"), ("admin", "supervisor", "caseworker", "provider")),
    ("directory.areas", _l("Areas"), ("admin",)),
    ("admin.users", _l("Users"), ("admin",)),
    ("admin.organizations", _l("Organizations"), ("admin",)),
    ("admin.audit_log", _l("Audit trail"), ("admin", "supervisor")),
    ("reports.index", _l("Figures"), ("admin", "supervisor")),
]


def register(app: Flask) -> None:
    @app.context_processor
    def inject() -> dict[str, Any]:
        locale = str(get_locale() or "en")
        nav = [
            (endpoint, label, allowed)
            for endpoint, label, allowed in NAVIGATION
            if endpoint in current_app.view_functions
        ]
        return {
            "text_direction": "rtl" if locale.split("_")[0] in RTL_LANGUAGES else "ltr",
            "current_locale": locale,
            "language_names": LANGUAGE_NAMES,
            "navigation": nav,
            "idle_seconds": int(current_app.config["IDLE_TIMEOUT"].total_seconds()),
            "idle_warn_seconds": idle_warning_seconds(
                int(current_app.config["IDLE_TIMEOUT"].total_seconds())
            ),
        }


def idle_warning_seconds(idle_seconds: int) -> int:
    """How long before the idle lock the page warns (issue 16): a minute, or half the
    timeout when the timeout is two minutes or less."""
    return 60 if idle_seconds > 120 else max(1, idle_seconds // 2)
