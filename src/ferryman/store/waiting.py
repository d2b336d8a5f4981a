"""Open the store for a long-running command, waiting while it refuses in a way that passes.

``ferryman worker``, ``scheduler`` and ``server`` started beside their PostgreSQL (docker-compose,
systemd) often start first: the server is not listening yet, is starting up, or has every slot
taken. They wait for it as a running worker waits for a store that went away: one line saying
what is wrong and that they wait (again every minute while it lasts, not a line per try), tries
1 s, 2 s, 4 s ... 30 s apart, until the store answers (then the schema is migrated as usual) or
the command is stopped. A refusal that does not pass on its own (a wrong password, an unknown
database, a damaged or read-only file: ``StoreUnavailable.passes`` is False) ends it at once.

``FERRYMAN_STORE_WAIT_S`` bounds the wait: unset, for ever (a supervisor's restart loop gains
nothing over waiting, and the line says why it waits); a number of seconds, then the last refusal
ends the command as it would have at once; 0, no wait at all.

SIGTERM or Ctrl-C ends the wait at once, even in the middle of a connect to a server that takes
the connection and never answers (frozen, or its packets dropped), which lasts up to
``connect_timeout`` (store/db.py): while a try is under way, :class:`StopSignals`' handler raises
:class:`Stopped` where the main thread is, instead of only recording the signal. That is safe
there: nothing of the command has begun, the process ends right after, and the server rolls back
whatever a connection had begun (a migration is one transaction). Outside a try (a pause, the
waiting line) the signal is only recorded and acted on at the next poll: raised in the middle of
a print, it would leave the console's buffer to be printed twice.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from ferryman.errors import FerrymanError, StoreUnavailable, UserInputError
from ferryman.store import SqlJobStore, open_store

WAIT_ENV = "FERRYMAN_STORE_WAIT_S"
TELL_AGAIN_S = 60.0  # how often the waiting line is repeated while the store stays away
SIGNAL_POLL_S = 0.1  # how soon a stop is acted on during a pause
T = TypeVar("T")


class Backoff:
    """1 s, 2 s, 4 s ... up to 30 s between tries at a store that does not answer: at start-up
    here, and in a running engine's loop (engines/local.py)."""

    FIRST_S, MAX_S = 1.0, 30.0

    def __init__(self) -> None:
        self._next = self.FIRST_S

    def next_s(self) -> float:
        delay, self._next = self._next, min(self._next * 2, self.MAX_S)
        return delay

    def reset(self) -> None:
        self._next = self.FIRST_S


class Stopped(BaseException):
    """The command was told to stop (SIGTERM, Ctrl-C) while it waited for the store. Not an
    Exception, as KeyboardInterrupt is not: raised from a signal handler anywhere in a connect or a
    migration, no ``except Exception`` on the way may take it for a database error."""


class StopSignals:
    """SIGINT and SIGTERM while the store is waited for (a ``with`` block installs the handlers
    and puts the previous ones back): recorded, and raised as :class:`Stopped` at once while a try
    is :meth:`armed` (see the module doc). Called, it tells whether one came."""

    def __init__(self) -> None:
        self.received = False
        self._armed = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        self._previous = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def __call__(self) -> bool:
        return self.received

    def _handle(self, signum: int, frame: object) -> None:
        self.received = True
        if self._armed:
            raise Stopped

    @contextmanager
    def armed(self) -> Iterator[None]:
        if self.received:
            raise Stopped
        self._armed = True
        try:
            yield
        finally:
            self._armed = False


def wait_bound_s() -> float | None:
    """How long to wait for the store at start-up: None for ever (``FERRYMAN_STORE_WAIT_S``)."""
    raw = os.environ.get(WAIT_ENV, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        raise UserInputError(f"{WAIT_ENV} must be a number of seconds, got {raw!r}") from None
    if value != value or value < 0:  # NaN, or negative
        raise UserInputError(f"{WAIT_ENV} must be a number of seconds from 0 up, got {raw!r}")
    return None if value == float("inf") else value


def open_store_waiting(
    home: Path | None,
    say: Callable[[str, str, float], None],
    stopped: Callable[[], bool],
    bound_s: float | None = None,
    opener: Callable[[], SqlJobStore] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    trying: Callable[[], AbstractContextManager[object]] = nullcontext,
) -> SqlJobStore:
    """The store (``open_store(home=home)``), once it answers (see :func:`keep_trying`)."""
    opener = opener or (lambda: open_store(home=home))

    def passes(exc: FerrymanError) -> bool:
        return isinstance(exc, StoreUnavailable) and exc.passes

    return keep_trying(
        opener, "the store", passes, say, stopped, bound_s, monotonic, sleep, trying, on_stop=_close
    )


def _close(store: SqlJobStore) -> None:
    store.close()


def keep_trying(
    attempt: Callable[[], T],
    what: str,
    passes: Callable[[FerrymanError], bool],
    say: Callable[[str, str, float], None],
    stopped: Callable[[], bool],
    bound_s: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    trying: Callable[[], AbstractContextManager[object]] = nullcontext,
    on_stop: Callable[[T], None] | None = None,
) -> T:
    """``attempt()``'s result, once it stops raising a :class:`FerrymanError` that ``passes``
    (the store, or Temporal, not up yet). ``say`` gets the waiting line (naming ``what``), the
    reason and the seconds to the next try, at the first refusal and once a minute after;
    ``stopped`` is polled during each pause and raises :class:`Stopped` once true; each try runs
    inside ``trying()`` (:meth:`StopSignals.armed`); after ``bound_s`` (None: never) the last
    refusal is raised. ``on_stop`` gets a result won as a stop came, before Stopped is raised."""
    began = monotonic()
    told_at: float | None = None
    backoff = Backoff()
    while True:
        try:
            with trying():
                result = attempt()
        except FerrymanError as exc:
            if not passes(exc):
                raise
            pause = backoff.next_s()
            waited = monotonic() - began
            if bound_s is not None and waited >= bound_s:
                if told_at is None:
                    raise  # FERRYMAN_STORE_WAIT_S=0: the line as before, no wait
                raise type(exc)(
                    f"{exc.message} (gave up after waiting {waited:.0f}s: {WAIT_ENV}={bound_s:g})"
                ) from None
            if told_at is None or monotonic() - told_at >= TELL_AGAIN_S:
                told_at = monotonic()
                until_when = "until it answers" if bound_s is None else f"for up to {bound_s:g}s"
                line = f"waiting for {what} {until_when} (SIGTERM or Ctrl-C to stop): {exc.message}"
                say(line, exc.message, pause)
        else:
            # A stop asked during a try and not raised there (no StopSignals, or it came as the
            # try ended) is a stop too: the command used to go on and start, and took a second
            # signal to end.
            if stopped():
                if on_stop is not None:
                    on_stop(result)
                raise Stopped
            return result
        until = monotonic() + (
            pause if bound_s is None else min(pause, max(0.0, began + bound_s - monotonic()))
        )
        while monotonic() < until:
            if stopped():
                raise Stopped
            sleep(min(SIGNAL_POLL_S, max(0.0, until - monotonic())))
        if stopped():
            raise Stopped
