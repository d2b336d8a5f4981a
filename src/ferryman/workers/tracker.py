"""Per-stream counts, and which of them the destination has committed.

The record path only increments two integers of a per-stream list, and notes the list's ``id``
in ``moved`` (the C scan once per run of one stream's records). On each source STATE the counts
of the streams in ``moved`` since the previous STATE are set aside under the state's canonical
content; when the destination echoes a STATE with the same content, those counts (and all before
them) become committed. This is Airbyte's state-delta tracking, keyed by content instead of a
hash.

A STATE, and the supervisor's heartbeat check (``messages_seen``), look at the streams that moved
since the last STATE, never at every stream: a source with 5,000 streams sends 5,000 STATEs at
least, and walking every stream on each made the sync quadratic in the streams.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from ferryman.protocol.state import state_key
from ferryman.workers.models import StreamStats

StreamKey = tuple[str, str | None]
RECORDS, BYTES = 0, 1


class MessageTracker:
    def __init__(self, streams: list[StreamKey]) -> None:
        self.configured = set(streams)
        # Written by the record path only: [records, bytes] per stream.
        self.emitted: dict[StreamKey, list[int]] = {key: [0, 0] for key in streams}
        # What the record path looks keys up in: the configured streams plus aliases for records
        # that leave out (or add) a namespace the catalog has; None marks a stream to drop.
        self.lookup: dict[StreamKey, list[int] | None] = dict(self.emitted)
        # Written by the record path: the ids of the counters that moved since the last STATE.
        self.moved: set[int] = set()
        self._key_of: dict[int, StreamKey] = {id(counter): key for key, counter in self.emitted.items()}
        self._by_name: dict[str, list[StreamKey]] | None = None
        self._at_last_state: dict[StreamKey, tuple[int, int]] = {}
        self._records_at_last_state = 0
        self._pending: deque[tuple[bytes, dict[StreamKey, tuple[int, int]]]] = deque()
        self._committed: dict[StreamKey, list[int]] = {key: [0, 0] for key in streams}
        self._lock = threading.Lock()
        self.committed_reliable = True
        self.states_emitted = 0
        self.states_committed = 0
        self.estimates: dict[StreamKey, tuple[int | None, int | None]] = {}
        self.stream_status: dict[StreamKey, str] = {}

    # -- source side (the record-path thread) --------------------------------------------

    def counter_for(self, key: StreamKey) -> list[int] | None:
        """The counters of a record's stream on first sight of its key; None = not configured."""
        counter = self.emitted.get(key)
        if counter is None:
            if self._by_name is None:
                self._by_name = {}
                for known in self.emitted:
                    self._by_name.setdefault(known[0], []).append(known)
            same_name = self._by_name.get(key[0], [])
            counter = self.emitted[same_name[0]] if len(same_name) == 1 else None
        self.lookup[key] = counter
        return counter

    def source_state(self, state: dict[str, Any]) -> None:
        deltas: dict[StreamKey, tuple[int, int]] = {}
        moved = tuple(self.moved)  # this thread alone adds to it
        self.moved.clear()
        for ident in moved:
            key = self._key_of[ident]
            records, size = self.emitted[key]
            before = self._at_last_state.get(key, (0, 0))
            if records != before[0]:
                deltas[key] = (records - before[0], size - before[1])
                self._at_last_state[key] = (records, size)
                self._records_at_last_state += records - before[0]
        with self._lock:
            self.states_emitted += 1
            self._pending.append((state_key(state), deltas))

    def estimate(self, key: StreamKey, rows: int | None, size: int | None) -> None:
        self.estimates[key] = (rows, size)

    # -- destination side (the destination reader thread) --------------------------------

    def destination_state(self, state: dict[str, Any]) -> None:
        key = state_key(state)
        with self._lock:
            self.states_committed += 1
            if not any(pending_key == key for pending_key, _ in self._pending):
                # A destination may rewrite states; counts are then no longer exact.
                self.committed_reliable = False
                return
            while self._pending:
                pending_key, deltas = self._pending.popleft()
                for stream, (records, size) in deltas.items():
                    committed = self._committed.setdefault(stream, [0, 0])
                    committed[RECORDS] += records
                    committed[BYTES] += size
                if pending_key == key:
                    break

    # -- snapshots ------------------------------------------------------------------------

    def snapshot(self, all_committed: bool = False) -> list[StreamStats]:
        with self._lock:
            committed = {k: tuple(v) for k, v in self._committed.items()}
            reliable = self.committed_reliable
        stats = []
        for key, (records, size) in list(self.emitted.items()):
            done = committed.get(key, (0, 0))
            rows, est_bytes = self.estimates.get(key, (None, None))
            c_records: int | None
            c_bytes: int | None
            if all_committed:
                c_records, c_bytes = records, size
            elif reliable:
                c_records, c_bytes = done[RECORDS], done[BYTES]
            else:
                c_records = c_bytes = None
            stats.append(
                StreamStats(
                    name=key[0],
                    namespace=key[1],
                    records_emitted=records,
                    bytes_emitted=size,
                    records_committed=c_records,
                    bytes_committed=c_bytes,
                    estimated_records=rows,
                    estimated_bytes=est_bytes,
                    status=self.stream_status.get(key),
                )
            )
        return stats

    def all_states_echoed(self) -> bool:
        """Every source STATE was matched by an echo (or there were none)."""
        with self._lock:
            return not self._pending and self.committed_reliable

    def messages_seen(self) -> int:
        """Records plus states from the source: the source heartbeat. Read from another thread
        than the record path's: while a STATE is being taken it may count a stream's records
        twice, which only tells the heartbeat that the source is alive, as it is."""
        # set.copy() runs no Python code, so the record path cannot change the set mid-copy.
        states, at_last_state, moved = self.states_emitted, self._records_at_last_state, self.moved.copy()
        since = 0
        for ident in moved:
            key = self._key_of[ident]
            since += self.emitted[key][RECORDS] - self._at_last_state.get(key, (0, 0))[0]
        return at_last_state + since + states
