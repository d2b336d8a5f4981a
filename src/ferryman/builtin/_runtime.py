"""Command line and output plumbing shared by the built-in connectors.

A connector module describes itself with a :class:`Connector` and calls :func:`main`, which
gives it the Airbyte CDK's command line::

    spec
    check    --config CONFIG
    discover --config CONFIG
    read     --config CONFIG --catalog CATALOG [--state STATE]
    write    --config CONFIG --catalog CATALOG          (messages on stdin)

Only the commands the connector implements are offered; anything else prints the usage on
stderr and exits with 2. A bad config (or catalog, or state) makes ``check`` report a FAILED
connection status and exit 0, and every other command emit a TRACE error with failure type
``config_error`` and exit 1. A :class:`TransientError` (a failure a later attempt may not meet)
becomes a TRACE ``transient_error`` and the same line on stderr, and exit 1, in ``check`` too (as
the Airbyte CDK does for any failure but a config error): it says nothing of the config. An unexpected
exception becomes a TRACE ``system_error`` with its stack trace inside the message, and exit 1.
Nothing but protocol messages is written to stdout.

``spec`` is answered before anything but the standard library's ``json`` is imported: the spec of
a built-in (a spec job, ``sources create``) costs little more than starting Python. The other
commands import what they need (argparse, orjson, msgspec, the catalog helpers) when they run,
and so should the connector modules: their top level stays light, their heavy imports live in
the functions that need them.

Numbers in the config, catalog and state files are read exactly: an integer past 64 bits stays
an integer (orjson alone reads ``99999999999999999999999`` as ``1e+23``), and a config number
written with a fraction or an exponent keeps its text for the error that refuses it.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

from ferryman.open_files import describe, is_exhausted, raise_limit
from ferryman.protocol import messages
from ferryman.quick_exit import leave

# typing.TYPE_CHECKING without importing typing: typing (with the re and enum it imports) costs
# a spec more than everything else it imports. The modules of the spec path use this idiom.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import Any, BinaryIO

    from ferryman.builtin._catalog import ConfiguredStream, StreamKey

BUFFER_SIZE = 1 << 20
DRAFT_07 = "http://json-schema.org/draft-07/schema#"


class ConfigError(Exception):
    """The config, catalog or state handed to a connector cannot be used."""


class TransientError(Exception):
    """A failure that the next attempt may not meet (a server short of something others held),
    said in one line that tells what to do if it keeps coming; retried, unlike a config error."""


def now_ms() -> float:
    return time.time() * 1000


class Output:
    """Protocol messages to stdout through one large buffer."""

    def __init__(self, fd: int = 1) -> None:
        self._fd = fd
        self._file: BinaryIO = open(fd, "wb", buffering=BUFFER_SIZE, closefd=False)  # noqa: SIM115
        self.write: Callable[[bytes], int] = self._file.write

    def emit(self, message: dict[str, Any]) -> None:
        from ferryman.protocol.codec import encode  # msgspec and orjson: not for ``spec``

        self._file.write(encode(message))

    def state(self, line: bytes) -> None:
        """Echo one STATE line (newline included or not) and push it out at once."""
        self._file.write(line if line.endswith(b"\n") else line + b"\n")
        self._file.flush()

    def log(self, level: str, message: str) -> None:
        self.emit(messages.log(level, message))

    def flush(self) -> None:
        self._file.flush()

    def reader_gone(self) -> bool:
        """Whether stdout is a pipe whose reader has closed it (``poll`` flags the write end of
        such a pipe with POLLERR, on Linux and the BSDs): nothing written now can arrive. False
        for files, terminals, /dev/null, or where poll cannot tell."""
        try:
            import select

            poller = select.poll()
            poller.register(self._fd, select.POLLOUT)
            return any(events & select.POLLERR for _, events in poller.poll(0))
        except (OSError, ValueError, AttributeError):
            return False

    def discard(self) -> None:
        """The reader went away: point stdout at /dev/null so later flushes cannot fail."""
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._fd)
            os.close(devnull)


class Connector:
    """What a built-in connector implements.

    ``parse_config`` turns the raw config object into the connector's typed config, raising
    :class:`ConfigError` when it cannot. ``check`` raises (any exception) when the connection
    does not work and may return a message for a successful check; ``check``, ``discover``,
    ``read`` and ``write`` take what ``parse_config`` returns. (A plain class, neither a
    dataclass nor generic: ``dataclasses`` imports ``inspect``, ``Generic`` needs ``typing``.)
    """

    def __init__(
        self,
        *,
        name: str,
        specification: dict[str, Any],
        parse_config: Callable[[Any], Any],
        check: Callable[[Any], str | None],
        spec_extra: dict[str, Any] | None = None,
        discover: Callable[[Any], list[dict[str, Any]]] | None = None,
        read: Callable[[Any, list[ConfiguredStream], dict[StreamKey, Any], Output], None] | None = None,
        write: Callable[[Any, list[ConfiguredStream], Output], None] | None = None,
    ) -> None:
        self.name = name
        self.specification = specification
        self.parse_config = parse_config
        self.check = check
        self.spec_extra = spec_extra
        self.discover = discover
        self.read = read
        self.write = write


def _parser(connector: Connector) -> argparse.ArgumentParser:
    import argparse

    parser = argparse.ArgumentParser(prog=connector.name, description=f"{connector.name} connector")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("spec", help="print the connector's specification")
    check = commands.add_parser("check", help="test the configuration")
    check.add_argument("--config", required=True)
    if connector.discover is not None:
        discover = commands.add_parser("discover", help="list the streams")
        discover.add_argument("--config", required=True)
    if connector.read is not None:
        read = commands.add_parser("read", help="emit records and states")
        read.add_argument("--config", required=True)
        read.add_argument("--catalog", required=True)
        read.add_argument("--state")
    if connector.write is not None:
        write = commands.add_parser("write", help="load the messages read from stdin")
        write.add_argument("--config", required=True)
        write.add_argument("--catalog", required=True)
    return parser


def _load_json(path: str, what: str, decode: Callable[[bytes], Any] | None = None) -> Any:
    """The JSON document in ``path``, read by ``decode`` (by default the protocol's ``loads``:
    orjson, with integers past 64 bits exact, which orjson alone reads as floats)."""
    import orjson

    from ferryman.protocol.codec import loads

    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror}") from exc
    try:
        return (decode or loads)(data)
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"the {what} file {path} is not valid JSON: {exc}") from exc


class WrittenNumber(float):
    """A config number written with a fraction or an exponent: a float that shows as it was
    written (``1e2``, not ``100.0``), so that a value refused is named as the user wrote it."""

    __slots__ = ("text",)
    text: str

    def __new__(cls, text: str) -> WrittenNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number

    def __repr__(self) -> str:
        return self.text

    __str__ = __repr__


def decode_config(data: bytes) -> Any:
    """A config file's JSON: integers of any size exact, other numbers as :class:`WrittenNumber`.
    What msgspec refuses is read by orjson for its reason, which says where (line and column)."""
    import msgspec

    from ferryman.protocol.codec import loads

    try:
        return msgspec.json.Decoder(float_hook=WrittenNumber).decode(data)
    except (msgspec.DecodeError, RecursionError):
        return loads(data)  # orjson's error, which says where; what it reads after all, it reads


def _load_config(connector: Connector, path: str) -> Any:
    raw = _load_json(path, "config", decode_config)
    if not isinstance(raw, dict):
        raise ConfigError("the config must be a JSON object")
    return connector.parse_config(raw)


def _load_catalog(path: str) -> list[ConfiguredStream]:
    from ferryman.builtin._catalog import parse_catalog

    try:
        return parse_catalog(_load_json(path, "catalog"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _load_state(path: str | None) -> dict[StreamKey, Any]:
    if path is None:
        return {}
    from ferryman.builtin._catalog import parse_input_state

    try:
        return parse_input_state(_load_json(path, "state"))
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _run_check(connector: Connector, args: argparse.Namespace, out: Output) -> None:
    try:
        note = connector.check(_load_config(connector, args.config))
    except TransientError:
        raise  # not a verdict on the config: a TRACE transient_error, for a later attempt
    except Exception as exc:
        out.emit(messages.connection_status(False, str(exc) or type(exc).__name__))
    else:
        out.emit(messages.connection_status(True, note))


def _dispatch(connector: Connector, args: argparse.Namespace, out: Output) -> None:
    command: str = args.command
    if command == "spec":
        out.emit(messages.spec(connector.specification, **(connector.spec_extra or {})))
    elif command == "check":
        _run_check(connector, args, out)
    elif command == "discover" and connector.discover is not None:
        streams = connector.discover(_load_config(connector, args.config))
        out.emit(messages.catalog(streams))
    elif command == "read" and connector.read is not None:
        config = _load_config(connector, args.config)
        connector.read(config, _load_catalog(args.catalog), _load_state(args.state), out)
    elif command == "write" and connector.write is not None:
        config = _load_config(connector, args.config)
        connector.write(config, _load_catalog(args.catalog), out)


def main(connector: Connector, argv: Sequence[str] | None = None) -> int:
    """Run one command of ``connector``; returns the process exit code."""
    raise_limit()  # a file or two per stream: thousands of streams pass a soft limit of 1024
    if list(sys.argv[1:] if argv is None else argv) == ["spec"]:
        return _spec(connector)
    args = _parser(connector).parse_args(argv)
    out = Output()
    code = 0
    try:
        _dispatch(connector, args, out)
    except ConfigError as exc:
        out.emit(messages.trace_error(str(exc), now_ms(), failure_type="config_error"))
        code = 1
    except BrokenPipeError:
        out.discard()
        return 1
    except TransientError as exc:
        sys.stderr.write(f"{exc}\n")
        out.emit(messages.trace_error(str(exc), now_ms(), failure_type="transient_error"))
        code = 1
    except Exception as exc:
        import traceback

        stack = traceback.format_exc()
        full = _disk_full(connector.name, exc)
        sys.stderr.write(stack if full is None else full + "\n")
        text = full or (f"{connector.name} failed: {exc}" if str(exc) else f"{connector.name} failed")
        out.emit(messages.trace_error(text, now_ms(), internal_message=repr(exc), stack_trace=stack))
        code = 1
    try:
        out.flush()
    except BrokenPipeError:
        out.discard()
        return 1
    return code


def _disk_full(name: str, exc: Exception) -> str | None:
    """The one line for a write refused for lack of space (or quota), naming the file, or for a
    file refused for too many open ones; None for any other failure."""
    import errno

    if isinstance(exc, OSError) and is_exhausted(exc):
        return f"{name}: {describe(exc)}"
    if not isinstance(exc, OSError) or exc.errno not in (errno.ENOSPC, errno.EDQUOT):
        return None
    what = "no space left" if exc.errno == errno.ENOSPC else "the disk quota is used up"
    where = f" writing {exc.filename}" if exc.filename else ""
    return (
        f"{name}: {what} on the device{where}: free space there, or point the destination at another"
        " disk, then sync again (what was committed is kept; the sync resumes from its last state)"
    )


def _spec(connector: Connector) -> int:
    """The SPEC line, written by :func:`json_text`: orjson and msgspec, or even the standard
    library's json (which imports re, and re enum), cost more to import than the whole answer."""
    message = messages.spec(connector.specification, **(connector.spec_extra or {}))
    out = Output()
    try:
        out.write(json_text(message).encode() + b"\n")
        out.flush()
    except BrokenPipeError:
        out.discard()
        return 1
    return 0


