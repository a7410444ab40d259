"""Configuration (DESIGN §7, issue 2 §1): production refuses to start without strong secrets,
with a clear message that names the variable and never echoes a secret; no environment has
fallback secrets; a complete production configuration runs with Secure cookies and HSTS."""

from __future__ import annotations

import base64
import os
import subprocess
import sys

import pytest

import config
from app import create_app
from config import ConfigError, DevelopmentConfig, ProductionConfig
from tests.conftest import TEST_ENV

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _prod_env(database_url: str = "postgresql://haven@db.internal/haven", **changes: str | None):
    env = {
        "HAVEN_ENV": "production",
        "SECRET_KEY": TEST_ENV["SECRET_KEY"],
        "DATABASE_URL": database_url,
        "HAVEN_DATA_KEYS": TEST_ENV["HAVEN_DATA_KEYS"],
        "HAVEN_INDEX_KEY": TEST_ENV["HAVEN_INDEX_KEY"],
        "SMS_BACKEND": "console",
    }
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def _refusal(env: dict[str, str], cls: type[config.BaseConfig] = ProductionConfig) -> str:
    with pytest.raises(ConfigError) as caught:
        create_app(cls(env))
    message = str(caught.value.code)
    assert message.startswith("Haven refuses to start")
    # Whatever was wrong, no value of the environment is echoed back.
    for name, value in env.items():
        if name in {"SECRET_KEY", "HAVEN_DATA_KEYS", "HAVEN_INDEX_KEY", "DATABASE_URL"} and value:
            for part in value.split(","):
                if len(part.strip()) >= 6:
                    assert part.strip() not in message, name
    return message


WEAK_FERNET = base64.urlsafe_b64encode(b"\0" * 32).decode()  # a valid key of 32 zero bytes
# Fixed values, so that parameter ids are the same in every pytest-xdist worker.
ANOTHER_KEY = base64.urlsafe_b64encode(bytes(range(100, 132))).decode()

REFUSALS = [
    # (variable, value or None for missing, text expected in the message)
    ("SECRET_KEY", None, "SECRET_KEY is not set"),
    ("SECRET_KEY", "", "SECRET_KEY is not set"),
    ("SECRET_KEY", "   ", "SECRET_KEY is not set"),
    ("SECRET_KEY", "changeme", "SECRET_KEY is weak"),
    ("SECRET_KEY", "s3cr3t-but-only-24-chars", "SECRET_KEY is weak"),
    ("SECRET_KEY", "a" * 64, "SECRET_KEY is weak"),
    ("SECRET_KEY", "changemechangemechangemechangeme", "SECRET_KEY is weak"),
    ("DATABASE_URL", None, "DATABASE_URL is not set"),
    ("DATABASE_URL", "", "DATABASE_URL is not set"),
    ("HAVEN_DATA_KEYS", None, "HAVEN_DATA_KEYS is not set"),
    ("HAVEN_DATA_KEYS", "not-a-fernet-key-at-all", "HAVEN_DATA_KEYS entry 1 is not a valid"),
    ("HAVEN_DATA_KEYS", f"{ANOTHER_KEY},short", "HAVEN_DATA_KEYS entry 2 is not a valid"),
    ("HAVEN_DATA_KEYS", WEAK_FERNET, "HAVEN_DATA_KEYS entry 1 is weak"),
    ("HAVEN_INDEX_KEY", None, "HAVEN_INDEX_KEY is not set"),
    (
        "HAVEN_INDEX_KEY",
        base64.urlsafe_b64encode(bytes(range(40, 56))).decode(),
        "HAVEN_INDEX_KEY is weak",
    ),
    ("HAVEN_INDEX_KEY", "!!!!not base64 at all!!!!", "HAVEN_INDEX_KEY is"),
    ("HAVEN_INDEX_KEY", base64.urlsafe_b64encode(b"\1" * 32).decode(), "HAVEN_INDEX_KEY is weak"),
    ("SMS_BACKEND", "carrier-pigeon", "SMS_BACKEND must be"),
    ("SMS_HTTP_TIMEOUT_SECONDS", "60", "SMS_HTTP_TIMEOUT_SECONDS must be shorter than"),
    ("HAVEN_RETENTION_LOGIN_ATTEMPT_DAYS", "0", "HAVEN_RETENTION_LOGIN_ATTEMPT_DAYS must cover"),
    ("SMS_HTTP_TIMEOUT_SECONDS", "90", "SMS_HTTP_TIMEOUT_SECONDS must be shorter than"),
    ("PUBLIC_BASE_URL", "http://haven.example.org", "PUBLIC_BASE_URL must be an https://"),
]


