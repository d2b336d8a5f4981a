"""Connection state as users edit and read it: ``ferryman state show|set|clear`` and the state
the next sync hands its source. The source is the scripted one, which copies the state file it
is given (``state_copy``), so each test compares what ``state show`` printed with what the
source read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import scripted_source
from tests.contract.store_support import store_url
from tests.e2e.test_cli_jobs import Cli, bench_connection, emitted, stream_state

__all__ = ["store_url"]  # a fixture, imported for pytest


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "home")


def scripted_connection(
    cli: Cli, tmp_path: Path, name: str, read_steps: list[dict[str, Any]], **extra: Any
) -> Path:
    """A scripted source whose reads run ``read_steps`` and copy their state file to the path
    returned, a JSONL destination, and an incremental connection of stream ``users``."""
    script = scripted_source(tmp_path)  # left as it is where an earlier connection made it
    copy = tmp_path / f"{name}-state-given.json"
    config = {"read_steps": read_steps, "state_copy": str(copy), **extra}
    cli("sources", "create", name, "--connector", f"exec:{script}", "--config", json.dumps(config))
    destination = {"path": str(tmp_path / f"{name}-out")}
    cli(
        "destinations",
        "create",
        name,
        "--connector",
        "builtin:destination-jsonl",
        "--config",
        json.dumps(destination),
    )
    cli("connections", "create", name, "--source", name, "--destination", name,
        "--stream", "users:incremental:append", "--cursor", "users=id")  # fmt: skip
    return copy


BIG_CURSOR = {
    "type": "STREAM",
    "stream": {
        "stream_descriptor": {"name": "users"},
        "stream_state": {"cursor": 123456789012345678901234567890},
    },
}


def raw_state(state: dict[str, Any]) -> dict[str, Any]:
    return {"stdout_hex": json.dumps({"type": "STATE", "state": state}).encode().hex()}


@pytest.mark.parametrize(
    ("sent", "source_reads"),
    [
        # A legacy source: no type, which the protocol reads as LEGACY; it gets its data back.
        ({"data": {"cursor": 3}}, {"cursor": 3}),
        # The protocol's AirbyteStreamState leaves stream_state optional.
        (
            {"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}}},
            [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}}}],
        ),
        # A cursor past 64 bits (a NUMERIC(38) key): every digit, both ways. Before, it was read
        # as a float, stored as 1.2345678901234568e+29 and handed back so to the source.
        (BIG_CURSOR, [BIG_CURSOR]),
        ({"data": {"cursor": -(2**64) - 1}}, {"cursor": -(2**64) - 1}),
    ],
    ids=["untyped-legacy", "stream-without-stream-state", "cursor-past-64-bits", "legacy-past-64-bits"],
)
def test_the_state_a_sync_committed_can_be_set_back_and_reaches_the_source(
    cli: Cli, tmp_path: Path, sent: dict[str, Any], source_reads: Any
) -> None:
    given = scripted_connection(cli, tmp_path, "c", [{"records": 1, "stream": "users"}, raw_state(sent)])
    cli("connections", "sync", "c")
    shown = tmp_path / "shown.json"
    shown.write_text(cli("state", "show", "c").stdout)
    assert json.loads(shown.read_text()) == [sent]

    cli("state", "set", "c", str(shown))  # the form `show` prints is the form `set` takes back
    assert json.loads(cli("state", "show", "c").stdout) == [sent]
    cli("connections", "sync", "c")
    assert json.loads(given.read_text()) == source_reads


def test_a_malformed_state_is_one_line_naming_the_entry_and_nothing_is_stored(
    cli: Cli, tmp_path: Path
) -> None:
    scripted_connection(cli, tmp_path, "c", [])
    kept = [{"type": "STREAM", "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"id": 7}}}]
    cli("state", "set", "c", json.dumps(kept))
    for document, words in [
        ("{not json", "not valid"),
        ("[1, 2]", "state 0 is a number"),
        (json.dumps([kept[0], None]), "state 1 is null"),
        ('[{"cursor": 1}]', "state 0 has no type"),
        ('[{"type": "GLOBAL", "global": {"shared_state": 5}}]', "global.shared_state"),
    ]:
        assert words in cli.bad_input("state", "set", "c", document), document
        assert cli.json("state", "show", "c")["state"] == kept


def test_clearing_one_streams_state_rereads_that_stream_alone(cli: Cli, tmp_path: Path) -> None:
    """As Airbyte clears one stream: the others keep their progress, and so does a GLOBAL
    state's shared part (a CDC position)."""
    bench_connection(cli, tmp_path, "bench", 200, streams=2, state_every=100)
    cli("connections", "sync", "bench")
    assert (
        cli("state", "clear", "bench", "--stream", "stream_1")
        .stdout.strip()
        .endswith("1 state message(s) left")
    )
    assert cli.json("state", "show", "bench")["state"] == [stream_state("stream_0", 200)]
    assert emitted(cli.json("connections", "sync", "bench")) == {"stream_0": 0, "stream_1": 200}

    assert "unknown stream(s) nope" in cli.bad_input("state", "clear", "bench", "--stream", "nope")
    shared = {"type": "GLOBAL", "global": {"shared_state": {"lsn": 9}, "stream_states": [
        stream_state("stream_0", 5)["stream"], stream_state("stream_1", 5)["stream"]]}}  # fmt: skip
    cli("state", "set", "bench", json.dumps([shared]))
    left = cli.json("state", "clear", "bench", "--stream", "stream_0")["state"]
    assert left == [{"type": "GLOBAL", "global": {"shared_state": {"lsn": 9}, "stream_states": [
        stream_state("stream_1", 5)["stream"]]}}]  # fmt: skip
    cli("state", "set", "bench", '{"cursor": 3}')
    assert "LEGACY" in cli.bad_input("state", "clear", "bench", "--stream", "stream_0")
    assert cli.json("state", "show", "bench")["state"] == [{"type": "LEGACY", "data": {"cursor": 3}}]


