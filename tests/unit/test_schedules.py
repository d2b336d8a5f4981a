"""Schedules: what a user may write, and when each runs next (pure: no clock, no store)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ferryman.jobs.schedules import (
    MANUAL,
    InvalidSchedule,
    ScheduleType,
    TimeUnit,
    from_document,
    parse_schedule,
)

# A Sunday.
SUN = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)


def runs(text: str, after: datetime = SUN, count: int = 3, timezone: str | None = None) -> list[datetime]:
    schedule = parse_schedule(text, timezone)
    found: list[datetime] = []
    moment = after
    for _ in range(count):
        upcoming = schedule.next_run(moment)
        assert upcoming is not None
        found.append(upcoming)
        moment = upcoming
    return found


def utc(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


# -- reading --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "units", "unit"),
    [
        ("every 30m", 30, TimeUnit.MINUTES),
        ("every 2h", 2, TimeUnit.HOURS),
        ("1d", 1, TimeUnit.DAYS),
        ("every 2 hours", 2, TimeUnit.HOURS),
        ("Every 24 HOURS", 24, TimeUnit.HOURS),  # Airbyte's basicTiming reads too
        ("every 1 week", 1, TimeUnit.WEEKS),
    ],
)
def test_basic_schedules_read_in_every_spelling(text: str, units: int, unit: TimeUnit) -> None:
    schedule = parse_schedule(text)
    assert (schedule.type, schedule.units, schedule.time_unit) == (ScheduleType.BASIC, units, unit)
    assert schedule.next_run(SUN) == SUN + timedelta(seconds=units * unit.seconds)


def test_manual_never_runs() -> None:
    assert parse_schedule("manual") == MANUAL
    assert MANUAL.next_run(SUN) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("every 0h", "at least 1"),
        ("every 5 fortnights", "cannot read the schedule"),
        ("every 400d", "more than a year"),
        ("1 2 3", "cannot read the schedule"),
        ("cron 0 0 25 * * ?", "invalid cron expression"),
        ("cron 0 0 12 15 * MON", "put '?' in one of them"),
        ("cron 0 0 12 ? * 0", "use 1-7 (1 = SUN)"),
        ("cron 0 0 12 ? * 8", "use 1-7 (1 = SUN)"),
        ("cron 0 0 12 LW * ?", "LW and L-n"),
        ("cron 0 0 12 L-3 * ?", "LW and L-n"),
        ("cron 0 0 0 31 2 ?", "never fires"),
        ("cron 0 0 12 * * ? * * *", "has 9 fields"),
        # Quartz's W needs a day: croniter's own text ("[0 12 w * ? 0]") is not what was written.
        ("cron 0 0 12 W * ?", "'0 0 12 W * ?': a field holds a value that is not valid there"),
        ("cron 0 0 12 15W,L * ?", "'W' can only be used with a single day value"),
    ],
)
def test_a_bad_schedule_is_one_clear_line(text: str, expected: str) -> None:
    with pytest.raises(InvalidSchedule) as raised:
        parse_schedule(text)
    message = str(raised.value)
    assert expected in message and "\n" not in message
    assert "[0 " not in message  # croniter's re-ordered copy of the expression


def test_time_zones_are_iana_names_and_only_for_cron() -> None:
    with pytest.raises(InvalidSchedule, match="unknown time zone 'Mars/Base'"):
        parse_schedule("cron 0 12 * * *", "Mars/Base")
    with pytest.raises(InvalidSchedule, match="cron schedules only"):
        parse_schedule("every 2h", "Europe/Berlin")


# -- cron: Quartz and five fields -----------------------------------------------------------------


def test_quartz_daily_at_noon_as_airbyte_writes_it() -> None:
    assert runs("cron 0 0 12 * * ?") == [utc(1, 12), utc(2, 12), utc(3, 12)]


def test_quartz_seconds_come_first() -> None:
    assert runs("cron 30 15 10 * * ?", count=1) == [utc(1, 10, 15) + timedelta(seconds=30)]


def test_quartz_and_cron_number_the_week_days_differently() -> None:
    # Quartz 2-6 = MON-FRI; cron 1-5 = MON-FRI: the same weekdays, never Sat/Sun.
    quartz = runs("cron 0 0 9 ? * 2-6", count=5)
    five = runs("cron 0 9 * * 1-5", count=5)
    assert quartz == five
    assert [day.strftime("%a") for day in quartz] == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    # Quartz 1 is Sunday; in cron 1 is Monday.
    assert runs("cron 0 0 9 ? * 1", count=1)[0].strftime("%a") == "Sun"
    assert runs("cron 0 9 * * 1", count=1)[0].strftime("%a") == "Mon"
    assert runs("cron 0 0 9 ? * 7", count=1)[0].strftime("%a") == "Sat"
    assert runs("cron 0 0 9 ? * SAT", count=1) == runs("cron 0 0 9 ? * 7", count=1)


def test_quartz_nth_and_last_weekday_of_the_month() -> None:
    # 6 is Friday in Quartz: the third Friday of March 2026 is the 20th, the last the 27th.
    assert runs("cron 0 0 12 ? * 6#3", count=2) == [utc(20, 12), utc(17, 12, month=4)]
    assert runs("cron 0 0 12 ? * 6L", count=1) == [utc(27, 12)]
    assert runs("cron 0 0 12 L * ?", count=1) == [utc(31, 12)]


def test_quartz_weekday_steps_count_from_sunday() -> None:
    # Quartz */2 in the week: days 1, 3, 5, 7 = SUN, TUE, THU, SAT.
    days = [d.strftime("%a") for d in runs("cron 0 0 9 ? * */2", count=4)]
    assert days == ["Sun", "Tue", "Thu", "Sat"]


def test_quartz_year_field_and_no_run_left() -> None:
    assert runs("cron 0 0 12 1 1 ? 2027", count=1) == [datetime(2027, 1, 1, 12, tzinfo=UTC)]
    assert parse_schedule("cron 0 0 12 1 1 ? 2025").next_run(SUN) is None


def test_five_field_cron_every_quarter_hour() -> None:
    assert runs("*/15 * * * *") == [utc(1, 0, 15), utc(1, 0, 30), utc(1, 0, 45)]


def test_a_slot_is_strictly_after_the_moment_given() -> None:
    assert runs("cron 0 0 12 * * ?", after=utc(1, 12), count=1) == [utc(2, 12)]


# -- time zones and daylight saving ---------------------------------------------------------------


def test_cron_runs_at_wall_clock_time_across_a_dst_change() -> None:
    # Berlin moves from UTC+1 to UTC+2 on 29 March 2026: 09:00 local is 08:00Z, then 07:00Z.
    found = runs("cron 0 0 9 * * ?", after=utc(27, 12), count=3, timezone="Europe/Berlin")
    assert found == [utc(28, 8), utc(29, 7), utc(30, 7)]
    # The zone can follow the expression, as Airbyte echoes it.
    assert runs("cron 0 0 9 * * ? Europe/Berlin", after=utc(27, 12), count=3) == found


def test_a_skipped_time_runs_after_the_change_and_a_repeated_one_runs_once() -> None:
    # 02:30 does not exist in Berlin on 29 March: it runs at 03:30 local (01:30Z).
    spring = runs("cron 30 2 * * *", after=utc(28, 12), count=2, timezone="Europe/Berlin")
    assert spring == [utc(29, 1, 30), utc(30, 0, 30)]
    # 02:30 happens twice on 25 October: one run, the first (00:30Z), then the next day.
    autumn = runs("cron 30 2 * * *", after=utc(24, 12, month=10), count=2, timezone="Europe/Berlin")
    assert autumn == [utc(25, 0, 30, month=10), utc(26, 1, 30, month=10)]


def test_an_hourly_cron_stays_hourly_in_elapsed_time_across_both_changes() -> None:
    # 25 October, Berlin: 02:00-02:59 happens twice (00:00Z-00:59Z CEST, then 01:00Z-01:59Z CET).
    # A schedule that fires every hour fires in both passes, as Quartz and cron do: no hour lost.
    hourly = runs("cron 0 0 * * * ?", after=utc(24, 22, month=10), count=5, timezone="Europe/Berlin")
    assert hourly == [utc(24, 23, month=10)] + [utc(25, hour, month=10) for hour in range(4)]
    quarter = runs("cron */15 * * * *", after=utc(25, 0, 30, month=10), count=6, timezone="Europe/Berlin")
    assert quarter == [utc(25, 0, minute, month=10) for minute in (45,)] + [
        utc(25, 1, minute, month=10) for minute in (0, 15, 30, 45)
    ] + [utc(25, 2, month=10)]
    # Asked from inside the second pass (a scheduler pass at 02:10 CET), the next slot is the next
    # minute, not the end of the hour; and a slot every second still has a next run.
    inside = utc(25, 1, 10, month=10)
    assert runs("cron * * * * *", after=inside, count=1, timezone="Europe/Berlin") == [
        utc(25, 1, 11, month=10)
    ]
    assert runs("cron * * * * * ?", after=inside, count=1, timezone="Europe/Berlin") == [
        inside + timedelta(seconds=1)
    ]
    # The first pass, with no slot left in it: the second pass of 02:00 is next (01:00Z).
    assert runs("cron 0 * * * *", after=utc(25, 0, 30, month=10), count=1, timezone="Europe/Berlin") == [
        utc(25, 1, month=10)
    ]
    # 29 March: 02:00 does not exist; the hourly run comes one real hour after the last one.
    spring = runs("cron 0 0 * * * ?", after=utc(28, 23), count=3, timezone="Europe/Berlin")
    assert spring == [utc(29, 0), utc(29, 1), utc(29, 2)]
    # New York, 1 November: 01:00 EDT (05:00Z), 01:00 EST (06:00Z), 02:00 EST (07:00Z).
    new_york = runs("cron 0 * * * *", after=utc(1, 4, 30, month=11), count=3, timezone="America/New_York")
    assert new_york == [utc(1, 5, month=11), utc(1, 6, month=11), utc(1, 7, month=11)]


def test_a_fixed_time_in_the_repeated_hour_runs_once_even_when_asked_from_the_second_pass() -> None:
    # Once the 01:30 EDT run is made, and from anywhere in the second pass: the next is tomorrow.
    for after in (utc(1, 5, 30, month=11), utc(1, 6, 10, month=11), utc(1, 6, 45, month=11)):
        found = runs("cron 0 30 1 * * ?", after=after, count=1, timezone="America/New_York")
        assert found == [utc(2, 6, 30, month=11)]
    # A slot every second of the 02:00 hour only: the second pass does not run it again.
    assert runs("cron * * 2 * * ?", after=utc(25, 1, 10, month=10), count=1, timezone="Europe/Berlin") == [
        utc(26, 1, month=10)
    ]


def test_basic_intervals_ignore_time_zones() -> None:
    assert runs("every 1d", after=utc(28, 8), count=2) == [utc(29, 8), utc(30, 8)]


# -- documents: what the store keeps and the API takes -------------------------------------------


def test_documents_round_trip() -> None:
    for text, zone in (("manual", None), ("every 2h", None), ("cron 0 0 12 * * ?", "Europe/Berlin")):
        schedule = parse_schedule(text, zone)
        assert from_document(schedule.to_document()) == schedule


def test_api_shapes_of_a_basic_schedule() -> None:
    expected = parse_schedule("every 2h")
    assert from_document({"scheduleType": "basic", "units": 2, "timeUnit": "hours"}) == expected
    assert from_document({"scheduleType": "basic", "basicTiming": "Every 2 HOURS"}) == expected
    assert (
        from_document({"scheduleType": "basic", "basicSchedule": {"units": 2, "timeUnit": "HOURS"}})
        == expected
    )
    assert expected.basic_timing == "Every 2 HOURS"
    with pytest.raises(InvalidSchedule, match="needs units and timeUnit"):
        from_document({"scheduleType": "basic"})


def test_api_shapes_of_a_cron_schedule() -> None:
    # Stored by ferryman before schedules were checked: no zone means UTC.
    stored = from_document({"scheduleType": "cron", "cronExpression": "0 0 * * * ?"})
    assert (stored.cron, stored.timezone) == ("0 0 * * * ?", "UTC")
    echoed = from_document({"scheduleType": "cron", "cronExpression": "0 0 12 * * ? America/New_York"})
    assert (echoed.cron, echoed.timezone) == ("0 0 12 * * ?", "America/New_York")
    with pytest.raises(InvalidSchedule, match="cronExpression is required"):
        from_document({"scheduleType": "cron"})
    with pytest.raises(InvalidSchedule, match="unknown scheduleType"):
        from_document({"scheduleType": "hourly"})


def test_a_feb_29_cron_in_a_non_leap_year_runs_in_the_next_leap_year_shown_in_days() -> None:
    from ferryman.cli.common import duration

    after = datetime(2026, 11, 30, 12, tzinfo=UTC)
    [upcoming] = runs("cron 0 0 12 29 2 ?", after=after, count=1)
    assert upcoming == datetime(2028, 2, 29, 12, tzinfo=UTC)
    assert duration((upcoming - after).total_seconds()) == "456d 00h"  # as `connections show` says
    assert duration(2 * 3600 + 5 * 60) == "2h 05m"


def test_a_moment_shown_in_full_names_its_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """`connections show` says when a cron runs next: in the machine's zone, which it names, so
    a cron set for New York read on a UTC server is not taken for the wrong hour."""
    import time

    from ferryman.cli.common import when

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        noon_utc = datetime(2026, 7, 1, 12, tzinfo=UTC)
        assert when(noon_utc) == "2026-07-01 08:00:00 EDT"
        assert when(noon_utc, short=True) == "07-01 08:00:00"
    finally:
        monkeypatch.undo()
        time.tzset()
