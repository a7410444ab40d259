"""SQLAlchemy 2 typed models. Import every model here so Alembic and `db.create_all` see them."""

from app.models.accounts import ROLES, LoginAttempt, Organization, User
from app.models.areas import Area
from app.models.audit import AuditEvent, AuditHead
from app.models.base import utcnow
from app.models.keys import DataKey

__all__ = [
    "ROLES",
    "Area",
    "AuditEvent",
    "AuditHead",
    "DataKey",
    "LoginAttempt",
    "Organization",
    "User",
    "utcnow",
]
