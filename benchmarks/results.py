"""Rebuild benchmarks/RESULTS.md: run ``paxctl bench`` over the issue-16 figures and record
them with the machine, the load, the commands and the date.

    python benchmarks/results.py [--runs 3] [--duration 10] [--only write-1,read-16]
    python benchmarks/results.py --render      # RESULTS.md again from results.json, no runs

Each run is one ``paxctl bench ... -o json`` (the ``paxctl`` first on PATH, else this
checkout's ``python -m paxctl``) on a fresh local 3-node cluster of its own; a figure is the
median of its runs (throughput, and each latency percentile separately). The 1-minute load
average is read before every run: other work on the machine shows in the figures, so it is
recorded beside them. Raw documents go to benchmarks/results.json, from which RESULTS.md is
written. ZooKeeper and etcd are measured beside paxctl when ``benchmarks/others.py`` finds them
installed; a system that is not is skipped, and RESULTS.md says so.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RAW = HERE / "results.json"
REPORT = HERE / "RESULTS.md"

#: (key, what it measures, ``paxctl bench`` arguments): the figures of issue 16's table.
CASES: list[tuple[str, str, list[str]]] = [
    ("write-1", "write, 1 client", ["write", "--clients", "1"]),
    ("write-64", "write, 64 clients", ["write", "--clients", "64"]),
    ("read-1", "linearizable read, 1 client", ["read", "--clients", "1"]),
    ("read-16", "linearizable read, 16 clients", ["read", "--clients", "16"]),
    ("local-read-16", "local read, 16 clients", ["read", "--local", "--clients", "16"]),
    ("mixed-16", "mixed (90% linearizable reads), 16 clients", ["mixed", "--clients", "16"]),
    ("lock-1", "lock acquire+release, 1 client", ["lock", "--clients", "1"]),
    ("lock-16", "lock acquire+release, 16 clients on one lock", ["lock", "--clients", "16"]),
    (
        "ephemeral-seq-16",
        "create ephemeral sequential, 16 clients",
        ["create-ephemeral-sequential", "--clients", "16"],
    ),
]


def paxctl_argv() -> list[str]:
    found = shutil.which("paxctl")
    return [found] if found else [sys.executable, "-m", "paxctl"]


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


def machine() -> dict[str, Any]:
    """What the figures depend on: cores, memory, CPU, Python, kernel, the code measured."""

    def first(path: str, key: str) -> str | None:
        try:
            with open(path) as f:
                for line in f:
                    if line.startswith(key):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return None

    mem = first("/proc/meminfo", "MemTotal")
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    version = subprocess.run(
        [*paxctl_argv(), "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(int(mem.split()[0]) / 1024 / 1024, 1) if mem else None,
        "cpu": first("/proc/cpuinfo", "model name") or platform.processor() or None,
        "python": platform.python_version(),
        "kernel": f"{platform.system()} {platform.release()}",
        "paxctl": version,
        "commit": commit or None,
    }


def run_case(args: list[str], duration: float, warmup: float) -> dict[str, Any]:
    """One ``paxctl bench`` run on a cluster of its own, with the load average just before."""
    extra = ["--duration", f"{duration:g}", "--warmup", f"{warmup:g}", "-o", "json"]
    argv = [*paxctl_argv(), "bench", *args, *extra]
    env = {k: v for k, v in os.environ.items() if k != "PAXCTL_SERVERS"}
    load = load_average()
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, check=False, timeout=duration * 5 + 300
    )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {done.returncode}:\n{done.stderr}")
    doc: dict[str, Any] = json.loads(done.stdout)
    doc["load_before"] = load
    return doc


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Throughput and each percentile, each the median over the runs."""

    def med(values: list[float | None]) -> float | None:
        have = [v for v in values if v is not None]
        return round(statistics.median(have), 3) if have else None

    rates = [r["ops_per_s"] for r in runs]
    return {
        "ops_per_s": med(rates),
        "ops_per_s_range": [min(rates), max(rates)],
        "latency_ms": {
            key: med([r["latency_ms"][key] for r in runs]) for key in ("p50", "p99", "p999")
        },
        "errors": sum(r["errors"] for r in runs),
        "load_before": [r["load_before"] for r in runs],
    }


