"""Why an attempt failed, in Airbyte's terms (``FailureReason``)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class FailureOrigin(StrEnum):
    SOURCE = "source"
    DESTINATION = "destination"
    REPLICATION = "replication"
    PERSISTENCE = "persistence"
    PLATFORM = "airbyte_platform"
    UNKNOWN = "unknown"


class FailureType(StrEnum):
    CONFIG_ERROR = "config_error"
    SYSTEM_ERROR = "system_error"
    TRANSIENT_ERROR = "transient_error"
    MANUAL_CANCELLATION = "manual_cancellation"
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    DESTINATION_TIMEOUT = "destination_timeout"


# Airbyte truncates trace messages and stack traces so one failure cannot bloat a row.
MAX_MESSAGE_CHARS = 50_000
MAX_STACK_TRACE_CHARS = 100_000


@dataclass(frozen=True)
class FailureReason:
    origin: FailureOrigin
    type: FailureType
    message: str
    timestamp_ms: int
    internal_message: str | None = None
    stack_trace: str | None = None
    retryable: bool = True
    from_trace_message: bool = False
    stream: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        origin: FailureOrigin,
        type_: FailureType,
        message: str,
        timestamp_ms: int,
        **extra: Any,
    ) -> FailureReason:
        retryable = type_ not in (FailureType.CONFIG_ERROR, FailureType.MANUAL_CANCELLATION)
        return cls(origin, type_, message[:MAX_MESSAGE_CHARS], timestamp_ms, retryable=retryable, **extra)

    @classmethod
    def from_trace(cls, origin: FailureOrigin, trace: dict[str, Any], command: str) -> FailureReason:
        """A TRACE ERROR message as a failure; an unknown failure_type counts as system_error."""
        # A connector's TRACE is untrusted input: a field of the wrong type reads as missing.
        error: dict[str, Any] = trace["error"] if isinstance(trace.get("error"), dict) else {}
        try:
            type_ = FailureType(error.get("failure_type") or "system_error")
        except (ValueError, TypeError):
            type_ = FailureType.SYSTEM_ERROR
        found = error.get("stream_descriptor")
        descriptor: dict[str, Any] = found if isinstance(found, dict) else {}
        emitted_at = trace.get("emitted_at")
        name = descriptor.get("name")
        stack = _text(error.get("stack_trace"))
        internal = _text(error.get("internal_message"))
        return cls.of(
            origin,
            type_,
            _text(error.get("message")) or internal or "the connector reported an error",
            int(emitted_at) if isinstance(emitted_at, int | float) and abs(emitted_at) < 1e15 else 0,
            internal_message=internal[:MAX_MESSAGE_CHARS] if internal else None,
            stack_trace=stack[:MAX_STACK_TRACE_CHARS] if stack else None,
            from_trace_message=True,
            stream=name if isinstance(name, str) else None,
            metadata={"connector_command": command},
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != {}}


def ordered(failures: list[FailureReason]) -> list[FailureReason]:
    """Connector trace errors first, then by time: the first one decides whether to retry."""
    return sorted(failures, key=lambda f: (not f.from_trace_message, f.timestamp_ms))


# What the Python CDK says for any exception it did not expect; the exception itself is in
# internal_message and the stack trace. Compared case-blind, on the start of the message.
GENERIC_MESSAGES = ("something went wrong in the connector",)
MAX_SHOWN_CHARS = 300


def is_generic(message: str) -> bool:
    text = message.strip().lower()
    return not text or text.startswith(GENERIC_MESSAGES)


def _text(value: Any) -> str | None:
    """A TRACE field meant as text: a number is written out, anything else (an object, a list:
    a broken connector's) reads as missing rather than as Python's rendering of it."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def most_specific_message(message: str, internal_message: str | None, stack_trace: str | None) -> str:
    """What to show for a failure: its message, unless that says nothing (empty, or the CDK's
    generic text); then the first line of the internal message, else the last line of the stack
    trace (the exception), cut at MAX_SHOWN_CHARS. Pass the texts masked: a cut must not leave
    half a secret."""
    if not is_generic(message):
        return message
    for text, pick in ((internal_message, 0), (stack_trace, -1)):
        lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if lines:
            shown = lines[pick]
            return shown if len(shown) <= MAX_SHOWN_CHARS else shown[: MAX_SHOWN_CHARS - 3] + "..."
    return message
