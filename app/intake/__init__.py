from flask import Blueprint

bp = Blueprint("intake", __name__)


@bp.record_once
def _register_seed_hook(state) -> None:  # type: ignore[no-untyped-def]
    from app.intake.seed import seed_cases

    state.app.extensions.setdefault("haven_seed_hooks", []).append(seed_cases)


from app.intake import day_routes, routes  # noqa: E402,F401
