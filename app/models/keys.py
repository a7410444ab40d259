from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.extensions import db
from app.models.base import UTCDateTime, utcnow


class DataKey(db.Model):  # type: ignore[name-defined,misc]
    """A per-record Fernet key, stored only wrapped by the master keys (HAVEN_DATA_KEYS).
    Deleting this row is crypto-shredding: every field sealed with it becomes unreadable."""

    __tablename__ = "data_key"

    id: Mapped[int] = mapped_column(primary_key=True)
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    master_fp: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