@pytest.mark.parametrize(("name", "value", "expected"), REFUSALS)
def test_production_refuses_to_start(name, value, expected):
    message = _refusal(_prod_env(**{name: value}))
    assert expected in message
    if value and len(value.strip()) >= 6 and name != "PUBLIC_BASE_URL":
        assert value.strip() not in message


@pytest.mark.parametrize("cls", [DevelopmentConfig, config.TestingConfig, ProductionConfig])
def test_the_sms_lease_must_outlast_one_wait_and_one_http_timeout(cls):
    """The worker checks the lease after the rate limiter waited and sends only when a whole
    HTTP timeout is left: a lease not longer than the timeout plus one send interval (here
    15 s + 1/0.2 s = 20 s) would skip claims forever."""
    tight = {
        "SMS_LEASE_SECONDS": "20",
        "SMS_HTTP_TIMEOUT_SECONDS": "15",
        "SMS_RATE_PER_SECOND": "0.2",
    }
    message = _refusal(_prod_env(**tight), cls)
    assert "SMS_LEASE_SECONDS must be longer than SMS_HTTP_TIMEOUT_SECONDS" in message
    enough = dict(tight, SMS_LEASE_SECONDS="21")
    assert not [p for p in cls(_prod_env(**enough)).problems() if "SMS_" in p]


def test_every_problem_is_reported_at_once():
    message = _refusal({"HAVEN_ENV": "production"})
    for name in ("SECRET_KEY", "DATABASE_URL", "HAVEN_DATA_KEYS", "HAVEN_INDEX_KEY"):
        assert f"{name} is not set" in message


def test_refusal_is_a_nonzero_system_exit():
    with pytest.raises(SystemExit) as caught:
        create_app(ProductionConfig(_prod_env(SECRET_KEY=None)))
    # SystemExit with a text code: Python prints it to stderr and exits with status 1.
    assert isinstance(caught.value.code, str)


def test_twilio_backend_needs_its_credentials_in_production():
    message = _refusal(_prod_env(SMS_BACKEND="twilio"))
    assert "TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in message
    assert "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID" in message
    token = "f" * 8 + "0123456789abcdef" * 2
    message = _refusal(
        _prod_env(SMS_BACKEND="twilio", TWILIO_ACCOUNT_SID="AC" + "1" * 32, TWILIO_AUTH_TOKEN=token)
    )
    assert token not in message and "TWILIO_ACCOUNT_SID" not in message


@pytest.mark.parametrize("cls", [DevelopmentConfig, config.TestingConfig])
def test_no_environment_has_fallback_secrets(cls):
    bare = cls({})
    assert bare.SECRET_KEY == "" and bare.HAVEN_DATA_KEYS == "" and bare.HAVEN_INDEX_KEY == ""
    message = _refusal({}, cls)
    for name in ("SECRET_KEY", "HAVEN_DATA_KEYS", "HAVEN_INDEX_KEY"):
        assert f"{name} is not set" in message


def test_passwords_are_hashed_with_rfc_9106_outside_tests():
    assert DevelopmentConfig({}).ARGON2_PROFILE == "RFC_9106_LOW_MEMORY"
    assert ProductionConfig(_prod_env()).ARGON2_PROFILE == "RFC_9106_LOW_MEMORY"
    assert config.TestingConfig({}).ARGON2_PROFILE == "CHEAPEST"


@pytest.mark.parametrize("cls", [DevelopmentConfig, ProductionConfig])
def test_a_test_hashing_profile_is_refused_outside_tests(cls):
    with pytest.raises(ConfigError) as caught:
        create_app(cls(_prod_env(), ARGON2_PROFILE="CHEAPEST"))
    assert "ARGON2_PROFILE is a test profile" in str(caught.value.code)


def test_development_has_a_default_sqlite_database_but_no_keys():
    assert DevelopmentConfig({}).SQLALCHEMY_DATABASE_URI.startswith("sqlite:///")
    assert "DATABASE_URL" not in "".join(DevelopmentConfig({}).problems())
    assert ProductionConfig({}).SQLALCHEMY_DATABASE_URI == ""


