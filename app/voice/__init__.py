"""The voice line (issue 18): ``POST /voice/inbound``, its step URL ``POST /voice/step``
and ``POST /voice/status``. Public (``PUBLIC_ENDPOINTS``) and exempt from CSRF, like the
SMS webhooks; every request must carry a valid ``X-Twilio-Signature``."""

from flask import Blueprint

from app.extensions import csrf

bp = Blueprint("voice", __name__)
csrf.exempt(bp)

from app.voice import routes  # noqa: E402,F401
