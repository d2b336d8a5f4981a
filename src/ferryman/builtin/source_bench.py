"""source-bench: deterministic records, fast enough never to be a benchmark's bottleneck.

Config (all optional)::

    count        records per stream                                       (default 1000)
    streams      how many streams (named stream_0 .. stream_{n-1}, at most
                 100,000), or a list of stream names                      (default 1)
    record_size  approximate bytes per RECORD line, at most 64 MiB        (default 450)
    state_every  a STREAM state after every N records of a stream; 0 means
                 only the one at the end of each stream                    (default 1000)

Every record is ``{"id": n, "name": "record-n", "payload": "..."}`` with ids 1..count. The state
of a stream is ``{"id": <last id emitted>}``: a stream given state ``{"id": N}`` emits ids
N+1..count, in either sync mode. A full-refresh stream resumes too (as the CDK's resumable full
refresh does): the engine hands it a state only in a retry of the job that left it, whose
destination keeps what that state covers; a new job starts it from 1. Records are the same
bytes for the same config and catalog, except ``emitted_at``, which is the start time of the
run (one value for the whole run).

Each configured stream, in catalog order, gets: a STREAM_STATUS STARTED trace, an ESTIMATE
trace with the number of records to come, its records and states, a STREAM_STATUS COMPLETE
trace. Record lines are built by bytes formatting from a template prepared once per stream,
in batches, rather than by serialising a dict per record.
"""

from __future__ import annotations

import time

from ferryman.builtin._runtime import (
    ConfigError,
    Connector,
    Output,
    now_ms,
    object_schema,
    require_int,
    run,
)
from ferryman.protocol import messages

TYPE_CHECKING = False  # typing's, without importing typing (see ferryman.builtin._runtime)
if TYPE_CHECKING:
    from typing import Any

    from ferryman.builtin._catalog import ConfiguredStream, StreamKey

NAME = "source-bench"
BATCH = 2048  # records formatted and written at once, within BATCH_BYTES
BATCH_BYTES = 1 << 20
# Past these a value can only be a slip of the keyboard: a catalog of a million streams is
# hundreds of megabytes, and a record past the worker's longest line (256 MiB) fails the sync.
# ``count`` has none: a huge one is a sync that runs until cancelled, or ids past 64 bits.
MAX_STREAMS = 100_000
MAX_RECORD_SIZE = 64 << 20
_FILLER = b"abcdefghijklmnopqrstuvwxyz0123456789"


class BenchConfig:
    """The parsed config (a plain class: ``dataclasses`` costs a spec more than the rest)."""

    __slots__ = ("count", "record_size", "state_every", "streams")

    def __init__(self, count: int, streams: tuple[str, ...], record_size: int, state_every: int) -> None:
        self.count = count
        self.streams = streams
        self.record_size = record_size
        self.state_every = state_every


def parse_config(raw: dict[str, Any]) -> BenchConfig:
    streams_value = raw.get("streams", 1)
    if isinstance(streams_value, list):
        if not all(isinstance(name, str) and name for name in streams_value):
            raise ConfigError("config field 'streams' must list non-empty stream names")
        if len(set(streams_value)) != len(streams_value):
            raise ConfigError("config field 'streams' lists a stream name twice")
        names = tuple(streams_value)
    else:
        number = require_int(raw, "streams", 1, maximum=MAX_STREAMS)
        names = tuple(f"stream_{i}" for i in range(number))
    return BenchConfig(
        count=require_int(raw, "count", 1000),
        streams=names,
        record_size=require_int(raw, "record_size", 450, maximum=MAX_RECORD_SIZE),
        state_every=require_int(raw, "state_every", 1000),
    )


SPECIFICATION = object_schema(
    {
        "count": {
            "type": "integer",
            "minimum": 0,
            "default": 1000,
            "description": "Records per stream.",
        },
        "streams": {
            "oneOf": [
                {"type": "integer", "minimum": 0, "maximum": MAX_STREAMS},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "uniqueItems": True},
            ],
            "default": 1,
            "description": "Number of streams (stream_0, stream_1, ...) or their names.",
        },
        "record_size": {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_RECORD_SIZE,
            "default": 450,
            "description": "Approximate size in bytes of each RECORD line.",
        },
        "state_every": {
            "type": "integer",
            "minimum": 0,
            "default": 1000,
            "description": "Emit a state after every N records of a stream (0: only at its end).",
        },
        "api_key": {
            "type": "string",
            "airbyte_secret": True,
            "description": "Not used to read anything: a credential to see secrets masked end to end.",
        },
    },
    title="Bench source",
)

