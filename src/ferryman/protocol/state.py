"""Connector state: reading a user's state file, matching echoes, aggregating commits.

Airbyte's rules: the first STATE fixes the type (a missing type means LEGACY); STREAM state
keeps the latest message per stream; GLOBAL and LEGACY keep the latest message.
"""

from __future__ import annotations

from typing import Any

import orjson

from ferryman.errors import UserInputError
from ferryman.protocol.codec import dumps
from ferryman.protocol.depth import MAX_DEPTH, may_nest_deeper_than, nests_deeper_than

# Fields that connectors add to a STATE on its way and that do not change what it checkpoints.
_STATS_FIELDS = ("sourceStats", "destinationStats", "id")


def state_type(state: dict[str, Any]) -> str:
    return str(state.get("type") or "LEGACY")


def state_key(state: dict[str, Any]) -> bytes:
    """A canonical form of a STATE's content, equal for a source STATE and its echo."""
    content = {k: v for k, v in state.items() if k not in _STATS_FIELDS}
    if content.get("type") is None:
        content["type"] = "LEGACY"
    return dumps(content, option=orjson.OPT_SORT_KEYS)


STATE_TYPES = ("STREAM", "GLOBAL", "LEGACY")


def state_too_deep(state: Any, raw: bytes | None = None) -> bool:
    """Whether a state nests deeper than a state file may (``state set`` takes the list `state
    show` prints, one level above each state). ``raw``, the line it came in, spares the walk when
    it holds too few brackets for that."""
    deep = MAX_DEPTH - 1
    return (raw is None or may_nest_deeper_than(raw, deep)) and nests_deeper_than(state, deep)


def state_problem(state: Any, sync_type: str | None, raw: bytes | None = None) -> str | None:
    """What is wrong with a source's STATE, or None; ``sync_type`` is the type of the sync's
    earlier STATEs (None before the first). Never quotes the state's content.

    The rules are those ``load_state`` holds a user's state to: what a sync commits, ``state
    show`` prints and ``state set`` must take back, so a state is refused here, with the
    source to blame, rather than stored where the user cannot put it back. ``raw``: the line it
    came in, which spares the depth walk when it holds too few brackets to nest too deep."""
    if not isinstance(state, dict):
        return "a STATE message without a state object"
    kind = state.get("type") or "LEGACY"
    if kind not in STATE_TYPES:
        shown = repr(kind)[:40] if isinstance(kind, str) else type(kind).__name__
        return f"a STATE of unknown type {shown} (expected STREAM, GLOBAL or LEGACY)"
    problem = _content_problem(state, f"a {kind} STATE")
    if problem is not None:
        return problem
    if state_too_deep(state, raw):
        stream = f" of stream {_descriptor_key(state)[0]!r}" if kind == "STREAM" else ""
        return (
            f"a {kind} STATE{stream} nested more than {MAX_DEPTH} levels deep "
            "(the most a state may nest, as `state set` takes it)"
        )
    if sync_type is not None and kind != sync_type:
        return f"{sync_type} and {kind} STATE messages mixed in one sync (the protocol allows one type)"
    return None


def _content_problem(state: dict[str, Any], where: str) -> str | None:
    """What the protocol's AirbyteStateMessage schema refuses in a STATE of a known type, or
    None. Optional there, and so here: a stream's ``stream_state`` (absent is no state, as
    null), a GLOBAL's ``shared_state``, a LEGACY's ``data``."""
    kind = state.get("type") or "LEGACY"
    if kind == "STREAM":
        return _stream_state_problem(state.get("stream"), f"{where}: stream")
    if kind == "GLOBAL":
        shared = state.get("global")
        if not isinstance(shared, dict):
            return f"{where} needs a 'global' object"
        if not isinstance(shared.get("shared_state"), dict | None):
            return f"{where}: global.shared_state must be an object or null"
        streams = shared.get("stream_states", [])
        if not isinstance(streams, list):
            return f"{where}: global.stream_states must be a list"
        for index, stream in enumerate(streams):
            problem = _stream_state_problem(stream, f"{where}: global.stream_states[{index}]")
            if problem is not None:
                return problem
    return None