def test_clearing_a_stream_the_state_does_not_hold_says_what_it_holds_in_one_line(
    cli: Cli, tmp_path: Path
) -> None:
    """An empty state was "its state holds streams no streams"; a state of thousands of streams
    listed every one of them in the line."""
    scripted_connection(cli, tmp_path, "c", [])
    assert cli.bad_input("state", "clear", "c", "--stream", "users") == (
        "error: the state of connection 'c' is empty: there is nothing to clear"
    )
    only_shared = [{"type": "GLOBAL", "global": {"shared_state": {"lsn": 9}, "stream_states": []}}]
    cli("state", "set", "c", json.dumps(only_shared))
    assert cli.bad_input("state", "clear", "c", "--stream", "users") == (
        "error: unknown stream(s) users: the state of connection 'c' holds no streams"
    )
    cli("state", "set", "c", json.dumps([stream_state(f"t{n:02}", 1) for n in range(25)]))
    listed = ", ".join(f"t{n:02}" for n in range(20))
    assert cli.bad_input("state", "clear", "c", "--stream", "nope") == (
        f"error: unknown stream(s) nope: the state of connection 'c' holds {listed} and 5 more"
    )
    assert len(cli.json("state", "show", "c")["state"]) == 25  # nothing was cleared


def test_connections_show_counts_the_streams_a_global_state_holds(cli: Cli, tmp_path: Path) -> None:
    scripted_connection(cli, tmp_path, "c", [])
    streams = [stream_state(name, 1)["stream"] for name in ("a", "b", "c")]
    cli(
        "state",
        "set",
        "c",
        json.dumps({"type": "GLOBAL", "global": {"shared_state": {}, "stream_states": streams}}),
    )
    shown = cli.json("connections", "show", "c")
    assert (shown["state_type"], shown["state_streams"]) == ("GLOBAL", 3)
    assert "state: GLOBAL, 3 stream(s)" in cli("connections", "show", "c").stdout
    cli("state", "set", "c", '{"cursor": 3}')
    assert cli.json("connections", "show", "c")["state_streams"] == 0  # a LEGACY state names no stream


# A cursor as a source reading a database may keep one: a string key holding a NUL. Its keys are
# in no sorted order, JSONB's (shorter keys first, then bytewise) least of all.
NUL_CURSOR = {
    "type": "STREAM",
    "stream": {
        "stream_descriptor": {"name": "users"},
        "stream_state": {"zz_key": "tenant\u0000042", "aa_key": 7, "mm": {"b": 1, "a": 2}},
    },
}


