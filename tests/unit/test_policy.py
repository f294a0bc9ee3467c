"""fleet.policy.decide: scaling rules by example, and invariants for any pool."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jibri_operator.fleet.policy import (
    HORIZON,
    Anticipation,
    PodState,
    PodView,
    PoolSpec,
    anticipate,
    decide,
)
from jibri_operator.fleet.profile import ArrivalProfile
from jibri_operator.fleet.schedule import Schedule, WarmWindow

SPEC = PoolSpec(minimum=1, maximum=5, idle_target=1, scale_down_delay=60)


def pods(*states: PodState, since: float = 0) -> list[PodView]:
    return [PodView(f"p{index}", state, since + index) for index, state in enumerate(states)]


def test_scales_up_the_moment_headroom_runs_out() -> None:
    decision = decide(SPEC, pods(PodState.BUSY), waiting=0, now=0, surplus_since=None)
    assert decision.create == 1 and decision.delete == ()


def test_starting_pods_count_as_headroom() -> None:
    decision = decide(SPEC, pods(PodState.BUSY, PodState.STARTING), waiting=0, now=0, surplus_since=None)
    assert decision.create == 0


def test_waiting_sessions_want_a_pod_each() -> None:
    decision = decide(SPEC, pods(PodState.IDLE), waiting=2, now=0, surplus_since=None)
    assert decision.create == 2


def test_never_beyond_maximum() -> None:
    decision = decide(SPEC, pods(*[PodState.BUSY] * 5), waiting=3, now=0, surplus_since=None)
    assert decision.create == 0 and decision.limited


def test_scale_down_waits_for_the_delay_then_removes_the_longest_idle() -> None:
    fleet = pods(PodState.IDLE, PodState.IDLE, PodState.BUSY, PodState.IDLE)
    first = decide(SPEC, fleet, waiting=0, now=100, surplus_since=None)
    assert first.delete == () and first.surplus_since == 100
    early = decide(SPEC, fleet, waiting=0, now=159, surplus_since=first.surplus_since)
    assert early.delete == ()
    due = decide(SPEC, fleet, waiting=0, now=160, surplus_since=early.surplus_since)
    assert due.delete == ("p0", "p1")  # idle longest; p3 stays as the warm one


def test_a_break_in_the_surplus_restarts_the_clock() -> None:
    decision = decide(SPEC, pods(PodState.IDLE, PodState.BUSY), waiting=0, now=100, surplus_since=50)
    assert decision.surplus_since is None


def test_broken_pods_are_replaced() -> None:
    decision = decide(SPEC, pods(PodState.BROKEN, PodState.IDLE), waiting=0, now=0, surplus_since=None)
    assert decision.delete == ("p0",) and decision.create == 0  # the idle one is the warm one


def test_spent_single_use_pods_are_replaced() -> None:
    decision = decide(SPEC, pods(PodState.SPENT, PodState.BUSY), waiting=0, now=0, surplus_since=None)
    assert decision.delete == ("p0",) and decision.create == 1


specs = st.builds(
    lambda low, extra, target, delay: PoolSpec(low, low + extra, target, delay),
    st.integers(0, 4),
    st.integers(0, 6),
    st.integers(0, 4),
    st.sampled_from([0.0, 1.0, 60.0]),
)
fleets = st.lists(st.sampled_from(PodState), max_size=12).map(lambda states: pods(*states))


@given(specs, fleets, st.integers(0, 5), st.floats(0, 1000), st.none() | st.floats(0, 1000))
def test_invariants(
    spec: PoolSpec, fleet: list[PodView], waiting: int, now: float, since: float | None
) -> None:
    decision = decide(spec, fleet, waiting, now, since)
    states = {pod.name: pod.state for pod in fleet}
    removed = [states[name] for name in decision.delete]
    assert all(state in (PodState.IDLE, PodState.SPENT, PodState.BROKEN) for state in removed), (
        "never a busy pod"
    )
    assert len(set(decision.delete)) == len(decision.delete)
    assert not (decision.create and any(state is PodState.IDLE for state in removed)), (
        "never both ways at once"
    )
    staying = sum(
        1 for pod in fleet if pod.state not in (PodState.SPENT, PodState.BROKEN, PodState.TERMINATING)
    )
    after = staying + decision.create - sum(1 for state in removed if state is PodState.IDLE)
    assert after <= max(spec.maximum, staying), "never grows beyond the maximum"
    if any(state is PodState.IDLE for state in removed):
        assert after >= spec.minimum, "scaling down never goes below the minimum"
        waited = 0.0 if since is None else now - since
        assert waited >= spec.scale_down_delay, "only after scaleDownDelay of surplus"
    headroom = sum(1 for pod in fleet if pod.state in (PodState.IDLE, PodState.STARTING))
    if headroom < spec.idle_target + waiting and staying < spec.maximum:
        assert decision.create > 0, "headroom short and room left: scale up now"


# -- rolling out a changed jibri.conf ----------------------------------------------------------


def outdated(*views: PodView) -> list[PodView]:
    return [PodView(v.name, v.state, v.since, outdated=True) for v in views]


def test_a_rollout_starts_a_new_pod_before_an_outdated_idle_one_goes() -> None:
    old = outdated(*pods(PodState.IDLE))
    first = decide(SPEC, old, waiting=0, now=0, surplus_since=None)
    assert first.create == 1 and first.delete == (), "a surge pod first"
    starting = decide(
        SPEC, [*old, PodView("new", PodState.STARTING, 1)], waiting=0, now=1, surplus_since=None
    )
    assert starting.create == 0 and starting.delete == (), "one at a time"
    ready = decide(SPEC, [*old, PodView("new", PodState.IDLE, 2)], waiting=0, now=2, surplus_since=None)
    assert ready.delete == ("p0",), "then the outdated idle pod goes, without waiting scaleDownDelay"


def test_a_busy_outdated_pod_finishes_its_recording() -> None:
    fleet = [*outdated(*pods(PodState.BUSY)), PodView("new", PodState.IDLE, 1)]
    decision = decide(SPEC, fleet, waiting=0, now=0, surplus_since=None)
    assert decision.delete == () and decision.create == 0


@given(specs, fleets, st.lists(st.booleans(), max_size=12), st.integers(0, 5), st.floats(0, 1000))
def test_rollout_invariants(
    spec: PoolSpec, fleet: list[PodView], stale: list[bool], waiting: int, now: float
) -> None:
    fleet = [
        PodView(p.name, p.state, p.since, outdated=i < len(stale) and stale[i]) for i, p in enumerate(fleet)
    ]
    decision = decide(spec, fleet, waiting, now, None)
    states = {pod.name: pod.state for pod in fleet}
    assert all(states[name] in (PodState.IDLE, PodState.SPENT, PodState.BROKEN) for name in decision.delete)
    staying = sum(
        1 for pod in fleet if pod.state not in (PodState.SPENT, PodState.BROKEN, PodState.TERMINATING)
    )
    assert staying + decision.create <= max(spec.maximum + 1, staying), "a surge of one at most"
    idle_removed = sum(1 for name in decision.delete if states[name] is PodState.IDLE)
    if idle_removed and spec.scale_down_delay > 0:  # no delay waited: only a rollout may remove
        idle = sum(1 for pod in fleet if pod.state is PodState.IDLE)
        assert idle_removed == 1 and idle - 1 >= spec.idle_target + waiting


# -- anticipation ---------------------------------------------------------------------------

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = datetime(2026, 2, 2, tzinfo=BERLIN).timestamp()
POOL = PoolSpec(minimum=1, maximum=20, idle_target=2, scale_down_delay=300)


def test_the_old_call_still_works_and_explains_nothing_extra() -> None:
    decision = decide(POOL, pods(PodState.IDLE, PodState.IDLE, PodState.BUSY), 0, 0.0, None)
    assert decision.create == 0 and decision.delete == () and decision.recheck_at is None
    assert decision.breakdown.desired == 3 and decision.breakdown.reason == ""


def test_a_schedule_window_warms_the_pool_before_it_opens() -> None:
    schedule = Schedule.from_spec(
        [{"start": "55 8-17 * * 1-5", "duration": "10m", "idleTarget": 8}], "Europe/Berlin"
    )
    fleet = pods(PodState.IDLE, PodState.IDLE, PodState.BUSY)

    def at(hour: int, minute: int, second: int = 0) -> float:
        return MONDAY + hour * 3600 + minute * 60 + second

    early = decide(POOL, fleet, 0, at(8, 53, 59), None, anticipate(at(8, 53, 59), schedule=schedule))
    assert early.create == 0
    assert early.recheck_at == pytest.approx(at(8, 54))  # asked again when the horizon reaches 8:55
    warm = decide(POOL, fleet, 0, at(8, 54), None, anticipate(at(8, 54), schedule=schedule))
    assert warm.create == 6  # 8 idle wanted, 2 there: a pod-start horizon (60 s) before 8:55
    assert warm.breakdown.scheduled == 6 and warm.breakdown.desired == 1 + 2 + 6
    assert "warm window '55 8-17 * * 1-5'" in warm.breakdown.reason and "(+6)" in warm.breakdown.reason
    # Once it has closed, the surplus goes after scaleDownDelay, idle pods only.
    warmed = pods(*[PodState.IDLE] * 8, PodState.BUSY)
    after = decide(POOL, warmed, 0, at(9, 5), None, anticipate(at(9, 5), schedule=schedule))
    assert after.delete == () and after.surplus_since == at(9, 5)
    later = at(9, 10)
    gone = decide(POOL, warmed, 0, later, after.surplus_since, anticipate(later, schedule=schedule))
    assert len(gone.delete) == 6 and all(name != "p8" for name in gone.delete)


def test_a_learned_profile_from_a_recorded_history_warms_the_pool_before_the_hour() -> None:
    profile = ArrivalProfile(time_zone="Europe/Berlin")
    clock = MONDAY
    profile.advance(clock)
    for day in range(7):  # a recorded week: 9 sessions in the first 30 s of 10:00 on weekdays
        ten = MONDAY + day * 86400 + 10 * 3600
        arrivals = [ten + 3 * index for index in range(9)] if day < 5 else []
        while clock < MONDAY + (day + 1) * 86400:
            clock += 60
            profile.advance(clock)
            for arrival in [a for a in arrivals if clock - 60 < a <= clock]:
                profile.record_arrival(arrival)
    ten = MONDAY + 7 * 86400 + 10 * 3600  # the Monday after
    fleet = pods(PodState.IDLE, PodState.IDLE, PodState.BUSY)
    for wall, wanted in ((ten - 120, 0), (ten - 30, 7), (ten - 1, 7)):
        profile.advance(wall)
        decision = decide(POOL, fleet, 0, wall, None, anticipate(wall, profile=profile))
        assert decision.create == wanted, wall - ten
    assert "learned: Mon 10:00-10:05" in decision.breakdown.reason
    assert decision.breakdown.learned == 7


def test_a_crowd_nobody_expected_is_a_surge() -> None:
    profile = ArrivalProfile(time_zone="Europe/Berlin")
    start = MONDAY + 14 * 3600
    profile.advance(start)
    for index in range(6):
        profile.record_arrival(start + index)
    anticipation = anticipate(start + 6, profile=profile)
    assert anticipation.surge == 36  # 6 in 6 s (counted over 10 s at least): 36 within the next 60 s
    assert anticipation.valid_for <= 1.0
    large = PoolSpec(minimum=1, maximum=100, idle_target=2, scale_down_delay=300)
    decision = decide(large, pods(*[PodState.BUSY] * 6), 2, start + 6, None, anticipation)
    assert decision.breakdown.surge == anticipation.surge - 2
    assert "surge: 6 sessions" in decision.breakdown.reason
    assert decision.create == 2 + anticipation.surge  # the waiting two, and the surge ahead
    assert anticipate(start + 40, profile=profile).surge == 0  # it fades as the window slides


anticipations = st.builds(
    Anticipation,
    scheduled=st.integers(0, 8),
    learned=st.integers(0, 8),
    surge=st.integers(0, 8),
    scheduled_why=st.just("window"),
    learned_why=st.just("learned"),
    surge_why=st.just("surge"),
    valid_for=st.floats(0.1, 600) | st.just(math.inf),
)


@given(specs, fleets, st.integers(0, 5), st.floats(0, 1000), st.none() | st.floats(0, 1000), anticipations)
def test_invariants_hold_with_anticipation(
    spec: PoolSpec, fleet: list[PodView], waiting: int, now: float, since: float | None, ahead: Anticipation
) -> None:
    decision = decide(spec, fleet, waiting, now, since, ahead)
    plain = decide(spec, fleet, waiting, now, since)
    states = {pod.name: pod.state for pod in fleet}
    removed = [states[name] for name in decision.delete]
    assert all(state in (PodState.IDLE, PodState.SPENT, PodState.BROKEN) for state in removed)
    assert not (decision.create and any(state is PodState.IDLE for state in removed))
    staying = sum(
        1 for pod in fleet if pod.state not in (PodState.SPENT, PodState.BROKEN, PodState.TERMINATING)
    )
    idle_removed = sum(1 for state in removed if state is PodState.IDLE)
    after = staying + decision.create - idle_removed
    assert after <= max(spec.maximum, staying), "never grows beyond the maximum"
    if idle_removed:
        assert after >= spec.minimum and (0.0 if since is None else now - since) >= spec.scale_down_delay
    # Anticipation only ever adds: more pods, never fewer removed.
    assert decision.create >= plain.create and idle_removed <= sum(
        1 for name in plain.delete if states[name] is PodState.IDLE
    )
    count = {state: sum(1 for pod in fleet if pod.state is state) for state in PodState}
    breakdown = decision.breakdown
    assert breakdown.desired == (
        breakdown.busy
        + breakdown.idle_target
        + breakdown.waiting
        + breakdown.scheduled
        + breakdown.learned
        + breakdown.surge
        + breakdown.unhealthy
        + breakdown.floor
        - breakdown.capped
    )
    floor = min(spec.maximum, count[PodState.BUSY] + spec.idle_target + waiting)
    assert breakdown.desired >= floor, "never below busy + idleTarget + waiting, capped at max"
    assert spec.minimum <= breakdown.desired <= spec.maximum or breakdown.desired == spec.maximum
    assert breakdown.desired == min(
        spec.maximum,
        max(
            spec.minimum,
            count[PodState.BUSY]
            + count[PodState.UNHEALTHY]
            + waiting
            + max(spec.idle_target, ahead.scheduled, ahead.learned, ahead.surge),
        ),
    )
    extra = breakdown.desired - breakdown.busy - breakdown.idle_target + breakdown.capped
    assert bool(breakdown.reason) == (extra > 0 or breakdown.capped > 0), (
        "why, whenever beyond busy + idleTarget"
    )

    if decision.create and not decision.limited:
        assert staying + decision.create >= breakdown.desired, "a scale-up reaches what is desired"
    if decision.recheck_at is not None:
        assert decision.recheck_at > now


@settings(max_examples=60, deadline=None)
@given(
    offset=st.integers(0, 7 * 86400),
    duration=st.integers(1, 30).map(lambda minutes: minutes * 60.0),
    fleet=fleets,
    waiting=st.integers(0, 3),
)
def test_a_window_raises_desired_only_inside_start_minus_horizon_to_end(
    offset: int, duration: float, fleet: list[PodView], waiting: int
) -> None:
    schedule = Schedule((WarmWindow("0 9,13 * * 1-5", duration, 12),), "Europe/Berlin")
    wall = MONDAY + offset
    with_window = decide(POOL, fleet, waiting, wall, None, anticipate(wall, schedule=schedule)).breakdown
    without = decide(POOL, fleet, waiting, wall, None).breakdown
    local = datetime.fromtimestamp(wall, BERLIN)
    starts = [
        datetime(local.year, local.month, local.day, hour, tzinfo=BERLIN).timestamp() + day * 86400
        for day in (-1, 0, 1)
        for hour in (9, 13)
    ]
    inside = any(
        start - HORIZON <= wall < start + duration and datetime.fromtimestamp(start, BERLIN).weekday() < 5
        for start in starts
    )
    assert (with_window.desired > without.desired) == (inside and without.desired < POOL.maximum)
    assert (with_window.scheduled > 0) == inside
