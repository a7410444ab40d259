"""Registry used by the endpoint walk (tests/test_authorization.py).

For every URL variable that names an object (``<int:case_id>``...), a factory that makes
such an object belonging to *another* organization than the signed-in user, and whether
the object is organization-scoped (then every role that may use the endpoint must get 404)
or shared (the directory: then the usual role rules apply).

Adding an endpoint with a new variable name fails the walk until an entry is added here,
so new endpoints join the authorization test automatically.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from app.models import Organization
from tests import factories


@dataclass(frozen=True)
class ObjectFactory:
    make: Callable[[Organization], int | str]  # other organization -> id of a new object
    # True: another organization's object answers 404 for every role allowed on the endpoint;
    # a set of roles: only for those roles (the object is shared for reading by the others).
    scoped: bool | frozenset[str]

    def scoped_for(self, role: str) -> bool:
        return self.scoped is True or (isinstance(self.scoped, frozenset) and role in self.scoped)


def _user(org: Organization) -> int:
    return factories.make_user("caseworker", organization=org).id


def _case(org: Organization) -> int:
    return factories.make_case(org).id


def _service(org: Organization) -> int:
    return factories.make_service(organization=org).id


def _hsds_service(org: Organization) -> str:
    from app.directory.hsds_export import service_hsds_id

    return service_hsds_id(factories.make_service(org))


def _area(org: Organization) -> int:
    import uuid

    from app.core.extensions import db
    from app.models import Area

    area = Area(name=f"Walk area {uuid.uuid4().hex[:12]}")
    db.session.add(area)
    db.session.flush()
    return area.id


def _referral(org: Organization) -> int:
    """Referrals are seen by two organizations: the NGO whose case it is (caseworkers,
    supervisors) and the provider it is addressed to. Make the kind ``org`` can see."""
    if org.kind == "provider":
        service = factories.make_service(organization=org, category="legal")
        case = factories.make_case(needs={"legal": "soon"})
    else:
        service = factories.make_service(category="legal")
        case = factories.make_case(org, needs={"legal": "soon"})
    return factories.make_referral(case, service).id


def _release(org: Organization) -> int:
    case = factories.make_case(org)
    return factories.make_release(case, factories.make_org("provider")).id


OBJECT_FACTORIES: dict[str, ObjectFactory] = {
    # Survivor cases belong to one NGO: any other organization gets 404.
    "case_id": ObjectFactory(_case, scoped=True),
    # Users and organizations are managed by the (global) admin role only.
    "user_id": ObjectFactory(_user, scoped=False),
    "organization_id": ObjectFactory(lambda org: org.id, scoped=False),
    # Directory services are shared for reading by every staff role (caseworkers must see
    # every provider's services); a provider reading or editing another organization's
    # service gets 404.
    "service_id": ObjectFactory(_service, scoped=frozenset({"provider"})),
    # Areas are one global list managed by admins.
    "area_id": ObjectFactory(_area, scoped=False),
    # A referral is visible to the referring NGO's staff and to the recipient provider only.
    "referral_id": ObjectFactory(_referral, scoped=True),
    # Releases belong to a case: the case's NGO only.
    "release_id": ObjectFactory(_release, scoped=True),
    # The HSDS API's ids (UUIDs, not database ids): public directory data, no sign-in.
    "hsds_key": ObjectFactory(_hsds_service, scoped=False),
}
