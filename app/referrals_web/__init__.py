"""Caseworkers' side of referrals (issue 5): choose services from the case's matches,
preview exactly what each provider will see, record the release per organization, send;
the "referrals waiting" list; cancel and re-refer; withdraw a release.

(The package is not called ``referrals`` because ``app/referrals.py`` is the domain module.)"""

from flask import Blueprint

bp = Blueprint("referrals", __name__)

from app.referrals_web import routes  # noqa: E402,F401
