"""How many Jibri pods a pool should run: pure, so every rule is property-tested.

The rules, in order:

* a single-use pod whose recording has ended is spent, and a pod whose Jibri
  never joined (or whose pod failed) is broken: both are replaced, always;
* scale up at once when idle headroom (idle + starting pods) is below what is
  wanted: ``idleTarget`` plus the sessions waiting for a Jibri, and keep at
  least ``min`` pods; never exceed ``max``;
* scale down only pods that are idle, only once there has been more idle
  headroom than wanted for ``scaleDownDelay`` without a break, and never below
  ``min``. A busy, starting or unhealthy pod is never removed by scaling.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


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


@dataclass(frozen=True)
class PoolSpec:
    minimum: int
    maximum: int
    idle_target: int
    scale_down_delay: float


@dataclass(frozen=True)
class Decision:
    create: int
    delete: tuple[str, ...]
    surplus_since: float | None  # carry into the next call
    limited: bool  # more headroom was wanted than ``maximum`` allows
    reason: str


def decide(
    spec: PoolSpec, pods: Sequence[PodView], waiting: int, now: float, surplus_since: float | None
) -> Decision:
    """What to do now. ``waiting``: sessions waiting for a Jibri in the pool's environments."""
    count = {state: 0 for state in PodState}
    for pod in pods:
        count[pod.state] += 1
    spent = tuple(pod.name for pod in pods if pod.state in (PodState.SPENT, PodState.BROKEN))
    # Pods that stay: spent, broken and terminating ones are going, whatever happens next.
    staying = len(pods) - count[PodState.SPENT] - count[PodState.BROKEN] - count[PodState.TERMINATING]
    room = max(0, spec.maximum - staying)
    wanted = spec.idle_target + waiting
    headroom = count[PodState.IDLE] + count[PodState.STARTING]

    shortfall = max(wanted - headroom, spec.minimum - staying, 0)
    if shortfall:
        create = min(shortfall, room)
        reason = "below minimum" if spec.minimum > staying else f"idle headroom {headroom} < {wanted}"
        return Decision(create, spent, None, create < shortfall, reason)

    removable = min(count[PodState.IDLE] - wanted, staying - spec.minimum)
    if removable <= 0:
        return Decision(0, spent, None, False, "steady" if not spent else "replacing spent or broken pods")
    since = now if surplus_since is None else surplus_since
    if now - since < spec.scale_down_delay:
        return Decision(0, spent, since, False, f"{removable} idle pod(s) more than wanted; waiting")
    idle = sorted((pod for pod in pods if pod.state is PodState.IDLE), key=lambda pod: (pod.since, pod.name))
    chosen = tuple(pod.name for pod in idle[:removable])
    return Decision(
        0, spent + chosen, None, False, f"{removable} idle pod(s) more than wanted for long enough"
    )