def test_unknown_haven_env_is_refused():
    with pytest.raises(ConfigError) as caught:
        config.config_from_env({"HAVEN_ENV": "staging"})
    assert "HAVEN_ENV must be one of" in str(caught.value.code)


def test_bad_integer_setting_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        ProductionConfig(_prod_env(HAVEN_IDLE_MINUTES="fifteen"))
    assert "HAVEN_IDLE_MINUTES must be an integer" in str(caught.value.code)
    assert "fifteen" not in str(caught.value.code)


def test_config_from_env_picks_the_class():
    assert isinstance(config.config_from_env(_prod_env()), ProductionConfig)
    assert isinstance(config.config_from_env({"HAVEN_ENV": "TESTING"}), config.TestingConfig)
    assert isinstance(config.config_from_env({}), DevelopmentConfig)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg://u@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg://u@h/db"),
        ("sqlite:////tmp/x.sqlite", "sqlite:////tmp/x.sqlite"),
    ],
)
def test_database_url_uses_psycopg3(url, expected):
    assert config.normalize_database_url(url) == expected


def test_complete_production_config_starts_with_secure_cookies_and_hsts(database_url):
    app = create_app(ProductionConfig(_prod_env(database_url)))
    try:
        assert app.config["HAVEN_ENV"] == "production"
        assert app.config["SESSION_COOKIE_SECURE"] is True
        assert app.config["DEBUG"] is False and app.config["TESTING"] is False
        client = app.test_client()
        health = client.get("/healthz", base_url="https://haven.example.org")
        assert health.status_code == 200
        assert health.headers["Strict-Transport-Security"].startswith("max-age=")
        assert int(health.headers["Strict-Transport-Security"].split("=")[1].split(";")[0]) >= (
            180 * 24 * 3600
        )
        page = client.get("/auth/login", base_url="https://haven.example.org")
        assert page.status_code == 200
        assert "Strict-Transport-Security" in page.headers
        cookie = page.headers["Set-Cookie"]
        assert cookie.startswith("haven_session=")
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"secure", "httponly"} <= attributes
        assert "samesite=strict" in cookie.lower()
    finally:
        with app.app_context():
            from app.core.extensions import db

            db.engine.dispose()


def test_development_sends_no_hsts(app, client):
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
    assert app.config["SESSION_COOKIE_SECURE"] is False


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": REPO,
        "FLASK_SKIP_DOTENV": "1",
        "LANG": "C.UTF-8",
    }
    env.update(extra)
    return env


def test_flask_cli_refuses_to_start_in_production_without_keys(tmp_path):
    secret = TEST_ENV["SECRET_KEY"]
    env = _clean_env(HAVEN_ENV="production", SECRET_KEY=secret, DATABASE_URL="sqlite:///x.db")
    completed = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "routes"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode != 0
    assert "Haven refuses to start" in completed.stderr
    assert "HAVEN_DATA_KEYS is not set" in completed.stderr
    assert "HAVEN_INDEX_KEY is not set" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert secret not in completed.stderr + completed.stdout
    assert not (tmp_path / "x.db").exists()  # refused before touching any database


def test_flask_cli_starts_with_a_complete_production_config(tmp_path):
    env = _clean_env(**_prod_env(f"sqlite:///{tmp_path / 'prod.sqlite'}"))
    completed = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", "routes"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    assert "main.healthz" in completed.stdout


# --- debug mode and key reuse (issue 14 §6, §7) ----------------------------------------------


def test_production_refuses_flask_debug():
    message = _refusal(_prod_env(FLASK_DEBUG="1"))
    assert "FLASK_DEBUG" in message and "debug" in message
    # On is whatever Flask takes for on; off is off.
    assert "FLASK_DEBUG" in _refusal(_prod_env(FLASK_DEBUG="off"))  # (Flask: debug on)
    for off in ("0", "false", "No", ""):
        assert ProductionConfig(_prod_env(FLASK_DEBUG=off)).problems() == []


