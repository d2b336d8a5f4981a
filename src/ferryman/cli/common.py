"""What every command shares: consoles, options, exit codes, JSON output and masking.

Exit codes: 0 success, 1 the job (or the check) failed, 2 bad usage or bad input, or a store or
disk this command cannot use (nothing ran, so nothing failed).

Rich is imported on the first line printed for people (:func:`out`, :func:`err`): a command
that prints JSON never loads it (~20 ms and a few MB on every run).
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import orjson
import typer

from ferryman.errors import ConnectionBusy, FerrymanError, FieldError, StoreUnavailable, UserInputError
from ferryman.jobs.failures import FailureReason, most_specific_message
from ferryman.protocol.catalog import StreamChoice
from ferryman.protocol.codec import dumps
from ferryman.protocol.stream_refs import StreamRef, split_written
from ferryman.protocol.sync_modes import StreamMode, parse_mode
from ferryman.secrets import mask_strings, mask_text
from ferryman.views import aware as _aware
from ferryman.views import seconds_between as seconds_between
from ferryman.views import utcnow as utcnow

if TYPE_CHECKING:
    from rich.console import Console


@cache
def out() -> Console:
    """The console for people on stdout, made on first use: strings are plain text, control
    characters visible (see :mod:`ferryman.cli.terminal`)."""
    return _stdout_console_class()()


@cache
def err() -> Console:
    """The console for people on stderr, made on first use, plain as :func:`out`."""
    from ferryman.cli.terminal import console_class

    return console_class()(stderr=True)


@cache
def _stdout_console_class() -> type[Console]:
    from ferryman.cli.terminal import console_class

    class _Console(console_class()):  # type: ignore[misc]
        def on_broken_pipe(self) -> None:
            # Rich exits 1 here, as if the command had failed; guarded() ends it as `cat` would
            # (exit 0) when the reader went away (`ferryman jobs list | head -1`).
            self.quiet = True
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    return _Console


JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
ConfigOption = Annotated[str, typer.Option("--config", "-c", help="JSON/YAML file or inline JSON.")]


def fail(message: str, code: int) -> NoReturn:
    """One line on stderr and exit; ``message`` is printed as it reads (no markup)."""
    from rich.text import Text

    from ferryman.cli.terminal import plain

    line = Text.assemble(("error:", "bold red"), " ", plain(message))
    err().print(line, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# The service's field names (see FieldError) as this surface's flags.
FLAGS = {
    "namespace_definition": "--namespace",
    "namespace_format": "--namespace-format",
    "streams": "--stream, e.g. --stream users:incremental:append",
    "cursor_field": "--cursor",
    "primary_key": "--primary-key",
}


def guarded(action: Callable[[], int]) -> None:
    """Run a command; bad input, or a store or disk it cannot use, becomes one line and exit 2;
    a failed job exit 1."""
    try:
        code = action()
    except FieldError as exc:
        fail(exc.phrase(FLAGS), 2)
    except ConnectionBusy as exc:  # the store says what is live; the CLI says how to cancel it
        job_id = exc.context.get("job_id")
        fail(f"{exc.message} (ferryman jobs cancel {job_id})" if job_id else str(exc), 2)
    except (UserInputError, StoreUnavailable) as exc:  # the store's message names it and what to do
        fail(str(exc), 2)
    except FerrymanError as exc:
        fail(str(exc), 1)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BrokenPipeError as exc:
        if not stdout_reader_gone():
            # A pipe or socket other than stdout (the store's, a server's, a connector's): the
            # command failed, and saying nothing with exit 0 would hide it.
            gone = "the other end of a pipe or connection this command used went away"
            fail(f"{exc.strerror or exc}: {gone}", 2)
        # The reader went away (`ferryman jobs logs 7 | head`): stop quietly, as `cat` would.
        reader_gone()
        code = 0
    except OSError as exc:  # the machine said no: a full disk, a missing or unwritable directory
        where = f": {exc.filename}" if exc.filename else ""
        fail(f"{exc.strerror or exc}{where} (check FERRYMAN_HOME and the disk)", 2)
    raise typer.Exit(code)


def stdout_reader_gone() -> bool:
    """Whether stdout is a pipe or socket whose reader has closed it (the kernel reports an
    error condition on the writing end): a tty, a file or a pipe still read is not."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    try:
        events = poller.poll(0)
    except OSError:
        return False
    return any(mask & (select.POLLERR | select.POLLHUP) for _, mask in events)


