"""A source (and spec/check/discover connector) that does exactly what a test scripts.

Standalone, standard library only. It speaks the Airbyte protocol on the command line:

    spec | check --config C | discover --config C | read --config C --catalog CAT [--state S]

and runs the list of steps found in ``config["steps"]`` (for ``spec``, which has no config, in
the JSON environment variable ``SCRIPTED_SPEC_STEPS``); ``config["<command>_steps"]``, when set,
replaces them for that command alone (``read_steps``, ``discover_steps``, ``check_steps``).
Without steps it behaves: spec prints a spec, check succeeds, discover prints a one-stream
catalog, read emits nothing.

Each step is a one-key object (plus options):

    {"records": N, "stream": S, "namespace": NS, "pad": BYTES}   N RECORD messages
    {"state": {"name": S, "namespace": NS, "pad": BYTES}}   a STREAM state, cursor = records so far
    {"log": TEXT, "level": LEVEL, "repeat": N}       a LOG message (N numbered ones with repeat)
    {"trace_error": {failure_type, message, ...}}    a TRACE ERROR message
    {"estimate": {name, namespace, row_estimate, byte_estimate}}   a TRACE ESTIMATE message
    {"stream_status": {name, namespace, status}}     a TRACE STREAM_STATUS message (STARTED, COMPLETE...)
    {"sleep": SECONDS}                               flush stdout, then pause that long
    {"control_config": CONFIG}                       a CONTROL connector-config update
    {"spec": SPEC} | {"connection_status": STATUS, "message": TEXT} | {"catalog": CATALOG}
    {"stdout_hex": HEX}                              raw bytes (plus a newline) on stdout
    {"garbage_line": BYTES}                          one line of that many non-JSON bytes
    {"endless_line": true}                           bytes without a newline, until killed
    {"stderr": TEXT, "repeat": N}                    N numbered lines on stderr
    {"stderr_line": BYTES}                           one line of that many bytes on stderr
    {"wait_for_file": PATH, "timeout": SECONDS}      block until PATH exists (exit 3 if never)
    {"touch": PATH}                                  create PATH (tells a test we got here)
    {"spawn_sleeper": SECONDS}                       start a child that inherits stdout, sleeps
    {"spawn_daemon": SECONDS, "pidfile": PATH}       the same child, but in a session of its own
    {"close_stdout": true}                           end stdout while the process lives on
    {"ignore_sigterm": true}                         SIGTERM does nothing from now on
    {"hang": true}                                   sleep forever, silently
    {"forever": {stream, namespace, state_every, pause}}   records and states until killed
    {"exit": CODE}                                   exit at once with CODE

A ``read`` given a state with STREAM states holding a ``cursor`` resumes like a real source
when ``config["resumed_steps"]`` is set: it runs those steps instead, its record counts starting
from the cursors (a full-refresh stream a CDK source checkpoints per page does the same).

Every RECORD and STATE line is also appended, byte for byte, to ``config["tee"]`` when set.
``read`` copies the state file it was given (``--state``) to ``config["state_copy"]`` when set.
Stdout is flushed after each STATE and before anything that blocks or exits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

OUT = sys.stdout.buffer
DEFAULT_SPEC = {
    "documentationUrl": "https://example.invalid/scripted-source",
    "connectionSpecification": {
        "type": "object",
        "properties": {"steps": {"type": "array"}, "api_key": {"type": "string"}},
    },
}
DEFAULT_CATALOG = {
    "streams": [
        {
            "name": "users",
            "json_schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
            "supported_sync_modes": ["full_refresh", "incremental"],
        }
    ]
}


def now_ms() -> int:
    return int(time.time() * 1000)


class Script:
    def __init__(self, config: dict) -> None:
        self.tee = open(config["tee"], "ab") if config.get("tee") else None  # noqa: SIM115
        self.counts: dict[tuple[str, str | None], int] = {}

    # -- output ------------------------------------------------------------------------

    def emit(self, message: dict, protocol_data: bool = False) -> None:
        # json.dumps with its default separators: a worker that re-encoded a line would show.
        line = (json.dumps(message) + "\n").encode()
        OUT.write(line)
        if protocol_data and self.tee is not None:
            self.tee.write(line)

    def flush(self) -> None:
        OUT.flush()
        if self.tee is not None:
            self.tee.flush()

    def records(self, count: int, stream: str, namespace: str | None, pad: int = 0) -> None:
        key = (stream, namespace)
        for _ in range(count):
            n = self.counts.get(key, 0) + 1
            self.counts[key] = n
            record = {"stream": stream, "data": {"id": n}, "emitted_at": now_ms()}
            if namespace is not None:
                record["namespace"] = namespace
            if pad:
                record["data"]["pad"] = "p" * pad
            self.emit({"type": "RECORD", "record": record}, protocol_data=True)

    def state(self, stream: str, namespace: str | None, pad: int = 0) -> None:
        descriptor = {"name": stream}
        if namespace is not None:
            descriptor["namespace"] = namespace
        cursor = self.counts.get((stream, namespace), 0)
        stream_state: dict = {"cursor": cursor}
        if pad:
            stream_state["pad"] = "s" * pad
        state = {"type": "STREAM", "stream": {"stream_descriptor": descriptor, "stream_state": stream_state}}
        self.emit({"type": "STATE", "state": state}, protocol_data=True)
        self.flush()

    def trace(self, kind: str, body: dict) -> None:
        key = kind.lower()
        self.emit({"type": "TRACE", "trace": {"type": kind, "emitted_at": now_ms(), key: body}})

    # -- steps -------------------------------------------------------------------------

    def run(self, steps: list[dict]) -> None:
        for step in steps:
            self.step(step)
        self.flush()

    def step(self, step: dict) -> None:
        if "records" in step:
            self.records(
                step["records"], step.get("stream", "users"), step.get("namespace"), step.get("pad", 0)
            )
        elif "state" in step:
            self.state(step["state"]["name"], step["state"].get("namespace"), step["state"].get("pad", 0))
        elif "log" in step:
            level = step.get("level", "INFO")
            if "repeat" not in step:
                self.emit({"type": "LOG", "log": {"level": level, "message": step["log"]}})
            for i in range(step.get("repeat", 0)):
                self.emit({"type": "LOG", "log": {"level": level, "message": f"{step['log']} {i}"}})
        elif "trace_error" in step:
            self.trace("ERROR", step["trace_error"])
            self.flush()
        elif "estimate" in step:
            self.trace("ESTIMATE", {"type": "STREAM", **step["estimate"]})
        elif "stream_status" in step:
            status = step["stream_status"]
            descriptor = {"name": status["name"]}
            if status.get("namespace") is not None:
                descriptor["namespace"] = status["namespace"]
            self.trace("STREAM_STATUS", {"stream_descriptor": descriptor, "status": status["status"]})
            self.flush()
        elif "sleep" in step:
            self.flush()
            time.sleep(step["sleep"])
        elif "control_config" in step:
            control = {
                "type": "CONNECTOR_CONFIG",
                "emitted_at": now_ms(),
                "connectorConfig": {"config": step["control_config"]},
            }
            self.emit({"type": "CONTROL", "control": control})
        elif "spec" in step:
            self.emit({"type": "SPEC", "spec": step["spec"]})
        elif "connection_status" in step:
            status = {"status": step["connection_status"]}
            if step.get("message") is not None:
                status["message"] = step["message"]
            self.emit({"type": "CONNECTION_STATUS", "connectionStatus": status})
        elif "catalog" in step:
            self.emit({"type": "CATALOG", "catalog": step["catalog"]})
        elif "stdout_hex" in step:
            OUT.write(bytes.fromhex(step["stdout_hex"]) + b"\n")
        elif "endless_line" in step:
            chunk = b"x" * 65536
            while True:
                OUT.write(chunk)
        elif "garbage_line" in step:
            size = step["garbage_line"]
            chunk = b"not json at all; " * 4096
            while size > 0:
                OUT.write(chunk[:size])
                size -= len(chunk)
            OUT.write(b"\n")
        elif "stderr" in step:
            err = sys.stderr
            for i in range(step.get("repeat", 1)):
                err.write(f"{step['stderr']} {i}\n")
            err.flush()
        elif "stderr_line" in step:
            size, chunk = step["stderr_line"], b"progress 42% " * 4096
            while size > 0:
                sys.stderr.buffer.write(chunk[:size])
                size -= len(chunk)
            sys.stderr.buffer.write(b"\n")
            sys.stderr.flush()
        elif "wait_for_file" in step:
            self.flush()
            deadline = time.monotonic() + step.get("timeout", 20)
            while not os.path.exists(step["wait_for_file"]):
                if time.monotonic() > deadline:
                    sys.stderr.write(f"gave up waiting for {step['wait_for_file']}\n")
                    sys.exit(3)
                time.sleep(0.01)
        elif "touch" in step:
            self.flush()
            with open(step["touch"], "w") as marker:
                marker.write(str(os.getpid()))
        elif "spawn_sleeper" in step:
            self.flush()
            subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({step['spawn_sleeper']})"])
        elif "spawn_daemon" in step:
            self.flush()
            code = f"import os, time; os.setsid(); time.sleep({step['spawn_daemon']})"
            child = subprocess.Popen([sys.executable, "-c", code])
            # Go on only once it is in its own session: before that, the kill of our process group
            # when we exit would reach it, and nothing would be left holding the pipe.
            deadline = time.monotonic() + 30
            while os.getsid(child.pid) != child.pid and time.monotonic() < deadline:
                time.sleep(0.01)
            if step.get("pidfile"):
                with open(step["pidfile"], "w") as pidfile:
                    pidfile.write(str(child.pid))
        elif "close_stdout" in step:
            self.flush()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.close(devnull)
        elif "ignore_sigterm" in step:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        elif "hang" in step:
            self.flush()
            while True:
                time.sleep(3600)
        elif "forever" in step:
            self.forever(step["forever"])
        elif "exit" in step:
            self.flush()
            sys.stderr.flush()
            os._exit(step["exit"])
        else:
            raise SystemExit(f"unknown step {step!r}")

    def forever(self, options: dict) -> None:
        stream, namespace = options.get("stream", "users"), options.get("namespace")
        every, pause = options.get("state_every", 10), options.get("pause", 0.002)
        while True:
            self.records(every, stream, namespace)
            self.state(stream, namespace)
            time.sleep(pause)


def main(argv: list[str]) -> int:
    command = argv[0] if argv else ""
    options = dict(zip(argv[1::2], argv[2::2], strict=False))
    config: dict = {}
    if "--config" in options:
        with open(options["--config"]) as handle:
            config = json.load(handle)
    if command == "spec":
        steps = json.loads(os.environ.get("SCRIPTED_SPEC_STEPS") or "null")
        default = [{"spec": DEFAULT_SPEC}]
    elif command == "check":
        steps, default = config.get("steps"), [{"connection_status": "SUCCEEDED"}]
    elif command == "discover":
        steps = config.get("steps")
        default = [{"catalog": DEFAULT_CATALOG}]
    elif command == "read":
        cursors: dict[tuple[str, str | None], int] = {}
        for name in ("--catalog", "--state"):
            if name in options:
                with open(options[name]) as handle:
                    given = json.load(handle)  # must be readable JSON, as a real source would insist
                if name == "--state" and config.get("state_copy"):
                    with open(config["state_copy"], "w") as copy:
                        json.dump(given, copy)
                if name == "--state":
                    cursors = stream_cursors(given)
        steps, default = config.get("steps"), []
        if cursors and "resumed_steps" in config:
            script = Script(config)
            script.counts.update(cursors)
            script.run(config["resumed_steps"])
            return 0
    else:
        sys.stderr.write(f"usage: scripted_source.py spec|check|discover|read, not {argv!r}\n")
        return 2
    steps = config.get(f"{command}_steps", steps)
    Script(config).run(steps if steps is not None else default)
    return 0


def stream_cursors(state: object) -> dict[tuple[str, str | None], int]:
    """The ``cursor`` of each STREAM state in a state file (a list of state messages)."""
    cursors = {}
    for message in state if isinstance(state, list) else []:
        body = message.get("stream") if isinstance(message, dict) else None
        value = body.get("stream_state") if isinstance(body, dict) else None
        if isinstance(value, dict) and isinstance(value.get("cursor"), int):
            descriptor = body["stream_descriptor"]
            cursors[(descriptor["name"], descriptor.get("namespace"))] = value["cursor"]
    return cursors


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
