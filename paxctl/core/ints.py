"""The integer bound of every encoded field, on its own: the client's side (operations and the
client protocol's codec) checks it too, and should not load the peer codec to learn it."""

from __future__ import annotations

#: The largest integer any field may hold (client ids and sequence numbers included).
MAX_UINT = 2**63 - 1
