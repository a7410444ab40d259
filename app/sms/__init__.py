"""SMS: the outbox and catalog texts (messaging.py), the survivor hotline (hotline.py), the
sending worker (worker.py), the Twilio webhooks (views.py, public, signed, CSRF-exempt)."""