def reader_gone() -> None:
    """Stdout's reader went away: what is still printed goes nowhere, without an error."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def print_json(document: Any, secrets: list[str], one_line: bool = False) -> None:
    """``document`` on stdout with the ``secrets`` masked; ``one_line`` for a stream of events."""
    option = 0 if one_line else orjson.OPT_INDENT_2
    text = dumps(mask_strings(document, secrets), option=option, default=_encode)
    sys.stdout.write(text.decode() + "\n")
    sys.stdout.flush()


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def say(text: str) -> None:
    """A line for people on stdout, printed as it reads (no markup, no highlighting, control
    characters visible)."""
    out().print(text, highlight=False, soft_wrap=True, markup=False)


def note(text: str) -> None:
    """A line for people on stderr, printed as :func:`say` prints."""
    err().print(text, highlight=False, soft_wrap=True, markup=False)


def print_failures(failures: list[FailureReason], secrets: list[str]) -> None:
    for failure in failures:
        print_failure(failure.to_dict(), secrets)


def failure_line(failure: dict[str, Any], secrets: list[str], brief: bool = False) -> str:
    """One failure (a ``FailureReason.to_dict()``) as text, its secret values masked, with its
    most specific message (see docs/cli.md); ``brief``: only the first line of that message
    (connector stderr tails can be long)."""
    retry = "retryable" if failure.get("retryable", True) else "not retryable"
    message, internal, stack = (
        mask_text(str(failure.get(key) or ""), secrets)
        for key in ("message", "internal_message", "stack_trace")
    )
    message = most_specific_message(message, internal, stack)
    if brief and "\n" in message.strip():
        message = message.strip().splitlines()[0] + " [...]"
    stream = f" [stream {failure['stream']}]" if failure.get("stream") else ""
    return f"{failure.get('origin')} {failure.get('type')}{stream} ({retry}): {message}"


def print_failure(failure: dict[str, Any], secrets: list[str], brief: bool = False) -> None:
    note(failure_line(failure, secrets, brief))


def cancel_on_signals() -> threading.Event:
    """Ctrl-C or SIGTERM cancels an ad-hoc run: connectors get SIGTERM, grace, then SIGKILL."""
    cancel = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        note("cancelling: stopping the connectors (again to abort)")
        cancel.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return cancel


class SignalCounter:
    """Counts SIGINT/SIGTERM without acting in the handler: the main loop decides what to do.

    A handler runs between two bytecodes of the main thread, possibly inside a store call or
    while it holds a lock, so it only records that a signal came.
    """

    def __init__(self) -> None:
        self.count = 0
        self._previous = {
            signum: signal.signal(signum, self._handle) for signum in (signal.SIGINT, signal.SIGTERM)
        }

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)


# -- dates and durations -----------------------------------------------------------------------


def when(moment: datetime | None, short: bool = False) -> str:
    """A moment in the machine's local time, to the second, naming the zone ("2026-07-01
    08:00:00 EDT": a cron in another zone, or a server far from its user, is read right);
    ``short`` (table columns): without the year and the zone. "" for none."""
    if moment is None:
        return ""
    return _aware(moment).astimezone().strftime("%m-%d %H:%M:%S" if short else "%Y-%m-%d %H:%M:%S %Z")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {rest:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)  # a Feb 29 cron's next run: 455d 00h, not 10920h 00m
    return f"{days}d {hours:02d}h"


def count(value: int | None) -> str:
    return "?" if value is None else f"{value:,}"


# -- options shared by the ad-hoc sync and connections ------------------------------------------


class Namespace(StrEnum):
    source = "source"
    destination = "destination"
    customformat = "customformat"


StreamsOption = Annotated[
    str | None,
    typer.Option(
        "--streams",
        help="Comma-separated streams (default: all), each NAME or NAMESPACE.NAME as listed "
        "(quote a part that holds a dot, comma or colon: '\"my.schema\".users').",
    ),
]
NamespaceOption = Annotated[Namespace, typer.Option("--namespace", help="Where streams land.")]
FormatOption = Annotated[
    str | None,
    typer.Option("--namespace-format", help="With customformat: e.g. 'raw_${SOURCE_NAMESPACE}'."),
]
PrefixOption = Annotated[str, typer.Option("--prefix", help="Prefix for destination stream names.")]
FullRefreshOption = Annotated[
    bool, typer.Option("--full-refresh", help="Full refresh + overwrite every stream.")
]


StreamOption = Annotated[
    list[str] | None,
    typer.Option(
        "--stream",
        help="A stream and its mode, e.g. users:incremental:append_dedup or "
        "crm.products:full_refresh:overwrite (or Airbyte's users:incremental_deduped_history); "
        "just 'users' for the best mode. Write a stream NAMESPACE.NAME when two namespaces "
        "have it. Repeatable.",
    ),
]
CursorOption = Annotated[
    list[str] | None,
    typer.Option(
        "--cursor", help="STREAM=FIELD[.SUBFIELD]: a cursor where the source defines none. Repeatable."
    ),
]
PrimaryKeyOption = Annotated[
    list[str] | None,
    typer.Option(
        "--primary-key",
        help="STREAM=FIELD[,FIELD...]: a primary key where the source defines none. Repeatable.",
    ),
]


def stream_names(streams: str | None) -> list[str] | None:
    if not streams:
        return None
    return [s.strip() for s in split_written(streams, ",") if s.strip()] or None


def stream_choices(
    streams: list[str] | None, cursors: list[str] | None, primary_keys: list[str] | None
) -> list[StreamChoice]:
    """The per-stream requests of ``--stream``, ``--cursor`` and ``--primary-key``, one per stream
    (written ``name`` or ``namespace.name``: see ``ferryman.protocol.stream_refs``)."""
    modes: dict[StreamRef, StreamMode | None] = {}
    for text in streams or []:
        name, _, mode = _cut(text, ":")
        if not name.strip():
            raise UserInputError(f"--stream {text!r}: expected STREAM or STREAM:SYNC_MODE:DESTINATION_MODE")
        modes[StreamRef.parse(name)] = parse_mode(mode.strip()) if mode.strip() else None
    cursor = {ref: [p.strip() for p in value.split(".")] for ref, value in _pairs(cursors, "--cursor")}
    keys = {
        ref: [[p.strip()] for p in value.split(",")] for ref, value in _pairs(primary_keys, "--primary-key")
    }
    refs = list(dict.fromkeys([*modes, *cursor, *keys]))
    return [StreamChoice(ref, modes.get(ref), cursor.get(ref), keys.get(ref)) for ref in refs]


def _cut(text: str, separator: str) -> tuple[str, str, str]:
    """``str.partition`` at the first ``separator`` outside a quoted stream name."""
    head, *rest = split_written(text, separator)
    return head, separator if rest else "", separator.join(rest)


def _pairs(values: list[str] | None, option: str) -> list[tuple[StreamRef, str]]:
    pairs = []
    for text in values or []:
        name, _, value = _cut(text, "=")
        parts = [p.strip() for p in value.replace(".", ",").split(",")]
        if not name.strip() or not value or not all(parts):
            raise UserInputError(f"{option} {text!r}: expected STREAM=FIELD, e.g. users=updated_at")
        pairs.append((StreamRef.parse(name), value.strip()))
    return pairs
