"""A connection's schedule as the pages show and edit it, in the shape of Airbyte's public API:
``{"scheduleType": "manual"}``, ``{"scheduleType": "basic", "basicTiming": "Every 24 hours"}`` or
``{"scheduleType": "cron", "cronExpression": "0 0 2 * * ?"}`` (the connection's ``schedule``
field, the same one ``PATCH /v1/connections/{id}`` writes)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ferryman.errors import UserInputError
from ferryman.store.base import Connection

TYPES = ("manual", "basic", "cron")
BASIC_UNITS = ("minutes", "hours", "days", "weeks", "months")
_BASIC = re.compile(r"^Every (\d+) (minutes|hours|days|weeks|months)$")


def describe(schedule: Mapping[str, Any] | None) -> str:
    """One short phrase: ``manual``, ``Every 24 hours``, ``cron 0 0 2 * * ?``."""
    kind = (schedule or {}).get("scheduleType") or "manual"
    if kind == "cron":
        return f"cron {(schedule or {}).get('cronExpression') or '?'}"
    if kind == "basic":
        return str((schedule or {}).get("basicTiming") or "basic")
    return "manual"


def basic_parts(schedule: Mapping[str, Any] | None) -> tuple[int, str]:
    """The number and unit of a basic schedule (24 hours when there is none)."""
    found = _BASIC.match(str((schedule or {}).get("basicTiming") or ""))
    return (int(found.group(1)), found.group(2)) if found else (24, "hours")


def from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """The schedule a posted form asks for; one clear line when it is not one."""
    kind = form.get("scheduleType", "")
    if kind not in TYPES:
        raise UserInputError(f"schedule type must be one of {', '.join(TYPES)}, not {kind!r}")
    if kind == "manual":
        return {"scheduleType": "manual"}
    if kind == "basic":
        units, unit = form.get("units", "").strip(), form.get("timeUnit", "")
        if not units.isdigit() or int(units) < 1 or unit not in BASIC_UNITS:
            raise UserInputError(f"a basic schedule runs every N (1 or more) {', '.join(BASIC_UNITS)}")
        return {"scheduleType": "basic", "basicTiming": f"Every {int(units)} {unit}"}
    expression = " ".join(form.get("cronExpression", "").split())
    # Quartz (Airbyte's): seconds minutes hours day-of-month month day-of-week [year]; a plain
    # five-field crontab line is taken too. The scheduler checks the fields themselves.
    if not 5 <= len(expression.split()) <= 7:
        raise UserInputError(
            "a cron expression has 5 to 7 fields, e.g. '0 0 2 * * ?' (every day at 02:00), "
            f"not {expression!r}"
        )
    return {"scheduleType": "cron", "cronExpression": expression}


def next_run(connection: Connection) -> datetime | None:
    """When the scheduler runs the connection next; None: not scheduled, or not known here.

    NEXT RUN: wire the scheduler here once it lands (issue #12): return its next run time for an
    active connection with a basic or cron schedule. The list and connection pages show whatever
    this returns, in the browser's time zone."""
    return None
