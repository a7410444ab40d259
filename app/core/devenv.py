"""Write a development `.env` with fresh random secrets, once. Used by `make demo`.

Production never uses this: it must get its secrets from the environment (DESIGN §7)."""

from __future__ import annotations

import base64
import os
import secrets
import sys

from cryptography.fernet import Fernet


def main(path: str = ".env") -> int:
    if os.path.exists(path):
        print(f"{path} exists; keeping its keys.")
        return 0
    lines = [
        "# Development settings written by `make demo`. Never commit this file.",
        "HAVEN_ENV=development",
        f"SECRET_KEY={secrets.token_urlsafe(48)}",
        f"HAVEN_DATA_KEYS={Fernet.generate_key().decode()}",
        f"HAVEN_INDEX_KEY={base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}",
        "SMS_BACKEND=console",
        # The hotline's webhooks work locally: the simulator (/dev/hotline) signs its
        # requests with this token, as Twilio would, for this address.
        f"TWILIO_AUTH_TOKEN={secrets.token_hex(16)}",
        "PUBLIC_BASE_URL=http://127.0.0.1:5000",
        "HAVEN_PHONE_REGION=US",
        "HAVEN_EMERGENCY_NUMBER=911",
        "",
    ]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines))
    print(f"Wrote {path} with new random keys.")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