def measure(
    cases: list[tuple[str, str, list[str]]], runs: int, duration: float, warmup: float
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for key, what, args in cases:
        docs = []
        for n in range(1, runs + 1):
            doc = run_case(args, duration, warmup)
            docs.append(doc)
            print(
                f"{key} run {n}/{runs}: {doc['ops_per_s']:.0f} ops/s, "
                f"p50 {doc['latency_ms']['p50']} ms (load {doc['load_before']})",
                file=sys.stderr,
                flush=True,
            )
        results[key] = {"what": what, "args": args, "runs": docs, "median": median_of(docs)}
    return results


def _num(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def in_order(figures: dict[str, Any]) -> list[tuple[str, Any]]:
    """Figures in CASES' order (results.json keeps its keys sorted), unknown keys last."""
    known = [key for key, *_ in CASES]
    return sorted(figures.items(), key=lambda kv: known.index(kv[0]) if kv[0] in known else 99)


def all_loads(raw: dict[str, Any]) -> list[float]:
    """The load average before every run, of every system measured."""
    loads = [r["load_before"] for res in raw["paxctl"].values() for r in res["runs"]]
    for other in raw.get("others", {}).values():
        if not isinstance(other, str):
            loads += [r["load_before"] for res in other["figures"].values() for r in res["runs"]]
    return loads


def side_by_side(raw: dict[str, Any]) -> list[str]:
    """ops/s (p50 ms) of every system per figure, when another system was measured."""
    measured = {n: r for n, r in raw.get("others", {}).items() if not isinstance(r, str)}
    if not measured:
        return []

    def cell(res: dict[str, Any] | None) -> str:
        if res is None:
            return "not measured"
        med = res["median"]
        return f"{_num(med['ops_per_s'], 0)} ({_num(med['latency_ms']['p50'])} ms)"

    names = ["paxctl", *measured]
    lines = [
        "## Side by side",
        "",
        "ops/s (median of runs) and, in brackets, p50 latency; the same sitting, one system "
        "at a time. Each system's own section says what its operation is.",
        "",
        "| figure | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
    ]
    for key, res in in_order(raw["paxctl"]):
        row = [cell(res), *(cell(m["figures"].get(key)) for m in measured.values())]
        lines.append(f"| {res['what']} | " + " | ".join(row) + " |")
    return [*lines, ""]


def render(raw: dict[str, Any]) -> str:
    """RESULTS.md from the raw document (no measuring here: it can be re-rendered)."""
    m = raw["machine"]
    lines = [
        "# Benchmark results",
        "",
        "Written by `python benchmarks/results.py` (from `benchmarks/results.json` with "
        "`--render`); do not edit by hand.",
        "",
        f"- date: {raw['date']}",
        f"- machine: {m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB RAM, "
        f"{m['kernel']}, Python {m['python']}",
        f"- code: {m['paxctl']}" + (f" at commit {m['commit']}" if m.get("commit") else ""),
        f"- each figure: the median of {raw['runs']} {'run' if raw['runs'] == 1 else 'runs'} "
        f"of {raw['duration']:g} s "
        f"(after {raw['warmup']:g} s of unmeasured warm-up); each paxctl run on a fresh local "
        "3-node cluster (`paxctl cluster up`, peer authentication on, fsync before every "
        "acknowledgement), the clients in one process on the same machine; other systems "
        "after paxctl, in the same sitting (their sections say how)",
        f"- load average (1 min) just before each run: {_num(min(all_loads(raw)))} to "
        f"{_num(max(all_loads(raw)))} (per figure below). It carries the previous run's own "
        "load as well as any other work on the machine; with other work the figures are lower",
        "",
        *side_by_side(raw),
        "## paxctl",
        "",
        "| figure | ops/s (median) | runs' range | p50 ms | p99 ms | p99.9 ms | load before |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for _key, res in in_order(raw["paxctl"]):
        med = res["median"]
        low, high = med["ops_per_s_range"]
        lat = med["latency_ms"]
        loads = ", ".join(_num(x) for x in med["load_before"])
        errors = f" ({med['errors']} errors)" if med["errors"] else ""
        lines.append(
            f"| {res['what']}{errors} | {_num(med['ops_per_s'], 0)} | "
            f"{_num(low, 0)} to {_num(high, 0)} | {_num(lat['p50'])} | {_num(lat['p99'])} | "
            f"{_num(lat['p999'])} | {loads} |"
        )
    lines += ["", "Commands (each run, with `--duration` and `--warmup` as above, `-o json`):", ""]
    lines += ["```"]
    lines += [f"paxctl bench {' '.join(res['args'])}" for _key, res in in_order(raw["paxctl"])]
    lines += ["```", ""]
    others = raw.get("others", {})
    for name, res in others.items():
        lines += [f"## {name}", ""]
        if isinstance(res, str):
            lines += [f"Not measured: {res}.", ""]
            continue
        lines += [
            "| figure | ops/s (median) | runs' range | p50 ms | p99 ms | p99.9 ms | load before |",
            "|---|---:|---:|---:|---:|---:|---|",
        ]
        for _key, item in in_order(res["figures"]):
            med = item["median"]
            low, high = med["ops_per_s_range"]
            lat = med["latency_ms"]
            lines.append(
                f"| {item['what']} | {_num(med['ops_per_s'], 0)} | "
                f"{_num(low, 0)} to {_num(high, 0)} | {_num(lat['p50'])} | {_num(lat['p99'])} | "
                f"{_num(lat['p999'])} | {', '.join(_num(x) for x in med['load_before'])} |"
            )
        lines += ["", res.get("how", ""), ""]
    lines += [
        "## How to read these",
        "",
        "- A write is acknowledged once chosen by a majority and applied, each acceptor having "
        "fsynced it; a linearizable read asks the leader for a read index first; a local read "
        "answers from the node the client is connected to.",
        "- `lock` is one acquire and one release of the project's lock recipe "
        "(`paxctl.recipes.Lock`); with 16 clients they queue on one lock, so a figure is the "
        "rate of hand-overs and its latency includes the wait in the queue.",
        "- The load generator (all clients, one asyncio loop) shares the cores with the three "
        "nodes: on 2 cores it is part of what is measured.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument(
        "--only", help="comma-separated case keys: " + ", ".join(k for k, *_ in CASES)
    )
    parser.add_argument("--render", action="store_true", help="only rewrite RESULTS.md")
    parser.add_argument("--no-others", action="store_true", help="skip ZooKeeper and etcd")
    args = parser.parse_args()
    if args.render:
        raw = json.loads(RAW.read_text())
    else:
        wanted = set(args.only.split(",")) if args.only else None
        cases = [c for c in CASES if wanted is None or c[0] in wanted]
        if wanted is not None and len(cases) != len(wanted):
            parser.error(f"unknown case in --only; known: {', '.join(k for k, *_ in CASES)}")
        started = datetime.datetime.now(datetime.UTC)
        figures = measure(cases, args.runs, args.duration, args.warmup)
        others: dict[str, Any] = {}
        if not args.no_others:
            sys.path.insert(0, str(HERE))
            import others as other_systems

            others = other_systems.measure_all(
                args.runs, args.duration, args.warmup, median_of, wanted
            )
        raw = {
            "date": started.isoformat(timespec="seconds").replace("+00:00", "Z"),
            "machine": machine(),
            "runs": args.runs,
            "duration": args.duration,
            "warmup": args.warmup,
            "paxctl": figures,
            "others": others,
        }
        RAW.write_text(json.dumps(raw, indent=1, sort_keys=True) + "\n")
    REPORT.write_text(render(raw))
    print(f"wrote {REPORT.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
