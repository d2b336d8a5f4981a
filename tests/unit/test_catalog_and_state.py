"""Stream selection, namespace mapping, and the state rules a user relies on to resume."""

from __future__ import annotations

from typing import Any

import pytest

from ferryman.errors import UserInputError
from ferryman.protocol import messages
from ferryman.protocol.catalog import (
    NamespaceDefinition,
    NamespaceMapping,
    StreamChoice,
    check_mapping,
    configure_catalog,
    map_catalog,
    plan_catalog,
    replan_catalog,
    reset_catalog,
)
from ferryman.protocol.state import (
    StateAggregator,
    connector_state_file,
    full_refresh_streams,
    load_state,
    state_key,
    without_streams,
)
from ferryman.protocol.stream_refs import StreamRef
from ferryman.protocol.sync_modes import UNDECLARED_DESTINATION_MODES, StreamMode
from ferryman.workers.tracker import MessageTracker

DISCOVERED = {
    "streams": [
        {
            "name": "users",
            "namespace": "public",
            "json_schema": {},
            "supported_sync_modes": ["full_refresh", "incremental"],
            "default_cursor_field": ["updated_at"],
            "source_defined_primary_key": [["id"]],
        },
        {"name": "events", "json_schema": {}, "supported_sync_modes": ["full_refresh", "incremental"]},
        {"name": "static", "json_schema": {}, "supported_sync_modes": ["full_refresh"]},
    ]
}


def test_configure_catalog_picks_incremental_where_supported() -> None:
    configured = {c["stream"]["name"]: c for c in configure_catalog(DISCOVERED)["streams"]}
    assert configured["users"]["sync_mode"] == "incremental"
    assert configured["users"]["destination_sync_mode"] == "append_dedup"
    assert configured["users"]["primary_key"] == [["id"]]
    assert configured["users"]["cursor_field"] == ["updated_at"]
    # events offers incremental but no cursor: a full refresh rather than a read the source would fail
    assert (configured["events"]["sync_mode"], configured["events"]["destination_sync_mode"]) == (
        "full_refresh",
        "overwrite",
    )
    assert configured["static"]["sync_mode"] == "full_refresh"
    assert configured["static"]["destination_sync_mode"] == "overwrite"


def test_full_refresh_and_stream_selection() -> None:
    configured = configure_catalog(DISCOVERED, ["static", "users"], prefer_incremental=False)
    assert [c["stream"]["name"] for c in configured["streams"]] == ["static", "users"]
    assert {c["destination_sync_mode"] for c in configured["streams"]} == {"overwrite"}


def test_unknown_stream_is_one_clear_error() -> None:
    with pytest.raises(
        UserInputError, match=r"unknown stream\(s\) nope: the source offers events, public.users, static"
    ):
        configure_catalog(DISCOVERED, ["nope"])


def test_a_stream_named_twice_in_one_request_is_refused_not_last_one_wins() -> None:
    """A PATCH (or create) listing ``users`` twice with two modes must not pick one silently."""
    twice = [
        StreamChoice(StreamRef.named("users"), StreamMode("full_refresh", "overwrite")),
        StreamChoice(StreamRef.named("users")),
    ]
    with pytest.raises(UserInputError, match="stream 'users' is named twice"):
        plan_catalog(DISCOVERED, UNDECLARED_DESTINATION_MODES, choices=twice)
    configured = configure_catalog(DISCOVERED)
    with pytest.raises(UserInputError, match="stream 'users' is named twice"):
        replan_catalog(configured, UNDECLARED_DESTINATION_MODES, twice)


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        (NamespaceMapping(), ("users", "public")),
        (NamespaceMapping(NamespaceDefinition.DESTINATION), ("users", None)),
        (
            NamespaceMapping(NamespaceDefinition.CUSTOM_FORMAT, "raw_${SOURCE_NAMESPACE}"),
            ("users", "raw_public"),
        ),
        (NamespaceMapping(NamespaceDefinition.CUSTOM_FORMAT, "  ${SOURCE_NAMESPACE} "), ("users", "public")),
        (NamespaceMapping(prefix="p_"), ("p_users", "public")),
    ],
)
def test_namespace_mapping_of_the_destination_catalog(
    mapping: NamespaceMapping, expected: tuple[str, str | None]
) -> None:
    mapped = map_catalog(configure_catalog(DISCOVERED, ["users"]), mapping)["streams"][0]["stream"]
    assert (mapped["name"], mapped.get("namespace")) == expected


