"""fleet.schedule: warm windows in the pool's time zone, honoured a pod-start horizon early."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jibri_operator.fleet.schedule import Schedule, ScheduleError, WarmWindow

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS = Schedule.from_spec(
    [{"start": "55 8-17 * * 1-5", "duration": "10m", "idleTarget": 8}], "Europe/Berlin"
)


def at(*when: int, zone: ZoneInfo = BERLIN) -> float:
    return datetime(*when, tzinfo=zone).timestamp()  # type: ignore[misc]


def test_a_window_is_warm_a_horizon_before_it_opens_and_until_it_ends() -> None:
    monday = (2026, 2, 2)
    assert WEEKDAYS.state(at(*monday, 8, 53, 59), 60).idle_target == 0
    assert WEEKDAYS.state(at(*monday, 8, 54, 0), 60).idle_target == 8
    assert WEEKDAYS.state(at(*monday, 9, 4, 59), 60).idle_target == 8
    assert WEEKDAYS.state(at(*monday, 9, 5, 0), 60).idle_target == 0
    assert WEEKDAYS.state(at(*monday, 17, 54, 0), 60).idle_target == 8
    assert WEEKDAYS.state(at(*monday, 18, 54, 0), 60).idle_target == 0  # 8-17 only
    assert WEEKDAYS.state(at(2026, 2, 7, 8, 55), 60).idle_target == 0  # Saturday


def test_the_answer_says_which_window_and_how_long_it_holds() -> None:
    state = WEEKDAYS.state(at(2026, 2, 2, 8, 54, 30), 60)
    assert "55 8-17 * * 1-5" in state.why and "8 idle" in state.why
    assert state.valid_for == pytest.approx(30)  # wall + horizon reaches 8:56
    closing = WEEKDAYS.state(at(2026, 2, 2, 9, 4, 50), 60)
    assert closing.valid_for == pytest.approx(10)  # the window ends at 9:05


def test_local_time_holds_across_a_dst_change() -> None:
    daily = Schedule((WarmWindow("0 9 * * *", 600, 4),), "Europe/Berlin")
    for day in (28, 29, 30):  # summer time starts on 29 March 2026
        assert daily.state(at(2026, 3, day, 9, 0), 0).idle_target == 4
        assert daily.state(at(2026, 3, day, 8, 59), 0).idle_target == 0
    utc = Schedule((WarmWindow("0 9 * * *", 600, 4),), "UTC")
    assert utc.state(at(2026, 3, 30, 9, 0), 0).idle_target == 0  # 9:00 in Berlin is 7:00 UTC then


def test_the_largest_open_window_wins() -> None:
    schedule = Schedule((WarmWindow("0 9 * * *", 3600, 3), WarmWindow("30 9 * * *", 600, 6)), "UTC")
    assert schedule.state(at(2026, 2, 2, 9, 10, zone=ZoneInfo("UTC")), 0).idle_target == 3
    assert schedule.state(at(2026, 2, 2, 9, 35, zone=ZoneInfo("UTC")), 0).idle_target == 6


@pytest.mark.parametrize(
    ("items", "zone"),
    [
        ([{"start": "61 * * * *", "duration": "1m", "idleTarget": 1}], "UTC"),
        ([{"start": "0 0 * * * *", "duration": "1m", "idleTarget": 1}], "UTC"),  # seconds field
        ([{"start": "0 9 * * *", "duration": "soon", "idleTarget": 1}], "UTC"),
        ([{"start": "0 9 * * *", "duration": "0s", "idleTarget": 1}], "UTC"),
        ([{"start": "0 9 * * *", "duration": "1m", "idleTarget": -1}], "UTC"),
        ([], "Mars/Olympus_Mons"),
    ],
)
def test_what_cannot_be_read_is_refused_with_a_reason(items: list[dict[str, object]], zone: str) -> None:
    with pytest.raises(ScheduleError):
        Schedule.from_spec(items, zone)


@settings(max_examples=60, deadline=None)
@given(
    minute=st.integers(0, 59),
    first_hour=st.integers(4, 20),  # the hour DST skips runs as Debian cron does: not checked here
    hours=st.integers(0, 4),
    duration=st.integers(1, 90).map(lambda minutes: minutes * 60.0),
    horizon=st.sampled_from([0.0, 30.0, 60.0, 90.0]),
    offset=st.integers(0, 3 * 86400),
)
def test_a_window_raises_the_target_exactly_inside_start_minus_horizon_to_end(
    minute: int, first_hour: int, hours: int, duration: float, horizon: float, offset: int
) -> None:
    last_hour = min(23, first_hour + hours)
    window = WarmWindow(f"{minute} {first_hour}-{last_hour} * * *", duration, 5)
    schedule = Schedule((window,), "Europe/Berlin")
    wall = at(2026, 3, 27) + offset  # spans the DST change of 29 March
    # The oracle: every whole minute that could be a start, matched by hand.
    starts = []
    moment = (wall - duration - 120) // 60 * 60
    while moment <= wall + horizon:
        local = datetime.fromtimestamp(moment, BERLIN)
        if local.minute == minute and first_hour <= local.hour <= last_hour:
            starts.append(moment)
        moment += 60
    inside = any(start - horizon <= wall < start + duration for start in starts)
    assert (schedule.state(wall, horizon).idle_target == 5) == inside
