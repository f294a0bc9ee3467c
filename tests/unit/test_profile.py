"""fleet.profile: what a pool learns from the sessions it has seen arrive, in simulated time."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jibri_operator.fleet.profile import ArrivalProfile

ZONE = ZoneInfo("Europe/Berlin")
DAY, WEEK = 86400.0, 7 * 86400.0
MONDAY = datetime(2026, 2, 2, tzinfo=ZONE).timestamp()


def watch(profile: ArrivalProfile, arrivals: Iterable[float], until: float, step: float = 10.0) -> None:
    """Drive the profile as the operator does: every arrival, and the clock every ``step`` s."""
    pending = sorted(arrivals)
    clock = profile.to_dict()["open"]
    now = clock["lastSeen"] if clock else (pending[0] if pending else until)
    for arrival in [*pending, until]:
        while now + step < arrival:
            now += step
            profile.advance(now)
        if arrival < until:
            profile.record_arrival(arrival)
        now = max(now, arrival)
    profile.advance(until)


def top_of_the_hour(weeks: int, burst: int = 10, spread: float = 40.0) -> list[float]:
    """A burst of ``burst`` sessions in the first ``spread`` seconds of 9:00 to 17:00, weekdays."""
    arrivals = []
    for week in range(weeks):
        for day in range(5):
            for hour in range(9, 18):
                start = MONDAY + week * WEEK + day * DAY + hour * 3600
                arrivals += [start + spread * index / burst for index in range(burst)]
    return arrivals


def test_a_learned_profile_warms_the_pool_before_the_hour_and_lets_go_after() -> None:
    profile = ArrivalProfile(time_zone="Europe/Berlin")  # 5-minute slots, 30 s horizon, p90
    watch(profile, top_of_the_hour(2), MONDAY + 2 * WEEK + 8 * 3600)
    nine = MONDAY + 2 * WEEK + 9 * 3600
    watch(profile, [], nine - 40)
    assert profile.need(nine - 40, 30).idle == 0  # not yet: a lead of 30 s
    assert profile.need(nine - 30, 30).idle == 8  # 10 in 40 s: 8 within any 30 s
    assert "Mon 09:00-09:05" in profile.need(nine - 30, 30).why
    # The burst comes: once it has, nothing more is expected in the slot.
    watch(profile, [nine + 4 * index for index in range(10)], nine + 60)
    assert profile.need(nine + 60, 30).idle == 0
    assert profile.need(nine + 600, 30).idle == 0  # 9:10, between bursts


def test_a_larger_burst_than_usual_keeps_the_pool_refilling() -> None:
    profile = ArrivalProfile(time_zone="Europe/Berlin")
    arrivals = top_of_the_hour(1, burst=10) + [at + WEEK for at in top_of_the_hour(1, burst=14)]
    watch(profile, arrivals, MONDAY + 2 * WEEK + 9 * 3600)
    nine = MONDAY + 2 * WEEK + 9 * 3600
    watch(profile, [nine + index for index in range(11)], nine + 12)
    assert profile.need(nine + 12, 30).idle > 0  # 11 seen: the 14-weeks say more are coming


def test_a_young_weekday_borrows_from_the_others_and_an_old_one_does_not() -> None:
    profile = ArrivalProfile(time_zone="Europe/Berlin")
    mondays_only = [at for at in top_of_the_hour(1) if at < MONDAY + DAY]
    watch(profile, mondays_only, MONDAY + 2 * DAY)
    tuesday_nine = MONDAY + DAY + 9 * 3600  # the Tuesday passed quiet: 1 week of its own zero
    assert profile.need(tuesday_nine, 30).idle == 0  # own quiet week outweighs 1 borrowed Monday
    fresh = ArrivalProfile(time_zone="Europe/Berlin")
    watch(fresh, mondays_only, MONDAY + DAY)
    wednesday_nine = MONDAY + 2 * DAY + 9 * 3600  # never watched yet: all borrowed
    assert fresh.need(wednesday_nine, 30).idle == 8
    assert "borrowed" in fresh.need(wednesday_nine, 30).why


def test_a_pattern_that_stops_decays_away() -> None:
    profile = ArrivalProfile(time_zone="Europe/Berlin", half_life_weeks=1)
    watch(profile, top_of_the_hour(3), MONDAY + 3 * WEEK, step=60)
    nine = MONDAY + 3 * WEEK + 9 * 3600 - 30
    assert profile.need(nine, 30).idle == 8
    watch(profile, [], MONDAY + 6 * WEEK, step=60)  # the bursts stopped: three quiet weeks
    assert profile.need(nine + 3 * WEEK, 30).idle == 0
    assert profile.weeks(nine) < 2.0  # a bucket's mass is bounded: 1 + 1/2 + 1/4 + ...


def test_old_weeks_weigh_less_as_time_passes() -> None:
    profile = ArrivalProfile(time_zone="Europe/Berlin", half_life_weeks=2)
    watch(profile, [MONDAY + 9 * 3600], MONDAY + DAY, step=60)
    first = profile.weeks(MONDAY + 9 * 3600)
    watch(profile, [], MONDAY + 3 * DAY, step=60)
    assert first == pytest.approx(2 ** (-15 / (14 * 24)), rel=0.01)  # 9:05 to midnight
    assert profile.weeks(MONDAY + 9 * 3600) / first == pytest.approx(2 ** (-2 / 14), rel=0.01)


def test_an_outage_is_unknown_not_quiet() -> None:
    profile = ArrivalProfile(time_zone="Europe/Berlin")
    watch(profile, top_of_the_hour(1), MONDAY + WEEK, step=60)
    before = profile.weeks(MONDAY + 3 * DAY + 12 * 3600)
    profile.advance(MONDAY + WEEK + 3 * DAY)  # the operator was away for three days
    profile.advance(MONDAY + WEEK + 3 * DAY + 600)
    assert profile.weeks(MONDAY + 3 * DAY + 12 * 3600) < before  # decayed, no quiet week added
    assert profile.need(MONDAY + WEEK + 3 * DAY + 9 * 3600 - 30, 30).idle == 8


def test_it_stays_small_and_survives_a_restart_through_json() -> None:
    profile = ArrivalProfile(time_zone="Europe/Berlin")
    watch(profile, top_of_the_hour(2), MONDAY + 2 * WEEK + 9 * 3600 + 20)
    text = json.dumps(profile.to_dict(), separators=(",", ":"))
    assert len(text) < 16_000
    restored = ArrivalProfile.from_dict(json.loads(text))
    assert restored.to_dict() == profile.to_dict()
    later = [MONDAY + 2 * WEEK + 9 * 3600 + 25, MONDAY + 2 * WEEK + 10 * 3600]
    for copy in (profile, restored):
        watch(copy, later, MONDAY + 2 * WEEK + 11 * 3600)
    assert restored.to_dict() == profile.to_dict()


def test_a_foreign_dict_is_refused() -> None:
    with pytest.raises(ValueError, match="format"):
        ArrivalProfile.from_dict({"format": 99})


history = st.lists(st.floats(0, 2 * WEEK, allow_nan=False), max_size=40).map(
    lambda offsets: sorted(MONDAY + offset for offset in offsets)
)


@settings(max_examples=10, deadline=None)
@given(history, st.floats(0, 2 * WEEK, allow_nan=False))
def test_more_arrivals_never_ask_for_fewer_pods(arrivals: list[float], extra: float) -> None:
    end = MONDAY + 2 * WEEK
    fewer, more = ArrivalProfile(time_zone="Europe/Berlin"), ArrivalProfile(time_zone="Europe/Berlin")
    fewer.advance(MONDAY)
    more.advance(MONDAY)
    watch(fewer, arrivals, end, step=600)
    watch(more, sorted([*arrivals, MONDAY + extra]), end, step=600)
    # The week after (nothing seen in it yet), at the times of the arrivals and then some.
    offsets = {(at - MONDAY) % WEEK for at in [*arrivals, MONDAY + extra]} | set(range(0, int(WEEK), 3600))
    for offset in offsets:
        for wall in (end + offset - 30, end + offset):
            assert more.need(wall, 30).idle >= fewer.need(wall, 30).idle


@settings(max_examples=10, deadline=None)
@given(history, st.floats(0, 2 * WEEK, allow_nan=False))
def test_serialisation_round_trips_at_any_moment(arrivals: list[float], cut: float) -> None:
    profile = ArrivalProfile(time_zone="Europe/Berlin")
    profile.advance(MONDAY)
    watch(profile, [at for at in arrivals if at < MONDAY + cut], MONDAY + cut, step=600)
    data = json.loads(json.dumps(profile.to_dict()))
    restored = ArrivalProfile.from_dict(data)
    assert restored.to_dict() == profile.to_dict()
    for copy in (profile, restored):
        watch(copy, [at for at in arrivals if at >= MONDAY + cut], MONDAY + 3 * WEEK, step=600)
    assert restored.to_dict() == profile.to_dict()
    assert restored.need(MONDAY + 3 * WEEK + 60, 30) == profile.need(MONDAY + 3 * WEEK + 60, 30)


@settings(max_examples=10, deadline=None)
@given(history, st.integers(1, 5))
def test_decay_shrinks_the_mass_of_a_bucket_not_revisited(arrivals: list[float], days: int) -> None:
    profile = ArrivalProfile(time_zone="Europe/Berlin")
    profile.advance(MONDAY)
    watch(profile, arrivals, MONDAY + 2 * WEEK, step=600)
    sunday_noon = MONDAY + 6 * DAY + 12 * 3600  # not revisited from Monday to Saturday
    before = profile.weeks(sunday_noon)
    watch(profile, [], MONDAY + 2 * WEEK + days * DAY, step=600)
    after = profile.weeks(sunday_noon)
    assert before > 0
    assert after / before == pytest.approx(2 ** (-days / 14), rel=0.01)
