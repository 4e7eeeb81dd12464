"""Change events for watches: what each operation reports, and nothing for what failed."""

from __future__ import annotations

import pytest
from znode_helpers import C1, C2, C4, Clock, Driver, zxid

from paxctl.statemachine import (
    REAPER_CLIENT,
    Check,
    CloseSession,
    Create,
    Delete,
    Multi,
    OpenSession,
    Reap,
    SetData,
    ZnodeError,
    encode_command,
)


@pytest.fixture
def c() -> Clock:
    c = Clock()
    c.apply(Create("/a"))
    c.apply(Create("/a/b"))
    return c


def test_create_reports_the_node_then_its_parents_children(c):
    c.apply(Create("/a/c"))
    assert c.tree.last_events == (("created", "/a/c"), ("children", "/a"))


def test_a_sequential_create_reports_the_name_it_got(c):
    c.apply(Create("/a/s-", sequential=True))
    assert c.tree.last_events == (("created", "/a/s-0000000001"), ("children", "/a"))


def test_parents_are_reported_top_down(c):
    c.apply(Create("/x/y/z", parents=True))
    assert c.tree.last_events == (
        ("created", "/x"),
        ("children", "/"),
        ("created", "/x/y"),
        ("children", "/x"),
        ("created", "/x/y/z"),
        ("children", "/x/y"),
    )


def test_delete_reports_the_node_then_its_parents_children(c):
    c.apply(Delete("/a/b"))
    assert c.tree.last_events == (("deleted", "/a/b"), ("children", "/a"))


def test_set_reports_a_change(c):
    c.apply(SetData("/a/b", b"x"))
    assert c.tree.last_events == (("changed", "/a/b"),)


def test_check_reports_nothing(c):
    c.apply(Check("/a", -1))
    assert c.tree.last_events == ()


def test_a_multi_reports_in_order_without_repeats(c):
    c.apply(
        Multi(
            (
                Create("/a/c"),
                Create("/a/d"),
                SetData("/a", b"1"),
                SetData("/a", b"2"),
                Delete("/a/c"),
                Create("/a/c"),
            )
        )
    )
    assert c.tree.last_events == (
        ("created", "/a/c"),
        ("children", "/a"),
        ("created", "/a/d"),
        ("changed", "/a"),
        ("deleted", "/a/c"),
    )


def test_close_session_reports_each_ephemeral(c):
    c.apply(Create("/a/e1", ephemeral=True), session=5)
    c.apply(Create("/e2", ephemeral=True), session=5)
    c.apply(CloseSession(5))
    assert c.tree.last_events == (
        ("deleted", "/a/e1"),
        ("children", "/a"),
        ("deleted", "/e2"),
        ("children", "/"),
    )


def test_reap_reports_what_it_deleted(c):
    c.apply(Create("/t", ttl_ms=1))
    c.apply(Reap(("/a", "/t")))
    assert c.tree.last_events == (("deleted", "/t"), ("children", "/"))


@pytest.mark.parametrize(
    "op",
    [
        Create("/a"),
        Delete("/a"),  # not empty
        SetData("/a", b"", 5),
        Multi((Create("/a/c"), SetData("/a", b"x"), Create("/a/b"))),
    ],
)
def test_a_failed_operation_reports_nothing(c, op):
    c.apply(Create("/a/x"))
    assert c.tree.last_events  # from the success before
    with pytest.raises(ZnodeError):
        c.apply(op)
    assert c.tree.last_events == ()


# ------------------------------------------------------------------------- state machine


def test_the_state_machine_exposes_the_events_of_the_command_just_applied():
    d = Driver()
    d.run(Create("/a"), client=C1)
    assert d.sm.last_events == (("created", "/a"), ("children", "/"))
    d.run(SetData("/a", b"x"), client=C2)
    assert d.sm.last_events == (("changed", "/a"),)
    d.run(Create("/a/e", ephemeral=True), client=C2)
    d.run(CloseSession(C2), client=REAPER_CLIENT)
    assert d.sm.last_events == (("deleted", "/a/e"), ("children", "/a"))
    d.run(Create("/t", ttl_ms=1), client=C1)
    d.run(Reap(("/t",)), client=REAPER_CLIENT)
    assert d.sm.last_events == (("deleted", "/t"), ("children", "/"))


def test_the_state_machine_reports_nothing_for_commands_that_changed_nothing():
    d = Driver()

    def after(op, client=C1):
        d.run(Create(f"/n{d.slot}"), client=C1)  # something to forget first
        assert d.sm.last_events
        d.run(op, client=client)
        return d.sm.last_events

    assert after(Delete("/missing")) == ()
    assert after(Multi((Create("/m"), Delete("/missing")))) == ()
    assert after(Create("/x"), client=C4) == ()  # SessionExpired
    assert after(OpenSession(5), client=d.temp()) == ()
    assert after(CloseSession(C4), client=REAPER_CLIENT) == ()
    assert after(Reap(("/n1",)), client=C1) == ()  # only the reaper may

    d.run(Create("/r"), client=C1)
    seq = d.seqs[C1]
    assert d.sm.last_events
    d.sm.apply_command(zxid(500), encode_command(1, Create("/r")), C1, seq)  # cached retry
    assert d.sm.last_events == ()
    d.run(Create("/s"), client=C1)
    d.sm.apply_command(zxid(501), encode_command(1, Create("/q")), C1, seq)  # stale seq
    assert d.sm.last_events == ()
    d.run(Create("/u"), client=C1)
    d.sm.apply_command(zxid(502), b"junk", C1, d.seqs[C1] + 1)
    assert d.sm.last_events == ()
