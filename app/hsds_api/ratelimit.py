"""A fixed-window request limit per client address for the anonymous HSDS API.

The same counting idea as sign-in throttling (a count per address inside a window), kept in
memory because the API writes nothing: a database row per anonymous read would make every
read a write. Each web process counts its own requests, so N processes allow up to N times
the limit from one address; the TLS proxy in front is where a hard, shared limit belongs.
Addresses are held only for the current minute and never logged.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class WindowLimiter:
    def __init__(
        self, per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.per_minute = per_minute
        self.clock = clock
        self._lock = threading.Lock()
        self._window = -1
        self._counts: dict[str, int] = {}

    def allow(self, key: str) -> tuple[bool, int]:
        """Whether one more request from ``key`` fits in this minute, and the seconds left
        until the next minute starts (for Retry-After)."""
        now = self.clock()
        window = int(now // 60)
        with self._lock:
            if window != self._window:
                self._window, self._counts = window, {}
            count = self._counts.get(key, 0) + 1
            self._counts[key] = count
        return count <= self.per_minute, max(1, int(60 - now % 60))
