"""`flask directory import-hsds PATH` and `flask directory export-hsds PATH` (DESIGN §7)."""

from __future__ import annotations

import json
import os
import sys

import click
from flask import current_app

from app.core import audit
from app.core.extensions import db
from app.directory import hsds


@click.group("directory")
def directory_group() -> None:
    """Service directory: Open Referral HSDS 3.0 import and export."""


@directory_group.command("import-hsds")
@click.argument("path", type=click.Path())
def import_hsds(path: str) -> None:
    """Import HSDS 3.0 JSON (a file or a folder of files) or a tabular data package (a
    folder with datapackage.json and CSV files). Re-import updates by HSDS id. Bad rows and
    fields are reported and skipped; exits 1, importing nothing, when a file it was pointed
    at could not be read at all (too large, not UTF-8, not JSON, a link out of the package,
    missing), and when nothing usable was read. Limits: HAVEN_HSDS_MAX_FILE_BYTES,
    HAVEN_HSDS_MAX_FIELD_CHARS."""
    limits = hsds.Limits(
        max_file_bytes=current_app.config["HSDS_MAX_FILE_BYTES"],
        max_field_chars=current_app.config["HSDS_MAX_FIELD_CHARS"],
    )
    try:
        result = hsds.import_path(path, limits)
    except hsds.ImportFailed as exc:
        db.session.rollback()
        click.echo(f"Nothing imported from {path}: {exc}.", err=True)
        sys.exit(1)
    except Exception:
        db.session.rollback()
        raise
    for line in hsds.iter_problems(result):
        click.echo(line, err=True)
    if result.unreadable:
        db.session.rollback()
        which = ", ".join(result.unreadable)
        click.echo(f"Nothing imported from {path}: {which} could not be read.", err=True)
        sys.exit(1)
    if not result.usable:
        db.session.rollback()
        click.echo(f"Nothing usable read from {path}. {result.summary()}", err=True)
        sys.exit(1)
    audit.record("directory.import_hsds", actor_user_id=None)
    db.session.commit()
    click.echo(f"Imported {path}: {result.summary()}")


@directory_group.command("export-hsds")
@click.argument("path", type=click.Path())
def export_hsds(path: str) -> None:
    """Write the directory as HSDS 3.0 JSON: a list of organizations with nested services.
    PATH is a file, or a folder (then PATH/organizations.json is written)."""
    data = hsds.export_organizations()
    target = os.path.join(path, "organizations.json") if os.path.isdir(path) else path
    tmp = target + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=2)
        fh.write("\n")
    os.replace(tmp, target)
    audit.record("directory.export_hsds", actor_user_id=None)
    db.session.commit()
    services = sum(len(o["services"]) for o in data)
    click.echo(f"Exported {len(data)} organizations and {services} services to {target}")
