from __future__ import annotations

from sqlalchemy import Float, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.extensions import db


class Area(db.Model):  # type: ignore[name-defined,misc]
    """Admin-managed list of areas shared by cases, services and the hotline's area menu
    (DESIGN §2), so matching compares like with like."""

    __tablename__ = "area"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    # What the hotline may text for this area (its area menu), approved by an admin through
    # ``app.discretion.clean_sms_label``; never set from a name or an import. Without one the
    # area is offered by its number only.
    sms_label: Mapped[str | None] = mapped_column(String(24), unique=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("area.id"), index=True)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    # IANA time zone of the people in this area (survivors' safe hours); None: the parent
    # area's, else HAVEN_DEFAULT_TIMEZONE.
    timezone: Mapped[str | None] = mapped_column(String(64))

    parent: Mapped[Area | None] = relationship(remote_side=[id])