def test_custom_format_without_source_namespace_falls_back_to_destination_default() -> None:
    mapping = NamespaceMapping(NamespaceDefinition.CUSTOM_FORMAT, "${SOURCE_NAMESPACE}")
    assert mapping.namespace(None) is None


def two_schemas(*namespaces: str | None) -> dict[str, Any]:
    """A configured catalog with a ``users`` stream in each namespace (a Postgres source with two
    schemas, say)."""
    streams = [{"name": "users", "json_schema": {}, "supported_sync_modes": ["full_refresh"]}]
    return {
        "streams": [
            {"stream": {**streams[0], **({"namespace": ns} if ns else {})}, "sync_mode": "full_refresh"}
            for ns in namespaces
        ]
    }


@pytest.mark.parametrize(
    "mapping",
    [
        NamespaceMapping(NamespaceDefinition.DESTINATION),
        NamespaceMapping(NamespaceDefinition.CUSTOM_FORMAT, "raw", prefix="p_"),
        NamespaceMapping(NamespaceDefinition.CUSTOM_FORMAT, "${SOURCE_NAMESPACE}"),  # "" and " " blank
    ],
)
def test_a_mapping_that_sends_two_streams_to_one_is_refused_naming_both(mapping: NamespaceMapping) -> None:
    catalog = (
        two_schemas("public", "sales") if mapping.format != "${SOURCE_NAMESPACE}" else two_schemas("", " ")
    )
    with pytest.raises(
        UserInputError, match=r"^streams '.*users' and '.*users' would both be written to"
    ) as raised:
        check_mapping(catalog, mapping)
    assert "${SOURCE_NAMESPACE}" in str(raised.value)


@pytest.mark.parametrize(
    "mapping",
    [
        NamespaceMapping(),
        NamespaceMapping(NamespaceDefinition.CUSTOM_FORMAT, "raw_${SOURCE_NAMESPACE}", prefix="p_"),
    ],
)
def test_a_mapping_that_keeps_streams_apart_is_accepted(mapping: NamespaceMapping) -> None:
    check_mapping(two_schemas("public", "sales"), mapping)
    check_mapping(two_schemas("public"), NamespaceMapping(NamespaceDefinition.DESTINATION))


def test_reset_catalog_overwrites_every_stream() -> None:
    reset = reset_catalog(configure_catalog(DISCOVERED))
    assert {(c["sync_mode"], c["destination_sync_mode"]) for c in reset["streams"]} == {
        ("full_refresh", "overwrite")
    }


def test_state_echo_matches_despite_added_stats_and_key_order() -> None:
    sent = messages.stream_state("users", {"id": 5, "ts": "x"}, record_count=5.0)["state"]
    echoed = {
        "stream": {"stream_state": {"ts": "x", "id": 5}, "stream_descriptor": {"name": "users"}},
        "type": "STREAM",
        "destinationStats": {"recordCount": 5.0},
    }
    assert state_key(sent) == state_key(echoed)
    assert state_key({"data": {"a": 1}}) == state_key({"type": "LEGACY", "data": {"a": 1}})


def test_stream_state_keeps_the_latest_per_stream_and_drops_stats() -> None:
    aggregator = StateAggregator([messages.stream_state("users", {"id": 1})["state"]])
    aggregator.accept(messages.stream_state("orders", {"id": 7})["state"])
    aggregator.accept(messages.stream_state("users", {"id": 9}, record_count=3.0)["state"])
    snapshot = aggregator.snapshot()
    assert [s["stream"]["stream_state"] for s in snapshot] == [{"id": 9}, {"id": 7}]
    assert all("sourceStats" not in s for s in snapshot)


def test_mixed_state_types_are_refused() -> None:
    stream, global_ = (
        messages.stream_state("users", {"id": 1})["state"],
        messages.global_state({}, [])["state"],
    )
    with pytest.raises(UserInputError, match="STREAM and GLOBAL STATE messages mixed"):
        StateAggregator([stream, global_])  # a stored state, or one a user sets
    aggregator = StateAggregator()
    aggregator.accept(stream)
    with pytest.raises(UserInputError, match="STREAM and GLOBAL STATE messages mixed"):
        aggregator.accept(global_)  # within one sync


