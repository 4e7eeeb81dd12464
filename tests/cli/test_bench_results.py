"""benchmarks/results.py writes RESULTS.md from its raw document: every figure, the machine,
the load and the commands, and a sentence for each other system it skipped."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def run_doc(rate: float, p50: float, load: float) -> dict:
    lat = {"p50": p50, "p99": p50 * 3, "p999": p50 * 5, "mean": p50, "max": p50 * 6}
    return {"ops_per_s": rate, "latency_ms": lat, "errors": 0, "load_before": load}


def test_the_report_has_the_medians_the_machine_the_load_and_the_commands() -> None:
    results = load("results")
    runs = [run_doc(100, 2.0, 0.5), run_doc(300, 1.0, 1.5), run_doc(200, 4.0, 2.5)]
    raw = {
        "date": "2026-12-07T10:00:00Z",
        "machine": {
            "cores": 2,
            "memory_gib": 23.5,
            "cpu": "AMD EPYC",
            "python": "3.11.7",
            "kernel": "Linux 6",
            "paxctl": "paxctl, version 0.1.0",
            "commit": "abc1234",
        },
        "runs": 3,
        "duration": 10.0,
        "warmup": 1.0,
        "paxctl": {
            "write-1": {
                "what": "write, 1 client",
                "args": ["write", "--clients", "1"],
                "runs": runs,
                "median": results.median_of(runs),
            }
        },
        "others": {"ZooKeeper": "ZooKeeper is not installed here"},
    }
    text = results.render(raw)
    assert "| write, 1 client | 200 | 100 to 300 | 2.00 | 6.00 | 10.00 | 0.50, 1.50, 2.50 |" in text
    assert "2 cores (AMD EPYC), 23.5 GiB RAM" in text and "Python 3.11.7" in text
    assert "2026-12-07T10:00:00Z" in text and "commit abc1234" in text
    assert "paxctl bench write --clients 1" in text
    assert "median of 3 runs of 10 s" in text and "0.50 to 2.50" in text
    assert "Not measured: ZooKeeper is not installed here." in text


def test_a_system_that_is_not_installed_is_skipped_with_a_reason(monkeypatch) -> None:
    others = load("others")
    monkeypatch.setattr(others.shutil, "which", lambda *_a, **_k: None)  # nothing installed
    found = others.measure_all(runs=1, duration=0.1, warmup=0.0)
    assert set(found) == {"ZooKeeper", "etcd"}
    assert all(isinstance(why, str) and "not installed" in why for why in found.values())


def test_other_systems_go_side_by_side_with_what_they_did_not_measure() -> None:
    results = load("results")
    runs = [run_doc(100, 2.0, 0.5)]
    figure = {"what": "write, 1 client", "args": ["write"], "runs": runs}
    figure["median"] = results.median_of(runs)
    raw = {
        "paxctl": {"write-1": figure, "lock-1": {**figure, "what": "lock, 1 client"}},
        "others": {
            "etcd": {"figures": {"write-1": figure}, "how": "etcd 3.4 through its gateway."},
            "ZooKeeper": "ZooKeeper is not installed here",
        },
    }
    lines = results.side_by_side(raw)
    assert "| figure | paxctl | etcd |" in lines
    assert "| write, 1 client | 100 (2.00 ms) | 100 (2.00 ms) |" in lines
    assert "| lock, 1 client | 100 (2.00 ms) | not measured |" in lines
    assert results.side_by_side({"paxctl": raw["paxctl"], "others": {"x": "skipped"}}) == []
