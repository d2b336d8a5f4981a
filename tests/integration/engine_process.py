"""A local engine in a process of its own, for tests that kill or share engines.

    python tests/integration/engine_process.py DATABASE_URL

Runs until SIGTERM (stop claiming, let attempts finish); prints its engine id first.
"""

from __future__ import annotations

import signal
import sys
import threading

from ferryman.engines.local import LocalEngine
from ferryman.store import open_store


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    engine = LocalEngine(open_store(sys.argv[1]))
    print(engine.engine_id, flush=True)
    engine.run(stop)


if __name__ == "__main__":
    main()