def test_a_cursor_with_a_nul_comes_back_to_the_source_as_it_sent_it(tmp_path: Path, store_url: str) -> None:
    """On either store, the next sync's input_state.json holds the state the source sent, NUL and
    key order included, and `state show` prints the NUL as its JSON escape. Before, on Postgres
    (JSONB) the NUL came back as U+FFFD and the keys sorted: the source got another cursor."""
    cli = Cli(tmp_path / "home")
    cli.env["FERRYMAN_DATABASE_URL"] = store_url  # Cli drops the caller's by default
    sent = json.dumps({"type": "STATE", "state": NUL_CURSOR})  # "tenant\u0000042" on the wire
    steps = [{"records": 1, "stream": "users"}, {"stdout_hex": sent.encode().hex()}]
    scripted_connection(cli, tmp_path, "c", steps)
    cli("connections", "sync", "c")

    shown = cli("state", "show", "c").stdout
    assert '"tenant\\u0000042"' in shown and "\ufffd" not in shown  # the escape, not U+FFFD
    assert shown.index('"zz_key"') < shown.index('"aa_key"') < shown.index('"mm"')
    assert json.dumps(json.loads(shown)) == json.dumps([NUL_CURSOR])  # same keys in the same order

    job = cli.json("connections", "sync", "c")
    given = Path(job["attempts"][-1]["log"]).with_name("input_state.json").read_text()
    assert '"tenant\\u0000042"' in given
    assert json.dumps(json.loads(given)) == json.dumps([NUL_CURSOR])

    # `state set` (a compare-and-set on the state it read) and `state clear --stream` keep NULs too.
    orders_state = {"z": "\u0000", "a": "\\u0000 is text"}  # a NUL, and a backslash-u that is text
    orders = {"stream_descriptor": {"name": "orders"}, "stream_state": orders_state}
    other = {"type": "STREAM", "stream": orders}
    cli("state", "set", "c", json.dumps([NUL_CURSOR, other]))
    cli("state", "set", "c", cli("state", "show", "c").stdout)  # what it read compares equal
    assert json.dumps(json.loads(cli("state", "show", "c").stdout)) == json.dumps([NUL_CURSOR, other])
    left = cli("state", "clear", "c", "--stream", "users", "--json").stdout
    assert json.dumps(json.loads(left)["state"]) == json.dumps([other])


TOKEN = "sk-live-4c1d-never-printed"  # the source's api_key, which its connector keeps in its state too


def test_a_secret_a_connector_keeps_in_its_state_is_masked_and_set_back_unchanged(
    cli: Cli, tmp_path: Path
) -> None:
    given = scripted_connection(cli, tmp_path, "c", [], api_key=TOKEN)
    auth = {"token": TOKEN, "header": f"Bearer {TOKEN}"}
    users = {
        "type": "STREAM",
        "stream": {"stream_descriptor": {"name": "users"}, "stream_state": {"cursor": 1, "auth": auth}},
    }
    assert TOKEN not in cli("state", "set", "c", json.dumps([users])).stdout
    shown = tmp_path / "shown.json"
    shown.write_text(cli("state", "show", "c").stdout)
    assert TOKEN not in shown.read_text() and "**********" in shown.read_text()
    assert TOKEN not in cli("state", "show", "c", "--json").stdout

    cli("state", "set", "c", str(shown))  # the masked values sent back keep the stored ones
    cli("connections", "sync", "c")
    assert json.loads(given.read_text()) == [users]

    edited = json.loads(shown.read_text())
    edited[0]["stream"]["stream_state"]["other"] = "**********"  # a mask where no secret was
    assert "masked secret" in cli.bad_input("state", "set", "c", json.dumps(edited))


def test_a_save_state_the_sync_could_not_write_is_refused_before_any_connector_runs(
    cli: Cli, tmp_path: Path
) -> None:
    """Found at the first save, the records were already in the destination and their state
    nowhere (the sync 'failed' after delivering them); and a typo overwrote a config file."""
    out = tmp_path / "out"
    destination = (
        "--destination",
        "builtin:destination-jsonl",
        "--destination-config",
        json.dumps({"path": str(out)}),
    )
    sync = ("sync", "--source", "builtin:source-bench", "--source-config", '{"count": 3}', *destination)
    config = tmp_path / "source.json"
    config.write_text('{"api_key": "abcdefgh", "start_date": "2020-01-01"}')
    cases = {
        str(tmp_path / "missing" / "state.json"): f"the directory {tmp_path / 'missing'} does not exist",
        str(tmp_path): "is a directory; give a file name",
        "/dev/null": "is not a regular file",
        str(config): "holds something other than a state, which the sync would overwrite",
    }
    for target, words in cases.items():
        line = cli.bad_input(*sync, "--save-state", target)
        assert line.startswith("error: --save-state: ") and words in line, line
    assert not out.exists(), "a connector ran"
    assert json.loads(config.read_text())["api_key"] == "abcdefgh"
    # A state file, or a legacy one the sync also starts from, is updated in place.
    saved = tmp_path / "state.json"
    cli(*sync, "--save-state", str(saved))
    cli(*sync, "--state", str(saved), "--save-state", str(saved))
    legacy = tmp_path / "legacy.json"
    legacy.write_text('{"cursor": 1}')
    cli(*sync, "--state", str(legacy), "--save-state", str(legacy))
    for written in (saved, legacy):
        assert json.loads(written.read_text())[0]["stream"]["stream_state"] == {"id": 3}
