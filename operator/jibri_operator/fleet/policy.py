"""How many Jibri pods a pool should run: pure, so every rule is property-tested.

The rules, in order:

* a single-use pod whose recording has ended is spent, and a pod whose Jibri
  never joined (or whose pod failed) is broken: both are replaced, always;
* scale up at once when idle headroom (idle + starting pods) is below what is
  wanted, and keep at least ``min`` pods; never exceed ``max``. Wanted is the
  sessions waiting for a Jibri plus the largest of ``idleTarget`` and what
  anticipation asks for now (:class:`Anticipation`): an open warm window of
  ``spec.schedule``, the learned arrival profile, or a surge of arrivals;
* scale down only pods that are idle, only once there has been more idle
  headroom than wanted for ``scaleDownDelay`` without a break, and never below
  ``min``. A busy, starting or unhealthy pod is never removed by scaling;
* roll out a changed jibri.conf (pods marked ``outdated``) one idle pod at a
  time: a new pod is started first (a surge of one, even past ``max``) and an
  outdated idle pod goes once the headroom allows; a busy outdated pod is left
  to finish its recording.

Why anticipate: a pod needs 20 to 60 s to become an idle Jibri, and meetings
start together (the top of the hour). A pool that only reacts makes everyone in
a burst wait for cold pods, or must keep many idle pods all day. Anticipation
holds more idle pods exactly when arrivals are expected, from three sources:

* ``scheduled``: what the operator was told (``spec.schedule``, see
  :mod:`jibri_operator.fleet.schedule`), honoured a pod-start horizon (60 s) early,
  so its pods are idle when the window opens;
* ``learned``: what the pool has seen (:mod:`jibri_operator.fleet.profile`): a
  high quantile of the arrivals within a pod start at this time of the week,
  asked for the profile's own horizon (30 s) ahead. That lead and that horizon are
  shorter than the slowest pod start on purpose: the simulator shows they keep as
  few sessions waiting over 10 s for fewer idle pod-hours (a burst's first
  sessions take the pods that are ready, later ones those still starting);
* ``surge``: what is happening now. When at least ``surge_min`` sessions arrived
  within ``surge_window`` and more than the profile expected, the unexpected ones'
  rate is taken to go on for one more pod-start horizon, and pods are started for
  them before they come: a flash crowd nobody scheduled and nothing learned.

These take the *larger* of them, not the sum: each estimates the same idle
headroom. :class:`DesiredBreakdown` says how much each adds above the one before,
so ``desired = busy + idleTarget + waiting + scheduled + learned + surge`` (plus
unhealthy pods kept, within ``min`` and ``max``), and why, in one sentence.

``decide`` takes the monotonic clock (for ``scaleDownDelay``); ``anticipate`` takes
wall time (epoch seconds: cron windows and weekdays are wall-clock things). The
operator and ``benchmarks/policy_sim.py`` are two drivers of these same functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from jibri_operator.fleet.profile import ArrivalProfile
from jibri_operator.fleet.schedule import Schedule

HORIZON: Final = 60.0  # seconds a new pod may take to become an idle Jibri
SURGE_WINDOW: Final = 30.0  # seconds of arrivals the surge signal looks back on
SURGE_MIN: Final = 5  # arrivals within SURGE_WINDOW that make a surge


class PodState(StrEnum):
    STARTING = "starting"  # not (yet) in every brewery of the pool
    IDLE = "idle"
    BUSY = "busy"
    UNHEALTHY = "unhealthy"
    SPENT = "spent"  # single-use, its one recording is over
    BROKEN = "broken"  # never joined the brewery in time, or the pod failed: it will not serve
    TERMINATING = "terminating"


@dataclass(frozen=True)
class PodView:
    name: str
    state: PodState
    since: float  # when the pod entered this state; the longest idle go first
    outdated: bool = False  # made from an older jibri.conf or template: to be rolled out


@dataclass(frozen=True)
class PoolSpec:
    minimum: int
    maximum: int
    idle_target: int
    scale_down_delay: float


@dataclass(frozen=True)
class Anticipation:
    """Idle headroom wanted ahead of arrivals, from each source; 0 when it wants nothing."""

    scheduled: int = 0
    learned: int = 0
    surge: int = 0
    scheduled_why: str = ""
    learned_why: str = ""
    surge_why: str = ""
    valid_for: float = math.inf  # seconds during which this cannot change (without new arrivals)


NO_ANTICIPATION: Final = Anticipation()


def anticipate(
    wall: float,
    *,
    schedule: Schedule | None = None,
    profile: ArrivalProfile | None = None,
    horizon: float = HORIZON,
    surge_window: float = SURGE_WINDOW,
    surge_min: int = SURGE_MIN,
) -> Anticipation:
    """What the schedule, the learned profile and the last arrivals want at ``wall``.

    Reads ``profile``, never changes it: the caller records arrivals into it and
    advances it to ``wall`` first. ``horizon`` is how long a new pod may take to become
    an idle Jibri (the pool's slowest usual start): warm windows are honoured that
    early, and a surge is extrapolated that far.
    """
    scheduled, scheduled_why, valid_for = 0, "", math.inf
    if schedule is not None and schedule.windows:
        window = schedule.state(wall, horizon)
        scheduled, scheduled_why, valid_for = window.idle_target, window.why, window.valid_for
    learned, learned_why, surge, surge_why = 0, "", 0, ""
    if profile is not None:
        need = profile.need(wall, profile.horizon)
        learned, learned_why = need.idle, need.why
        valid_for = min(valid_for, need.valid_for)
        recent = profile.arrivals_since(wall - surge_window)
        unexpected = len(recent) - need.expected
        if len(recent) >= surge_min and unexpected > 0:
            # The rate of the unexpected arrivals, over the time they took (at least a third of the
            # window, so that two sessions a second apart are no rate), goes on for a horizon.
            span = max(wall - recent[0], surge_window / 3)
            more = math.ceil(unexpected / span * horizon)
            surge = learned + more
            surge_why = (
                f"surge: {len(recent)} sessions arrived within {span:.0f} s, {need.expected} were "
                f"expected; {more} more expected within {horizon:g} s"
            )
            valid_for = min(valid_for, 1.0)  # it fades as the window slides
    return Anticipation(scheduled, learned, surge, scheduled_why, learned_why, surge_why, valid_for)


@dataclass(frozen=True)
class DesiredBreakdown:
    """Why the pool wants ``desired`` pods: each field is what it adds above the ones before.

    ``busy + idle_target + waiting + scheduled + learned + surge`` is the pool that
    serves every recording, every waiting session and the headroom anticipated; then
    ``unhealthy`` pods (kept, they serve nobody), ``floor`` to reach ``replicas.min``
    and ``capped`` cut by ``replicas.max``.
    """

    busy: int
    idle_target: int
    waiting: int
    scheduled: int
    learned: int
    surge: int
    unhealthy: int
    floor: int
    capped: int
    reason: str  # why the pool is larger than busy + idleTarget, in words; empty when it is not

    @property
    def desired(self) -> int:
        return (
            self.busy
            + self.idle_target
            + self.waiting
            + self.scheduled
            + self.learned
            + self.surge
            + self.unhealthy
            + self.floor
            - self.capped
        )

    @property
    def anticipated(self) -> int:
        """Pods asked for ahead of arrivals (scheduled + learned + surge)."""
        return self.scheduled + self.learned + self.surge

    def to_status(self) -> dict[str, int | str]:
        """For ``status.desiredBreakdown`` (camelCase, as the API spells fields)."""
        return {
            "busy": self.busy,
            "idleTarget": self.idle_target,
            "waiting": self.waiting,
            "scheduled": self.scheduled,
            "learned": self.learned,
            "surge": self.surge,
            "unhealthy": self.unhealthy,
            "floor": self.floor,
            "capped": self.capped,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Decision:
    create: int
    delete: tuple[str, ...]
    surplus_since: float | None  # carry into the next call
    limited: bool  # more headroom was wanted than ``maximum`` allows
    reason: str
    breakdown: DesiredBreakdown  # status.desired and why
    recheck_at: float | None  # ask again by then, even if nothing is observed (same clock as ``now``)


def decide(
    spec: PoolSpec,
    pods: Sequence[PodView],
    waiting: int,
    now: float,
    surplus_since: float | None,
    anticipation: Anticipation = NO_ANTICIPATION,
) -> Decision:
    """What to do now. ``waiting``: sessions waiting for a Jibri in the pool's environments;
    ``now``: any monotonic clock (the one ``surplus_since`` is on)."""
    count = {state: 0 for state in PodState}
    for pod in pods:
        count[pod.state] += 1
    spent = tuple(pod.name for pod in pods if pod.state in (PodState.SPENT, PodState.BROKEN))
    # Pods that stay: spent, broken and terminating ones are going, whatever happens next.
    staying = len(pods) - count[PodState.SPENT] - count[PodState.BROKEN] - count[PodState.TERMINATING]
    room = max(0, spec.maximum - staying)
    breakdown = _breakdown(spec, count, waiting, anticipation)
    wanted = max(spec.idle_target, anticipation.scheduled, anticipation.learned, anticipation.surge) + waiting
    headroom = count[PodState.IDLE] + count[PodState.STARTING]
    recheck = None if math.isinf(anticipation.valid_for) else now + anticipation.valid_for

    shortfall = max(wanted - headroom, spec.minimum - staying, 0)
    if shortfall:
        create = min(shortfall, room)
        if spec.minimum > staying:
            reason = "below minimum"
        else:
            reason = f"idle headroom {headroom} < {wanted}" + (
                f": {breakdown.reason}" if breakdown.reason else ""
            )
        return Decision(create, spent, None, create < shortfall, reason, breakdown, recheck)

    removable = min(count[PodState.IDLE] - wanted, staying - spec.minimum)
    outdated = sorted(
        (pod for pod in pods if pod.state is PodState.IDLE and pod.outdated),
        key=lambda pod: (pod.since, pod.name),
    )
    if outdated:
        # Roll out a changed jibri.conf, one idle pod at a time, never below the headroom wanted:
        # a new pod first (a surge of one, even past max), then the outdated one goes. Busy
        # outdated pods wait for their recording to end.
        if count[PodState.IDLE] > wanted and staying > spec.minimum:  # idle, not starting: new pod first
            return Decision(
                0, (*spent, outdated[0].name), None, False, "rolling out: an outdated idle pod replaced",
                breakdown, recheck,
            )  # fmt: skip
        if removable <= 0 and count[PodState.STARTING] == 0 and staying <= spec.maximum:
            return Decision(
                1,
                spent,
                None,
                False,
                "rolling out: a new pod before an outdated one goes",
                breakdown,
                recheck,
            )
    if removable <= 0:
        reason = "steady" if not spent else "replacing spent or broken pods"
        return Decision(0, spent, None, False, reason, breakdown, recheck)
    since = now if surplus_since is None else surplus_since
    if now - since < spec.scale_down_delay:
        due = since + spec.scale_down_delay
        reason = f"{removable} idle pod(s) more than wanted; waiting"
        return Decision(
            0, spent, since, False, reason, breakdown, due if recheck is None else min(due, recheck)
        )
    idle = sorted(  # outdated pods go first, then the longest idle
        (pod for pod in pods if pod.state is PodState.IDLE),
        key=lambda pod: (not pod.outdated, pod.since, pod.name),
    )
    chosen = tuple(pod.name for pod in idle[:removable])
    reason = f"{removable} idle pod(s) more than wanted for long enough"
    return Decision(0, spent + chosen, None, False, reason, breakdown, recheck)


def _breakdown(
    spec: PoolSpec, count: dict[PodState, int], waiting: int, anticipation: Anticipation
) -> DesiredBreakdown:
    base = spec.idle_target
    scheduled = max(0, anticipation.scheduled - base)
    learned = max(0, anticipation.learned - base - scheduled)
    surge = max(0, anticipation.surge - base - scheduled - learned)
    busy, unhealthy = count[PodState.BUSY], count[PodState.UNHEALTHY]
    raw = busy + base + waiting + scheduled + learned + surge + unhealthy
    floor = max(0, spec.minimum - raw)
    capped = max(0, raw + floor - spec.maximum)
    parts = []
    if waiting:
        parts.append(f"{waiting} session(s) waiting (+{waiting})")
    for extra, why in (
        (scheduled, anticipation.scheduled_why),
        (learned, anticipation.learned_why),
        (surge, anticipation.surge_why),
    ):
        if extra:
            parts.append(f"{why} (+{extra})")
    if unhealthy:
        parts.append(f"{unhealthy} unhealthy pod(s) kept (+{unhealthy})")
    if floor:
        parts.append(f"replicas.min is {spec.minimum} (+{floor})")
    if capped:
        parts.append(f"replicas.max is {spec.maximum} (-{capped})")
    return DesiredBreakdown(
        busy, base, waiting, scheduled, learned, surge, unhealthy, floor, capped, "; ".join(parts)
    )
