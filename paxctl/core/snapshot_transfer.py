"""State transfer in chunks: both sides of pulling a snapshot from a peer, as pure state.

A snapshot's bytes (``Snapshot.app``, encoded once by the application at compaction) can be far
larger than any message, so a node that is behind the sender's compaction point pulls them:

1. it asks for the log (``CatchupRequest``); a peer that compacted those slots away answers with
   a ``SnapshotOffer`` naming the snapshot: slot, configurations, size and a sha256 of the bytes;
2. the asker, if that peer is the one it asked and the offer is news, pulls the bytes with
   ``SnapshotRequest(slot, offset, length)``, a few chunks in flight at once (``window``);
   each answer is a ``SnapshotChunk`` cut from the bytes the sender already holds;
3. once every byte is in and the digest matches, the node hands the snapshot to the
   application's check and only then installs it (``Ready.snapshot``: persisted, then applied).

The receiver drives everything, so nothing arrives that it did not ask for and nothing is held
beyond its window; lost chunks are asked for again on ticks, an abandoned transfer is resumed
from where it stopped when a peer offers the same snapshot again, and a sender that moved on to
a newer snapshot answers with a new offer, which starts over. Every refusal is counted under a
name in ``REFUSALS``: peer messages are checked here, never trusted.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from paxctl.core.membership import Membership
from paxctl.core.messages import SnapshotChunk, SnapshotOffer, SnapshotRequest
from paxctl.core.types import Snapshot, SnapshotBytes

#: Counter names of the refusals (``Node.counters``), one per way a peer message can be wrong.
REFUSALS = (
    "snapshot_unsolicited",  # an offer or chunk from a node this one did not ask
    "snapshot_stale",  # an offer of nothing new (at or below what this node has)
    "snapshot_bad_offer",  # a size over the limit, or no configuration
    "snapshot_bad_chunk",  # a chunk of another slot, off the grid, outside the window, or short
    "snapshot_bad_request",  # a request for bytes the sender does not hold, or too many
    "snapshot_digest_mismatch",  # all bytes in, but not the bytes offered
    "snapshot_rejected",  # the application's check refused the bytes
)


#: Bytes hashed at a time from a snapshot read from its file.
_DIGEST_PIECE = 1 << 20


def digest_of(data: SnapshotBytes) -> bytes:
    if isinstance(data, bytes):
        return hashlib.sha256(data).digest()
    h = hashlib.sha256()
    for start in range(0, len(data), _DIGEST_PIECE):
        h.update(data[start : start + _DIGEST_PIECE])
    return h.digest()


class SnapshotSender:
    """Answers offers and chunk requests from the snapshot this node holds.

    The digest of a snapshot is computed once, on first use (or before its bytes leave memory
    for its file), and kept with its slot: a chunk is a slice of the bytes held, in memory or
    on disk (``Snapshot.body``), never a re-encoding. A snapshot replaced by a newer one
    while a peer was pulling it stays pinned as long as pulls keep coming (``keep_ticks``), so a
    transfer slower than the interval between snapshots still ends.
    """

    def __init__(self, max_chunk: int, keep_ticks: int = 1) -> None:
        self.max_chunk = max_chunk
        self.keep_ticks = keep_ticks
        self._digests: dict[int, bytes] = {}  # slot -> sha256 of its bytes
        self._pulled: dict[int, int] = {}  # slot -> the tick a peer last pulled a chunk of it
        self._pinned: dict[int, Snapshot] = {}  # replaced snapshots still being pulled

    def digest(self, snapshot: Snapshot) -> bytes:
        known = self._digests.get(snapshot.slot)
        if known is None:
            known = self._digests[snapshot.slot] = digest_of(snapshot.body)
        return known

    def offer(self, me: int, to: int, snapshot: Snapshot) -> SnapshotOffer:
        size = len(snapshot.body)
        return SnapshotOffer(me, to, snapshot.slot, snapshot.configs, size, self.digest(snapshot))

    def replaced(self, now: int, old: Snapshot | None) -> None:
        """This node's snapshot ``old`` was replaced by a newer one: pin it if peers pull it."""
        if old is not None and now - self._pulled.get(old.slot, -self.keep_ticks) < self.keep_ticks:
            self._pinned[old.slot] = old

    def tick(self, now: int, current: Snapshot | None) -> None:
        """Forget pinned snapshots nobody pulled for ``keep_ticks``."""
        for slot in sorted(self._pinned):
            if now - self._pulled.get(slot, 0) >= self.keep_ticks:
                del self._pinned[slot]
        keep = set(self._pinned) | ({current.slot} if current is not None else set())
        self._digests = {s: d for s, d in self._digests.items() if s in keep}
        self._pulled = {s: t for s, t in self._pulled.items() if s in keep}

    def answer(
        self, now: int, req: SnapshotRequest, snapshot: Snapshot | None
    ) -> SnapshotChunk | SnapshotOffer | str:
        """The chunk asked for; an offer of a newer snapshot if the asked one is gone; or the
        name of the refusal."""
        held = snapshot if snapshot is not None and req.slot == snapshot.slot else None
        held = held or self._pinned.get(req.slot)
        if held is None:
            if snapshot is not None and req.slot < snapshot.slot:
                return self.offer(req.to, req.frm, snapshot)  # moved on: start over with this
            return "snapshot_bad_request"  # never had it: not something a peer saw from us
        body = held.body
        size = len(body)
        if req.length > self.max_chunk or req.offset >= size or req.length < 1:
            return "snapshot_bad_request"
        self._pulled[req.slot] = now
        data = body[req.offset : req.offset + req.length]
        return SnapshotChunk(req.to, req.frm, req.slot, req.offset, data)


