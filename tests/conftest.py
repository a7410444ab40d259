"""Test fixtures: a real database (SQLite file or a fresh PostgreSQL database) for every
test, the Flask tutorial's app → client → auth chain, and factories for test data.

Choose the database with HAVEN_TEST_DATABASE=sqlite (default) or postgresql; the server
for the latter comes from HAVEN_TEST_PG_URL (default: the local trust-auth server).
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text

from app import create_app
from app.core.extensions import db
from config import TestingConfig
from tests import factories

PG_SERVER = os.environ.get(
    "HAVEN_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
BACKEND = os.environ.get("HAVEN_TEST_DATABASE", "sqlite").lower()

# One set of keys per test session, generated here: nothing secret lives in the repository.
TEST_ENV = {
    "SECRET_KEY": secrets.token_urlsafe(48),
    "HAVEN_DATA_KEYS": Fernet.generate_key().decode(),
    "HAVEN_INDEX_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    "HAVEN_PHONE_REGION": "US",
    "HAVEN_EMERGENCY_NUMBER": "911",
    "SMS_BACKEND": "console",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``postgres_only`` are not collected on SQLite (deselected, never skipped).
    Which tests run on both databases is the ``both_databases`` marker's: ``make test``
    runs ``-m both_databases`` on SQLite and everything on PostgreSQL."""
    if BACKEND != "sqlite":
        return
    elsewhere = [item for item in items if item.get_closest_marker("postgres_only")]
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = [item for item in items if not item.get_closest_marker("postgres_only")]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A skipped or xfailed test is a failure: a test that does not run proves nothing. A
    test that cannot mean anything on one database is marked so (deselected there)."""
    report = yield
    if report.skipped or hasattr(report, "wasxfail"):
        if hasattr(report, "wasxfail"):
            del report.wasxfail
        report.outcome = "failed"
        report.longrepr = f"tests must not skip or xfail (mark them instead): {report.longrepr}"
    return report


class Databases:
    """Makes fresh, empty databases of the backend under test, and drops them at the end."""

    def __init__(self, tmp_dir: str) -> None:
        self.tmp_dir = tmp_dir
        self.created: list[str] = []

    def fresh(self) -> str:
        if BACKEND == "postgresql":
            name = f"haven_test_{uuid.uuid4().hex[:12]}"
            admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
            admin.dispose()
            self.created.append(name)
            return PG_SERVER.rsplit("/", 1)[0] + "/" + name
        if BACKEND != "sqlite":
            raise pytest.UsageError("HAVEN_TEST_DATABASE must be sqlite or postgresql")
        path = os.path.join(self.tmp_dir, f"haven-{uuid.uuid4().hex[:12]}.sqlite")
        return "sqlite:///" + path

    def drop_all(self) -> None:
        if not self.created:
            return
        admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    dbs = Databases(str(tmp_path_factory.mktemp("db")))
    yield dbs
    dbs.drop_all()


class HavenTestClient(FlaskClient):
    """Runs each request in its own app context, as in production (fresh ``g``, its own
    database session, removed at teardown). The test's own session is committed first: that
    releases its locks and expires its objects, so the test sees what the request did."""

    def open(self, *args: Any, **kwargs: Any) -> Any:
        from flask import has_app_context

        if has_app_context():
            db.session.commit()
        with self.application.app_context():
            return super().open(*args, **kwargs)


def make_config(database_url: str, **overrides: Any) -> TestingConfig:
    env = dict(TEST_ENV, DATABASE_URL=database_url)
    overrides.setdefault("WTF_CSRF_ENABLED", False)
    return TestingConfig(env, **overrides)


@pytest.fixture(scope="session")
def database_url(databases: Databases) -> str:
    """One database per test session, migrated with Alembic to head (the schema that
    production runs), emptied after each test."""
    from flask_migrate import upgrade

    url = databases.fresh()
    app = create_app(make_config(url))
    with app.app_context():
        upgrade(revision="heads")
        db.engine.dispose()
    return url


def _empty_all_tables() -> None:
    from sqlalchemy import inspect

    existing = set(inspect(db.engine).get_table_names())
    # (Only tables that exist: a model without its migration is reported by test_migrations.)
    tables = [t for t in reversed(db.metadata.sorted_tables) if t.name in existing]
    # DELETE, children first, on both databases: a test leaves a few rows, and PostgreSQL's
    # TRUNCATE of every table cost ~120 ms per test (new files for each table). Ids start
    # again at 1 as they do after TRUNCATE ... RESTART IDENTITY (and on SQLite after DELETE).
    if db.engine.dialect.name == "postgresql":
        # One round trip for the lot (no parameters: psycopg sends it as one simple query).
        db.session.connection().exec_driver_sql(
            "".join(f'DELETE FROM "{table.name}";' for table in tables)
            + "SELECT setval(c.oid, 1, false) FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'S' AND n.nspname = current_schema()"
        )
    else:
        for table in tables:
            db.session.execute(table.delete())
    db.session.commit()


_BUILD_LOCK = threading.Lock()


def _build_app(database_url: str, **overrides: Any) -> Flask:
    # Serialised: tests that race "processes" build apps in threads, and CPython 3.11's
    # compiler (Werkzeug compiles each URL rule) is not safe to run concurrently.
    with _BUILD_LOCK:
        app = create_app(make_config(database_url, **overrides))
    app.test_client_class = HavenTestClient
    return app


@pytest.fixture(scope="session")
def shared_app(database_url: str) -> Iterator[Flask]:
    """The app of the ``app`` fixture: one per test worker, as production serves many
    requests from one app and one connection pool. Building an app (Werkzeug compiles every
    URL rule) and a pool for each test cost 60-110 ms a test; ``app`` puts back what a test
    may change (config, extensions, log handlers) and the database is emptied after each."""
    app = _build_app(database_url)
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def clean_database(shared_app: Flask) -> Iterator[None]:
    """Every table is emptied after the test (whichever apps it used)."""
    yield
    with shared_app.app_context():
        _empty_all_tables()
        db.session.remove()


@pytest.fixture
def app_factory(database_url: str, clean_database: None) -> Iterator[Any]:
    """Build extra apps on the same database: other settings, or another 'process' (its own
    app and connection pool) for cross-process checks."""
    made: list[Flask] = []

    def build(**overrides: Any) -> Flask:
        app = _build_app(database_url, **overrides)
        made.append(app)
        return app

    yield build
    for app in made:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(shared_app: Flask, clean_database: None) -> Iterator[Flask]:
    config = dict(shared_app.config)
    extensions = dict(shared_app.extensions)
    handlers, level = list(shared_app.logger.handlers), shared_app.logger.level
    with shared_app.app_context():
        yield shared_app
        db.session.remove()
    shared_app.config.clear()
    shared_app.config.update(config)
    shared_app.extensions.clear()
    shared_app.extensions.update(extensions)
    shared_app.logger.handlers[:] = handlers
    shared_app.logger.setLevel(level)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class AuthActions:
    """Sign in through the real forms (password, then TOTP when the role needs it)."""

    def __init__(self, client: FlaskClient) -> None:
        self.client = client

    def login(self, user: Any, password: str | None = None, follow: bool = False) -> Any:
        response = self.client.post(
            "/auth/login",
            data={"username": user.username, "password": password or factories.PASSWORD},
            follow_redirects=False,
        )
        if response.status_code == 302 and response.headers["Location"].endswith("/auth/verify"):
            code = factories.totp_code(user)
            response = self.client.post("/auth/verify", data={"code": code})
        if follow and response.status_code == 302:
            response = self.client.get(response.headers["Location"])
        return response

    def logout(self) -> Any:
        return self.client.post("/auth/logout")


@pytest.fixture
def auth(client: FlaskClient) -> AuthActions:
    return AuthActions(client)


def login_session(client: FlaskClient, user: Any) -> None:
    """Put a signed-in session for ``user`` into ``client`` directly (no TOTP round trip):
    a server-side session like a real sign-in's, opened and committed in the test's own
    session when there is one (with the users it may not have committed yet, as the next
    request would). Used where the sign-in itself is not under test. ``user`` is anything
    with Flask-Login's ``get_id()``."""
    from flask import has_app_context

    from app.auth import accounts
    from app.core.extensions import login_manager

    lifetime = client.application.config["SESSION_ABSOLUTE_LIFETIME"]
    if has_app_context():
        session_id = accounts.open_session(int(user.get_id()), lifetime)
        db.session.commit()
    else:
        with client.application.app_context():
            session_id = accounts.open_session(int(user.get_id()), lifetime)
            db.session.commit()
    with client.application.test_request_context(environ_base=client.environ_base):
        identifier = login_manager._session_identifier_generator()
    with client.session_transaction() as sess:
        sess.clear()
        now = time.time()
        sess["_user_id"] = session_id
        sess["_fresh"] = True
        sess["_id"] = identifier
        sess["started"] = now
        sess["seen"] = now
