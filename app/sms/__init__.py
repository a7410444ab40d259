"""The SMS blueprint: Twilio webhooks ``POST /sms/inbound`` and ``POST /sms/status``.

Both are public (``PUBLIC_ENDPOINTS``) and exempt from CSRF: Twilio cannot hold a session.
Every request must instead carry a valid ``X-Twilio-Signature`` (checked in routes.py).
"""

from flask import Blueprint

from app.extensions import csrf

bp = Blueprint("sms", __name__)
csrf.exempt(bp)

from app.sms import routes  # noqa: E402,F401
