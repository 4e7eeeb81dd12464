"""Path rules, one row per ZooKeeper rule (PathUtils.validatePath)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from paxctl.statemachine import BadArguments, basename, join, parent_of, validate_path
from paxctl.statemachine.paths import BAD_CHARS, MAX_PATH_BYTES, first_bad_char, split

VALID = [
    "/",
    "/a",
    "/a/b/c",
    "/zookeeper",
    "/with space",
    "/dots.are.fine",
    "/...",  # only "." and ".." themselves are relative
    "/a..b",
    "/.hidden",
    "/ünïcödé/日本",
    "/x" * 10,
    "/" + "a" * (MAX_PATH_BYTES - 1),
]

INVALID = [
    ("", "empty"),
    ("a", "relative"),
    ("a/b", "relative"),
    ("/a/", "trailing slash"),
    ("//", "empty component"),
    ("//a", "empty component"),
    ("/a//b", "empty component"),
    ("/.", "dot"),
    ("/a/./b", "dot"),
    ("/..", "dotdot"),
    ("/a/../b", "dotdot"),
    ("/a/..", "dotdot"),
    ("/a\x00b", "NUL"),
    ("/a\x01", "C0 control"),
    ("/a\nb", "newline"),
    ("/a\x1f", "C0 control"),
    ("/a\x7f", "DEL"),
    ("/a\x85", "C1 control"),
    ("/a\x9f", "C1 control"),
    ("/a\ud800", "surrogate"),
    ("/a\ue000", "private use"),
    ("/a\uf8ff", "private use"),
    ("/a\ufff0", "specials"),
    ("/a\uffff", "specials"),
    ("/a\U0001f600", "outside the BMP (a surrogate pair in ZooKeeper)"),
    ("/" + "a" * MAX_PATH_BYTES, "too long"),
    ("/" + "é" * (MAX_PATH_BYTES // 2), "too long in UTF-8 bytes"),
]


@pytest.mark.parametrize("path", VALID)
def test_valid_paths_are_returned_unchanged(path):
    assert validate_path(path) == path


@pytest.mark.parametrize(("path", "why"), INVALID)
def test_invalid_paths_raise_bad_arguments(path, why):
    with pytest.raises(BadArguments):
        validate_path(path)


@pytest.mark.parametrize("path", [None, b"/a", 1, ["/a"]])
def test_non_strings_raise_bad_arguments(path):
    with pytest.raises(BadArguments):
        validate_path(path)


def test_sequential_prefix_may_end_with_a_slash_as_in_zookeeper():
    assert validate_path("/jobs/", sequential=True) == "/jobs/"
    assert validate_path("/", sequential=True) == "/"
    assert validate_path("/jobs/job-", sequential=True) == "/jobs/job-"
    with pytest.raises(BadArguments):
        validate_path("/jobs//", sequential=True)
    with pytest.raises(BadArguments):
        validate_path("/a/.", sequential=False)


def test_sequential_length_counts_the_ten_digit_suffix():
    prefix = "/" + "a" * (MAX_PATH_BYTES - 11)
    assert validate_path(prefix, sequential=True) == prefix
    with pytest.raises(BadArguments):
        validate_path(prefix + "a", sequential=True)


@pytest.mark.parametrize(
    ("path", "parent", "name"),
    [("/a", "/", "a"), ("/a/b", "/a", "b"), ("/a/b/c", "/a/b", "c")],
)
def test_parent_of_and_basename(path, parent, name):
    assert parent_of(path) == parent
    assert basename(path) == name
    assert join(parent, name) == path
    assert split(path) == (parent, name)


def test_the_root_has_no_parent_and_an_empty_name():
    with pytest.raises(BadArguments):
        parent_of("/")
    assert basename("/") == ""


@pytest.mark.parametrize(("parent", "name"), [("/", ""), ("/a", "b/c"), ("/a", ".."), ("a", "b")])
def test_join_refuses_bad_names_and_parents(parent, name):
    with pytest.raises(BadArguments):
        join(parent, name)


def test_helpers_validate_their_input():
    for fn in (parent_of, basename):
        with pytest.raises(BadArguments):
            fn("/a/")


@given(st.text(max_size=20))
def test_validation_raises_only_bad_arguments(text):
    for candidate in (text, "/" + text):
        try:
            assert validate_path(candidate) == candidate
        except BadArguments:
            continue
        # Whatever is accepted round-trips through split/join.
        if candidate != "/":
            assert join(*split(candidate)) == candidate


@given(st.text(max_size=20) | st.text(st.characters(max_codepoint=0xFF), max_size=20))
def test_the_ascii_fast_path_finds_what_the_pattern_finds(text):
    """``first_bad_char`` skips the regex for printable ASCII: it must agree with it always."""
    found = re.search(BAD_CHARS, text)
    assert first_bad_char(text) == (found.group() if found else None)


@pytest.mark.parametrize("char", ["\x00", "\x1f", "\x7f", "\x9f", "\ud800", "\uf8ff", "\U0001f600"])
def test_a_refused_character_is_named_after_a_printable_ascii_prefix(char):
    with pytest.raises(BadArguments, match=f"U\\+{ord(char):04X}"):
        validate_path("/abc" + char)
