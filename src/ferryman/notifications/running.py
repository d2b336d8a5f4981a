"""The dispatcher on a thread for as long as a long-running command runs (``ferryman server``,
``ferryman scheduler``), with its delivery lines on stderr."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ferryman.notifications.dispatcher import DeliveryPolicy, Dispatcher, public_url
from ferryman.store.base import JobStore

DEFAULT_URL = "http://127.0.0.1:8000"  # where `ferryman server` listens unless told otherwise


@contextmanager
def dispatching(
    store: JobStore, base_url: str | None, say: Callable[[str], None], default_url: str = DEFAULT_URL
) -> Iterator[None]:
    """Post the outbox's events while the block runs. ``base_url``: None turns it off; "" takes
    FERRYMAN_PUBLIC_URL, else ``default_url``, for the job links in payloads."""
    if base_url is None:
        say("notifications: off (--no-notifications)")
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("ferryman.notifications")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    policy = DeliveryPolicy.from_env()
    dispatcher = Dispatcher(store, base_url or public_url(default_url), policy)
    say(f"notifications: on, job links under {dispatcher.base_url}")
    stop = threading.Event()
    thread = dispatcher.start(stop)
    try:
        yield
    finally:
        stop.set()
        thread.join(2 * policy.timeout_s + 5)  # the pass in flight, then the last one: each post is bounded
        log.removeHandler(handler)