@dataclass
class Transfer:
    """One snapshot being pulled: its identity, the bytes in so far and what is asked for."""

    source: int | None  # None: abandoned, kept to resume if the same snapshot is offered again
    slot: int
    configs: tuple[Membership, ...]
    size: int
    digest: bytes
    data: bytearray = field(default_factory=bytearray)
    hasher: hashlib._Hash = field(default_factory=hashlib.sha256)
    early: dict[int, bytes] = field(default_factory=dict)  # chunks ahead of the contiguous end
    asked: dict[int, int] = field(default_factory=dict)  # offset -> tick it was asked for
    progress_at: int = 0  # the tick a chunk last added to it

    def same_snapshot(self, offer: SnapshotOffer) -> bool:
        mine = (self.slot, self.configs, self.size, self.digest)
        return mine == (offer.slot, tuple(offer.configs), offer.size, offer.digest)


class SnapshotReceiver:
    """The pulling side: which offers and chunks to take, and what to ask for next."""

    def __init__(
        self,
        me: int,
        *,
        chunk: int,
        window: int,
        retry_ticks: int,
        give_up_ticks: int,
        max_bytes: int,
        counters: Counter[str],
    ) -> None:
        if chunk < 1 or window < 1 or retry_ticks < 1 or give_up_ticks < retry_ticks:
            raise ValueError("chunk, window and retry ticks must be positive")
        self.me = me
        self.chunk = chunk
        self.window = window
        self.retry_ticks = retry_ticks
        self.give_up_ticks = give_up_ticks
        self.max_bytes = max_bytes
        self.counters = counters
        self.transfer: Transfer | None = None

    @property
    def active(self) -> bool:
        """A transfer is under way (catch-up by log waits for it)."""
        return self.transfer is not None and self.transfer.source is not None

    def refuse(self, why: str) -> None:
        self.counters[why] += 1

    # ------------------------------------------------------------------ inputs

    def on_offer(
        self, now: int, offer: SnapshotOffer, asked: int | None, commit: int
    ) -> list[SnapshotRequest] | Snapshot | None:
        """An offer; ``asked`` is the peer whose answer this node awaits (None: nobody).

        Returns the requests to send, or an empty snapshot complete at once, or None (refused).
        """
        t = self.transfer
        from_source = t is not None and t.source is not None and t.source == offer.frm
        if offer.frm != asked and not from_source:
            self.refuse("snapshot_unsolicited")
            return None
        if offer.slot <= commit or (from_source and t is not None and offer.slot <= t.slot):
            self.refuse("snapshot_stale")
            return None
        if not offer.configs or offer.size > self.max_bytes:
            self.refuse("snapshot_bad_offer")
            return None
        if t is not None and t.same_snapshot(offer):
            t.source = offer.frm  # resume from where it stopped, from whoever offers it now
            t.asked.clear()
        else:
            t = self.transfer = Transfer(
                offer.frm, offer.slot, tuple(offer.configs), offer.size, bytes(offer.digest)
            )
        t.progress_at = now
        if t.size == 0:
            return self._complete(t)
        return self._top_up(now, t)

    def on_chunk(self, now: int, chunk: SnapshotChunk) -> list[SnapshotRequest] | Snapshot | None:
        """A chunk: the next requests, or the whole snapshot once every byte checks out."""
        t = self.transfer
        if t is None or t.source is None or chunk.frm != t.source:
            self.refuse("snapshot_unsolicited")
            return None
        end = len(t.data)
        off = chunk.offset
        if (
            chunk.slot != t.slot
            or off % self.chunk
            or off < end
            or off >= end + self.window * self.chunk
            or off >= t.size
            or len(chunk.data) != min(self.chunk, t.size - off)
        ):
            if chunk.slot == t.slot and off < end and off % self.chunk == 0:
                return []  # a duplicate of a chunk already in: harmless
            self.refuse("snapshot_bad_chunk")
            return None
        if off in t.early:
            return []  # a duplicate of a chunk held ahead of the contiguous end
        t.asked.pop(off, None)
        t.early[off] = bytes(chunk.data)
        while len(t.data) in t.early:
            piece = t.early.pop(len(t.data))
            t.data += piece
            t.hasher.update(piece)
        t.progress_at = now
        if len(t.data) == t.size:
            return self._complete(t)
        return self._top_up(now, t)

    def tick(self, now: int) -> list[SnapshotRequest]:
        """Ask again for what went unanswered; abandon a source that stopped answering."""
        t = self.transfer
        if t is None or t.source is None:
            return []
        if now - t.progress_at >= self.give_up_ticks:
            self.counters["snapshot_transfers_abandoned"] += 1
            t.source = None  # keep the bytes: a later offer of the same snapshot resumes
            t.asked.clear()
            return []
        stale = [off for off, at in t.asked.items() if now - at >= self.retry_ticks]
        for off in stale:
            del t.asked[off]
        return self._top_up(now, t)

    def cancel_through(self, commit: int) -> None:
        """The log caught this node up past the transfer's slot: it is no longer needed."""
        if self.transfer is not None and self.transfer.slot <= commit:
            self.transfer = None

    # ------------------------------------------------------------------ helpers

    def _top_up(self, now: int, t: Transfer) -> list[SnapshotRequest]:
        """Requests for the chunks in the window that are neither in nor asked for."""
        assert t.source is not None
        out = []
        end = len(t.data)
        for i in range(self.window):
            off = end + i * self.chunk
            if off >= t.size:
                break
            if off in t.early or off in t.asked:
                continue
            t.asked[off] = now
            length = min(self.chunk, t.size - off)
            out.append(SnapshotRequest(self.me, t.source, t.slot, off, length))
        return out

    def _complete(self, t: Transfer) -> Snapshot | None:
        self.transfer = None
        if t.hasher.digest() != t.digest:
            self.refuse("snapshot_digest_mismatch")
            return None
        return Snapshot(t.slot, t.configs, bytes(t.data))
