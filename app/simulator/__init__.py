"""The hotline simulator, ``/dev/hotline`` (issue 18): a staff page that looks like a
phone and sends each message through the real webhook path (``app.simulator.phone``).
On in development; refused in production unless ``HAVEN_SIMULATOR=1``."""
