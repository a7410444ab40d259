"""Shared pieces of the SMS tests: a stub network for the Twilio SDK, signed webhook posts,
and a scan of every text/blob column for a plaintext value."""

from __future__ import annotations

import json
import re
import secrets
from collections import deque
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect
from twilio.http import HttpClient
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator

from app.core.extensions import db

ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "test-auth-token-" + "5" * 16
FROM_NUMBER = "+15005550006"


def new_sid() -> str:
    return "SM" + secrets.token_hex(16)


def twilio_error(code: int, status: int = 400, message: str = "error") -> Response:
    """An error body as Twilio's API returns it."""
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Response(status, json.dumps(body))


def message_created(sid: str | None = None, status: str = "queued") -> Response:
    body = {
        "sid": sid or new_sid(),
        "account_sid": ACCOUNT_SID,
        "status": status,
        "num_segments": "1",
        "direction": "outbound-api",
        "api_version": "2010-04-01",
    }
    return Response(201, json.dumps(body))


class StubNetwork(HttpClient):
    """The network under the SDK: answers each request with the next queued response (or
    raises the queued exception). Records what the SDK asked for."""

    def __init__(self, *responses: Response | BaseException) -> None:
        super().__init__(logger=None, is_async=False)  # type: ignore[arg-type]
        self.queue: deque[Response | BaseException] = deque(responses)
        self.requests: list[dict[str, Any]] = []

    def push(self, *responses: Response | BaseException) -> None:
        self.queue.extend(responses)

    # Twilio's HttpClient.request signature; only method, uri and data matter to the fake.
    def request(
        self, method: str, uri: str, params: Any = None, data: Any = None,  # noqa: ARG002 - Twilio's signature
        headers: Any = None, auth: Any = None, timeout: Any = None,  # noqa: ARG002 - Twilio's signature
        allow_redirects: bool = False,  # noqa: ARG002 - Twilio's signature
    ) -> Response:
        self.requests.append({"method": method, "uri": uri, "data": dict(data or {})})
        if not self.queue:
            if method.upper() == "DELETE":
                return Response(204, "")
            return message_created()
        item = self.queue.popleft()
        if isinstance(item, BaseException):
            raise item
        return item


def sign(url: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return str(RequestValidator(token).compute_signature(url, params))


def post_signed(client: FlaskClient, path: str, params: dict[str, str],
                base: str = "http://localhost", signature: str | None = None) -> Any:
    sig = signature if signature is not None else sign(base + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": sig})


def inbound_params(sender: str, body: str, sid: str | None = None) -> dict[str, str]:
    return {
        "MessageSid": sid or new_sid(),
        "AccountSid": ACCOUNT_SID,
        "From": sender,
        "To": FROM_NUMBER,
        "Body": body,
        "NumMedia": "0",
    }


def scan_database(app: Flask, needles: list[str]) -> list[str]:
    """Every column of every table, read raw (no type processing, so sealed columns stay
    sealed), searched for each needle as text and as UTF-8 bytes. Returns the
    ``table.column`` names where something was found."""
    from flask import has_app_context

    if has_app_context():
        db.session.commit()  # end the caller's transaction (on SQLite it holds the lock)
    found = []
    with app.app_context():
        existing = set(inspect(db.engine).get_table_names())
        with db.engine.connect() as conn:
            for name in sorted(existing):
                result = conn.exec_driver_sql(f'SELECT * FROM "{name}"')
                keys = list(result.keys())
                for row in result:
                    for key, value in zip(keys, row, strict=True):
                        if value is None:
                            continue
                        if isinstance(value, (bytes, bytearray, memoryview)):
                            raw = bytes(value)
                            hit = any(n.encode() in raw for n in needles)
                        else:
                            hit = any(n in str(value) for n in needles)
                        if hit:
                            found.append(f"{name}.{key}")
    return found


class LocalTwilioHttpClient(TwilioHttpClient):
    """The SDK's own HTTP client, sending to a local mock of the Twilio API instead of
    https://api.twilio.com (the path, auth and body are left as the SDK made them)."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.base_url = base_url.rstrip("/")
        self.seen: list[tuple[str, str, int]] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Response:
        local = re.sub(r"^https://[a-z0-9.-]*\.twilio\.com", self.base_url, url)
        response = super().request(method, local, *args, **kwargs)
        self.seen.append((method.upper(), local, response.status_code))
        return response
