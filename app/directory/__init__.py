"""Service directory: browse/search, admin and provider editing, areas, anonymous matching."""

from flask import Blueprint

bp = Blueprint("directory", __name__)


@bp.record_once
def _register_seed_hook(state) -> None:  # type: ignore[no-untyped-def]
    from app.directory.seed import seed_directory

    state.app.extensions.setdefault("haven_seed_hooks", []).append(seed_directory)


from app.directory import routes  # noqa: E402,F401
