"""POST /session/alive: the page reports activity so the server's idle timeout does not sign
out someone who is filling in a long form (the browser test shows the whole loop)."""

from __future__ import annotations

import re
import time
from typing import Any

from tests import factories
from tests.conftest import login_session


def test_activity_report_refreshes_the_session(client: Any) -> None:
    login_session(client, factories.make_user("caseworker"))
    with client.session_transaction() as sess:
        sess["seen"] = time.time() - 14 * 60
    response = client.post("/session/alive")
    assert response.status_code == 204
    assert response.get_data() == b""
    with client.session_transaction() as sess:
        assert time.time() - sess["seen"] < 5


def test_an_expired_session_is_not_revived(client: Any) -> None:
    login_session(client, factories.make_user("caseworker"))
    with client.session_transaction() as sess:
        sess["seen"] = time.time() - 16 * 60
    assert client.post("/session/alive").status_code == 401
    assert client.get("/").status_code == 302


def test_anonymous_is_refused(client: Any) -> None:
    assert client.post("/session/alive").status_code == 401


def test_activity_report_needs_the_csrf_token(app_factory: Any) -> None:
    app = app_factory(WTF_CSRF_ENABLED=True)
    with app.app_context():
        user = factories.make_user("caseworker")
        from app.core.extensions import db

        db.session.commit()
        client = app.test_client()
        login_session(client, user)
        assert client.post("/session/alive").status_code == 400
        page = client.get("/").get_data(as_text=True)
        found = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert found, "the page carries a CSRF token for the report"
        response = client.post("/session/alive", headers={"X-CSRFToken": found.group(1)})
        assert response.status_code == 204


def test_the_page_knows_where_to_report(client: Any) -> None:
    login_session(client, factories.make_user("provider"))
    html = client.get("/").get_data(as_text=True)
    assert 'data-alive-url="/session/alive"' in html