RECORD_SCHEMA: dict[str, Any] = object_schema(
    {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "payload": {"type": "string"},
    },
    required=("id", "name", "payload"),
)


def discover(config: BenchConfig) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "json_schema": RECORD_SCHEMA,
            "supported_sync_modes": ["full_refresh", "incremental"],
            "source_defined_cursor": True,
            "default_cursor_field": ["id"],
            "source_defined_primary_key": [["id"]],
        }
        for name in config.streams
    ]


def check(config: BenchConfig) -> str | None:
    return None


def record_template(
    stream: str, namespace: str | None, emitted_at: int, record_size: int, id_digits: int
) -> bytes:
    """A RECORD line with two ``%d`` slots (the id, twice), padded to about ``record_size``.

    ``id_digits`` is the width of a typical id, used to size the padding.
    """
    import orjson  # here, not at the top: ``spec`` never needs it

    # The field order of the Airbyte CDK's models (stream, data, emitted_at, namespace), which
    # is the layout the worker's record path checks without decoding.
    head = b'{"type":"RECORD","record":{"stream":' + orjson.dumps(stream) + b',"data":{"id":'
    bare = head.replace(b"%", b"%%") + b'%d,"name":"record-%d","payload":"'
    tail = b'"},"emitted_at":%d' % emitted_at
    if namespace is not None:
        tail += b',"namespace":' + orjson.dumps(namespace).replace(b"%", b"%%")
    tail += b"}}\n"
    room = max(record_size - (len(bare) - 4 + 2 * id_digits + len(tail)), 0)
    payload = (_FILLER * (room // len(_FILLER) + 1))[:room]
    return bare + payload + tail


def _start_after(stream: ConfiguredStream, states: dict[StreamKey, Any]) -> int:
    state = states.get(stream.key, states.get((None, stream.name)))
    if state is None:
        return 0
    last = state.get("id") if isinstance(state, dict) else None
    if isinstance(last, bool) or not isinstance(last, int) or last < 0:
        raise ConfigError(f"the state of stream '{stream.label}' must be {{\"id\": <integer>}}")
    return last


def _emit_stream(
    config: BenchConfig, stream: ConfiguredStream, start_after: int, emitted_at: int, out: Output
) -> None:
    from ferryman.protocol.codec import encode

    name, namespace, count = stream.name, stream.namespace, config.count
    first = start_after + 1
    out.emit(messages.trace_stream_status(name, "STARTED", now_ms(), namespace))
    out.emit(messages.trace_estimate(name, now_ms(), max(count - start_after, 0), None, namespace))
    template = record_template(name, namespace, emitted_at, config.record_size, len(str(count)))
    write = out.write
    every = config.state_every or max(count, 1)
    batch = max(1, min(BATCH, BATCH_BYTES // len(template)))  # large records: fewer at once
    since_state = 0
    next_id = first
    while next_id <= count:
        stop = min(count + 1, next_id + batch, next_id + every - since_state)
        write(b"".join([template % (i, i) for i in range(next_id, stop)]))
        since_state += stop - next_id
        next_id = stop
        if since_state == every:
            write(encode(messages.stream_state(name, {"id": stop - 1}, namespace, since_state)))
            since_state = 0
    if since_state or next_id == first:
        write(encode(messages.stream_state(name, {"id": next_id - 1}, namespace, since_state)))
    out.emit(messages.trace_stream_status(name, "COMPLETE", now_ms(), namespace))


def read(
    config: BenchConfig,
    catalog: list[ConfiguredStream],
    states: dict[StreamKey, Any],
    out: Output,
) -> None:
    known = set(config.streams)
    emitted_at = int(time.time() * 1000)
    plan = []
    for stream in catalog:
        if stream.name not in known:
            out.log("WARN", f"{NAME}: stream '{stream.label}' is not one of this source's streams")
            continue
        plan.append((stream, _start_after(stream, states)))
    for stream, start_after in plan:
        _emit_stream(config, stream, start_after, emitted_at, out)


CONNECTOR = Connector(
    name=NAME,
    specification=SPECIFICATION,
    parse_config=parse_config,
    check=check,
    discover=discover,
    read=read,
)

if __name__ == "__main__":
    run(CONNECTOR)
