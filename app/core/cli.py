"""Command-line interface (DESIGN §7): `flask --app app <command>`."""

from __future__ import annotations

import re
import secrets
import sys

import click
from cryptography.fernet import Fernet, InvalidToken
from flask import Flask, current_app
from sqlalchemy import LargeBinary, bindparam, func, select, type_coerce, update

from app.auth import accounts
from app.cases.seed import seed_cases
from app.core import audit
from app.core.crypto import KeyRing, MasterEncrypted, keyring
from app.core.extensions import db
from app.directory.cli import directory_group
from app.directory.seed import seed_directory
from app.models import ROLES, DataKey, Organization, User
from app.referrals.cli import referrals_group
from app.retention.cli import retention_group
from app.sms.cli import sms_group


def register(app: Flask) -> None:
    app.cli.add_command(create_user_command)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(keys_group)
    app.cli.add_command(audit_group)
    app.cli.add_command(directory_group)
    app.cli.add_command(sms_group)
    app.cli.add_command(referrals_group)
    app.cli.add_command(retention_group)


# The admin form's rule (app/admin/forms.py), so both ways of creating accounts agree.
USERNAME = re.compile(r"[A-Za-z0-9._-]{3,64}")


def generate_password() -> str:
    # 4 groups of 5 from an unambiguous alphabet: easy to read aloud, ~100 bits.
    alphabet = "abcdefghjkmnpqrstuvwxyzACDEFGHJKLMNPQRTUVWXY345679"
    return "-".join("".join(secrets.choice(alphabet) for _ in range(5)) for _ in range(4))


