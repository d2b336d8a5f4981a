"""What connectors say besides records and states: TRACE, LOG, CONTROL and lines that are no
message at all. The sync worker hands each such message here; this turns it into failures,
estimates and stream statuses on the tracker, and lines in the attempt log."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson

from ferryman.jobs.failures import FailureOrigin, FailureReason
from ferryman.protocol.depth import MAX_DEPTH, nests_deeper_than
from ferryman.protocol.lenient import SURROGATE, LenientMessage
from ferryman.workers.attempt_log import AttemptLog
from ferryman.workers.tracker import MessageTracker

# Said when a connector's CONTROL message hands back a config nested deeper than a config may be.
DEEP_CONFIG_IGNORED = (
    f"ignored a configuration update nested more than {MAX_DEPTH} levels deep "
    "(the most a config may nest); the configuration is kept as it was"
)


class Notices:
    """The side channel of one sync: it appends to the sync's ``failures`` as traces arrive."""

    def __init__(
        self,
        log: AttemptLog,
        tracker: MessageTracker,
        failures: list[FailureReason],
        on_status: Callable[[], None] | None = None,
    ) -> None:
        self.log = log
        self.tracker = tracker
        self.failures = failures
        self.on_status = on_status  # told when a stream's status changes

    def trace(self, origin: FailureOrigin, trace: dict[str, Any], command: str) -> None:
        side = origin.value
        kind = trace.get("type")
        if kind == "ERROR":
            failure = FailureReason.from_trace(origin, trace, command)
            self.failures.append(failure)
            self.log.error(side, f"trace error ({failure.type}): {failure.message}")
            if failure.stack_trace:
                self.log.error(side, failure.stack_trace)
        elif kind == "ESTIMATE":
            estimate = as_object(trace.get("estimate"))
            if estimate.get("type", "STREAM") == "STREAM" and estimate.get("name"):
                key = (str(estimate["name"]), estimate.get("namespace"))
                self.tracker.estimate(key, estimate.get("row_estimate"), estimate.get("byte_estimate"))
        elif kind == "STREAM_STATUS":
            status = as_object(trace.get("stream_status"))
            descriptor = as_object(status.get("stream_descriptor"))
            key = (str(descriptor.get("name")), descriptor.get("namespace"))
            value = str(status.get("status"))
            changed = self.tracker.stream_status.get(key) != value
            self.tracker.stream_status[key] = value
            self.log.info(side, f"stream {key[0]}: {value}")
            if changed and self.on_status is not None:
                self.on_status()
        else:
            try:
                shown = orjson.dumps(trace).decode()[:2000]
            except orjson.JSONEncodeError:  # nested past orjson's 255 levels
                shown = "(nested too deeply to show)"
            self.log.info(side, f"trace {kind}: {shown}")

    def log_message(self, side: str, message: dict[str, Any]) -> None:
        body = as_object(message.get("log"))
        self.log.write(side, str(body.get("level") or "INFO"), str(body.get("message", "")))
        if body.get("stack_trace"):
            self.log.write(side, str(body.get("level") or "INFO"), str(body["stack_trace"]))

    def not_a_message(self, side: str, line: bytes) -> None:
        if line.strip():
            self.log.write_bytes(side, "INFO", line)

    def unreadable(
        self, origin: FailureOrigin, lenient: LenientMessage | None, line: bytes, command: str
    ) -> None:
        """A line orjson reads no message in (a RECORD or STATE is the caller's to fail). A CONTROL
        Python's json reads is said in one warning, never logged (its config may hold a new secret);
        a TRACE error's failure is kept; anything else is logged as a line."""
        side = origin.value
        if lenient is not None and lenient.type == "CONTROL":
            self.log.warn(side, unsaved_update(lenient, side))
            return
        trace = lenient_trace_error(lenient)
        if lenient is not None and trace is not None:
            self.log.warn(side, trace_kept(lenient, side))
            self.trace(origin, trace, command)
            return
        self.not_a_message(side, line)


def as_object(value: Any) -> dict[str, Any]:
    """A message field that should be a JSON object; anything else reads as an empty one."""
    return value if isinstance(value, dict) else {}


def control_config(message: dict[str, Any], log: AttemptLog, side: str) -> dict[str, Any] | None:
    """The config a CONTROL message hands back; None for any other CONTROL, and for a config
    nested deeper than a config may be (said in the log: it is not kept)."""
    control = as_object(message.get("control"))
    config = as_object(control.get("connectorConfig")).get("config")
    if control.get("type") != "CONNECTOR_CONFIG" or not isinstance(config, dict):
        return None
    if nests_deeper_than(config):
        log.warn(side, DEEP_CONFIG_IGNORED)
        return None
    return config


def unsaved_update(lenient: LenientMessage, who: str) -> str:
    """The warning for a CONTROL that only Python's json reads (a NaN, an Infinity, a lone
    surrogate, a number past a double): its config is not saved, as Airbyte's platform, whose
    parser refuses such a line, does not save it; said plainly, since the next job then runs with
    the config as it was (a token the connector rotated may be revoked by then). Never quotes it."""
    return (
        f"{lenient.failure(who)}; the configuration update it carries was not saved, and the next job"
        " runs with the configuration as it was"
    )


def trace_kept(lenient: LenientMessage, who: str) -> str:
    """The warning for a TRACE error that only Python's json reads: its failure is kept."""
    return f"{lenient.failure(who)}; its error is kept as Python's json reads it"


def lenient_trace_error(lenient: LenientMessage | None) -> dict[str, Any] | None:
    """The trace of a TRACE ERROR only Python's json reads, its texts made storable (a lone
    surrogate as U+FFFD) for the failure made of it; None for any other line. (A NaN or an
    infinity where a number belongs, ``emitted_at``, reads as missing there.)"""
    if lenient is None or lenient.type != "TRACE":
        return None
    trace = as_object(lenient.body)
    if trace.get("type") != "ERROR":
        return None
    error = {key: _storable(value) for key, value in as_object(trace.get("error")).items()}
    descriptor = as_object(error.get("stream_descriptor"))
    error["stream_descriptor"] = {key: _storable(value) for key, value in descriptor.items()}
    return {**trace, "error": error}


def _storable(value: Any) -> Any:
    return SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value
