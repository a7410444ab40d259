"""`flask directory import-hsds PATH` and `flask directory export-hsds PATH` (DESIGN §7)."""

from __future__ import annotations

import os
import sys

import click
from flask import current_app

from app.core import audit
from app.core.extensions import db
from app.directory import hsds, hsds_export


@click.group("directory")
def directory_group() -> None:
    """Service directory: Open Referral HSDS 3.0 import and export."""


@directory_group.command("import-hsds")
@click.argument("path", type=click.Path())
def import_hsds(path: str) -> None:
    """Import HSDS 3.0/3.1 JSON (a file or a folder of files) or a tabular data package (a
    folder with datapackage.json and CSV files); HSDS 1.x/2.x is refused, saying why. 3.1
    bed capacity sets bed counts through the one capacity rule. Re-import updates by HSDS
    id. Bad rows and
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
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "tabular"]),
    default=None,
    help="json: one file, an array of organizations with their services (the default for "
    "a PATH ending in .json); tabular: a folder of CSV files and datapackage.json.",
)
@click.argument("path", type=click.Path())
def export_hsds(path: str, fmt: str | None) -> None:
    """Write the directory as HSDS 3.0. Never written: intake phones, anything about cases
    or referrals, the place of a service whose location is confidential."""
    fmt = fmt or ("json" if path.lower().endswith(".json") else "tabular")
    data = hsds_export.export_organizations()
    if fmt == "json":
        target = os.path.join(path, "organizations.json") if os.path.isdir(path) else path
        hsds_export.write_json(target, data)
    else:
        target = path
        hsds_export.write_tabular(target, data, current_app.config["LANGUAGES"])
    audit.record("directory.export_hsds", actor_user_id=None)
    db.session.commit()
    orgs, services = hsds_export.export_summary(data)
    click.echo(f"Exported {orgs} organizations and {services} services to {target} ({fmt})")