@click.command("create-user")
@click.option("--username", required=True)
@click.option("--role", type=click.Choice(ROLES), required=True)
@click.option("--organization", "organization_name", required=True, help="Organization name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
def create_user_command(
    username: str, role: str, organization_name: str, password_stdin: bool
) -> None:
    """Create a staff account. Without --password-stdin a strong password is generated and
    printed once."""
    username = username.strip()
    if not USERNAME.fullmatch(username):
        raise click.ClickException(
            "Usernames are 3 to 64 letters, digits, dots, dashes or underscores."
        )
    org = db.session.scalar(
        select(Organization).where(func.lower(Organization.name) == organization_name.lower())
    )
    if org is None:
        raise click.ClickException("No organization with that name.")
    password = sys.stdin.readline().rstrip("\n") if password_stdin else generate_password()
    problem = accounts.password_problem(password, username)
    if problem:
        raise click.ClickException(f"Password refused: {problem.replace('_', ' ')}.")
    try:
        user = accounts.create_user(org, username, password, role)
    except accounts.UsernameTaken as exc:
        raise click.ClickException("That username is taken.") from exc
    db.session.commit()
    click.echo(f"Created {role} '{user.username}' in {org.name}.")
    if not password_stdin:
        click.echo(f"Password (shown once): {password}")
    if user.totp_required:
        click.echo("Two-step sign-in will be set up at the first sign-in.")


DEMO_ORGS = [
    ("Haven Operations", "operator", False),
    ("Safe Harbor Network", "ngo", False),
    ("Northside Outreach", "ngo", False),
    ("Riverside Shelter", "provider", False),
    ("Justice Legal Aid", "provider", False),
    ("Community Health Clinic", "provider", False),
]
DEMO_USERS = [
    ("admin", "admin", "Haven Operations"),
    ("supervisor", "supervisor", "Safe Harbor Network"),
    ("caseworker", "caseworker", "Safe Harbor Network"),
    ("caseworker2", "caseworker", "Northside Outreach"),
    ("shelter", "provider", "Riverside Shelter"),
    ("legal", "provider", "Justice Legal Aid"),
    ("clinic", "provider", "Community Health Clinic"),
]


@click.command("seed-demo")
@click.option(
    "--url",
    envvar="HAVEN_DEMO_URL",
    default=None,
    help="The address the server will use (`make demo` passes it), shown in the sign-in line.",
)
def seed_demo_command(url: str | None) -> None:
    """Load demo organizations and one user of every role; passwords are printed once."""
    if current_app.config["HAVEN_ENV"] == "production":
        raise click.ClickException("seed-demo is for development only.")
    if db.session.scalar(select(func.count(User.id))):
        click.echo("Demo data is already loaded (users exist); nothing changed.")
        return
    orgs: dict[str, Organization] = {}
    for name, kind, totp in DEMO_ORGS:
        org = Organization(name=name, kind=kind, totp_required=totp)
        db.session.add(org)
        orgs[name] = org
    db.session.flush()
    lines = []
    for username, role, org_name in DEMO_USERS:
        password = generate_password()
        user = accounts.create_user(orgs[org_name], username, password, role)
        line = f"  {username:<12} {role:<11} {org_name:<24} password: {password}"
        if user.totp_required:
            secret = accounts.new_totp_secret()
            user.totp_secret = secret
            line += f"  TOTP secret: {secret}"
        lines.append(line)
    seed_directory(orgs)
    seed_cases(orgs)
    audit.record("demo.seed")
    db.session.commit()
    where = f" at {url}" if url else ""
    click.echo(f"Demo data loaded. Sign in{where} with (shown once):")
    click.echo("\n".join(lines))
    click.echo(
        "Admins and supervisors need a 6-digit code: add the TOTP secret to an authenticator "
        "app, or run: .venv/bin/python -c \"import pyotp; print(pyotp.TOTP('SECRET').now())\""
    )


@click.group("keys")
def keys_group() -> None:
    """Master key management."""


@keys_group.command("rotate")
@click.option("--batch", type=int, default=None, help="Rows per transaction")
def keys_rotate(batch: int | None) -> None:
    """Re-wrap every record key (and master-sealed field) under the newest key in
    HAVEN_DATA_KEYS. Works in batches; safe to interrupt and run again."""

    ring = keyring()
    size = batch or current_app.config["KEY_ROTATION_BATCH"]
    rotated = 0
    while True:
        rows = db.session.scalars(
            select(DataKey).where(DataKey.master_fp != ring.current_fp).order_by(DataKey.id)
            .limit(size)
        ).all()
        if not rows:
            break
        for row in rows:
            try:
                row.wrapped = ring.multi.rotate(bytes(row.wrapped))
            except InvalidToken as exc:
                db.session.rollback()
                raise click.ClickException(
                    f"Record key #{row.id} cannot be unwrapped with HAVEN_DATA_KEYS: keep the "
                    "old key in the list (after the new one) until rotation has finished."
                ) from exc
            row.master_fp = ring.current_fp
        db.session.commit()
        rotated += len(rows)
        click.echo(f"re-wrapped {rotated} record keys so far")
    resealed = _reseal_master_columns(ring, size)
    audit.record("keys.rotate", actor_user_id=None)
    db.session.commit()
    for name, count in resealed.items():
        click.echo(f"re-sealed {count} values of {name}")
    click.echo(
        f"Done: {rotated} record keys re-wrapped, {sum(resealed.values())} master-sealed "
        "values re-sealed. Older keys can be removed from HAVEN_DATA_KEYS once every process "
        "has the new list."
    )


def _reseal_master_columns(ring: KeyRing, size: int) -> dict[str, int]:
    """Re-seal every ``MasterEncrypted`` column of every model (found in the metadata, so
    new ones are included) under the newest master key, ``size`` rows per transaction.
    Values the newest key already opens are skipped: an interrupted run resumes."""
    newest = Fernet(ring.master_keys[0])
    counts: dict[str, int] = {}
    for table in db.metadata.sorted_tables:
        for column in table.columns:
            if not isinstance(column.type, MasterEncrypted):
                continue
            (pk,) = table.primary_key.columns
            name = f"{table.name}.{column.name}"
            counts[name] = 0
            raw = type_coerce(column, LargeBinary)  # the stored token, not the plaintext
            reseal = (
                update(table)
                .where(pk == bindparam("row_pk"))
                .values({column.name: bindparam("token", type_=LargeBinary)})
            )
            last = None
            while True:
                query = select(pk, raw).where(column.is_not(None)).order_by(pk).limit(size)
                if last is not None:
                    query = query.where(pk > last)
                rows = db.session.execute(query).all()
                if not rows:
                    break
                last = rows[-1][0]
                changes = []
                for row_pk, token in rows:
                    try:
                        newest.decrypt(bytes(token))
                        continue  # already under the newest key
                    except InvalidToken:
                        pass
                    try:
                        changes.append({"row_pk": row_pk, "token": ring.multi.rotate(bytes(token))})
                    except InvalidToken as exc:
                        db.session.rollback()
                        raise click.ClickException(
                            f"{name} of row #{row_pk} cannot be opened with HAVEN_DATA_KEYS: "
                            "keep the old key in the list (after the new one) until rotation "
                            "has finished."
                        ) from exc
                if changes:
                    db.session.execute(reseal, changes)
                db.session.commit()
                counts[name] += len(changes)
    return counts


@click.group("audit")
def audit_group() -> None:
    """Audit trail tools."""


def _anchor(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[int, str]]:
    anchors = []
    for value in values:
        seq, _, digest = value.partition(":")
        # (At most 18 digits: a seq fits a 64-bit integer column.)
        if not (re.fullmatch(r"[0-9]{1,18}", seq) and re.fullmatch(r"[0-9a-fA-F]{64}", digest)):
            raise click.BadParameter("write it as SEQ:HASH, as `audit verify` printed it")
        anchors.append((int(seq), digest))
    return anchors


@audit_group.command("verify")
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    callback=_anchor,
    metavar="SEQ:HASH",
    help="A tip printed by an earlier run and kept outside the database; repeatable.",
)
def audit_verify(anchors: list[tuple[int, str]]) -> None:
    """Check the hash chain; exit 1 at the first broken link or at an anchor that no
    longer matches (a chain rewritten as a whole by someone with database access)."""
    result = audit.verify_chain()
    if not result.ok:
        click.echo(
            f"Audit chain BROKEN at event #{result.broken_seq}: {result.reason} "
            f"({result.checked} events verified before it).",
            err=True,
        )
        sys.exit(1)
    problems = [p for p in (audit.check_anchor(seq, digest) for seq, digest in anchors) if p]
    for problem in problems:
        click.echo(f"Audit anchor MISMATCH: {problem}.", err=True)
    if problems:
        sys.exit(1)
    click.echo(f"Audit chain intact: {result.checked} events verified.")
    if anchors:
        click.echo(f"Anchors matched: {len(anchors)}.")
    seq, digest = audit.tip()
    click.echo(f"Tip: {seq}:{digest} (keep it outside this database; check it later with "
               f"--anchor {seq}:{digest})")
