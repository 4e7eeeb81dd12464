"""The CPU cost of the MAC on every peer frame (protocol/peer_auth.py). Run by hand::

    python benchmarks/peer_mac.py [--mib 64]

For frame payloads of several sizes, times ``Channel.seal`` on the sender and ``Channel.open``
on the receiver (what each peer frame costs on top of its CRC and codec), and prints the time
per frame and per MiB. For comparison it also times two bare HMAC-SHA256 and two keyed BLAKE2b
of the same data (a sender's and a receiver's), the alternative HMAC-SHA256 was chosen over.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import os
import time

from paxctl.protocol.peer_auth import NONCE_SIZE, SECRET_SIZE, Channel, Handshake

SIZES = (64, 1024, 16 * 1024, 256 * 1024, 1024 * 1024, 16 * 1024 * 1024)


def channels() -> tuple[Channel, Channel]:
    secret = os.urandom(SECRET_SIZE)
    cid = os.urandom(16)
    listener, challenge = Handshake.listener(secret, cid, 1, (1, 2), os.urandom(NONCE_SIZE))
    connector = Handshake.connector(secret, cid, 2, 1, os.urandom(NONCE_SIZE))
    hello = connector.receive(challenge).send
    assert hello is not None
    answer = listener.receive(hello)
    assert answer.send is not None and answer.channel is not None
    done = connector.receive(answer.send)
    assert done.channel is not None
    return done.channel, answer.channel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mib", type=int, default=64, help="MiB pushed through at each size")
    args = parser.parse_args()
    sender, receiver = channels()
    key = os.urandom(32)
    print(
        f"{'payload':>10} {'frames':>8} {'seal+open/frame':>16} {'per MiB':>10}"
        f" {'2 HMACs/MiB':>12} {'2 BLAKE2b/MiB':>14}"
    )
    for size in SIZES:
        payload = os.urandom(size)
        frames = max(3, args.mib * 1024 * 1024 // size)
        frames = min(frames, 200_000)
        start = time.perf_counter()
        for _ in range(frames):
            receiver.open(sender.seal(payload))
        took = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(frames):
            hmac.digest(key, payload, "sha256")
            hmac.digest(key, payload, "sha256")
        raw = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(frames):
            hashlib.blake2b(payload, key=key, digest_size=16).digest()
            hashlib.blake2b(payload, key=key, digest_size=16).digest()
        blake = time.perf_counter() - start
        mib = frames * size / (1024 * 1024)
        print(
            f"{size:>10} {frames:>8} {took / frames * 1e6:>13.1f} us {took / mib * 1e3:>7.2f} ms"
            f" {raw / mib * 1e3:>9.2f} ms {blake / mib * 1e3:>11.2f} ms"
        )


if __name__ == "__main__":
    main()
