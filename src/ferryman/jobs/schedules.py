"""Connection schedules: what they look like, and when the next run is due. Pure: no clock, no I/O.

Three kinds, as Airbyte's ``scheduleType``:

* ``manual``: never runs by itself.
* ``basic``: every N minutes, hours, days or weeks (Airbyte's ``units`` + ``timeUnit``; months
  are 30 days, as Airbyte counts them).
* ``cron``: a Quartz expression (6 or 7 fields, seconds first, ``?``, day of week 1-7 = SUN-SAT),
  as Airbyte takes them, or an ordinary 5-field one (day of week 0-7, 0 and 7 = SUN); in an IANA
  time zone, UTC by default.

:func:`next_run` is the rule the scheduler applies (``docs/scheduling.md``): the first slot
strictly after a moment. A cron slot is a wall-clock time in the schedule's zone: a time the
clock skips (spring forward) runs at the same distance after the change, 02:30 becomes 03:30; a
time the clock passes twice (fall back) runs once, the first time, unless the expression fires
every hour (``0 0 * * * ?``, ``*/15 * * * *``): that one runs in both passes, every real hour.

croniter evaluates the expressions, Quartz ones after their day of week is renumbered (``6#3``,
the third Friday, becomes croniter's ``5#3``; ``6L``, the last Friday, ``L5``). What croniter
cannot evaluate (Quartz's ``LW`` and ``L-3``) is refused with one line, never run wrongly.
croniter is imported on first use: the CLI shows schedules without paying for it at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ferryman.errors import UserInputError

DEFAULT_TIMEZONE = "UTC"
# How far ahead a cron expression is searched for its next slot (croniter's own default is 50
# years); an expression with no slot that soon (a year field in the past) has no next run.
_SEARCH_YEARS = 10


class InvalidSchedule(UserInputError):
    """A schedule that cannot be read: one line saying what is wrong and what is expected."""


class ScheduleType(StrEnum):
    MANUAL = "manual"
    BASIC = "basic"
    CRON = "cron"


class TimeUnit(StrEnum):
    MINUTES = "minutes"
    HOURS = "hours"
    DAYS = "days"
    WEEKS = "weeks"
    MONTHS = "months"  # 30 days, as Airbyte

    @property
    def seconds(self) -> int:
        return {"minutes": 60, "hours": 3600, "days": 86400, "weeks": 604800, "months": 2592000}[self.value]

    @property
    def short(self) -> str:
        return {"minutes": "m", "hours": "h", "days": "d", "weeks": "w", "months": "mo"}[self.value]


_UNIT_WORDS = {
    "m": TimeUnit.MINUTES,
    "min": TimeUnit.MINUTES,
    "mins": TimeUnit.MINUTES,
    "minute": TimeUnit.MINUTES,
    "minutes": TimeUnit.MINUTES,
    "h": TimeUnit.HOURS,
    "hr": TimeUnit.HOURS,
    "hour": TimeUnit.HOURS,
    "hours": TimeUnit.HOURS,
    "d": TimeUnit.DAYS,
    "day": TimeUnit.DAYS,
    "days": TimeUnit.DAYS,
    "w": TimeUnit.WEEKS,
    "week": TimeUnit.WEEKS,
    "weeks": TimeUnit.WEEKS,
    "mo": TimeUnit.MONTHS,
    "month": TimeUnit.MONTHS,
    "months": TimeUnit.MONTHS,
}
_EVERY = re.compile(r"(?:every\s+)?(\d+)\s*([a-z]+)", re.IGNORECASE)


@dataclass(frozen=True)
class Schedule:
    """A validated schedule. Build one with :func:`parse_schedule` or :func:`from_document`."""

    type: ScheduleType = ScheduleType.MANUAL
    units: int = 0  # basic
    time_unit: TimeUnit | None = None  # basic
    cron: str = ""  # cron: the expression as given, without its time zone
    timezone: str = DEFAULT_TIMEZONE  # cron

    @property
    def interval(self) -> timedelta:
        assert self.time_unit is not None
        return timedelta(seconds=self.units * self.time_unit.seconds)

    def next_run(self, after: datetime) -> datetime | None:
        """The first slot strictly after ``after`` (aware), in UTC; None for manual, or for a
        cron expression with no slot left (its year field is past)."""
        if self.type is ScheduleType.MANUAL:
            return None
        after = after.astimezone(UTC)
        if self.type is ScheduleType.BASIC:
            return after + self.interval
        return _compiled(self.cron).next_after(after, self.timezone)

    def to_document(self) -> dict[str, Any]:
        """How the store keeps it (Airbyte's field names where Airbyte has one)."""
        if self.type is ScheduleType.BASIC:
            assert self.time_unit is not None
            return {"scheduleType": "basic", "units": self.units, "timeUnit": self.time_unit.value}
        if self.type is ScheduleType.CRON:
            return {"scheduleType": "cron", "cronExpression": self.cron, "timezone": self.timezone}
        return {"scheduleType": "manual"}

    def describe(self) -> str:
        """For people: ``manual``, ``every 2h``, ``cron 0 0 12 * * ? (Europe/Berlin)``."""
        if self.type is ScheduleType.BASIC:
            assert self.time_unit is not None
            return f"every {self.units}{self.time_unit.short}"
        if self.type is ScheduleType.CRON:
            return f"cron {self.cron} ({self.timezone})"
        return "manual"

    @property
    def basic_timing(self) -> str | None:
        """Airbyte's ``basicTiming`` of a basic schedule: ``Every 2 HOURS``."""
        if self.type is not ScheduleType.BASIC or self.time_unit is None:
            return None
        return f"Every {self.units} {self.time_unit.value.upper()}"


MANUAL = Schedule()


def basic(units: int, time_unit: str | TimeUnit) -> Schedule:
    try:
        unit = TimeUnit(str(time_unit).lower())
    except ValueError:
        names = ", ".join(u.value for u in TimeUnit)
        raise InvalidSchedule(f"unknown time unit {time_unit!r}: expected one of {names}") from None
    if isinstance(units, bool) or not isinstance(units, int) or units < 1:
        raise InvalidSchedule(
            f"a basic schedule needs a whole number of {unit.value} of at least 1, got {units!r}"
        )
    if units * unit.seconds > 366 * 86400:
        raise InvalidSchedule(f"every {units} {unit.value} is more than a year: use a cron schedule")
    return Schedule(ScheduleType.BASIC, units=units, time_unit=unit)


def cron(expression: str, timezone: str | None = None) -> Schedule:
    """A cron schedule; a trailing IANA zone in the expression (Airbyte echoes ``<expr> UTC``)
    is taken as its zone unless ``timezone`` names one."""
    text = " ".join(expression.split())
    if not text:
        raise InvalidSchedule(
            "a cron schedule needs an expression, e.g. '0 0 12 * * ?' (Quartz) or '0 12 * * *'"
        )
    words = text.split(" ")
    if len(words) > 5 and _is_zone(words[-1]):
        timezone = timezone or words[-1]
        text = " ".join(words[:-1])
    zone = check_timezone(timezone or DEFAULT_TIMEZONE)
    _compiled(text)  # raises InvalidSchedule
    return Schedule(ScheduleType.CRON, cron=text, timezone=zone)


def check_timezone(name: str) -> str:
    if not _is_zone(name):
        raise InvalidSchedule(f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Berlin")
    return name


def _is_zone(name: str) -> bool:
    if not name or name.startswith(("/", ".")) or ".." in name:
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder ("America"), a long name
        return False
    return True


def parse_schedule(text: str, timezone: str | None = None) -> Schedule:
    """What a person types: ``manual``; ``every 30m`` (``2h``, ``1d``, ``every 2 hours``);
    ``cron 0 0 12 * * ?`` or the bare expression; ``timezone`` for cron."""
    stripped = " ".join(text.split())
    lowered = stripped.lower()
    if lowered == "manual":
        if timezone:
            raise InvalidSchedule("--timezone applies to cron schedules only")
        return MANUAL
    if lowered.startswith("cron "):
        return cron(stripped[5:], timezone)
    every = _EVERY.fullmatch(stripped)
    if every is not None and every.group(2).lower() in _UNIT_WORDS:
        if timezone:
            raise InvalidSchedule(
                "--timezone applies to cron schedules only: an interval is the same in every zone"
            )
        return basic(int(every.group(1)), _UNIT_WORDS[every.group(2).lower()])
    if len(stripped.split(" ")) >= 5:
        return cron(stripped, timezone)
    raise InvalidSchedule(
        f"cannot read the schedule {text!r}: use manual, every 30m (or 2h, 1d), "
        "or cron '0 0 12 * * ?' (Quartz) / '0 12 * * *'"
    )


def from_document(document: dict[str, Any] | None) -> Schedule:
    """A stored or API schedule: ``{"scheduleType": "manual" | "basic" | "cron", ...}``.

    Basic takes ``units`` + ``timeUnit`` (also inside ``basicSchedule``, Airbyte's config API)
    or a ``basicTiming`` text (``Every 2 HOURS``, ``2h``); cron takes ``cronExpression`` and an
    optional ``timezone`` (or ``cronTimeZone``)."""
    if not document:
        return MANUAL
    kind = str(document.get("scheduleType") or "manual").lower()
    if kind == "manual":
        return MANUAL
    if kind == "cron":
        expression = document.get("cronExpression")
        if not isinstance(expression, str) or not expression.strip():
            raise InvalidSchedule("schedule.cronExpression is required with scheduleType cron")
        zone = document.get("timezone") or document.get("cronTimeZone")
        return cron(expression, str(zone) if zone else None)
    if kind == "basic":
        nested = document.get("basicSchedule")
        inner: dict[str, Any] = nested if isinstance(nested, dict) else document
        if inner.get("units") is not None or inner.get("timeUnit") is not None:
            return basic(inner.get("units"), str(inner.get("timeUnit") or ""))  # type: ignore[arg-type]
        timing = document.get("basicTiming")
        if isinstance(timing, str) and timing.strip():
            every = _EVERY.fullmatch(" ".join(timing.split()))
            if every is not None and every.group(2).lower() in _UNIT_WORDS:
                return basic(int(every.group(1)), _UNIT_WORDS[every.group(2).lower()])
            raise InvalidSchedule(f"cannot read basicTiming {timing!r}: expected e.g. 'Every 2 HOURS'")
        raise InvalidSchedule("a basic schedule needs units and timeUnit (e.g. 2 and hours) or basicTiming")
    raise InvalidSchedule(f"unknown scheduleType {kind!r}: expected manual, basic or cron")


# -- cron expressions ---------------------------------------------------------------------------

_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True)
class _Cron:
    expression: str  # what croniter evaluates
    seconds_first: bool  # a Quartz expression: seconds, ..., [year]
    every_hour: bool  # the hour field matches every hour: a repeated hour runs twice, as elapsed time

    def next_after(self, after: datetime, timezone: str) -> datetime | None:
        zone = ZoneInfo(timezone)
        local = after.astimezone(zone)
        start = local.replace(tzinfo=None)
        found = self._search(start, after, zone)
        repeat = _repeated_by(start, zone)
        if self.every_hour and repeat and not local.fold and not _in_repeat(found, zone):
            # In the first pass of a repeated span with no slot left in it: the second pass of
            # the slots just passed comes before the next one.
            found = self._search(start - repeat, after, zone)
        return found

    def _search(self, start: datetime, after: datetime, zone: ZoneInfo) -> datetime | None:
        """The first slot after ``after`` among the walls after ``start``. Each wall is placed in
        the zone with fold=0: a skipped time after the change, a repeated one at its first
        occurrence; an expression that fires every hour also fires in the second pass (fold=1),
        so an hourly run stays hourly in elapsed time, as in Quartz and cron."""
        from croniter import CroniterBadDateError, croniter

        slots = croniter(
            self.expression,
            start,
            second_at_beginning=self.seconds_first,
            max_years_between_matches=_SEARCH_YEARS,
        )
        best: datetime | None = None
        while True:
            try:
                wall: datetime = slots.get_next(datetime)
            except (CroniterBadDateError, StopIteration):
                return best
            first = wall.replace(tzinfo=zone).astimezone(UTC)
            if _repeated_by(wall, zone):
                # Every later wall is later than this one's first pass and its second pass.
                if first > after:
                    return first if best is None else min(best, first)
                second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
                if self.every_hour and second > after:
                    return second if best is None else min(best, second)
                continue
            if first > after and (best is None or first < best):
                best = first
            # A skipped wall runs after the change, possibly after walls that follow it: look on
            # to the first wall that exists, after which walls and instants are in order again.
            if best is not None and first.astimezone(zone).replace(tzinfo=None) == wall:
                return best


def _in_repeat(moment: datetime | None, zone: ZoneInfo) -> bool:
    return moment is not None and bool(_repeated_by(moment.astimezone(zone).replace(tzinfo=None), zone))


def _repeated_by(wall: datetime, zone: ZoneInfo) -> timedelta:
    """How much longer than usual the wall time lasts in the zone: the length of the repeated
    span when the clocks go back and ``wall`` happens twice, else zero."""
    first = wall.replace(tzinfo=zone).utcoffset()
    second = wall.replace(tzinfo=zone, fold=1).utcoffset()
    assert first is not None and second is not None
    return max(first - second, timedelta(0))


@lru_cache(maxsize=4096)
def _compiled(expression: str) -> _Cron:
    from croniter import CroniterError, croniter

    fields = expression.split(" ")
    if len(fields) in (5, 6, 7):
        seconds_first = len(fields) > 5
        converted = _from_quartz(expression, fields) if seconds_first else expression
    else:
        raise InvalidSchedule(
            f"cron expression {expression!r} has {len(fields)} fields: expected 5 (minute hour day month "
            "weekday) or Quartz's 6-7 (second minute hour day month weekday [year])"
        )
    try:
        croniter(converted, datetime(2000, 1, 1), second_at_beginning=seconds_first)
        # expand() gives the fields in croniter's order, minute first: the hours are the second.
        hours = croniter.expand(converted, second_at_beginning=seconds_first)[0][1]
    except CroniterError as exc:
        raise InvalidSchedule(f"invalid cron expression {expression!r}: {_reason(expression, exc)}") from None
    compiled = _Cron(converted, seconds_first, every_hour=hours == ["*"] or len(hours) == 24)
    if compiled.next_after(datetime(2000, 1, 1, tzinfo=UTC), DEFAULT_TIMEZONE) is None and len(fields) < 7:
        raise InvalidSchedule(f"cron expression {expression!r} never fires")
    return compiled


def _reason(expression: str, exc: Exception) -> str:
    upper = expression.upper()
    if "LW" in upper or "L-" in upper:
        return "Quartz's LW and L-n (days before the end of the month) are not supported"
    text = " ".join(str(exc).split())
    # croniter quotes the expression in its own field order, lower-cased ("[0 12 w * ? 0] is not
    # acceptable"): not what the user wrote, so only the explanation that may follow is kept.
    text = re.sub(r"^\[[^\]]*\] is not acceptable[.,]?\s*", "", text)
    return text[:200] or "a field holds a value that is not valid there"


def _from_quartz(expression: str, fields: list[str]) -> str:
    """The Quartz expression in croniter's terms: the same fields, day of week renumbered."""
    day_of_month, day_of_week = fields[3], fields[5]
    if day_of_month != "?" and day_of_week != "?" and "*" not in (day_of_month, day_of_week):
        raise InvalidSchedule(
            f"Quartz expression {expression!r} sets both a day of month and a day of week: "
            "put '?' in one of them, e.g. '0 0 12 ? * MON-FRI'"
        )
    converted = list(fields)
    converted[5] = ",".join(_quartz_weekday(part, expression) for part in day_of_week.split(","))
    return " ".join(converted)


def _quartz_weekday(part: str, expression: str) -> str:
    """One comma-separated item of a Quartz day-of-week field, with 1-7 = SUN-SAT made 0-6."""
    token = part.upper()
    if token in ("*", "?"):
        return token
    if token == "L":  # alone in the day-of-week field: the last day of the week
        return "6"
    last = re.fullmatch(r"([A-Z0-9]+)L", token)
    if last is not None:  # the last such weekday of the month: croniter writes it L<day>
        return f"L{_quartz_day(last.group(1), expression)}"
    nth = re.fullmatch(r"([A-Z0-9]+)#([1-5])", token)
    if nth is not None:
        return f"{_quartz_day(nth.group(1), expression)}#{nth.group(2)}"
    base, slash, step = token.partition("/")
    if slash and not step.isdigit():
        raise InvalidSchedule(f"invalid day-of-week step {part!r} in {expression!r}")
    if base == "*":
        # Quartz */2 = 1,3,5,7 (SUN,TUE,THU,SAT); written out, as cron's */2 counts from 0.
        return f"0-6/{step}" if slash else "*"
    first, dash, last_day = base.partition("-")
    if dash:
        converted = f"{_quartz_day(first, expression)}-{_quartz_day(last_day, expression)}"
    elif slash:  # Quartz 2/3: from MON every 3 days, to the end of the week
        converted = f"{_quartz_day(first, expression)}-6"
    else:
        converted = _quartz_day(first, expression)
    return f"{converted}/{step}" if slash else converted


def _quartz_day(token: str, expression: str) -> str:
    if token in _DAY_NAMES:
        return str(_DAY_NAMES.index(token))
    if token.isdigit() and 1 <= int(token) <= 7:
        return str(int(token) - 1)
    raise InvalidSchedule(
        f"invalid day of week {token!r} in Quartz expression {expression!r}: use 1-7 (1 = SUN) or SUN-SAT"
    )
