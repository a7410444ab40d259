"""The provider portal (issue 5): referrals addressed to the provider's organization, with
only the fields release and consent allow; accept, decline, outcomes, bed counts."""

from flask import Blueprint

bp = Blueprint("provider", __name__)

from app.provider import routes  # noqa: E402,F401
