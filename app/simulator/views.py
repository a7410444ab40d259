"""``/dev/hotline``: parse the form, call ``app.simulator.phone``, render. Any signed-in
role; development only, unless ``HAVEN_SIMULATOR=1``."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request

from app.core.extensions import db
from app.core.security import ANY_ROLE, roles
from app.simulator import phone
from app.simulator.forms import PhoneForm

bp = Blueprint("simulator", __name__)



def simulator_enabled() -> bool:
    config = current_app.config
    return config["HAVEN_ENV"] != "production" or bool(config.get("HAVEN_SIMULATOR"))


@bp.route("/hotline", methods=["GET", "POST"])
@roles(*ANY_ROLE)
def hotline() -> tuple[str, int]:
    if not simulator_enabled():
        abort(404)
    form = PhoneForm()
    exchange = None
    problem = None
    if form.validate_on_submit():
        # The webhook runs in its own application context and transaction: this request's
        # (the gate's reads) must be over first, or SQLite's one writer would wait on it.
        db.session.commit()
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        text = (form.message.data or "").strip()
        try:
            if form.channel.data == "voice":
                exchange = phone.voice(app, form.e164, text, form.call_sid.data or None,
                                       form.next_step.data or None)
                form.call_sid.data = exchange.call_sid or ""
                form.next_step.data = exchange.next_step or ""
            else:
                exchange = phone.send_message(app, form.channel.data, form.e164, text)
                form.call_sid.data = ""
                form.next_step.data = ""
        except phone.SimulatorError:
            problem = "token"
        form.message.data = ""
    page = render_template("simulator/hotline.html", form=form, exchange=exchange,
                           problem=problem)
    # A form sent back with errors is a 400, like every form of Haven's.
    return page, 400 if request.method == "POST" and form.errors else 200