def _stream_state_problem(stream: Any, where: str) -> str | None:
    """One AirbyteStreamState: ``stream_descriptor.name`` (text) and, when there, ``stream_state``
    (an object, or null to say the stream starts over)."""
    if not isinstance(stream, dict):
        return f"{where} must be an object with stream_descriptor and stream_state"
    descriptor = stream.get("stream_descriptor")
    name = descriptor.get("name") if isinstance(descriptor, dict) else None
    if not isinstance(name, str) or not name:
        return f"{where} needs stream_descriptor.name, the stream's name"
    namespace = descriptor.get("namespace") if isinstance(descriptor, dict) else None
    if namespace is not None and not isinstance(namespace, str):
        return f"{where}: stream_descriptor.namespace of {name!r} must be text or null"
    if not isinstance(stream.get("stream_state"), dict | None):
        return f"{where}: stream_state of {name!r} must be an object or null"
    return None


def _descriptor_key(state: dict[str, Any]) -> tuple[str, str | None]:
    descriptor = (state.get("stream") or {}).get("stream_descriptor") or {}
    return str(descriptor.get("name")), descriptor.get("namespace")


class StateAggregator:
    """The committed state of a connection, built from the STATE messages echoed to it."""

    def __init__(self, initial: list[dict[str, Any]] | None = None) -> None:
        self._type: str | None = None
        self._streams: dict[tuple[str, str | None], dict[str, Any]] = {}
        self._single: dict[str, Any] | None = None
        self._inherited = False
        for state in initial or []:
            self.accept(state)
        # The type a connection had before this sync may change (a source upgraded from LEGACY to
        # per-stream state, or switched to CDC's GLOBAL): the first state of the new type
        # replaces the old state whole, as Airbyte migrates it. Within one sync, types never mix.
        self._inherited = self._type is not None

    def accept(self, state: dict[str, Any]) -> None:
        kind = state_type(state)
        if self._inherited and kind != self._type:
            self._streams, self._single = {}, None
        elif self._type is not None and kind != self._type:
            raise UserInputError(
                f"{self._type} and {kind} STATE messages mixed in one state; "
                "the protocol allows one type at a time"
            )
        self._inherited = False
        self._type = kind
        clean = {k: v for k, v in state.items() if k not in _STATS_FIELDS}
        if kind == "STREAM":
            self._streams[_descriptor_key(clean)] = clean
        else:
            self._single = clean

    @property
    def empty(self) -> bool:
        return self._type is None

    @property
    def type(self) -> str | None:
        return self._type

    def snapshot(self) -> list[dict[str, Any]]:
        """The state as a list of STATE messages, the format ``--state`` reads back."""
        if self._type == "STREAM":
            return list(self._streams.values())
        return [self._single] if self._single is not None else []


def load_state(document: Any) -> list[dict[str, Any]]:
    """Accept a state file as Airbyte and PyAirbyte write it.

    A list of STATE messages (or of whole ``{"type": "STATE", "state": ...}`` messages), one
    STATE object, or a bare legacy state object. Each STATE is checked against the protocol
    (a STREAM state names its stream, its ``stream_state`` is an object), so a malformed
    one is refused here with one line instead of reaching a connector.
    """
    if document is None:
        return []
    items = document if isinstance(document, list) else [document]
    states: list[dict[str, Any]] = []
    for number, item in enumerate(items):
        if not isinstance(item, dict):
            what = _JSON_KINDS.get(type(item), "not an object")
            where = f"state {number} is {what}" if isinstance(document, list) else f"the state is {what}"
            raise UserInputError(f"{where}: a state is a JSON object or a list of STATE objects")
        if item.get("type") == "STATE" and isinstance(item.get("state"), dict):
            item = item["state"]
        if item.get("type") in STATE_TYPES or (isinstance(document, list) and _untyped_legacy(item)):
            where = f"state {number}" if isinstance(document, list) else "the state"
            problem = _content_problem(item, f"{where} ({state_type(item)})")
            if problem is not None:
                raise UserInputError(problem)
            states.append(item)
        elif not isinstance(document, list):
            states.append({"type": "LEGACY", "data": item})
        else:
            raise UserInputError(
                f"state {number} has no type STREAM, GLOBAL or LEGACY (nor a LEGACY 'data'): "
                "a state list holds STATE objects"
            )
    StateAggregator(states)  # refuses mixed types with one clear line
    _refuse_repeated_streams(states)
    return states


