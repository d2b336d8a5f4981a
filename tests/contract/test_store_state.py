"""A connection's committed state in the store: it comes back exactly as it was written, on SQLite
and Postgres alike (fixtures in store_support.py). The state is what the next sync hands its
source; a changed cursor means a source that re-reads or skips rows."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from alembic import command

from ferryman.store import SqlJobStore, StreamStat, open_store
from ferryman.store.migrate import alembic_config, current_revision, head_revision
from tests.contract.store_support import running_sync, store, store_url

__all__ = ["store", "store_url"]  # fixtures, imported for pytest


def _stream(name: str, stream_state: dict[str, Any]) -> dict[str, Any]:
    return {"type": "STREAM", "stream": {"stream_descriptor": {"name": name}, "stream_state": stream_state}}


# What JSONB changed: a NUL (refused, so written as U+FFFD) and the order of keys (shorter first,
# then bytewise). Also kept: a backslash-u that is text, not a NUL, and digits past 64 bits.
ODD_STATE = [
    _stream(
        "users",
        {
            "zz_cursor": "tenant\x00042",
            "aa_escaped": "\\u0000 stays six characters",
            "big": 123456789012345678901234567890,
            "nested": {"b": [1, {"z": None, "a": "é\x00"}], "a": 1.5},
        },
    ),
    {"type": "STREAM", "stream": {"stream_state": {"x": 1}, "stream_descriptor": {"name": "orders"}}},
]


def _exact(state: list[dict[str, Any]]) -> str:
    """The state's text, keys in their order: equal texts, equal documents in equal order."""
    return json.dumps(state)


def _connection(store: SqlJobStore) -> int:
    source = store.create_actor("source", "s", "builtin:source-bench", {})
    destination = store.create_actor("destination", "d", "builtin:destination-devnull", {})
    return store.create_connection("c", source.id, destination.id, {"streams": []}).id


def _column_type(store: SqlJobStore) -> str | None:
    if store.dialect == "sqlite":
        return None
    with store.engine.connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT data_type FROM information_schema.columns"
                " WHERE table_name = 'connection_state' AND column_name = 'state'"
            )
        ).scalar_one()


def test_a_state_comes_back_exactly_as_it_was_written(store: SqlJobStore) -> None:
    """Every way a state is written: a user's edit (compare-and-set), a sync's progress."""
    connection_id = _connection(store)
    store.save_state(connection_id, ODD_STATE)
    assert _exact(store.get_state(connection_id)) == _exact(ODD_STATE)

    # The compare-and-set of `state set`: in Python on what was read (json has no = in Postgres).
    edited = [_stream("users", {"b": "\x00", "a": 2})]
    assert store.replace_state(connection_id, edited, expected=store.get_state(connection_id))
    assert _exact(store.get_state(connection_id)) == _exact(edited)
    assert not store.replace_state(connection_id, ODD_STATE, expected=ODD_STATE)  # stale: refused
    assert _exact(store.get_state(connection_id)) == _exact(edited)

    job, attempt = running_sync(store, scope=str(connection_id))
    stats = [StreamStat(attempt.id, "users", None, 1, 10, 1, 10)]
    assert store.save_progress(attempt.id, stats, connection_id, ODD_STATE, job.id)
    assert _exact(store.get_state(connection_id)) == _exact(ODD_STATE)

    if store.dialect == "postgresql":  # the text itself, as the server keeps it
        assert _column_type(store) == "json"
        with store.engine.connect() as conn:
            text = conn.execute(sa.text("SELECT state::text FROM connection_state")).scalar_one()
        assert '"zz_cursor":"tenant\\u0000042"' in text and "\ufffd" not in text


def test_an_existing_store_upgrades_and_its_state_is_kept_exactly_from_then_on(store_url: str) -> None:
    """A store from before 0009 (Postgres: a JSONB column, whose NULs were written as U+FFFD)
    is upgraded when ferryman next opens it; what it held reads back as JSONB kept it, and a
    NUL saved from then on stays a NUL."""
    with open_store(store_url) as fresh:
        connection_id = _connection(fresh)
        fresh.save_state(connection_id, ODD_STATE)
        config = alembic_config()
        with fresh.engine.begin() as conn:
            config.attributes["connection"] = conn
            command.downgrade(config, "0008")
    with open_store(store_url) as upgraded:
        with upgraded.engine.connect() as conn:
            assert current_revision(conn) == head_revision()
        before = upgraded.get_state(connection_id)
        if upgraded.dialect == "postgresql":
            assert _column_type(upgraded) == "json"
            # What 0008 kept: U+FFFD for the NUL (a backslash-u that is text stays text), keys sorted.
            assert before[0]["stream"]["stream_state"]["zz_cursor"] == "tenant\ufffd042"
            assert before[0]["stream"]["stream_state"]["aa_escaped"] == "\\u0000 stays six characters"
            assert list(before[0]["stream"]) == ["stream_state", "stream_descriptor"]
        else:
            assert _exact(before) == _exact(ODD_STATE)  # SQLite: JSON text all along
        upgraded.save_state(connection_id, ODD_STATE)
        assert _exact(upgraded.get_state(connection_id)) == _exact(ODD_STATE)
