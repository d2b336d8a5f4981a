"""Which mode each stream gets: only modes both sides support, requests honoured or refused."""

from __future__ import annotations

from typing import Any

import pytest

from ferryman.errors import UserInputError
from ferryman.protocol.catalog import StreamChoice, plan_catalog, replan_catalog
from ferryman.protocol.discovered import check_discovered
from ferryman.protocol.stream_refs import StreamRef
from ferryman.protocol.sync_modes import StreamKeys, choose_mode, destination_modes, parse_mode

EVERYTHING = frozenset({"append", "overwrite", "append_dedup"})
NO_DEDUP = frozenset({"append", "overwrite"})
APPEND_ONLY = frozenset({"append"})


def stream(modes: list[str], cursor: bool = True, key: bool = True, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"name": "users", "json_schema": {}, "supported_sync_modes": modes, **extra}
    if cursor:
        found["default_cursor_field"] = ["updated_at"]
    if key:
        found["source_defined_primary_key"] = [["id"]]
    return found


@pytest.mark.parametrize(
    ("discovered", "dest", "prefer_incremental", "expected"),
    [
        # the preference order: incremental+dedup, incremental+append, full_refresh+overwrite, +append
        (stream(["full_refresh", "incremental"]), EVERYTHING, True, "incremental:append_dedup"),
        (stream(["full_refresh", "incremental"]), NO_DEDUP, True, "incremental:append"),
        (stream(["full_refresh", "incremental"], key=False), EVERYTHING, True, "incremental:append"),
        (stream(["full_refresh", "incremental"], cursor=False), EVERYTHING, True, "full_refresh:overwrite"),
        (
            stream(["full_refresh", "incremental"], cursor=False, source_defined_cursor=True),
            EVERYTHING,
            True,
            "incremental:append_dedup",
        ),
        (stream(["full_refresh"]), EVERYTHING, True, "full_refresh:overwrite"),
        (stream(["full_refresh"]), APPEND_ONLY, True, "full_refresh:append"),
        (stream(["incremental"]), frozenset({"overwrite"}), True, None),
        # --full-refresh: overwrite, then append, then incremental when the source cannot do otherwise
        (stream(["full_refresh", "incremental"]), EVERYTHING, False, "full_refresh:overwrite"),
        (stream(["full_refresh", "incremental"]), APPEND_ONLY, False, "full_refresh:append"),
        (stream(["incremental"]), EVERYTHING, False, "incremental:append_dedup"),
    ],
)
def test_mode_choice_table(
    discovered: dict[str, Any], dest: frozenset[str], prefer_incremental: bool, expected: str | None
) -> None:
    keys = StreamKeys.of(discovered)
    if expected is None:
        with pytest.raises(UserInputError, match="no sync mode that both sides support"):
            choose_mode(discovered, dest, keys, prefer_incremental=prefer_incremental)
        return
    mode, _ = choose_mode(discovered, dest, keys, prefer_incremental=prefer_incremental)
    assert str(mode) == expected


def test_a_fallback_comes_with_a_note_saying_why() -> None:
    plan = plan_catalog({"streams": [stream(["full_refresh", "incremental"])]}, NO_DEDUP)
    assert plan.notes == [
        "stream 'users' syncs as incremental:append, not incremental:append_dedup: "
        "the destination writes only append, overwrite"
    ]
    assert plan_catalog({"streams": [stream(["incremental"], key=False)]}, EVERYTHING).notes == []


def test_a_requested_mode_either_side_lacks_is_refused_in_one_line() -> None:
    catalog = {"streams": [stream(["full_refresh", "incremental"])]}
    dedup = [StreamChoice(StreamRef.named("users"), parse_mode("incremental:append_dedup"))]
    with pytest.raises(UserInputError) as refused:
        plan_catalog(catalog, NO_DEDUP, choices=dedup)
    assert str(refused.value) == (
        "stream 'users' cannot sync as incremental:append_dedup: the destination writes only append, "
        "overwrite; both sides support incremental:append, full_refresh:overwrite, full_refresh:append"
    )
    no_key = {"streams": [stream(["incremental"], key=False)]}
    with pytest.raises(UserInputError, match="append_dedup needs a primary key"):
        plan_catalog(no_key, EVERYTHING, choices=dedup)
    full = [StreamChoice(StreamRef.named("users"), parse_mode("full_refresh_overwrite"))]
    with pytest.raises(UserInputError, match="the source reads it only as incremental"):
        plan_catalog({"streams": [stream(["incremental"])]}, EVERYTHING, choices=full)


def test_user_keys_make_a_mode_possible() -> None:
    bare = {"streams": [stream(["incremental"], cursor=False, key=False)]}
    choice = StreamChoice(StreamRef.named("users"), parse_mode("incremental:append_dedup"), ["ts"], [["id"]])
    (configured,) = plan_catalog(bare, EVERYTHING, choices=[choice]).catalog["streams"]
    assert configured["cursor_field"] == ["ts"] and configured["primary_key"] == [["id"]]
    assert configured["destination_sync_mode"] == "append_dedup"


def test_replanning_changes_only_the_named_streams() -> None:
    other = {**stream(["full_refresh"]), "name": "products"}
    configured = plan_catalog(
        {"streams": [stream(["full_refresh", "incremental"]), other]}, EVERYTHING
    ).catalog
    changed = replan_catalog(
        configured, EVERYTHING, [StreamChoice(StreamRef.named("users"), parse_mode("full_refresh:append"))]
    )
    modes = {c["stream"]["name"]: (c["sync_mode"], c["destination_sync_mode"]) for c in changed["streams"]}
    assert modes == {"users": ("full_refresh", "append"), "products": ("full_refresh", "overwrite")}
    with pytest.raises(UserInputError, match="unknown stream"):
        replan_catalog(configured, EVERYTHING, [StreamChoice(StreamRef.named("nope"))])


def test_destination_modes_from_the_spec() -> None:
    assert destination_modes({"supported_destination_sync_modes": ["append", "overwrite"]}) == NO_DEDUP
    assert destination_modes({"connectionSpecification": {}}) == NO_DEDUP  # undeclared: never dedup
    assert destination_modes(None) == NO_DEDUP
    with pytest.raises(UserInputError, match="unknown sync mode 'incremental:upsert'"):
        parse_mode("incremental:upsert")


@pytest.mark.parametrize(
    ("catalog", "message"),
    [
        ({"streams": "users"}, "not an object with a 'streams' list"),
        ({"streams": [{"json_schema": {}}]}, "stream \\(number 1\\) without a name"),
        ({"streams": [{"name": "users", "json_schema": "x"}]}, "stream 'users' has no json_schema object"),
        (
            {"streams": [{"name": "users", "json_schema": {}, "supported_sync_modes": ["cdc"]}]},
            "supported_sync_modes \\['cdc'\\]",
        ),
        (
            {"streams": [{"name": "users", "json_schema": {}, "source_defined_primary_key": ["id"]}]},
            "source_defined_primary_key is not a list of lists",
        ),
        (
            {"streams": [{"name": "users", "json_schema": {}}, {"name": "users", "json_schema": {}}]},
            "the source's catalog lists stream 'users' twice",
        ),
    ],
)
def test_malformed_discovered_catalogs_are_refused(catalog: dict[str, Any], message: str) -> None:
    with pytest.raises(UserInputError, match=message):
        check_discovered(catalog)


def test_same_name_in_two_namespaces_is_fine() -> None:
    two = {"streams": [{"name": "users", "json_schema": {}, "namespace": ns} for ns in ("a", "b")]}
    assert check_discovered(two) is two