def test_a_new_state_type_replaces_the_stored_state_whole() -> None:
    """A source upgraded from LEGACY to per-stream state: its first sync after the upgrade commits
    instead of failing on every attempt, and keeps nothing of the old type."""
    aggregator = StateAggregator(load_state({"cursor": 3}))
    aggregator.accept(messages.stream_state("users", {"id": 1})["state"])
    aggregator.accept(messages.stream_state("orders", {"id": 2})["state"])
    assert [s["type"] for s in aggregator.snapshot()] == ["STREAM", "STREAM"]
    with pytest.raises(UserInputError, match="mixed"):
        aggregator.accept({"type": "LEGACY", "data": {"cursor": 4}})


def test_state_files_in_the_formats_users_have() -> None:
    stream = messages.stream_state("users", {"id": 1})
    assert load_state([stream["state"]]) == [stream["state"]]
    assert load_state([stream]) == [stream["state"]]  # whole AirbyteMessages, as some tools save
    assert load_state({"cursor": 3}) == [{"type": "LEGACY", "data": {"cursor": 3}}]
    assert connector_state_file(load_state({"cursor": 3})) == {"cursor": 3}
    with pytest.raises(UserInputError):
        load_state([1, 2])


def test_committed_counts_follow_the_echoed_states() -> None:
    tracker = MessageTracker([("users", None), ("orders", None)])
    users, orders = tracker.emitted[("users", None)], tracker.emitted[("orders", None)]
    first, second = (
        messages.stream_state("users", {"id": 2})["state"],
        messages.stream_state("orders", {"id": 1})["state"],
    )
    # As the record path counts: the counter's two integers, and its id noted as moved.
    users[0], users[1] = 2, 200
    tracker.moved.add(id(users))
    tracker.source_state(first)
    orders[0], orders[1] = 1, 50
    tracker.moved.add(id(orders))
    tracker.source_state(second)
    users[0], users[1] = 3, 300  # not yet checkpointed
    tracker.moved.add(id(users))
    tracker.destination_state(first)
    committed = {s.name: s.records_committed for s in tracker.snapshot()}
    assert committed == {"users": 2, "orders": 0}
    tracker.destination_state(second)
    committed = {s.name: (s.records_committed, s.bytes_committed) for s in tracker.snapshot()}
    assert committed == {"users": (2, 200), "orders": (1, 50)}
    assert {s.name: s.records_emitted for s in tracker.snapshot()} == {"users": 3, "orders": 1}


def test_an_unmatched_echo_makes_committed_counts_unknown_not_wrong() -> None:
    tracker = MessageTracker([("users", None)])
    tracker.emitted[("users", None)][0] = 4
    tracker.moved.add(id(tracker.emitted[("users", None)]))
    tracker.source_state(messages.stream_state("users", {"id": 4})["state"])
    tracker.destination_state(messages.stream_state("users", {"rewritten": True})["state"])
    assert tracker.snapshot()[0].records_committed is None
    assert tracker.snapshot(all_committed=True)[0].records_committed == 4


def test_records_without_the_catalogs_namespace_still_count() -> None:
    tracker = MessageTracker([("users", "public")])
    assert tracker.counter_for(("users", None)) is tracker.emitted[("users", "public")]
    assert tracker.counter_for(("other", None)) is None


def test_a_new_job_drops_only_the_state_of_its_full_refresh_streams() -> None:
    catalog = {
        "streams": [
            {"stream": {"name": "pages"}, "sync_mode": "full_refresh"},
            {"stream": {"name": "items", "namespace": "shop"}, "sync_mode": "incremental"},
        ]
    }
    streams = full_refresh_streams(catalog)
    assert streams == {("pages", None)}

    def stream(name: str, namespace: str | None = None) -> dict[str, Any]:
        return {"stream_descriptor": {"name": name, "namespace": namespace}, "stream_state": {"page": 2}}

    per_stream = [
        {"type": "STREAM", "stream": stream("pages")},
        {"type": "STREAM", "stream": stream("items", "shop")},
    ]
    assert without_streams(per_stream, streams) == per_stream[1:]
    shared = {
        "type": "GLOBAL",
        "global": {"shared_state": {"lsn": 7}, "stream_states": [stream("pages"), stream("items", "shop")]},
    }
    assert without_streams([shared], streams) == [
        {"type": "GLOBAL", "global": {"shared_state": {"lsn": 7}, "stream_states": [stream("items", "shop")]}}
    ]
    legacy = [{"type": "LEGACY", "data": {"pages": 2}}]  # names no stream: kept
    assert without_streams(legacy, streams) == legacy
    assert without_streams(per_stream, set()) == per_stream
