"""SQLAlchemy 2 typed models. Import every model here so Alembic and `db.create_all` see them."""

from app.models.accounts import ROLES, LoginAttempt, Organization, User, UserSession
from app.models.areas import Area
from app.models.audit import AuditEvent, AuditHead
from app.models.base import utcnow
from app.models.cases import (
    AnonymousContact,
    Case,
    CaseStatistic,
    Consent,
    ConsentSignature,
    Need,
)
from app.models.directory import Service, service_area
from app.models.followups import FollowUp
from app.models.keys import DataKey
from app.models.messages import HotlineSession, IgnoredSender, Message, SmsOptOut
from app.models.referrals import Referral, Release
from app.models.retention import (
    BedSnapshot,
    ConsentTask,
    JobLock,
    ReferralStatistic,
    RetentionRun,
)

__all__ = [
    "ROLES",
    "AnonymousContact",
    "Area",
    "AuditEvent",
    "AuditHead",
    "BedSnapshot",
    "Case",
    "CaseStatistic",
    "Consent",
    "ConsentSignature",
    "ConsentTask",
    "DataKey",
    "FollowUp",
    "HotlineSession",
    "IgnoredSender",
    "JobLock",
    "LoginAttempt",
    "Message",
    "Need",
    "Organization",
    "Referral",
    "ReferralStatistic",
    "Release",
    "RetentionRun",
    "Service",
    "SmsOptOut",
    "User",
    "UserSession",
    "service_area",
    "utcnow",
]
