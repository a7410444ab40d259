"""Engine set-up: SQLite pragmas on every connection, a private SQLite file; helpers that
differ per dialect."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from typing import Any

from flask import Flask
from sqlalchemy import Engine, Integer, String, bindparam, event, func
from sqlalchemy.dialects.postgresql import ARRAY

from app.core.extensions import db

PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600
# The database and what SQLite keeps beside it (WAL, its shared-memory index, a rollback
# journal) and the webhook queue's lock file (app/sms/routes.py).
_SQLITE_FILES = ("", "-wal", "-shm", "-journal", ".webhook-lock")


class DatabaseFileError(OSError):
    """The SQLite database's folder or file cannot be made (an operator's mistake: a path
    under a file, a read-only disk). The message says what and where, with no traceback."""


def _tighten(path: str, allowed: int) -> None:
    """Drop the permission bits of ``path`` outside ``allowed`` (never add any)."""
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if current & ~allowed:
        os.chmod(path, current & allowed)


def prepare_sqlite_file(path: str, private_dir: str | None = None) -> None:
    """Before SQLite opens ``path``: make its folder if missing (0700), and make the database
    file itself (0600) so that SQLite, which gives a new -wal or -shm file the mode of its
    database, keeps those private too, whatever the umask. Files left readable by an older
    Haven are tightened to 0600; the folder is tightened only when it is Haven's own
    ``private_dir`` (instance/): a folder an operator chose may be shared on purpose."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        try:
            os.makedirs(folder, mode=PRIVATE_FOLDER, exist_ok=True)
        except OSError as exc:
            in_the_way = isinstance(exc, (FileExistsError, NotADirectoryError))
            reason = "a file is in the way" if in_the_way else exc.strerror
            raise DatabaseFileError(
                f"cannot create the folder for the SQLite database {folder}: {reason}"
            ) from None
        _tighten(folder, PRIVATE_FOLDER)
    elif private_dir is not None and os.path.abspath(private_dir) == folder:
        _tighten(folder, PRIVATE_FOLDER)
    if not os.path.exists(path):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, PRIVATE_FILE))
        except OSError as exc:
            raise DatabaseFileError(
                f"cannot create the SQLite database {path}: {exc.strerror}"
            ) from None
    for suffix in _SQLITE_FILES:
        _tighten(path + suffix, PRIVATE_FILE)


def _sqlite_path(engine: Engine) -> str | None:
    """The database file of a SQLite engine; None in memory (or for a ``file:`` URI)."""
    path = engine.url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


def _sqlite_on_connect(dbapi_connection: Any, _connection_record: Any) -> None:
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


def configure_engine(engine: Engine, private_dir: str | None = None) -> None:
    if engine.dialect.name == "sqlite" and not getattr(engine, "_haven_configured", False):
        path = _sqlite_path(engine)
        if path is not None:

            def before_connect(*_args: Any) -> None:
                # Each new connection (not each checkout): a few stat calls.
                prepare_sqlite_file(path, private_dir)

            event.listen(engine, "do_connect", before_connect)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        engine._haven_configured = True  # type: ignore[attr-defined]


def init_engine_events(app: Flask) -> None:
    with app.app_context():
        configure_engine(db.engine, private_dir=app.instance_path)


def is_postgres() -> bool:
    return db.engine.dialect.name == "postgresql"


def any_of(column: Any, values: Iterable[Any]) -> Any:
    """``column IN (values)`` for a list of ids or codes. On PostgreSQL one array
    parameter (``= ANY(%s)``): the same short statement for every batch, instead of a
    statement with one parameter per value that the driver must parse each time."""
    values = list(values)
    if db.session.get_bind().dialect.name == "postgresql":
        kind = String() if values and isinstance(values[0], str) else Integer()
        return column == func.any(bindparam(None, values, type_=ARRAY(kind)))
    return column.in_(values)
