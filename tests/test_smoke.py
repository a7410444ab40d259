from tests import factories


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "database": "ok"}


def test_caseworker_signs_in_and_sees_home(app, client, auth):
    user = factories.make_user("caseworker")
    from app.core.extensions import db

    db.session.commit()
    response = auth.login(user, follow=True)
    assert response.status_code == 200
    assert b"Caseworker" in response.data
