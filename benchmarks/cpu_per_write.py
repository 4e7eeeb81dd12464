"""Server CPU per write of a 3-node local cluster (issue 16's target: at most 0.25 ms at 16
clients, the 3 nodes together). Run by hand::

    python benchmarks/cpu_per_write.py [--venv VENV ...] [--clients 16] [--duration 5] [--runs 3]

For each run and each venv in turn (interleaved, so that two trees are compared in the same
minutes of a shared machine), starts a cluster with that venv's ``paxctl cluster up``, runs
``paxctl bench write`` against it and reads the user and system CPU time of the three node
processes from ``/proc`` before and after. CPU per write is what the nodes spent divided by the
writes acknowledged. The nodes run on plain asyncio unless ``--uvloop`` is given (issue 16's
figures are without it). The bench client runs on the same cores, so compare figures taken in
one sitting, and read the load average printed beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: The figures whose medians are printed.
FIGURES = ("ops_per_s", "p50_ms", "cpu_ms_per_write", "user_ms_per_write", "sys_ms_per_write")
#: Clock ticks per second of /proc/PID/stat's utime and stime.
HZ = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> tuple[int, int]:
    """User and system ticks of one process (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def one_run(
    venv: str, clients: int, duration: float, base_port: int, uvloop: bool
) -> dict[str, Any]:
    """Start a cluster from ``venv``, bench writes against it, and return the figures."""
    paxctl = str(Path(venv) / "bin" / "paxctl")
    env = dict(os.environ, PATH=f"{venv}/bin:" + os.environ["PATH"])
    env["PAXCTL_UVLOOP"] = "1" if uvloop else "0"
    with tempfile.TemporaryDirectory(prefix="paxctl-cpuw-") as where:

        def run(*args: str) -> str:
            done = subprocess.run(
                [paxctl, *args], cwd=where, env=env, capture_output=True, text=True, check=True
            )
            return done.stdout

        run("cluster", "up", "--base-port", str(base_port))
        try:
            status = json.loads(run("cluster", "status", "--json"))
            nodes = status["nodes"]
            pids = {n["id"]: n["pid"] for n in nodes}
            leader = next((n["id"] for n in nodes if n["role"] == "leader"), None)
            servers = ",".join(n["client_address"] for n in nodes)
            before = {i: cpu_ticks(p) for i, p in pids.items()}
            argv = ["bench", "write", "--clients", str(clients), "--duration", str(duration)]
            bench = json.loads(run(*argv, "--warmup", "0", "-s", servers, "-o", "json"))
            after = {i: cpu_ticks(p) for i, p in pids.items()}
        finally:
            subprocess.run([paxctl, "cluster", "down"], cwd=where, env=env, capture_output=True)
    ops = bench["ops"]
    per_node = {
        i: tuple((a - b) / HZ for a, b in zip(after[i], before[i], strict=True)) for i in pids
    }
    user = sum(u for u, _ in per_node.values())
    system = sum(s for _, s in per_node.values())
    return {
        "venv": venv,
        "ops_per_s": bench["ops_per_s"],
        "p50_ms": bench["latency_ms"]["p50"],
        "cpu_ms_per_write": (user + system) * 1000 / max(ops, 1),
        "user_ms_per_write": user * 1000 / max(ops, 1),
        "sys_ms_per_write": system * 1000 / max(ops, 1),
        "leader_ms_per_write": sum(per_node[leader]) * 1000 / max(ops, 1) if leader else None,
        "load": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--venv",
        action="append",
        help="a venv with paxctl installed (repeat to compare; default: this interpreter's)",
    )
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of each bench run")
    parser.add_argument("--runs", type=int, default=3, help="runs per venv, interleaved")
    parser.add_argument("--base-port", type=int, default=7300)
    parser.add_argument("--uvloop", action="store_true", help="nodes on uvloop if installed")
    parser.add_argument("-o", "--output", choices=("text", "json"), default="text")
    args = parser.parse_args()
    venvs = args.venv or [sys.prefix]
    results: list[dict[str, Any]] = []
    for _ in range(args.runs):
        for k, venv in enumerate(venvs):
            res = one_run(venv, args.clients, args.duration, args.base_port + 20 * k, args.uvloop)
            results.append(res)
            if args.output == "text":
                print(
                    f"{venv}: {res['ops_per_s']:.0f} ops/s, p50 {res['p50_ms']:.2f} ms, "
                    f"CPU/write {res['cpu_ms_per_write']:.3f} ms (user "
                    f"{res['user_ms_per_write']:.3f}, sys {res['sys_ms_per_write']:.3f}, "
                    f"leader {res['leader_ms_per_write'] or 0:.3f}), load {res['load']:.1f}",
                    flush=True,
                )
    summary = {}
    for venv in venvs:
        mine = [r for r in results if r["venv"] == venv]
        summary[venv] = {key: statistics.median(r[key] for r in mine) for key in FIGURES}
    if args.output == "json":
        print(json.dumps({"clients": args.clients, "runs": results, "median": summary}, indent=1))
        return
    for venv, med in summary.items():
        print(
            f"median of {args.runs}, {venv}: {med['ops_per_s']:.0f} ops/s, CPU/write "
            f"{med['cpu_ms_per_write']:.3f} ms (user {med['user_ms_per_write']:.3f}, "
            f"sys {med['sys_ms_per_write']:.3f})"
        )


if __name__ == "__main__":
    main()
