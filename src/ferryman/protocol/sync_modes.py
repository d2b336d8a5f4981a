"""Which sync mode each stream of a connection gets: one both the source and the destination support.

A stream's mode is a pair: how the source reads it (``full_refresh`` or ``incremental``) and how
the destination writes it (``overwrite``, ``append`` or ``append_dedup``). The source side comes
from the discovered stream (its ``supported_sync_modes``; incremental also needs a cursor, dedup a
primary key), the destination side from its spec's ``supported_destination_sync_modes``.

Without a request, the first mode of :data:`PREFERENCE` that both sides support wins (with
``--full-refresh``, :data:`FULL_REFRESH_PREFERENCE`). A requested mode that either side cannot do
is refused, never silently replaced.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ferryman.errors import FieldError, UserInputError
from ferryman.protocol.stream_refs import label

FULL_REFRESH, INCREMENTAL = "full_refresh", "incremental"
APPEND, OVERWRITE, APPEND_DEDUP = "append", "overwrite", "append_dedup"
SYNC_MODES = (FULL_REFRESH, INCREMENTAL)
DESTINATION_SYNC_MODES = (APPEND, OVERWRITE, APPEND_DEDUP)

# A spec without supported_destination_sync_modes: the two modes that predate the field. Dedup is
# never assumed, since assuming it wrongly duplicates rows on every sync without a word.
UNDECLARED_DESTINATION_MODES = frozenset({OVERWRITE, APPEND})


@dataclass(frozen=True)
class StreamMode:
    sync_mode: str
    destination_sync_mode: str

    def __str__(self) -> str:
        return f"{self.sync_mode}:{self.destination_sync_mode}"


PREFERENCE = (
    StreamMode(INCREMENTAL, APPEND_DEDUP),
    StreamMode(INCREMENTAL, APPEND),
    StreamMode(FULL_REFRESH, OVERWRITE),
    StreamMode(FULL_REFRESH, APPEND),
)
FULL_REFRESH_PREFERENCE = (PREFERENCE[2], PREFERENCE[3], PREFERENCE[0], PREFERENCE[1])

# Airbyte's public API names one mode with one word (ConnectionSyncModeEnum).
AIRBYTE_NAMES = {
    "incremental_deduped_history": PREFERENCE[0],
    "incremental_append": PREFERENCE[1],
    "full_refresh_overwrite": PREFERENCE[2],
    "full_refresh_append": PREFERENCE[3],
}


def parse_mode(text: str) -> StreamMode:
    """``incremental:append_dedup`` (or Airbyte's ``incremental_deduped_history``) as a mode."""
    if text in AIRBYTE_NAMES:
        return AIRBYTE_NAMES[text]
    sync_mode, _, destination_mode = text.partition(":")
    if sync_mode not in SYNC_MODES or destination_mode not in DESTINATION_SYNC_MODES:
        known = ", ".join(str(mode) for mode in PREFERENCE)
        raise UserInputError(f"unknown sync mode {text!r}: use one of {known}")
    return StreamMode(sync_mode, destination_mode)


def destination_modes(spec: dict[str, Any] | None) -> frozenset[str]:
    """The destination sync modes a destination's spec declares (see UNDECLARED_DESTINATION_MODES)."""
    declared = (spec or {}).get("supported_destination_sync_modes")
    if not isinstance(declared, list):
        return UNDECLARED_DESTINATION_MODES
    return frozenset(mode for mode in declared if mode in DESTINATION_SYNC_MODES)


@dataclass(frozen=True)
class StreamKeys:
    """The cursor and primary key a stream syncs with: the source's, or the user's where it has none."""

    cursor: list[str]
    primary_key: list[list[str]]
    source_defined_cursor: bool = False

    @classmethod
    def of(
        cls,
        stream: dict[str, Any],
        cursor: list[str] | None = None,
        primary_key: list[list[str]] | None = None,
    ) -> StreamKeys:
        defined = bool(stream.get("source_defined_cursor"))
        return cls(
            cursor=list(cursor or stream.get("default_cursor_field") or []),
            primary_key=list(primary_key or stream.get("source_defined_primary_key") or []),
            source_defined_cursor=defined,
        )


# The fields a user can give a stream, as FieldError marks them (each surface names them its way).
KEY_FIELDS = ("cursor_field", "primary_key")


def source_refusal(stream: dict[str, Any], mode: StreamMode, keys: StreamKeys) -> str | None:
    """Why the source side cannot sync the stream in ``mode``, or None when it can; a
    :class:`FieldError` template (the fields a user could give are marked)."""
    supported = stream.get("supported_sync_modes") or [FULL_REFRESH]
    if mode.sync_mode not in supported:
        return f"the source reads it only as {', '.join(supported)}"
    if mode.sync_mode == INCREMENTAL and not (keys.source_defined_cursor or keys.cursor):
        return "incremental needs a cursor and the source defines none (give one with {cursor_field})"
    if mode.destination_sync_mode == APPEND_DEDUP and not keys.primary_key:
        return "append_dedup needs a primary key and the source defines none (give one with {primary_key})"
    return None


def supported_modes(stream: dict[str, Any], dest_modes: frozenset[str], keys: StreamKeys) -> list[StreamMode]:
    """Every mode both sides support for this stream, in preference order."""
    return [
        mode
        for mode in PREFERENCE
        if mode.destination_sync_mode in dest_modes and source_refusal(stream, mode, keys) is None
    ]


def choose_mode(
    stream: dict[str, Any],
    dest_modes: frozenset[str],
    keys: StreamKeys,
    requested: StreamMode | None = None,
    prefer_incremental: bool = True,
) -> tuple[StreamMode, str | None]:
    """The stream's mode: the requested one if both sides support it, else the preferred one;
    and a note when the preferred one had to give way to a lesser one."""
    name = label(stream.get("namespace"), stream.get("name", ""))
    both = supported_modes(stream, dest_modes, keys)
    if requested is not None:
        if requested in both:
            return requested, None
        why = source_refusal(stream, requested, keys)
        if why is None:
            why = f"the destination writes only {_listing(sorted(dest_modes))}"
        raise FieldError(
            f"stream {name!r} cannot sync as {requested}: {why}; "
            f"both sides support {_listing(str(m) for m in both)}",
            *KEY_FIELDS,
        )
    order = PREFERENCE if prefer_incremental else FULL_REFRESH_PREFERENCE
    for mode in order:
        if mode in both:
            return mode, _fallback_note(stream, mode, order, dest_modes, keys)
    raise UserInputError(
        f"stream {name!r}: no sync mode that both sides support (the source reads "
        f"{', '.join(stream.get('supported_sync_modes') or [FULL_REFRESH])}, the destination writes "
        f"{_listing(sorted(dest_modes))})"
    )


def _fallback_note(
    stream: dict[str, Any],
    chosen: StreamMode,
    order: tuple[StreamMode, ...],
    dest_modes: frozenset[str],
    keys: StreamKeys,
) -> str | None:
    """Why the stream did not get the mode it would have had with every key and a full destination.

    A stream without a primary key syncs with append as a matter of course: no note for that.
    """
    supported = stream.get("supported_sync_modes") or [FULL_REFRESH]
    ideal = next(
        (
            mode
            for mode in order
            if mode.sync_mode in supported
            and (mode.destination_sync_mode != APPEND_DEDUP or keys.primary_key)
        ),
        chosen,
    )
    if ideal == chosen:
        return None
    why = source_refusal(stream, ideal, keys) or (
        f"the destination writes only {_listing(sorted(dest_modes))}"
    )
    name = label(stream.get("namespace"), stream.get("name", ""))
    return FieldError(f"stream {name!r} syncs as {chosen}, not {ideal}: {why}", *KEY_FIELDS).message


def _listing(items: Iterable[str]) -> str:
    listed = list(items)
    return ", ".join(listed) if listed else "none"
