"""The store of a long-running command (worker, scheduler): waited for while it refuses in a way
that passes on its own (see :mod:`ferryman.store.waiting`); SIGTERM or Ctrl-C meanwhile ends the
command at once, as an interrupt (exit 130), in the middle of a connect too."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ferryman.cli.common import fail, note, print_json

if TYPE_CHECKING:
    from ferryman.store import SqlJobStore


def open_waiting(home: Path | None, json: bool) -> SqlJobStore:
    """The store, once it answers; a ``store_unavailable`` event (``--json``) or a line while not."""
    from ferryman.store.waiting import Stopped, StopSignals, open_store_waiting, wait_bound_s

    def say(line: str, reason: str, retry_in_s: float) -> None:
        if json:
            event = {
                "event": "store_unavailable",
                "reason": reason,
                "retry_in_s": retry_in_s,
                "starting": True,
            }
            print_json(event, [], one_line=True)
        else:
            note(line)

    bound_s = wait_bound_s()
    try:
        with StopSignals() as signals:
            return open_store_waiting(home, say, signals, bound_s, trying=signals.armed)
    except Stopped:
        fail("interrupted while waiting for the store", 130)
