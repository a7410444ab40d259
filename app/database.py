"""Engine set-up: SQLite pragmas on every connection; helpers that differ per dialect."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import Engine, event

from app.extensions import db


def _sqlite_on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, decide where transactions begin, so that
    # SAVEPOINTs and BEGIN IMMEDIATE behave (SQLAlchemy's documented pysqlite recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_on_begin(conn: Any) -> None:
    # IMMEDIATE: take the write lock at the start of every transaction. Readers never block
    # in WAL mode, and writers queue on busy_timeout instead of failing half-way with
    # "database is locked" when a read lock cannot be upgraded.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def configure_engine(engine: Engine) -> None:
    if engine.dialect.name == "sqlite" and not getattr(engine, "_haven_configured", False):
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        engine._haven_configured = True  # type: ignore[attr-defined]


def init_engine_events(app: Flask) -> None:
    with app.app_context():
        configure_engine(db.engine)


def is_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"
