"""Haven configuration.

Every setting comes from the environment (DESIGN §7). There are no fallback secrets in
code: development reads its keys from a local ``.env`` that ``make demo`` generates with
random values, tests generate their own, and production refuses to start without them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any
from zoneinfo import available_timezones

from cryptography.fernet import Fernet
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class ConfigError(SystemExit):
    """Raised when the configuration is unusable. A SystemExit, so that `flask`, gunicorn
    and any script stop with this message and a non-zero status instead of a traceback."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"Haven refuses to start; fix the configuration:\n{lines}")


WEAK_SECRETS = {
    "",
    "secret",
    "changeme",
    "change-me",
    "dev",
    "development",
    "password",
    "secret-key",
    "secret_key",
    "haven",
    "test",
}


def _env(environ: Mapping[str, str], name: str, default: str = "") -> str:
    return environ.get(name, default).strip()


def _bool(value: str, default: bool) -> bool:
    if value == "":
        return default
    return value.lower() in {"1", "true", "yes", "on"}


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = _env(environ, name)
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError([f"{name} must be an integer"]) from exc


def _float(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = _env(environ, name)
    try:
        value = float(raw) if raw else default
    except ValueError as exc:
        raise ConfigError([f"{name} must be a number"]) from exc
    if not value > 0:
        raise ConfigError([f"{name} must be positive"])
    return value


def normalize_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL URLs written the usual way."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


SUPPORTED_DRIVERS = frozenset({"postgresql+psycopg", "sqlite", "sqlite+pysqlite"})


def supported_database_url(url: str) -> bool:
    """A URL SQLAlchemy can parse, for a database Haven runs on (checked before any engine
    is made, so a typo is one line of configuration error, not a traceback)."""
    try:
        return make_url(url).drivername in SUPPORTED_DRIVERS
    except (ArgumentError, ValueError):
        return False


def content_sid_problem(raw: str) -> bool:
    """Whether TWILIO_WHATSAPP_CONTENT_SIDS is malformed (empty is fine: no templates)."""
    if not raw:
        return False
    try:
        value = json.loads(raw)
    except ValueError:
        return True
    if not isinstance(value, dict):
        return True
    for languages in value.values():
        if not isinstance(languages, dict):
            return True
        for sid in languages.values():
            if not isinstance(sid, str) or not re.fullmatch(r"HX[0-9a-fA-F]{32}", sid):
                return True
    return False


class BaseConfig:
    """Settings shared by every environment. Instantiate to read the environment."""

    HAVEN_ENV = "development"
    DEBUG = False
    TESTING = False

    def __init__(self, environ: Mapping[str, str] | None = None, **overrides: Any) -> None:
        env = os.environ if environ is None else environ
        self.SECRET_KEY = _env(env, "SECRET_KEY")
        self.SQLALCHEMY_DATABASE_URI = normalize_database_url(
            _env(env, "DATABASE_URL", self.default_database_url())
        )
        self.HAVEN_DATA_KEYS = _env(env, "HAVEN_DATA_KEYS")
        self.HAVEN_INDEX_KEY = _env(env, "HAVEN_INDEX_KEY")
        self.TWILIO_ACCOUNT_SID = _env(env, "TWILIO_ACCOUNT_SID")
        self.TWILIO_AUTH_TOKEN = _env(env, "TWILIO_AUTH_TOKEN")
        self.TWILIO_FROM_NUMBER = _env(env, "TWILIO_FROM_NUMBER")
        self.TWILIO_MESSAGING_SERVICE_SID = _env(env, "TWILIO_MESSAGING_SERVICE_SID")
        self.TWILIO_DELETE_AFTER_DELIVERY = _bool(_env(env, "TWILIO_DELETE_AFTER_DELIVERY"), True)
        self.SMS_BACKEND = _env(env, "SMS_BACKEND", "console")
        # Channels (issue 18, app/channels.py, app/whatsapp.py, app/voice.py). WhatsApp
        # sender (E.164, without "whatsapp:"); its approved templates as JSON
        # {"template_key": {"language": "HX…Content SID"}}; the voice line's on-call
        # number, offered with <Dial> after the emergency number; the simulator outside
        # development (HAVEN_SIMULATOR=1).
        self.TWILIO_WHATSAPP_FROM = _env(env, "TWILIO_WHATSAPP_FROM")
        self.TWILIO_WHATSAPP_CONTENT_SIDS = _env(env, "TWILIO_WHATSAPP_CONTENT_SIDS")
        self.HAVEN_ON_CALL_NUMBER = _env(env, "HAVEN_ON_CALL_NUMBER")
        self.HAVEN_SIMULATOR = _bool(_env(env, "HAVEN_SIMULATOR"), False)
        self.PUBLIC_BASE_URL = _env(env, "PUBLIC_BASE_URL").rstrip("/")
        self.PROXY_COUNT = _int(env, "PROXY_COUNT", 0)
        self.HAVEN_PHONE_REGION = _env(env, "HAVEN_PHONE_REGION", "US").upper()
        self.HAVEN_EMERGENCY_NUMBER = _env(env, "HAVEN_EMERGENCY_NUMBER", "911")
        # Survivors' safe hours are read on their own clock: the zone set on the case, else
        # their area's, else this one (an IANA name).
        self.HAVEN_DEFAULT_TIMEZONE = _env(env, "HAVEN_DEFAULT_TIMEZONE", "UTC")
        # SMS outbox worker (app/sms/worker.py): messages per second per worker (Twilio long
        # codes take 1/s), tries before a message fails, backoff base/cap, claim lease.
        self.SMS_RATE_PER_SECOND = _float(env, "SMS_RATE_PER_SECOND", 1.0)
        self.SMS_MAX_ATTEMPTS = _int(env, "SMS_MAX_ATTEMPTS", 6)
        self.SMS_BACKOFF_BASE_SECONDS = _int(env, "SMS_BACKOFF_BASE_SECONDS", 30)
        self.SMS_BACKOFF_CAP_SECONDS = _int(env, "SMS_BACKOFF_CAP_SECONDS", 3600)
        self.SMS_LEASE_SECONDS = _int(env, "SMS_LEASE_SECONDS", 60)
        self.SMS_HTTP_TIMEOUT_SECONDS = _int(env, "SMS_HTTP_TIMEOUT_SECONDS", 15)
        # The NGO (by name) that owns cases opened through the SMS hotline; empty: the first
        # NGO organization.
        self.HAVEN_HOTLINE_ORG = _env(env, "HAVEN_HOTLINE_ORG")
        # Flask reads FLASK_DEBUG itself (`flask --debug` sets it), with its own rule for
        # what is on (flask.helpers.get_debug_flag); production refuses it.
        flask_debug = _env(env, "FLASK_DEBUG").lower()
        self.DEBUG_REQUESTED = flask_debug not in {"", "0", "false", "no"}

        # Sessions: shared tablets lock after 15 idle minutes; no session lives past 12 h.
        self.IDLE_TIMEOUT = timedelta(minutes=_int(env, "HAVEN_IDLE_MINUTES", 15))
        self.SESSION_ABSOLUTE_LIFETIME = timedelta(hours=_int(env, "HAVEN_SESSION_HOURS", 12))
        self.PERMANENT_SESSION_LIFETIME = self.SESSION_ABSOLUTE_LIFETIME
        self.SESSION_COOKIE_NAME = "haven_session"
        self.SESSION_COOKIE_HTTPONLY = True
        self.SESSION_COOKIE_SAMESITE = "Strict"
        self.SESSION_COOKIE_SECURE = False
        self.REMEMBER_COOKIE_DURATION = timedelta(seconds=0)

        # Password hashing: argon2id with one of argon2-cffi's named profiles (not from the
        # environment). RFC 9106's low-memory profile (t=3, m=64 MiB, p=4) is the library's
        # default and the floor outside tests (see problems()).
        self.ARGON2_PROFILE = "RFC_9106_LOW_MEMORY"
        # Login throttling: this many failures inside the window locks the account. One
        # address (an office behind one NAT) may fail up to the much higher ceiling; past it,
        # accounts that failed inside the window are refused from there, others are not.
        self.LOGIN_MAX_FAILURES = _int(env, "HAVEN_LOGIN_MAX_FAILURES", 5)
        self.LOGIN_ADDRESS_MAX_FAILURES = _int(env, "HAVEN_LOGIN_ADDRESS_MAX_FAILURES", 50)
        self.LOGIN_WINDOW = timedelta(minutes=_int(env, "HAVEN_LOGIN_WINDOW_MINUTES", 15))

        self.WTF_CSRF_ENABLED = True
        self.WTF_CSRF_TIME_LIMIT = None  # bound by the session lifetime instead
        self.MAX_CONTENT_LENGTH = 1024 * 1024
        self.MAX_FORM_MEMORY_SIZE = 64 * 1024

        self.BABEL_DEFAULT_LOCALE = "en"
        self.BABEL_TRANSLATION_DIRECTORIES = os.path.join(
            os.path.dirname(os.path.abspath(__file__)), "translations"
        )
        self.LANGUAGES = ["en", "es", "fr", "ar"]

        # Consent expires (DESIGN §3) and expired consent counts as withdrawn.
        self.CONSENT_VALIDITY = timedelta(days=_int(env, "HAVEN_CONSENT_DAYS", 365))
        # Referrals (issue 5): a release to one organization lasts this long by default; a
        # referral waits this long for an answer (a shelter's bed is held meanwhile) and is
        # flagged for the caseworker and the provider reminded this long before the end.
        self.RELEASE_VALIDITY = timedelta(days=_int(env, "HAVEN_RELEASE_DAYS", 30))
        self.REFERRAL_HOLD = timedelta(hours=_int(env, "HAVEN_REFERRAL_HOLD_HOURS", 4))
        self.REFERRAL_FLAG_BEFORE = timedelta(
            minutes=_int(env, "HAVEN_REFERRAL_FLAG_BEFORE_MINUTES", 60))
        # The work queue (issue 16): a pending referral needs the caseworker after this long
        # without an answer (shelters: hours; other services: working days), an accepted one
        # with no arrival after this long, and goes to the supervisor this long after that.
        self.QUEUE_UNANSWERED_SHELTER = timedelta(
            hours=_int(env, "HAVEN_QUEUE_UNANSWERED_SHELTER_HOURS", 4))
        self.QUEUE_UNANSWERED_WORKING_DAYS = _int(env, "HAVEN_QUEUE_UNANSWERED_WORKING_DAYS", 2)
        self.QUEUE_ARRIVAL_SHELTER = timedelta(
            hours=_int(env, "HAVEN_QUEUE_ARRIVAL_SHELTER_HOURS", 48))
        self.QUEUE_ARRIVAL_OTHER = timedelta(days=_int(env, "HAVEN_QUEUE_ARRIVAL_OTHER_DAYS", 7))
        self.QUEUE_ESCALATE_AFTER = timedelta(
            hours=_int(env, "HAVEN_QUEUE_ESCALATE_AFTER_HOURS", 24))
        # Closed cases keep identifying data this long (DESIGN §5); retention erases after.
        self.CASE_RETENTION_AFTER_CLOSE = timedelta(days=_int(env, "HAVEN_CASE_RETENTION_DAYS", 90))
        self.KEY_ROTATION_BATCH = _int(env, "HAVEN_KEY_ROTATION_BATCH", 500)
        # Retention rules (DESIGN §5, app/retention.py); each period from the environment.
        self.RETENTION_HOTLINE_UNCONSENTED = timedelta(
            hours=_int(env, "HAVEN_RETENTION_HOTLINE_HOURS", 24))
        self.RETENTION_INBOUND_SID = timedelta(
            hours=_int(env, "HAVEN_RETENTION_INBOUND_SID_HOURS", 24))
        self.RETENTION_OUTBOUND_AFTER_FINAL = timedelta(
            hours=_int(env, "HAVEN_RETENTION_OUTBOUND_HOURS", 0))
        self.RETENTION_IDLE_CASE = timedelta(days=_int(env, "HAVEN_RETENTION_IDLE_DAYS", 180))
        self.RETENTION_DRAFT = timedelta(hours=_int(env, "HAVEN_RETENTION_DRAFT_HOURS", 24))
        self.RETENTION_CONSENT_REASK = timedelta(
            days=_int(env, "HAVEN_RETENTION_REASK_DAYS", 30))
        self.RETENTION_AUDIT = timedelta(days=_int(env, "HAVEN_RETENTION_AUDIT_DAYS", 6 * 365 + 2))
        # Sign-in attempts (keyed hashes of usernames and client addresses) feed the login
        # throttle and a month of investigation of attacks; then they go.
        self.RETENTION_LOGIN_ATTEMPT = timedelta(
            days=_int(env, "HAVEN_RETENTION_LOGIN_ATTEMPT_DAYS", 30))
        # HSDS import (app/hsds.py): files come from third parties; the largest file read and
        # the longest field accepted (a longer field is reported and ignored).
        self.HSDS_MAX_FILE_BYTES = _int(env, "HAVEN_HSDS_MAX_FILE_BYTES", 20_000_000)
        self.HSDS_MAX_FIELD_CHARS = _int(env, "HAVEN_HSDS_MAX_FIELD_CHARS", 10_000)
        # HSDS API (app/hsds_api): requests per minute from one address, per web process.
        self.HSDS_API_RATE_PER_MINUTE = _int(env, "HAVEN_HSDS_API_RATE_PER_MINUTE", 300)
        self.RETENTION_BATCH = _int(env, "HAVEN_RETENTION_BATCH", 1000)
        self.RETENTION_LOCK_SECONDS = _int(env, "HAVEN_RETENTION_LOCK_SECONDS", 300)
        # A liveness ping per checkout only where connections can go stale (a server).
        self.SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = {
            "pool_pre_ping": not self.SQLALCHEMY_DATABASE_URI.startswith("sqlite")
        }
        for key, value in overrides.items():
            setattr(self, key, value)

    def default_database_url(self) -> str:
        return ""

    def problems(self) -> list[str]:
        """Configuration errors that make it unsafe to start (checked in every environment)."""
        found: list[str] = []
        if not self.SECRET_KEY:
            found.append("SECRET_KEY is not set")
        elif (
            self.SECRET_KEY.lower() in WEAK_SECRETS
            or len(self.SECRET_KEY) < 32
            or _placeholder(self.SECRET_KEY)
        ):
            found.append("SECRET_KEY is weak: use at least 32 random characters")
        if not self.SQLALCHEMY_DATABASE_URI:
            found.append("DATABASE_URL is not set")
        elif not supported_database_url(self.SQLALCHEMY_DATABASE_URI):
            found.append(
                "DATABASE_URL must be a postgresql://USER@HOST/NAME or sqlite:///PATH address"
            )
        found.extend(data_key_problems(self.HAVEN_DATA_KEYS))
        found.extend(index_key_problems(self.HAVEN_INDEX_KEY))
        if self.SMS_BACKEND not in {"twilio", "console"}:
            found.append("SMS_BACKEND must be 'twilio' or 'console'")
        found.extend(sms_lease_problems(self))
        if self.HAVEN_ON_CALL_NUMBER and not re.fullmatch(r"\+[1-9][0-9]{6,14}",
                                                          self.HAVEN_ON_CALL_NUMBER):
            found.append("HAVEN_ON_CALL_NUMBER must be an E.164 number such as +14155550100")
        if content_sid_problem(self.TWILIO_WHATSAPP_CONTENT_SIDS):
            found.append(
                'TWILIO_WHATSAPP_CONTENT_SIDS must be JSON: {"template_key": '
                '{"language": "HX followed by 32 hex digits"}}'
            )
        if self.RETENTION_LOGIN_ATTEMPT < self.LOGIN_WINDOW:
            found.append(
                "HAVEN_RETENTION_LOGIN_ATTEMPT_DAYS must cover the sign-in throttle window "
                "(HAVEN_LOGIN_WINDOW_MINUTES): retention would delete the failures it counts"
            )
        if not _known_zone(self.HAVEN_DEFAULT_TIMEZONE):
            found.append("HAVEN_DEFAULT_TIMEZONE is not a time zone name such as Europe/Paris")
        if self.LOGIN_MAX_FAILURES < 1:
            found.append("HAVEN_LOGIN_MAX_FAILURES must be at least 1")
        elif self.LOGIN_ADDRESS_MAX_FAILURES < self.LOGIN_MAX_FAILURES:
            found.append(
                "HAVEN_LOGIN_ADDRESS_MAX_FAILURES must be at least HAVEN_LOGIN_MAX_FAILURES"
            )
        if self.ARGON2_PROFILE not in STRONG_HASH_PROFILES and not self.TESTING:
            found.append("ARGON2_PROFILE is a test profile: use RFC_9106_LOW_MEMORY")
        return found


def _known_zone(name: str) -> bool:
    return name == "UTC" or name in available_timezones()


# argon2.profiles that may hash real passwords. Tests use CHEAPEST (~0.2 ms instead of
# ~200 ms a hash here): a quarter of the suite's time went to hashing test passwords.
STRONG_HASH_PROFILES = frozenset({"RFC_9106_LOW_MEMORY", "RFC_9106_HIGH_MEMORY"})


def sms_lease_problems(cfg: BaseConfig) -> list[str]:
    """The outbox worker sends a claimed message only if, after the rate limiter's wait, a
    whole HTTP timeout is left on its lease (app/sms/worker.py). A timeout as long as the
    lease would skip every claim; a lease not longer than the timeout plus one send interval
    would skip every message that had to wait for its slot."""
    lease, timeout = cfg.SMS_LEASE_SECONDS, cfg.SMS_HTTP_TIMEOUT_SECONDS
    if timeout <= 0:
        return ["SMS_HTTP_TIMEOUT_SECONDS must be positive"]
    if timeout >= lease:
        return ["SMS_HTTP_TIMEOUT_SECONDS must be shorter than SMS_LEASE_SECONDS"]
    if lease <= timeout + 1.0 / cfg.SMS_RATE_PER_SECOND:
        return [
            "SMS_LEASE_SECONDS must be longer than SMS_HTTP_TIMEOUT_SECONDS plus one send "
            "interval (1 / SMS_RATE_PER_SECOND)"
        ]
    return []


def _placeholder(value: str | bytes) -> bool:
    """A pattern, not random material (``aaaa...``, ``0000...``, ``abcabc...``): 32 random
    bytes or characters practically never use fewer than 8 distinct values."""
    return len(set(value)) < 8


def data_key_problems(raw: str) -> list[str]:
    if not raw:
        return ["HAVEN_DATA_KEYS is not set (comma-separated Fernet keys, newest first)"]
    found = []
    for position, key in enumerate(k.strip() for k in raw.split(",")):
        try:
            Fernet(key.encode())
        except (ValueError, binascii.Error):
            found.append(f"HAVEN_DATA_KEYS entry {position + 1} is not a valid Fernet key")
            continue
        if _placeholder(base64.urlsafe_b64decode(key.encode())):
            found.append(f"HAVEN_DATA_KEYS entry {position + 1} is weak: generate a random key")
    return found


def _key_material(value: str) -> set[bytes]:
    """The byte strings a key written as ``value`` may stand for: the text itself and what
    it decodes to as base64 (either alphabet, padded or not) or hex. Two variables whose
    sets meet hold the same key, however each was written."""
    text = value.strip()
    found = {text.encode()}
    padded = text + "=" * (-len(text) % 4)
    for altchars in (b"-_", b"+/"):
        with contextlib.suppress(ValueError, binascii.Error):
            found.add(base64.b64decode(padded, altchars=altchars, validate=True))
    with contextlib.suppress(ValueError):
        found.add(bytes.fromhex(text))
    return {f for f in found if len(f) >= 16}


def key_reuse_problems(secret_key: str, index_key: str, data_keys: str) -> list[str]:
    """SECRET_KEY, HAVEN_INDEX_KEY and each HAVEN_DATA_KEYS entry must be different keys:
    one key in two roles lets whoever learns one of them (a session cookie forger, a
    database reader with the blind index) attack the other. Names only, never values."""
    keys = [("SECRET_KEY", secret_key), ("HAVEN_INDEX_KEY", index_key)]
    if data_keys:
        keys += [
            (f"HAVEN_DATA_KEYS entry {n}", k) for n, k in enumerate(data_keys.split(","), 1)
        ]
    material = [(name, _key_material(value)) for name, value in keys if value.strip()]
    found = []
    for i, (first, first_bytes) in enumerate(material):
        for second, second_bytes in material[i + 1 :]:
            if first_bytes & second_bytes:
                found.append(
                    f"{first} and {second} hold the same key: give each its own random key"
                )
    return found


def index_key_problems(raw: str) -> list[str]:
    if not raw:
        return ["HAVEN_INDEX_KEY is not set (urlsafe base64 of at least 32 random bytes)"]
    try:
        decoded = base64.urlsafe_b64decode(raw.encode() + b"=" * (-len(raw) % 4))
    except (ValueError, binascii.Error):
        return ["HAVEN_INDEX_KEY is not valid urlsafe base64"]
    if len(decoded) < 32 or _placeholder(decoded):
        return ["HAVEN_INDEX_KEY is weak: it must decode to at least 32 random bytes"]
    return []


# Production never runs the Werkzeug debugger: it shows data in tracebacks and, with its PIN,
# runs code. Checked in ProductionConfig.problems() and by the app (app.debug, --debugger).
DEBUG_REFUSED = (
    "debug mode (FLASK_DEBUG, --debug, --debugger or app.debug) is refused in production: "
    "the Werkzeug debugger shows data and runs code"
)


class DevelopmentConfig(BaseConfig):
    HAVEN_ENV = "development"
    DEBUG = False  # never the Werkzeug debugger: it would show survivor data in tracebacks

    def default_database_url(self) -> str:
        here = os.path.dirname(os.path.abspath(__file__))
        return "sqlite:///" + os.path.join(here, "instance", "haven.sqlite")


class TestingConfig(BaseConfig):
    HAVEN_ENV = "testing"
    TESTING = True

    def __init__(self, environ: Mapping[str, str] | None = None, **overrides: Any) -> None:
        super().__init__(environ, **overrides)
        if "SMS_BACKEND" not in overrides:
            self.SMS_BACKEND = "console"
        if "ARGON2_PROFILE" not in overrides:
            # Throwaway test passwords: the cheapest argon2id parameters. A hash made with
            # them is upgraded at the next sign-in under any other configuration.
            self.ARGON2_PROFILE = "CHEAPEST"


class ProductionConfig(BaseConfig):
    HAVEN_ENV = "production"

    def __init__(self, environ: Mapping[str, str] | None = None, **overrides: Any) -> None:
        super().__init__(environ, **overrides)
        self.SESSION_COOKIE_SECURE = True
        self.PREFERRED_URL_SCHEME = "https"

    def problems(self) -> list[str]:
        found = super().problems()
        if self.SMS_BACKEND == "twilio":
            if not (self.TWILIO_ACCOUNT_SID and self.TWILIO_AUTH_TOKEN):
                found.append("SMS_BACKEND=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
            if not (self.TWILIO_FROM_NUMBER or self.TWILIO_MESSAGING_SERVICE_SID):
                found.append(
                    "SMS_BACKEND=twilio needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"
                )
        if self.PUBLIC_BASE_URL and not self.PUBLIC_BASE_URL.startswith("https://"):
            found.append("PUBLIC_BASE_URL must be an https:// address in production")
        if self.DEBUG_REQUESTED or self.DEBUG:
            found.append(DEBUG_REFUSED)
        found.extend(
            key_reuse_problems(self.SECRET_KEY, self.HAVEN_INDEX_KEY, self.HAVEN_DATA_KEYS)
        )
        return found


CONFIGS: dict[str, type[BaseConfig]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def config_from_env(environ: Mapping[str, str] | None = None) -> BaseConfig:
    env = os.environ if environ is None else environ
    name = _env(env, "HAVEN_ENV", "development").lower()
    if name not in CONFIGS:
        raise ConfigError([f"HAVEN_ENV must be one of {', '.join(CONFIGS)}"])
    return CONFIGS[name](env)
