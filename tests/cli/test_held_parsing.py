"""The command lines of ``lock``, ``elect`` and ``run-once`` without a cluster: where CMD
starts, the timing inequality, durations and slot names."""

from __future__ import annotations

import datetime

import click
import pytest

from paxctl.cli.elect import elect
from paxctl.cli.held import Timing
from paxctl.cli.lock import lock, lock_status
from paxctl.cli.runonce import parse_duration, slot_key, slot_of


def parsed(command: click.Command, args: list[str]) -> dict:
    ctx = command.make_context(command.name, list(args))
    return ctx.params


@pytest.mark.parametrize(
    ("args", "name", "cmd", "extra"),
    [
        (["n", "--", "ls", "-l"], "n", ("ls", "-l"), {}),
        (["n", "ls", "-l"], "n", ("ls", "-l"), {}),  # flock style, no --
        (["-n", "n", "ls"], "n", ("ls",), {"nonblock": True}),
        (["n", "-w", "5", "--", "ls"], "n", ("ls",), {"wait": 5.0}),
        (["n", "-nw5", "ls"], "n", ("ls",), {"nonblock": True, "wait": 5.0}),
        (["n", "echo", "--", "-n"], "n", ("echo", "--", "-n"), {}),  # CMD's own --
        (["n", "-c", "echo hi"], "n", (), {"shell_command": "echo hi"}),
        (["--owner", "x y", "n"], "n", (), {"owner": "x y"}),
        (["-E", "3", "--", "n", "true"], "n", ("true",), {"conflict_exit_code": 3}),
        (["/abs/path", "true"], "/abs/path", ("true",), {}),
    ],
)
def test_where_lock_finds_name_and_command(args, name, cmd, extra):
    params = parsed(lock, args)
    assert params["name"] == name and params["command"] == cmd
    for key, value in extra.items():
        assert params[key] == value


def test_lock_status_is_its_own_command():
    ctx = lock.make_context("lock", ["status", "n", "--json"])
    sub = ctx.meta["lock.sub"]
    assert sub.command is lock_status and sub.params["name"] == "n"
    assert sub.meta["paxctl.output"] == "json"
    assert sub.command_path.endswith("lock status")


def test_elect_needs_dashes_before_its_command():
    params = parsed(elect, ["--ttl", "3", "n", "--kill-grace", "1", "v", "--", "run", "--x"])
    assert (params["name"], params["value"], params["command"]) == ("n", "v", ("run", "--x"))
    assert parsed(elect, ["n", "--", "run"])["value"] is None
    with pytest.raises(click.UsageError):
        parsed(elect, ["n", "v", "run"])


def test_the_timing_inequality():
    Timing(10, 5).check()  # 5 + 0.7 + 2 < 10
    Timing(2, 0.3).check()  # 0.3 + 0.54 + 0.4 < 2
    with pytest.raises(click.UsageError, match=r"5s \+ margin 0.54s \+ ping interval 0.4s"):
        Timing(2, 5).check()
    with pytest.raises(click.UsageError, match="granted"):
        Timing(10, 5).check(granted=6)


def test_durations():
    assert [parse_duration(t) for t in ("90", "30s", "5m", "1h30m", "1d")] == [
        90, 30, 300, 5400, 86400,
    ]  # fmt: skip
    for bad in ("", "5 m", "1x", "0", "m5", "5m1"):
        with pytest.raises(click.BadParameter):
            parse_duration(bad)


def ms(text: str) -> int:
    return int(datetime.datetime.fromisoformat(text).timestamp() * 1000)


def test_slots_come_from_the_time_with_a_little_room_before_the_boundary():
    five = 300
    assert slot_of(ms("2026-11-26T10:05:00+00:00"), five) == "2026-11-26T10:05Z"
    assert slot_of(ms("2026-11-26T10:09:29+00:00"), five) == "2026-11-26T10:05Z"
    assert slot_of(ms("2026-11-26T10:04:31+00:00"), five) == "2026-11-26T10:05Z"  # 29 s early
    assert slot_of(ms("2026-11-26T10:04:29+00:00"), five) == "2026-11-26T10:00Z"
    assert slot_of(ms("2026-11-26T12:00:00+00:00"), 86400) == "2026-11-26"
    assert slot_of(ms("2026-11-26T23:59:30+00:00"), 86400) == "2026-11-27"  # 60 s room
    assert slot_of(ms("2026-11-26T10:00:07+00:00"), 30) == "2026-11-26T10:00:00Z"


def test_slot_names_are_valid_node_names():
    assert slot_key("2026-11-26T10:00") == "2026-11-26T10:00"
    assert slot_key("a/b%c") == "a%2Fb%25c"
    assert slot_key("..") == "%2E%2E"
    with pytest.raises(click.BadParameter):
        slot_key("")