def test_production_app_refuses_to_be_switched_into_debug_mode(database_url):
    app = create_app(ProductionConfig(_prod_env(database_url)))
    with pytest.raises(ConfigError) as caught:
        app.debug = True  # what `flask run --debug` and app.run(debug=True) do after loading
    assert "debug" in str(caught.value.code)
    assert app.debug is False
    app.debug = False  # switching it off is always fine
    development = create_app(DevelopmentConfig(_prod_env(database_url)))
    development.debug = True  # a developer's own machine may
    assert development.debug is True


def _start_flask(tmp_path, args: list[str], **extra: str) -> tuple[int, str]:
    """Run `flask --app app ARGS` in production; return its exit status and stderr. A server
    that starts (the refusal did not happen) is stopped as soon as it says it is running."""
    env = _clean_env(**_prod_env(f"sqlite:///{tmp_path / 'prod.sqlite'}"), **extra)
    lines = []
    with subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if "Running on" in line or "Debugger is active" in line:
                process.kill()
                break
        status = process.wait(timeout=60)
    return status, "".join(lines)


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["run", "--port", "0"], {"FLASK_DEBUG": "1"}),
        (["--debug", "run", "--port", "0"], {}),
        (["run", "--port", "0", "--debugger"], {}),
    ],
    ids=["FLASK_DEBUG=1", "--debug", "--debugger"],
)
def test_flask_run_refuses_debug_mode_in_production(tmp_path, args, extra):
    status, output = _start_flask(tmp_path, args, **extra)
    assert "Running on" not in output, "the server started"
    assert status != 0
    assert "Haven refuses to start" in output and "debug" in output
    assert "Traceback" not in output


def _b64(raw: bytes, *, urlsafe: bool = True, padded: bool = True) -> str:
    text = (base64.urlsafe_b64encode if urlsafe else base64.standard_b64encode)(raw).decode()
    return text if padded else text.rstrip("=")


# 32 fixed random-looking bytes whose base64 differs between the two alphabets.
SHARED = bytes.fromhex("fb ff be 13 57 9a c4 0e 2d 81 f0 6b 39 77 e5 c2 a8 04 5d 9e 61 3b f7 "
                       "8c 0a d2 4f 96 e3 19 b5 7a")


@pytest.mark.parametrize(
    ("changes", "names"),
    [
        ({"HAVEN_INDEX_KEY": _b64(SHARED), "HAVEN_DATA_KEYS": _b64(SHARED)},
         ("HAVEN_INDEX_KEY", "HAVEN_DATA_KEYS entry 1")),
        ({"HAVEN_DATA_KEYS": f"{ANOTHER_KEY},{_b64(SHARED)}",
          "HAVEN_INDEX_KEY": _b64(SHARED, padded=False)},
         ("HAVEN_INDEX_KEY", "HAVEN_DATA_KEYS entry 2")),
        ({"HAVEN_DATA_KEYS": _b64(SHARED), "HAVEN_INDEX_KEY": _b64(SHARED, urlsafe=False)},
         ("HAVEN_INDEX_KEY", "HAVEN_DATA_KEYS entry 1")),
        ({"SECRET_KEY": _b64(SHARED), "HAVEN_DATA_KEYS": _b64(SHARED)},
         ("SECRET_KEY", "HAVEN_DATA_KEYS entry 1")),
        ({"SECRET_KEY": SHARED.hex(), "HAVEN_INDEX_KEY": _b64(SHARED)},
         ("SECRET_KEY", "HAVEN_INDEX_KEY")),
        ({"SECRET_KEY": TEST_ENV["HAVEN_INDEX_KEY"]}, ("SECRET_KEY", "HAVEN_INDEX_KEY")),
        ({"HAVEN_DATA_KEYS": f"{_b64(SHARED)},{ANOTHER_KEY},{_b64(SHARED)}"},
         ("HAVEN_DATA_KEYS entry 1", "HAVEN_DATA_KEYS entry 3")),
    ],
    ids=["index=data", "index=data-unpadded", "index=data-standard-alphabet", "secret=data",
         "secret-hex=index", "secret=index", "data-twice"],
)
def test_production_refuses_one_key_used_twice(changes, names):
    message = _refusal(_prod_env(**changes))
    line = next(p for p in message.splitlines() if "same key" in p)
    for name in names:
        assert name in line
    assert SHARED.hex() not in message and _b64(SHARED, padded=False) not in message


def test_distinct_keys_are_not_reuse():
    assert ProductionConfig(_prod_env()).problems() == []
