"""A destination whose (mis)behaviour is set by its config. Standalone, standard library only.

    spec | write --config C --catalog CAT

``spec`` prints the spec in the JSON environment variable ``SCRIPTED_DESTINATION_SPEC`` (default:
one that supports append, overwrite and append_dedup).

Config fields (all optional):

    catalog_copy         file that receives a copy of the configured catalog it was given
    output               file that receives every input line, byte for byte, as it arrives
    echo_states          echo each STATE after the output is flushed (default true)
    own_state_depth      echo, in place of each STATE, one of its own for the same stream whose
                         stream_state nests that many levels (a destination rewriting states)
    own_state_text       echo, in place of each STATE, this line as it is (say, one holding a NaN)
    fail_after_records   after that many records: a TRACE system_error, then exit 1
    exit_at_start        exit at once with this code, without reading any input
    exit_on_input        wait until input is pending, then exit 0 without reading it
    stop_reading         never read the input: sleep until killed
    ignore_sigterm       SIGTERM does nothing
    stderr_lines         that many numbered lines on stderr before reading
    log                  a LOG message to send before reading
    control_config       a CONTROL connector-config update to send before reading
    lines_before         lines to send as they are before reading (say, a CONTROL holding a NaN)
    exit_code            the exit code once the input has ended (default 0)
    hold_until_end       store nothing before the input ends: records go to ``output``.staged as
                         they come and are appended to ``output`` (then every STATE echoed) only
                         at the end of the input, as a destination committing once would
    pause_after_records  after that many records, read no more until the file ``resume_file``
                         exists (waiting at most 120 s)
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time

OUT = sys.stdout.buffer
DEFAULT_SPEC = {
    "documentationUrl": "https://example.invalid/scripted-destination",
    "connectionSpecification": {"type": "object", "properties": {"output": {"type": "string"}}},
    "supported_destination_sync_modes": ["append", "overwrite", "append_dedup"],
}


def send(message: dict) -> None:
    OUT.write((json.dumps(message) + "\n").encode())
    OUT.flush()


def main(argv: list[str]) -> int:
    if argv == ["spec"]:
        spec = json.loads(os.environ.get("SCRIPTED_DESTINATION_SPEC") or "null") or DEFAULT_SPEC
        send({"type": "SPEC", "spec": spec})
        return 0
    options = dict(zip(argv[1::2], argv[2::2], strict=False))
    if not argv or argv[0] != "write" or "--config" not in options or "--catalog" not in options:
        usage = "usage: scripted_destination.py spec | write --config C --catalog CAT"
        sys.stderr.write(f"{usage}, not {argv!r}\n")
        return 2
    with open(options["--config"]) as handle:
        config = json.load(handle)
    with open(options["--catalog"]) as handle:
        catalog = json.load(handle)
    if config.get("catalog_copy"):
        with open(config["catalog_copy"], "w") as handle:
            json.dump(catalog, handle)
    if config.get("ignore_sigterm"):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if "exit_at_start" in config:
        sys.stderr.write("leaving before reading anything\n")
        return int(config["exit_at_start"])
    for i in range(config.get("stderr_lines", 0)):
        sys.stderr.write(f"destination stderr line {i}\n")
    sys.stderr.flush()
    if config.get("log"):
        send({"type": "LOG", "log": {"level": "INFO", "message": config["log"]}})
    if config.get("control_config") is not None:
        control = {
            "type": "CONNECTOR_CONFIG",
            "emitted_at": int(time.time() * 1000),
            "connectorConfig": {"config": config["control_config"]},
        }
        send({"type": "CONTROL", "control": control})
    for line in config.get("lines_before", []):
        OUT.write(line.encode() + b"\n")
        OUT.flush()
    if config.get("exit_on_input"):
        select.select([sys.stdin.buffer], [], [], 20)
        sys.stderr.write("leaving with input still unread\n")
        return 0
    if config.get("stop_reading"):
        while True:
            time.sleep(3600)

    if config.get("hold_until_end"):
        return hold_until_end(config)
    output = open(config["output"], "ab") if config.get("output") else None  # noqa: SIM115
    echo = config.get("echo_states", True)
    fail_after = config.get("fail_after_records")
    records = 0
    for line in sys.stdin.buffer:
        if output is not None:
            output.write(line)
        message = json.loads(line)
        if message["type"] == "RECORD":
            records += 1
            if fail_after is not None and records >= fail_after:
                if output is not None:
                    output.flush()
                error = {
                    "failure_type": "system_error",
                    "message": f"the warehouse refused record {records}",
                    "internal_message": "simulated write failure",
                    "stack_trace": "Traceback: scripted_destination.write\nRuntimeError: refused",
                }
                trace = {"type": "ERROR", "emitted_at": int(time.time() * 1000), "error": error}
                send({"type": "TRACE", "trace": trace})
                sys.stderr.write("destination failing on purpose\n")
                sys.stderr.flush()
                os._exit(1)
        elif message["type"] == "STATE":
            if output is not None:
                output.flush()
            if config.get("own_state_text"):
                OUT.write(config["own_state_text"].encode() + b"\n")
                OUT.flush()
            elif config.get("own_state_depth"):
                nested: object = {"cursor": 1}
                for _ in range(config["own_state_depth"]):
                    nested = {"x": nested}
                state = message["state"]
                own = {"type": "STREAM", "stream": {**state["stream"], "stream_state": nested}}
                send({"type": "STATE", "state": own})
            elif echo:
                OUT.write(line)
                OUT.flush()
    if output is not None:
        output.close()
    return int(config.get("exit_code", 0))


def wait_for_file(path: str) -> None:
    deadline = time.monotonic() + 120
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)


def hold_until_end(config: dict) -> int:
    """Stage every record, commit them all (and echo the states) once the input ends."""
    staged_path = config["output"] + ".staged"
    states = []
    records = 0
    with open(staged_path, "wb") as staged:  # what a killed run staged was never committed
        for line in sys.stdin.buffer:
            try:
                message = json.loads(line)
            except ValueError:  # a line cut off as its writer died: skipped, as the CDK does
                sys.stderr.write(f"skipped a line that is not JSON ({len(line)} bytes)\n")
                continue
            if message["type"] == "RECORD":
                staged.write(line)
                staged.flush()
                records += 1
                if records == config.get("pause_after_records"):
                    wait_for_file(config["resume_file"])
            elif message["type"] == "STATE":
                states.append(line)
    # The end of the input: the one commit (whoever, if anyone, reads the echoes).
    with open(staged_path, "rb") as staged, open(config["output"], "ab") as output:
        output.write(staged.read())
    os.remove(staged_path)
    for line in states:
        OUT.write(line)
    OUT.flush()
    return int(config.get("exit_code", 0))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