# JSON string escapes: the two characters that must be escaped, and every control character.
_ESCAPES = {ord('"'): '\\"', ord("\\"): "\\\\"} | {code: f"\\u{code:04x}" for code in range(0x20)}


def json_text(value: Any) -> str:
    """``value`` (dicts with string keys, lists, strings, integers, floats, booleans, None) as
    compact JSON, UTF-8 left as is: enough for a connector's own spec, which is all it is for."""
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPES) + '"'
    if value is None or isinstance(value, bool):
        return "null" if value is None else "true" if value else "false"
    if isinstance(value, int | float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} has no JSON form")
        return repr(value)
    if isinstance(value, dict):
        return (
            "{" + ",".join(json_text(str(key)) + ":" + json_text(item) for key, item in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_text(item) for item in value) + "]"
    raise TypeError(f"{type(value).__name__} has no JSON form")


def run(connector: Connector) -> None:
    """``python -m`` entry point: run and exit with the command's status (without the
    interpreter's teardown: the worker waits for this process to end)."""
    leave(main(connector))


def object_schema(properties: dict[str, Any], required: Sequence[str] = (), **extra: Any) -> dict[str, Any]:
    """A draft-07 schema for a JSON object with the given properties."""
    schema: dict[str, Any] = {"$schema": DRAFT_07, "type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    schema.update(extra)
    return schema


def require_int(
    config: dict[str, Any], key: str, default: int, minimum: int = 0, maximum: int | None = None
) -> int:
    """An integer field, exact whatever its size (the config is read so); a wrong value is named
    as the config file has it (``1e2``, ``99999999999999999999999``)."""
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"config field '{key}' must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(f"config field '{key}' must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"config field '{key}' must be at most {maximum}, got {value}")
    return value


def require_str(config: dict[str, Any], key: str, default: str | None = None) -> str:
    value = config.get(key, default)
    if not isinstance(value, str) or not value:
        if value is None:
            raise ConfigError(f"config field '{key}' is required")
        raise ConfigError(f"config field '{key}' must be a non-empty string, got {value!r}")
    return value
