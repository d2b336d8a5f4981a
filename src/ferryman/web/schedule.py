"""A connection's schedule as the pages show and edit it. The rules are the scheduler's
(:mod:`ferryman.jobs.schedules`): the form is read into the same :class:`Schedule` the CLI and
the API make, and saved through the job service, which plans the next run."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ferryman.errors import UserInputError
from ferryman.jobs.schedules import InvalidSchedule, Schedule, ScheduleType, TimeUnit, from_document
from ferryman.store.base import Connection

TYPES = ("manual", "basic", "cron")
BASIC_UNITS = tuple(unit.value for unit in TimeUnit)


def _read(schedule: Mapping[str, Any] | None) -> Schedule | None:
    try:
        return from_document(dict(schedule or {}))
    except InvalidSchedule:
        return None  # stored by an older version in a shape nobody reads: shown as it is


def describe(schedule: Mapping[str, Any] | None) -> str:
    """One short phrase: ``manual``, ``every 24h``, ``cron 0 0 2 * * ? (UTC)``."""
    read = _read(schedule)
    return read.describe() if read is not None else str(dict(schedule or {}))


def basic_parts(schedule: Mapping[str, Any] | None) -> tuple[int, str]:
    """The number and unit of a basic schedule (24 hours when there is none)."""
    read = _read(schedule)
    if read is None or read.type is not ScheduleType.BASIC or read.time_unit is None:
        return 24, TimeUnit.HOURS.value
    return read.units, read.time_unit.value


def cron_parts(schedule: Mapping[str, Any] | None) -> tuple[str, str]:
    """The expression and time zone of a cron schedule (empty and UTC when there is none)."""
    read = _read(schedule)
    if read is None or read.type is not ScheduleType.CRON:
        return "", "UTC"
    return read.cron, read.timezone


def from_form(form: Mapping[str, str]) -> Schedule:
    """The schedule a posted form asks for; one clear line when it is not one."""
    kind = form.get("scheduleType", "")
    if kind not in TYPES:
        raise UserInputError(f"schedule type must be one of {', '.join(TYPES)}, not {kind!r}")
    if kind == "basic":
        units = form.get("units", "").strip()
        if not units.isdigit() or int(units) < 1:
            raise UserInputError(f"a basic schedule runs every N (1 or more) {', '.join(BASIC_UNITS)}")
        return from_document(
            {"scheduleType": "basic", "units": int(units), "timeUnit": form.get("timeUnit", "")}
        )
    if kind == "cron":
        expression = " ".join(form.get("cronExpression", "").split())
        zone = form.get("timezone", "").strip() or None
        return from_document({"scheduleType": "cron", "cronExpression": expression, "timezone": zone})
    return from_document({"scheduleType": "manual"})


def next_run(connection: Connection) -> datetime | None:
    """When the scheduler runs the connection next; None: manual, or disabled."""
    return connection.next_run_at if connection.status == "active" else None
