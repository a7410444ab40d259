"""The voice line (issue 18): ``POST /voice/inbound``, its step URL ``POST /voice/step``
and ``POST /voice/status``. Public (``PUBLIC_ENDPOINTS``) and exempt from CSRF, like the
SMS webhooks; every request must carry a valid ``X-Twilio-Signature``."""
