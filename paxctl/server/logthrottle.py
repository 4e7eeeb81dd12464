"""Log lines a stranger can cause, at most once per interval for each kind of line.

Anyone who reaches a port can make a node refuse them thousands of times a second (a failed
peer authentication, a connection over the limit, a malformed frame). Each such line goes
through ``Throttle.log`` with a key naming its kind (and, where useful, the address): the first
is written at once, repeats within ``interval_s`` are only counted, and the next line of that
key says how many were left out. The table of keys is bounded, so varying the key (e.g. from
many source ports) cannot grow memory either.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

#: Keys remembered at once; the least recently logged is forgotten first.
MAX_KEYS = 1024


class Throttle:
    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = MAX_KEYS,
    ) -> None:
        self._log = logger
        self._interval = interval_s
        self._clock = clock
        self._max_keys = max_keys
        # key -> (when it was last written, how many were left out since)
        self._seen: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()

    def log(self, level: int, key: Hashable, msg: str, *args: object) -> bool:
        """Write ``msg % args`` unless a line of ``key`` was written within the interval;
        True if it was written."""
        now = self._clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self._interval:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        suppressed = last[1] if last is not None else 0
        self._seen[key] = (now, 0)
        self._seen.move_to_end(key)
        while len(self._seen) > self._max_keys:
            self._seen.popitem(last=False)
        if suppressed:
            msg += f" ({suppressed} more like this in the last {self._interval:g} s not logged)"
        self._log.log(level, msg, *args)
        return True

    def warning(self, key: Hashable, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def error(self, key: Hashable, msg: str, *args: object) -> bool:
        return self.log(logging.ERROR, key, msg, *args)
