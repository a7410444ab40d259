"""Command-line interface (DESIGN §7): `flask --app app <command>`."""

from __future__ import annotations

import secrets
import sys

import click
from cryptography.fernet import InvalidToken
from flask import Flask, current_app
from sqlalchemy import func, select
from sqlalchemy.orm.attributes import flag_modified

from app import accounts, audit
from app.extensions import db
from app.models import ROLES, DataKey, Organization, User


def register(app: Flask) -> None:
    app.cli.add_command(create_user_command)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(keys_group)
    app.cli.add_command(audit_group)
    app.cli.add_command(__import__("app.directory.cli", fromlist=["x"]).directory_group)


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
def seed_demo_command() -> None:
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
    for hook in current_app.extensions.get("haven_seed_hooks", []):
        hook(orgs)
    audit.record("demo.seed")
    db.session.commit()
    click.echo("Demo data loaded. Sign in at http://127.0.0.1:5000 with (shown once):")
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
    from app.crypto import keyring

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
    users = db.session.scalars(select(User).where(User.totp_secret.is_not(None))).all()
    for user in users:
        flag_modified(user, "totp_secret")  # re-sealed under the newest key on flush
    audit.record("keys.rotate", actor_user_id=None)
    db.session.commit()
    click.echo(
        f"Done: {rotated} record keys re-wrapped, {len(users)} staff secrets re-sealed. "
        "Older keys can be removed from HAVEN_DATA_KEYS once every process has the new list."
    )


@click.group("audit")
def audit_group() -> None:
    """Audit trail tools."""


@audit_group.command("verify")
def audit_verify() -> None:
    """Check the hash chain; exit 1 at the first broken link."""
    result = audit.verify_chain()
    if result.ok:
        click.echo(f"Audit chain intact: {result.checked} events verified.")
        return
    click.echo(
        f"Audit chain BROKEN at event #{result.broken_seq}: {result.reason} "
        f"({result.checked} events verified before it).",
        err=True,
    )
    sys.exit(1)
