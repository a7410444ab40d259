"""The Open Referral HSDS 3.0 artefacts shared beside the repository (``../shared/hsds-3.0``:
compiled schemas, the tabular datapackage.json, schema/openapi.json), found without
assuming how that folder is laid out on disk: the nearest ``shared/hsds-3.0`` above the
repository (a worktree sits deeper than the main checkout), or ``HAVEN_HSDS_SHARED``. A
file that arrived as a plain file holding a link's target (a symbolic link stored as text)
is followed. Missing artefacts fail the test that needs them, with the places looked at."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def shared_root() -> Path:
    candidates = []
    if os.environ.get("HAVEN_HSDS_SHARED"):
        candidates.append(Path(os.environ["HAVEN_HSDS_SHARED"]))
    candidates += [parent / "shared" / "hsds-3.0" for parent in REPO.parents]
    for candidate in candidates:
        if (candidate / "schema").is_dir() and (candidate / "examples").is_dir():
            return candidate
    raise AssertionError(
        "the HSDS 3.0 artefacts (shared/hsds-3.0 with schema/ and examples/) are missing: "
        "looked at " + ", ".join(str(c) for c in candidates)
    )


def shared_file(relative: str) -> Path:
    """The real file at ``relative``: a text file holding only a relative path (a link that
    arrived as a plain file) is followed, at most a few times."""
    path = shared_root() / relative
    for _ in range(5):
        assert path.is_file(), f"shared HSDS file missing: {path}"
        text = path.read_bytes()[:512].decode("utf-8", "replace").strip()
        if len(text) < 300 and "\n" not in text and not text.startswith(("{", "[")):
            target = path.parent / text
            if target.is_file():
                path = target
                continue
        return path
    raise AssertionError(f"shared HSDS file {relative}: too many links")


def load(relative: str) -> Any:
    return json.loads(shared_file(relative).read_text(encoding="utf-8"))


def copy_schema_folder(target: Path) -> Path:
    """schema/ copied as real files (links followed) into ``target``, for tools that
    resolve relative ``$ref``s from a file (schemathesis)."""
    source = shared_root() / "schema"
    out = target / "schema"
    for folder, _dirs, files in os.walk(source):
        rel = Path(folder).relative_to(source)
        (out / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            shutil.copyfile(shared_file(str(Path("schema") / rel / name)), out / rel / name)
    return out
