"""Documents a user hands us: configs and state files that are broken, hostile or incomplete."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from ferryman.documents import load_config, load_document
from ferryman.errors import UserInputError
from ferryman.protocol.state import load_state

LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def test_a_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS)
    # Refused before anything walks it (today: 24 s and 5 GB, then a traceback); the check walks
    # each anchor once, so it costs what was written, not what it expands to.
    with pytest.raises(UserInputError, match="expands to more than"):
        load_config(str(path), "--config")


def test_yaml_aliases_that_stay_small_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.yaml"
    path.write_text("base: &base {host: db, port: 5432}\nreplica: *base\n")
    assert load_config(str(path), "--config")["replica"] == {"host": "db", "port": 5432}


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("self.yaml", b"a: &a [*a]\n", "refers to itself"),
        ("latin1.json", b'{"name": "caf\xe9"}', "is not UTF-8 text (byte 0xe9 at offset 13)"),
        ("deep.json", b"[" * 100_000, "nested too deeply"),
        ("deep.yaml", b"[" * 100_000, "nested too deeply"),
    ],
)
def test_broken_files_are_one_clear_error(tmp_path: Path, name: str, content: bytes, words: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserInputError, match="--config") as raised:
        load_document(str(path), "--config")
    assert words in str(raised.value)


def test_inline_json_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(UserInputError, match="not UTF-8"):
        load_document('{"a": "\udcff"}', "--config")  # how Python hands over a non-UTF-8 argument


def _stream(**stream: Any) -> dict[str, Any]:
    return {"type": "STREAM", "stream": stream}


@pytest.mark.parametrize(
    ("state", "words"),
    [
        (_stream(stream_state={"id": 1}), "needs stream_descriptor.name"),
        (_stream(stream_descriptor={"name": ""}, stream_state={}), "needs stream_descriptor.name"),
        (_stream(stream_descriptor={"name": "users"}, stream_state=[1]), "must be an object or null"),
        (_stream(stream_descriptor={"name": "u", "namespace": 3}, stream_state={}), "namespace"),
        ({"type": "STREAM", "stream": "users"}, "must be an object"),
        ({"type": "GLOBAL", "global": [1]}, "needs a 'global' object"),
        ({"type": "GLOBAL", "global": {"stream_states": [{"stream_state": {}}]}}, "stream_states[0]"),
        ({"type": "GLOBAL", "global": {"shared_state": [1]}}, "shared_state must be an object or null"),
        ({"cursor": 3}, "state 0 has no type STREAM, GLOBAL or LEGACY"),  # in a list: not a bare state
    ],
)
def test_malformed_or_incomplete_states_are_refused(state: dict[str, Any], words: str) -> None:
    with pytest.raises(UserInputError) as raised:
        load_state([state])
    assert words in str(raised.value)


def test_what_the_protocol_leaves_optional_is_taken_as_a_sync_commits_it() -> None:
    """``state show`` prints what a sync committed; ``state set`` takes it back. The protocol's
    AirbyteStateMessage leaves these out of ``required``, and sources do leave them out."""
    no_state = _stream(stream_descriptor={"name": "users"})
    assert load_state([no_state]) == [no_state]
    untyped_legacy = {"data": {"cursor": 3}}  # what legacy sources send: no type means LEGACY
    assert load_state([untyped_legacy]) == [untyped_legacy]
    assert load_state([{"type": "LEGACY"}]) == [{"type": "LEGACY"}]
    shared_only = {"type": "GLOBAL", "global": {"shared_state": {"lsn": 1}}}
    assert load_state([shared_only]) == [shared_only]


def test_a_stream_named_twice_is_refused_and_good_states_pass() -> None:
    users = _stream(stream_descriptor={"name": "users"}, stream_state={"id": 1})
    with pytest.raises(UserInputError, match="'users' twice"):
        load_state([users, users])
    restart = _stream(stream_descriptor={"name": "orders", "namespace": "shop"}, stream_state=None)
    assert load_state([users, restart]) == [users, restart]
    assert load_state({"cursor": 3}) == [{"type": "LEGACY", "data": {"cursor": 3}}]


def test_refuse_deep_counts_levels_without_recursing() -> None:
    from ferryman.documents import refuse_deep

    def nested(levels: int) -> dict[str, Any]:
        document: dict[str, Any] = {}
        inner = document
        for _ in range(levels - 1):
            inner["n"] = [{}]
            inner = inner["n"][0]
        return document

    refuse_deep(nested(100), "--config")  # 100 objects in 99 lists: 199 levels
    with pytest.raises(UserInputError, match=r"^--config nests more than 200 levels deep"):
        refuse_deep(nested(101), "--config")
    with pytest.raises(UserInputError):  # far past the stack: found by a loop, not recursion
        refuse_deep(nested(200_000), "the state")


@pytest.mark.parametrize(
    ("name", "content", "words"),
    [
        ("nan.json", b'{"count": NaN}', "NaN is not a JSON number"),
        ("inf.json", b'{"ratio": [1, -Infinity]}', "-Infinity is not a JSON number"),
        ("huge.json", b'{"ratio": 1e999}', "1e999 is beyond the range of a JSON number"),
        ("nan.yaml", b"count: .nan\n", "holds nan, which is not a JSON number"),
        ("inf.yaml", b"limits: {low: -.inf}\n", "holds -inf, which is not a JSON number"),
    ],
)
def test_numbers_json_cannot_hold_are_refused(tmp_path: Path, name: str, content: bytes, words: str) -> None:
    """Read as Python floats they were written out as null (orjson's choice) to the connector and
    the store: the config the connector ran with was not the one the user gave."""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UserInputError, match=words):
        load_config(str(path), "--config")
    inline = content.decode()
    if name.endswith(".json"):
        with pytest.raises(UserInputError, match=f"inline JSON is not valid \\({words}"):
            load_config(inline, "--config")


# Each text is before + the bare value + after: the column must point at the bare value.
WHERE = {
    "after-a-string-value": ('{"note": "NaN", "x": ', "NaN", "}"),
    "after-a-key": ('{"NaN": 1, "list": [1, ', "NaN", "]}"),
    "after-an-escaped-quote": ('{"a": "say \\" -Infinity", "b": ', "-Infinity", "}"),
    "on-a-second-line": ('{"a": "Infinity",\n "b": ', "Infinity", "}"),
    "not-inside-a-longer-number": ('{"a": 0.1e309, "b": ', "1e309", "}"),  # 0.1e309: 1e308
}


@pytest.mark.parametrize(("before", "word", "after"), WHERE.values(), ids=WHERE.keys())
def test_a_number_json_cannot_hold_is_placed_at_the_value_not_at_a_string_holding_its_word(
    before: str, word: str, after: str
) -> None:
    """Before, the column was where the word first appeared in the text, inside a string or a
    key, or inside a longer number."""
    column = len(before.splitlines()[-1]) + 1
    told = rf"^--config: inline JSON is not valid \({re.escape(word)} is .* at column {column}\)$"
    with pytest.raises(UserInputError, match=told):
        load_config(before + word + after, "--config")


def test_a_byte_order_mark_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "notepad.json"
    path.write_bytes(b'\xef\xbb\xbf{"count": 3, "ratio": 0.5, "big": 1e300}')
    assert load_config(str(path), "--config") == {"count": 3, "ratio": 0.5, "big": 1e300}
