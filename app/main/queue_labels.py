"""What the work queue says about each item: the reason it is there (issue 16)."""

from __future__ import annotations

from typing import Any

from flask_babel import lazy_gettext as _l


def workqueue_labels() -> dict[str, Any]:
    return {
        "danger": _l("Reported danger"),
        "new_sms": _l("New hotline case"),
        "escalated": _l("Accepted, no arrival: escalated"),
        "declined": _l("Referral declined"),
        "expired": _l("Referral expired"),
        "unanswered": _l("Referral unanswered"),
        "no_arrival": _l("Accepted, no arrival yet"),
        "follow_up": _l("Follow-up due"),
    }