_JSON_KINDS = {list: "a list", str: "text", int: "a number", float: "a number", bool: "true/false"}
_JSON_KINDS[type(None)] = "null"


def _untyped_legacy(item: dict[str, Any]) -> bool:
    """A STATE with no type, as legacy sources send it: ``{"data": ...}`` (the protocol reads a
    missing type as LEGACY, and a sync commits it as it came)."""
    return item.get("type") is None and "data" in item and not ({"stream", "global"} & item.keys())


def _refuse_repeated_streams(states: list[dict[str, Any]]) -> None:
    seen: set[tuple[str, str | None]] = set()
    for state in states:
        if state_type(state) != "STREAM":
            continue
        key = _descriptor_key(state)
        if key in seen:
            raise UserInputError(f"the state names stream {key[0]!r} twice: keep one STATE per stream")
        seen.add(key)


def connector_state_file(states: list[dict[str, Any]]) -> Any:
    """What goes into ``input_state.json``: the list of states, or the bare data of a legacy one."""
    if len(states) == 1 and state_type(states[0]) == "LEGACY":
        return states[0].get("data")
    return states


def full_refresh_streams(configured_catalog: dict[str, Any]) -> set[tuple[str, str | None]]:
    """The streams a configured catalog reads in ``full_refresh`` mode, as (name, namespace)."""
    found: set[tuple[str, str | None]] = set()
    for configured in configured_catalog.get("streams", []):
        if configured.get("sync_mode") == "full_refresh":
            stream = configured.get("stream") or {}
            found.add((str(stream.get("name")), stream.get("namespace")))
    return found


def without_streams(
    states: list[dict[str, Any]], streams: set[tuple[str, str | None]]
) -> list[dict[str, Any]]:
    """``states`` without what they hold for ``streams``: their STREAM states are left out, and a
    GLOBAL state's ``stream_states`` lose theirs. A LEGACY state names no stream: kept whole.

    A new sync job starts its full-refresh streams from scratch, as Airbyte's platform does: the
    state a connector left for one (the CDK's page cursor, or its "this full refresh is complete"
    marker) is there to resume the same job's next attempt, not to skip the next job's read.
    """
    if not streams:
        return states
    kept: list[dict[str, Any]] = []
    for state in states:
        kind = state_type(state)
        if kind == "STREAM" and _descriptor_key(state) in streams:
            continue
        shared = state.get("global")
        if kind == "GLOBAL" and isinstance(shared, dict) and isinstance(shared.get("stream_states"), list):
            remaining = [
                entry
                for entry in shared["stream_states"]
                if not (isinstance(entry, dict) and _stream_state_key(entry) in streams)
            ]
            if len(remaining) != len(shared["stream_states"]):
                state = {**state, "global": {**shared, "stream_states": remaining}}
        kept.append(state)
    return kept


def state_streams(states: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The streams a state holds something for, as catalog streams (``name``, ``namespace``):
    its STREAM states' and its GLOBAL state's ``stream_states``. A LEGACY state names none."""
    found: dict[tuple[str, str | None], None] = {}
    for state in states:
        kind, shared = state_type(state), state.get("global")
        if kind == "STREAM":
            found[_descriptor_key(state)] = None
        elif kind == "GLOBAL" and isinstance(shared, dict):
            for entry in shared.get("stream_states") or []:
                found[_stream_state_key(entry)] = None
    return [{"name": name, "namespace": namespace} for name, namespace in found]


def _stream_state_key(entry: dict[str, Any]) -> tuple[str, str | None]:
    descriptor = entry.get("stream_descriptor") or {}
    return str(descriptor.get("name")), descriptor.get("namespace")
