"""destination-postgres's held records: those of an append or overwrite stream after its last state.

They must not be committed before a state covers them or the stream completes (a failed
attempt's retry reads them again), while the open transaction may be committed before that for
other reasons (another stream's state). So each stream keeps them in a spill file of its own on
the destination's disk, in COPY's format; and while nothing else has to be copied after them,
they are also copied straight into the table under a savepoint. A state that covers them then
only releases the savepoint: they were sent once, while the loader converted the records after
them. Anything else to copy, a commit that does not cover them, or a state covering only some of
the streams held this way, first rolls back to the savepoint: from then on these records wait in
their spill files only, and are copied from them once covered.

So a stream whose only state comes at its end, alone in its part of the input (a source reading
one stream after another), is stored once and as fast as one with states all along. Before,
held records were copied into a temporary table and moved with ``INSERT ... SELECT`` once
covered: such a stream cost the server a second copy, half as long again as its load.
"""

from __future__ import annotations

from typing import Any

import psycopg

from ferryman.builtin._postgres_tables import Encoded, Table, copy_chunks, copy_encoded
from ferryman.builtin._spill import Spill, SpillError

SAVEPOINT = "_ferryman_held"


class Holds:
    """The held records of every stream, on the sink's database thread; their spill files in
    ``directory`` (None: the temporary directory)."""

    def __init__(self, conn: psycopg.Connection[Any], tables: list[Table], directory: str | None) -> None:
        self.conn = conn
        self.tables = tables
        self.directory = directory
        self.open = False  # the savepoint, after which only held records were copied

    def keep(self, table: Table, held: Encoded, send: bool) -> None:
        """Hold ``held``: in the stream's spill file, and (when ``send``) under the savepoint
        too, unless the stream's earlier held records are in the spill file only."""
        if not send and table.hold_sent:
            self.before_other_copy()  # a stream's held records are all under the savepoint or none
        spilled_only = not send or (table.holding > 0 and not table.hold_sent)
        try:
            table.hold = table.hold or Spill(self.directory, suffix=".copy")
            for chunk in held.chunks:
                table.hold.append(chunk, 0, 0)
        except SpillError as exc:
            # One line for the attempt's failure; the committed rows stay, the retry resumes.
            raise exc.explained(
                table.label,
                "cannot hold its records after the last state",
                "free space there or set the config field 'spill_directory' to a directory with more room",
            ) from None
        table.hold.lines += held.rows
        if spilled_only:
            return
        if not self.open:
            self.conn.execute(f"SAVEPOINT {SAVEPOINT}")
            self.open = True
        copy_encoded(self.conn, table, table.target, table.names, held)
        table.hold_sent = True

    def before_other_copy(self) -> None:
        """Anything else copied after the savepoint would be rolled back with it: take the held
        records out of the transaction first (they stay in their spill files)."""
        if self.open:
            self.conn.execute(f"ROLLBACK TO SAVEPOINT {SAVEPOINT}")
            self.conn.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
            self.open = False
            for table in self.tables:
                table.hold_sent = False

    def cover(self, table: Table) -> int:
        """A state covers ``table``'s held records: they become part of the open transaction.
        Returns how many."""
        count = table.holding
        if not count:
            return 0
        assert table.hold is not None
        if table.hold_sent and not any(other.hold_sent for other in self.tables if other is not table):
            self.conn.execute(f"RELEASE SAVEPOINT {SAVEPOINT}")
            self.open = table.hold_sent = False
        else:
            self.before_other_copy()
            copy_chunks(self.conn, table, table.target, table.names, table.hold.chunks(), count)
        table.hold.close()  # closed, not emptied: only streams with records held keep a descriptor
        table.hold = None
        return count

    def close(self) -> None:
        for table in self.tables:
            if table.hold is not None:
                table.hold.close()
