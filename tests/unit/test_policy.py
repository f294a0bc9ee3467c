"""fleet.policy.decide: scaling rules by example, and invariants for any pool."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jibri_operator.fleet.policy import PodState, PodView, PoolSpec, decide

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
