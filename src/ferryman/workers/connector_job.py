"""Workers that talk to one connector: spec, check and discover.

The worker reads the connector's stdout until it ends, gives it the exit grace period, and
returns the first SPEC, CONNECTION_STATUS or CATALOG. A TRACE error is the job's failure; a
check that answers FAILED is a completed job whose check failed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ferryman.connectors import ResolvedConnector
from ferryman.jobs.failures import FailureOrigin, FailureReason, FailureType
from ferryman.launchers import ConnectorLauncher, Launcher, LaunchRequest
from ferryman.launchers.base import ConnectorProcess
from ferryman.protocol.codec import parse_message
from ferryman.protocol.depth import MAX_DEPTH, nests_deeper_than
from ferryman.protocol.lenient import read_leniently
from ferryman.workers.attempt_log import AttemptLog
from ferryman.workers.files import LOG_FILE, SOURCE_CONFIG, forget_configs, write_private_json
from ferryman.workers.lifecycle import WORKER, ConnectorLifecycle, Phase, StderrDrain
from ferryman.workers.lines import MAX_LINE_BYTES, LineTooLong, lines_of
from ferryman.workers.local_paths import local_root_for, to_host, to_mount
from ferryman.workers.models import AttemptContext, ConnectorInput, ConnectorJobOutput
from ferryman.workers.notices import (
    as_object,
    control_config,
    lenient_trace_error,
    trace_kept,
    unsaved_update,
)

_TICK_S = 0.05
_WANTED = {"spec": "SPEC", "check": "CONNECTION_STATUS", "discover": "CATALOG"}
_OTHER_SHOWN = 120  # characters of a non-protocol stdout line quoted in a failure


def _now_ms() -> int:
    return int(time.time() * 1000)


class ConnectorJobWorker:
    def __init__(self, launcher: Launcher | None = None) -> None:
        self.launcher = launcher or ConnectorLauncher()

    def spec(
        self,
        connector: ResolvedConnector,
        ctx: AttemptContext,
        cancel: threading.Event | None = None,
    ) -> ConnectorJobOutput:
        return self._run("spec", ConnectorInput(connector), ctx, cancel, FailureOrigin.SOURCE)

    def check(
        self,
        connector: ConnectorInput,
        ctx: AttemptContext,
        cancel: threading.Event | None = None,
        origin: FailureOrigin = FailureOrigin.SOURCE,
    ) -> ConnectorJobOutput:
        return self._run("check", connector, ctx, cancel, origin)

    def discover(
        self, connector: ConnectorInput, ctx: AttemptContext, cancel: threading.Event | None = None
    ) -> ConnectorJobOutput:
        return self._run("discover", connector, ctx, cancel, FailureOrigin.SOURCE)

    def _run(
        self,
        command: str,
        connector: ConnectorInput,
        ctx: AttemptContext,
        cancel: threading.Event | None,
        origin: FailureOrigin,
    ) -> ConnectorJobOutput:
        cancel = cancel or threading.Event()
        log = AttemptLog(ctx.workdir / LOG_FILE, ctx.secrets, ctx.lifecycle.max_attempt_log_bytes)
        args = [command]
        if command != "spec":
            # Airbyte passes source_config.json for checks of either side; so do we.
            host_config = to_host(connector.config, local_root_for(connector.connector, ctx.local_root))
            config_file = write_private_json(ctx.workdir.absolute() / SOURCE_CONFIG, host_config)
            args += ["--config", str(config_file)]
        log.info(WORKER, f"{command}: starting {connector.connector.ref}")
        try:
            process = self.launcher.launch(
                LaunchRequest(
                    connector.connector,
                    args,
                    ctx.workdir,
                    command,
                    job_id=ctx.job_id,
                    attempt=ctx.attempt,
                    job_type=ctx.job_type or command,
                )
            )
            log.info(WORKER, f"{command}: runs as {process.describe()}")
            reader = _StdoutReader(
                process.stdout,
                log,
                origin,
                command,
                lambda config: ctx.secrets_of(origin.value, config),
                ctx.lifecycle.max_line_bytes,
            )
            stderr = StderrDrain(process, log, origin.value)
            lifecycle = ConnectorLifecycle(process, ctx.lifecycle, log)
            try:
                cancelled, timed_out = self._supervise(command, reader, lifecycle, cancel)
            except BaseException:
                # Ctrl-C in a command that runs this on its main thread (the spec of `sources
                # create`), or a bug: the connector must not outlive us.
                _abandon(process, log, command)
                raise
            reader.thread.join()
            stderr.join(5)
            process.close()
            log.flush_tail()
            output = self._output(
                command, reader, lifecycle, cancelled, timed_out, stderr, origin, connector.config
            )
            root = local_root_for(connector.connector, ctx.local_root)
            output.updated_config = to_mount(output.updated_config, root)
            if output.updated_config == connector.config:  # what it was given, seen from its side
                output.updated_config = None
            lost = log.lost_lines()  # a full disk, most often
            if lost is not None:
                platform = FailureOrigin.PLATFORM
                output.failures.append(FailureReason.of(platform, FailureType.SYSTEM_ERROR, lost, _now_ms()))
            return output
        finally:
            forget_configs(ctx.workdir)
            log.info(WORKER, f"{command}: done")
            log.close()

    @staticmethod
    def _supervise(
        command: str, reader: _StdoutReader, lifecycle: ConnectorLifecycle, cancel: threading.Event
    ) -> tuple[bool, bool]:
        """Drive the connector to its end; returns (cancelled, timed out)."""
        cancelled = timed_out = False
        deadline = time.monotonic() + lifecycle.settings.command_timeout_s(command)
        while True:
            now = time.monotonic()
            if cancel.is_set() and not cancelled:
                cancelled = True
                lifecycle.stop(now, "cancelled")
            if reader.too_long and lifecycle.phase in (Phase.RUNNING, Phase.GRACE):
                lifecycle.stop(now, "its output is not read any more")  # it would only block
            if reader.done.is_set() or reader.found is not None:
                # Its answer is in (or its stdout ended): the connector has its grace period to exit.
                lifecycle.input_ended(now)
            elif now > deadline and not timed_out:
                timed_out = True
                lifecycle.stop(now, f"no answer within {lifecycle.settings.command_timeout_s(command):g}s")
            if lifecycle.tick(now) and reader.done.is_set():
                return cancelled, timed_out
            if reader.done.is_set():
                # Its output has ended and it is exiting: wait for that, rather than spin on an
                # event already set (it took a core from the connectors of the other jobs).
                lifecycle.process.wait(_TICK_S)
            else:
                reader.done.wait(_TICK_S)

    @staticmethod
    def _output(
        command: str,
        reader: _StdoutReader,
        lifecycle: ConnectorLifecycle,
        cancelled: bool,
        timed_out: bool,
        stderr: StderrDrain,
        origin: FailureOrigin,
        config: dict[str, Any],
    ) -> ConnectorJobOutput:
        out = ConnectorJobOutput(exit_code=lifecycle.exit_code, failures=list(reader.failures))
        found = reader.found
        if command == "spec":
            out.spec = found
        elif command == "check" and found is not None:
            out.check_succeeded = found.get("status") == "SUCCEEDED"
            out.check_message = found.get("message")
        elif command == "discover":
            out.catalog = found
        if reader.last_config is not None and reader.last_config != config:
            out.updated_config = reader.last_config
        if cancelled:
            out.failures.insert(
                0,
                FailureReason.of(
                    origin, FailureType.MANUAL_CANCELLATION, f"{command} was cancelled", _now_ms()
                ),
            )
        elif (
            found is None
            and not out.failures
            and (started := lifecycle.launcher_failure(stderr.last_lines(), origin))
        ):
            out.failures.append(started)  # Docker refused the container: the reason is the whole story
        elif found is None and not out.failures:
            why = lifecycle.exit_failure() or f"the connector exited with code {lifecycle.exit_code}"
            if timed_out:
                settings = lifecycle.settings
                why = (
                    f"no answer within {settings.command_timeout_s(command):g}s, so it was stopped "
                    f"(if it needs longer, raise {settings.command_timeout_variable(command)})"
                )
            tail = stderr.last_lines()
            message = f"{command} produced no {_WANTED[command]} message: {why}"
            if reader.other_lines:
                # Not a connector at all (an image of something else, a script printing usage):
                # what it printed is the clue, and it went to the log only.
                count = reader.other_lines
                message += (
                    f"; it printed {count} line{'s' if count > 1 else ''} on stdout that "
                    f"{'are' if count > 1 else 'is'} not Airbyte protocol (the last: "
                    f"{reader.last_other}): check that it is an Airbyte connector"
                )
            out.failures.append(
                FailureReason.of(
                    origin,
                    FailureType.SYSTEM_ERROR,
                    message + (f"; last stderr lines:\n{tail}" if tail else ""),
                    _now_ms(),
                    metadata={"connector_command": command},
                )
            )
        return out


class _StdoutReader:
    """Reads one connector's stdout on a thread: the wanted message, trace errors, logs."""

    def __init__(
        self,
        stream: Any,
        log: AttemptLog,
        origin: FailureOrigin,
        command: str,
        secrets_of: Callable[[dict[str, Any]], list[str]],
        max_line: int = MAX_LINE_BYTES,
    ) -> None:
        self.max_line = max_line
        self.too_long = False  # it sent a line over max_line: nothing more is read
        self.found: dict[str, Any] | None = None
        self.failures: list[FailureReason] = []
        self.last_config: dict[str, Any] | None = None
        self.other_lines = 0  # stdout lines that are not protocol messages
        self.last_other: str | None = None  # the last of them, cut to _OTHER_SHOWN characters
        self.done = threading.Event()
        self._wanted = _WANTED[command]
        self._stream = stream
        self._log = log
        self._origin = origin
        self._command = command
        self._secrets_of = secrets_of  # the values to mask of a config the connector updated
        self._refused = False  # its answer was refused (nested too deep): no later one is taken
        self.thread = threading.Thread(target=self._run, name=f"{command}-stdout", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for raw in lines_of(self._stream, self.max_line, "connector"):
                self._accept(raw)
        except LineTooLong as exc:
            self.too_long = True
            failure = FailureReason.of(
                self._origin, FailureType.SYSTEM_ERROR, str(exc), int(time.time() * 1000)
            )
            self.failures.append(failure)
            self._log.error(self._origin.value, str(exc))
        except (OSError, ValueError):
            pass
        finally:
            self.done.set()

    def _accept(self, raw: bytes) -> None:
        side = self._origin.value
        message = parse_message(raw)
        if message is None:
            if self._unreadable_answer(raw):
                return
            if raw.strip():
                self._log.write_bytes(side, "INFO", raw)
                self.other_lines += 1
                self.last_other = _shown(raw.strip(), self._log)
            return
        kind = message["type"]
        if kind == self._wanted:
            if self.found is None and not self._refused:
                self.found = self._kept(_payload(message, kind), kind)
        elif kind == "LOG":
            body = as_object(message.get("log"))  # a broken connector's fields: read as missing
            self._log.write(side, str(body.get("level") or "INFO"), str(body.get("message", "")))
        elif kind == "TRACE":
            trace = as_object(message.get("trace"))
            if trace.get("type") == "ERROR":
                failure = FailureReason.from_trace(self._origin, trace, self._command)
                self.failures.append(failure)
                self._log.error(side, f"trace error: {failure.message}")
        elif kind == "CONTROL":
            config = control_config(message, self._log, side)
            if config is not None:
                self._log.add_secrets(self._secrets_of(config))
                self.last_config = config
                self._log.info(side, "the connector updated its configuration")
        else:
            self._log.info(side, f"ignored a {kind} message during {self._command}")

    def _unreadable_answer(self, raw: bytes) -> bool:
        """Whether ``raw``, which orjson reads no message in, is plainly the answer (a SPEC,
        CONNECTION_STATUS or CATALOG holding a NaN, a lone surrogate, a number past a double):
        then the job fails in one line saying what is wrong, as for an answer nested too deep,
        rather than "produced no CATALOG" with the line quoted as if it were not the protocol.
        A CONTROL or a TRACE error such a line holds is taken too (see Notices.unreadable)."""
        try:
            lenient = read_leniently(raw)
        except RecursionError:
            return False
        if lenient is not None and lenient.type == "CONTROL":
            self._log.warn(self._origin.value, unsaved_update(lenient, "connector"))
            return True  # never logged as a line: its config may hold a new secret
        trace = lenient_trace_error(lenient)
        if lenient is not None and trace is not None:
            reported = FailureReason.from_trace(self._origin, trace, self._command)
            self.failures.append(reported)
            self._log.warn(self._origin.value, trace_kept(lenient, "connector"))
            self._log.error(self._origin.value, f"trace error: {reported.message}")
            return True
        if lenient is None or lenient.type != self._wanted:
            return False
        if self.found is None and not self._refused:
            self._refused = True
            failure = lenient.failure("connector")
            self.failures.append(FailureReason.of(self._origin, FailureType.SYSTEM_ERROR, failure, _now_ms()))
            self._log.error(self._origin.value, failure)
        return True

    def _kept(self, payload: dict[str, Any] | None, kind: str) -> dict[str, Any] | None:
        """The answer, unless it nests deeper than anything that keeps, shows or checks it can
        walk (a spec's schema is checked with jsonschema, a catalog copied and stored): then the
        job fails in one line, as it would without an answer."""
        if payload is None or not nests_deeper_than(payload):
            return payload
        self._refused = True
        deepest = _deep_stream(payload) if kind == "CATALOG" else None
        where = f" (stream {deepest!r})" if deepest is not None else ""
        why = f"the connector sent a {kind}{where} nested more than {MAX_DEPTH} levels deep; no real one does"
        self.failures.append(FailureReason.of(self._origin, FailureType.SYSTEM_ERROR, why, _now_ms()))
        self._log.error(self._origin.value, why)
        return None


def _abandon(process: ConnectorProcess, log: AttemptLog, command: str) -> None:
    log.warn(WORKER, f"{command}: interrupted, killing the connector")
    process.kill()
    process.wait(5)
    process.kill_leftovers()
    process.close()


def _deep_stream(catalog: dict[str, Any]) -> str | None:
    """The name of the first stream of a catalog that nests too deep within it."""
    streams = catalog.get("streams")
    for stream in streams if isinstance(streams, list) else []:
        if isinstance(stream, dict) and nests_deeper_than(stream, MAX_DEPTH - 2):
            name = stream.get("name")
            return name if isinstance(name, str) else None
    return None


def _payload(message: dict[str, Any], kind: str) -> dict[str, Any] | None:
    key = {"SPEC": "spec", "CONNECTION_STATUS": "connectionStatus", "CATALOG": "catalog"}[kind]
    payload = message.get(key)
    return payload if isinstance(payload, dict) else None


def _shown(line: bytes, log: AttemptLog) -> str:
    """A line of stdout as a failure quotes it: text in quotes, masked, then cut (a secret the
    cut runs through is masked whole); anything that is not printable text is only named."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return f"{len(line)} bytes that are not UTF-8 text"
    if not text.isprintable():
        return f"{len(line)} bytes of control characters and text"
    return repr(log.head(text, _OTHER_SHOWN) + ("..." if len(text) > _OTHER_SHOWN else ""))
