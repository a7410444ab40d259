"""The SQLite database on disk (issue 14 §8): its folder is private (0700) and the database,
its WAL and shared-memory files are readable by Haven's user only (0600), whatever the umask;
`flask db upgrade` makes the folder itself; an operator's mistake (a folder that cannot be
made, a DATABASE_URL Haven cannot use, a server that does not answer) gets a short message,
never a traceback. These tests make their own SQLite files, whichever database the rest of
the suite runs on."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from app import create_app
from app.core.database import prepare_sqlite_file
from app.core.extensions import db
from tests.conftest import TEST_ENV, make_config

REPO = Path(__file__).resolve().parent.parent


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def loose_umask() -> Iterator[None]:
    """The common default umask (files 0644, folders 0755), whatever the test runner uses."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def test_a_new_database_its_folder_wal_and_shm_are_private(tmp_path: Path, loose_umask) -> None:
    folder = tmp_path / "instance"
    path = folder / "haven.sqlite"
    app = create_app(make_config(f"sqlite:///{path}"))
    with app.app_context():
        try:
            db.session.execute(text("CREATE TABLE t (x INTEGER)"))
            db.session.execute(text("INSERT INTO t VALUES (1)"))
            db.session.commit()
            # The connection is still open (pooled): the WAL and its index exist now.
            assert (folder / "haven.sqlite-wal").exists()
            assert mode(folder) == 0o700
            for name in ("haven.sqlite", "haven.sqlite-wal", "haven.sqlite-shm"):
                assert mode(folder / name) == 0o600, name
        finally:
            db.session.remove()
            db.engine.dispose()


def test_an_existing_world_readable_database_is_tightened(tmp_path: Path, loose_umask) -> None:
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:  # made by an older Haven: 0644 under this umask
        old.execute("CREATE TABLE t (x INTEGER)")
    old.close()
    assert mode(path) == 0o644
    app = create_app(make_config(f"sqlite:///{path}"))
    with app.app_context():
        try:
            db.session.execute(text("SELECT count(*) FROM t"))
            db.session.commit()
            assert mode(path) == 0o600
        finally:
            db.session.remove()
            db.engine.dispose()


def test_havens_own_folder_is_tightened_an_operators_folder_is_left_alone(
    tmp_path: Path, loose_umask
) -> None:
    instance, elsewhere = tmp_path / "instance", tmp_path / "srv"
    for folder in (instance, elsewhere):
        folder.mkdir()
        assert mode(folder) == 0o755
    prepare_sqlite_file(str(instance / "haven.sqlite"), private_dir=str(instance))
    prepare_sqlite_file(str(elsewhere / "haven.sqlite"), private_dir=str(instance))
    assert mode(instance) == 0o700
    assert mode(elsewhere) == 0o755  # the operator chose it (it may be shared on purpose)
    assert mode(instance / "haven.sqlite") == 0o600 == mode(elsewhere / "haven.sqlite")


def _flask(tmp_path: Path, database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(REPO),
        "FLASK_SKIP_DOTENV": "1",
        "LANG": "C.UTF-8",
        "HAVEN_ENV": "development",
        "SECRET_KEY": TEST_ENV["SECRET_KEY"],
        "HAVEN_DATA_KEYS": TEST_ENV["HAVEN_DATA_KEYS"],
        "HAVEN_INDEX_KEY": TEST_ENV["HAVEN_INDEX_KEY"],
        "DATABASE_URL": database_url,
    }
    return subprocess.run(
        [sys.executable, "-c", "import os; os.umask(0o022); from flask.cli import main; main()",
         "--app", "app", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )


def test_db_upgrade_makes_the_missing_folder_private(tmp_path: Path) -> None:
    path = tmp_path / "instance" / "haven.sqlite"
    completed = _flask(tmp_path, f"sqlite:///{path}", "db", "upgrade")
    assert completed.returncode == 0, completed.stderr
    assert mode(path.parent) == 0o700
    assert mode(path) == 0o600


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///{tmp}/a-file/haven.sqlite", "cannot create the folder"),
        ("postgresql://haven@127.0.0.1:1/haven", "Haven cannot open the database"),
        ("mysql://haven@localhost/haven", "DATABASE_URL must be"),
        ("not a url at all", "DATABASE_URL must be"),
    ],
    ids=["folder-under-a-file", "no-server", "unsupported", "garbage"],
)
def test_operator_mistakes_get_a_short_message_not_a_traceback(
    tmp_path: Path, url: str, expected: str
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    completed = _flask(tmp_path, url.format(tmp=tmp_path), "db", "upgrade")
    assert completed.returncode != 0
    assert "Traceback" not in completed.stderr
    assert expected in completed.stderr, completed.stderr
    assert len(completed.stderr.strip().splitlines()) <= 4, completed.stderr
