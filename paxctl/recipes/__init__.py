"""Coordination recipes on the asyncio client: locks, semaphores, elections, barriers, counters.

Everything here uses only the public ``paxctl.client.Client``; a recipe object is one party
(one contender, one candidate, one participant) and may be used again after it let go.

What a lock does:

* At most one holder at a time *as far as the cluster is concerned*: the holder is the first
  ephemeral-sequential child of the lock's path, and that node lives exactly as long as the
  holder's session (or until it releases).
* Waiters are served in arrival order, each woken by its predecessor only (no herd).
* Every grant carries a fencing ``token`` (the node's czxid) that strictly increases from one
  holder to the next; ``lock.fence`` passed to a write makes the cluster refuse it once the
  lock has moved on.

What a lock does NOT do:

* It does not stop a holder that no longer holds it. Once the client cannot reach the cluster,
  its session may expire and the lock go to someone else while the old holder still runs:
  from the holder's side SUSPENDED means "may still hold, cannot know". Anything with external
  effects must either stop before ``client.valid_until()`` (a monotonic-clock deadline until
  which the session is certainly alive) or pass the fencing token to the resource, which must
  refuse tokens older than the newest it has seen. ``lost`` (an ``asyncio.Event``) is set only
  once the client *knows* the session is gone (LOST), the client was closed, or the node was
  deleted; by then another party may have held the lock for a while.
* It is advisory: nothing prevents code that never asks for the lock from touching the data.
* It is not re-entrant, and it is not tied to a task: the object holds it, not the coroutine.

Errors: ``RecipeError`` and its subclasses (``ContenderLost``, ``LimitMismatch``) are about a
recipe's contract; the client's ``Unavailable`` (cluster unreachable, nothing done) and, for
``Counter.add`` only, ``Indeterminate`` pass through unchanged.

Running a command under a lock: ``await lock.holding(["backup.sh"])`` (or
``election.leading(argv)``) acquires, runs the command only while the lock is certainly held
(killing it before the cluster could give the lock to anyone else, ``HoldLost`` then), releases,
and returns its exit status. See ``paxctl.recipes.held`` for the timing rule and
``paxctl.recipes.supervise`` for the process group and the watchdog.
"""

from paxctl.recipes._common import Contender
from paxctl.recipes.barrier import Barrier, DoubleBarrier
from paxctl.recipes.counter import Counter
from paxctl.recipes.election import Election, Leader
from paxctl.recipes.errors import (
    ContenderLost,
    HoldLost,
    LimitMismatch,
    RecipeError,
    TimingError,
)
from paxctl.recipes.lock import Lock, LockStatus, ReadLock, ReadWriteLock, WriteLock, lock_status
from paxctl.recipes.semaphore import Semaphore

__all__ = [
    "Barrier",
    "Contender",
    "ContenderLost",
    "Counter",
    "DoubleBarrier",
    "Election",
    "HoldLost",
    "Leader",
    "LimitMismatch",
    "Lock",
    "LockStatus",
    "ReadLock",
    "ReadWriteLock",
    "RecipeError",
    "Semaphore",
    "TimingError",
    "WriteLock",
    "lock_status",
]
