"""Error codes and Stat: the names that cross the wire must stay stable."""

from __future__ import annotations

import pytest

from paxctl.statemachine import (
    BadArguments,
    BadVersion,
    DataTooLarge,
    MultiError,
    NoChildrenForEphemerals,
    NodeExists,
    NoNode,
    NotEmpty,
    SessionExpired,
    Stat,
    ZnodeError,
    error_from_code,
)

CODES = {
    NoNode: "NoNode",
    NodeExists: "NodeExists",
    BadVersion: "BadVersion",
    NotEmpty: "NotEmpty",
    BadArguments: "BadArguments",
    NoChildrenForEphemerals: "NoChildrenForEphemerals",
    DataTooLarge: "DataTooLarge",
    SessionExpired: "SessionExpired",
}


@pytest.mark.parametrize(("cls", "code"), CODES.items())
def test_each_error_has_its_zookeeper_name_and_round_trips_by_code(cls, code):
    assert issubclass(cls, ZnodeError)
    assert cls.code == code
    err = error_from_code(code, "/a/b")
    assert type(err) is cls
    assert err.message == "/a/b"
    assert str(err) == "/a/b"


def test_unknown_codes_still_become_znode_errors_carrying_the_code():
    err = error_from_code("FromTheFuture", "gone")
    assert type(err) is ZnodeError
    assert err.code == "FromTheFuture"
    assert err.message == "gone"


def test_multi_error_reports_index_and_the_underlying_code():
    err = MultiError(2, NoNode("/x"))
    assert isinstance(err, ZnodeError)
    assert err.index == 2
    assert err.code == "NoNode"
    assert isinstance(err.error, NoNode)
    assert "operation 2" in str(err)
    assert MultiError.code == "MultiError"  # the class default is untouched


def test_stat_defaults_to_zero_and_uses_zookeeper_names():
    assert Stat().to_dict() == {
        "czxid": 0,
        "mzxid": 0,
        "pzxid": 0,
        "ctime": 0,
        "mtime": 0,
        "version": 0,
        "cversion": 0,
        "aversion": 0,
        "ephemeralOwner": 0,
        "dataLength": 0,
        "numChildren": 0,
    }
    s = Stat(*range(1, 12))
    d = s.to_dict()
    assert [d[k] for k in d] == list(range(1, 12))
    assert Stat.from_list(s.to_list()) == s


def test_stat_is_frozen():
    s = Stat()
    with pytest.raises(AttributeError):
        s.version = 1  # type: ignore[misc]
