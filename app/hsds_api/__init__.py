"""The read-only Open Referral HSDS API under ``/hsds`` (issue 17, DESIGN §7), as the
specification's ``schema/openapi.json`` describes it: anonymous, public services only,
rate-limited, cacheable (ETag), no cookies."""

from flask import Blueprint

bp = Blueprint("hsds_api", __name__)

from app.hsds_api import routes  # noqa: E402,F401
