"""Policy simulator: the pool's real scaling policy against the usual alternatives, on traces.

A discrete-event simulation in simulated time (nothing sleeps): sessions arrive from a
trace, take an idle Jibri at once or wait in order of arrival, and record for a
long-tailed time (lognormal around 30 minutes, capped at 4 hours); a new pod takes
20 to 60 s to become an idle Jibri. Each policy is a driver of one pool:

- ``ours``: ``jibri_operator.fleet.policy.decide`` and ``anticipate`` with the learned
  ``ArrivalProfile`` (its defaults), exactly as the operator calls them: every arrival is
  recorded into the profile, and the policy runs after every arrival, pod and recording
  change and at the decision's ``recheck_at``; idleTarget 2, scaleDownDelay 5 min;
- ``keep-k-idle``: the same ``decide`` without anticipation (reactive), k = 2 and 4, the
  same scaleDownDelay;
- ``fixed-40``: 40 pods, always: the business hours' mean concurrency (about 34) and some;
  a fleet that makes nobody wait on the business day needs its peak (65), printed below;
- ``hpa``: an HPA on a Deployment: 70 % busy target, 15 s sync, 10 % tolerance, scale-up by
  at most max(100 %, 4 pods) per sync, 300 s scale-down stabilisation, and the ReplicaSet
  removing pods its own way (not-ready first, then the most recently ready): busy ones too;
- ``keda``: KEDA polling every 30 s for busy + queued + 2, through the same HPA machinery
  (300 s scale-down stabilisation, the ReplicaSet choosing the victims);
- ``autoscaler``: jitsi-autoscaler-like: every 60 s, +2 pods after 2 periods with fewer than
  2 available (idle or starting) Jibris, -1 after 10 periods with more than 4; graceful
  (only idle pods go);
- ``pod-ctl``: jibri-pod-controller-like: 4 spare pods (idle or starting), a busy pod leaves
  the set and is deleted after its one recording.

Traces (fixed seeds, so every run prints the same table), in Europe/Berlin time:

- ``business day``: the Monday of week 2 of the history below, 24 h; ``ours`` starts with
  the profile learned from week 1;
- ``flash crowd``: a quiet hour, then 50 sessions within one minute, then quiet (3 h);
  no history (nothing could have predicted it);
- ``quiet night``: 22:00 to 06:00, about three sessions an hour;
- ``two weeks``: ten business days and two quiet weekends; ``ours`` starts with an empty
  profile and learns as it goes.

A business day has a base rate rising from 07:00 to a midday peak and back by 19:00, and
at 8:00 ... 17:00 a burst (Poisson, 12 on average) in the first minutes of the hour.

Per policy and trace: p50/p95 wait before a Jibri accepts, sessions waiting over 10 s,
non-recording pod-hours (pods that exist and are not recording: starting or idle), and
recordings killed. The targets for ``ours`` are checked at the end; the exit status is 1
when one is missed:

- on the business day: p95 wait <= 5 s, <= 15 sessions waiting > 10 s, idle pod-hours
  within 15 % of keep-2-idle, no recording killed;
- on every trace, fewer sessions waiting > 10 s than every baseline that killed no
  recording there ("fewer" holds when both are zero: nothing to beat). One comparison
  cannot be won by any policy, and is printed as ``BOUND`` with the numbers instead of
  failing: fixed-40 on the flash crowd answers it from the 38 pods it kept idle through
  the quiet hour. A bound is computed for it: keep-2-idle that starts a pod for every
  one of the 50 the instant the first arrives (knowing how many will come); when even
  that leaves at least as many waiting > 10 s as fixed-40 (pods take 20 to 60 s), no
  policy that did not keep those pods idle could have done better.

The seed is fixed (11). Over seeds 11 to 18 ours met every business-day target (2 to 12
sessions waiting > 10 s, p95 wait 0 s, idle pod-hours 7.5 % to 13.4 % above
keep-2-idle: the margins are not wide); seed 12 misses one comparison, the flash crowd
against fixed-40, by one session (13 against 12, where the bound is below 12).

    .venv/bin/python benchmarks/policy_sim.py
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from jibri_operator.fleet.policy import (
    NO_ANTICIPATION,
    PodState,
    PodView,
    PoolSpec,
    anticipate,
    decide,
)
from jibri_operator.fleet.profile import ArrivalProfile

SEED = 11
TIME_ZONE = "Europe/Berlin"
ZONE = ZoneInfo(TIME_ZONE)
WEEK1 = datetime(2026, 2, 2, tzinfo=ZONE)  # a Monday, well away from DST changes
HOUR, MINUTE = 3600.0, 60.0

# Traces.
NIGHT_RATE = 0.05  # sessions per minute outside office hours
PEAK_RATE = 1.0  # extra sessions per minute at midday
BURST_MEAN = 12  # sessions in the burst at the top of each office hour (Poisson mean)
BURST_SPREAD = 45.0  # mean seconds after the hour (exponential, capped at 5 minutes)
FLASH = 50
DURATION_MEDIAN, DURATION_SIGMA, DURATION_CAP = 30 * MINUTE, 0.7, 4 * HOUR
POD_START = (20.0, 60.0)

# Pools.
MAXIMUM = 100
DELAY = 300.0  # scaleDownDelay of the pool (its default, 5m)
FIXED_N = 40
WAIT_LIMIT = 10.0


# -- traces ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    arrival: float
    duration: float


@dataclass(frozen=True)
class Trace:
    name: str
    sessions: tuple[Session, ...]
    start: float  # the measured window
    end: float
    history: tuple[float, ...] = ()  # arrivals before it, for the learned profile
    weeks: tuple[float, ...] = ()  # week boundaries inside it, to report learning
    crowd: float | None = None  # when an unforeseeable crowd starts (the flash crowd)


def poisson(rng: random.Random, mean: float) -> int:
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


def poisson_process(
    rng: random.Random, start: float, end: float, rate: Callable[[float], float]
) -> list[float]:
    """Arrivals in [start, end) at ``rate(t)`` per minute (thinning)."""
    ceiling = NIGHT_RATE + PEAK_RATE
    times, at = [], start
    while True:
        at += rng.expovariate(ceiling / MINUTE)
        if at >= end:
            return times
        if rng.random() * ceiling < rate(at):
            times.append(at)


def business_day(rng: random.Random, midnight: float) -> list[float]:
    def rate(at: float) -> float:
        hour = (at - midnight) / HOUR
        if 7 <= hour < 19:
            return NIGHT_RATE + PEAK_RATE * math.sin(math.pi * (hour - 7) / 12) ** 2
        return NIGHT_RATE

    times = poisson_process(rng, midnight, midnight + 24 * HOUR, rate)
    for hour in range(8, 18):
        for _ in range(poisson(rng, BURST_MEAN)):
            times.append(midnight + hour * HOUR + min(rng.expovariate(1 / BURST_SPREAD), 5 * MINUTE))
    return sorted(times)


def quiet(rng: random.Random, start: float, end: float) -> list[float]:
    return poisson_process(rng, start, end, lambda _: NIGHT_RATE)


def sessions(rng: random.Random, times: Sequence[float]) -> tuple[Session, ...]:
    mu = math.log(DURATION_MEDIAN)
    return tuple(Session(at, min(rng.lognormvariate(mu, DURATION_SIGMA), DURATION_CAP)) for at in times)


def midnight(day: int) -> float:
    return (WEEK1 + timedelta(days=day)).timestamp()


def history(rng: random.Random, days: int) -> list[float]:
    times: list[float] = []
    for day in range(days):
        start = midnight(day)
        if (WEEK1 + timedelta(days=day)).weekday() < 5:
            times += business_day(rng, start)
        else:
            times += quiet(rng, start, midnight(day + 1))
    return times


def traces() -> list[Trace]:
    rng = random.Random(SEED)
    weeks = history(rng, 14)
    monday = midnight(7)
    day = [at for at in weeks if monday <= at < midnight(8)]
    result = [
        Trace(
            "business day",
            sessions(rng, day),
            monday,
            midnight(8),
            history=tuple(at for at in weeks if at < monday),
        )
    ]
    quiet_hour = midnight(9) + 13 * HOUR  # Wednesday 13:00
    flash = quiet(rng, quiet_hour, quiet_hour + 3 * HOUR)
    crowd = [quiet_hour + HOUR + rng.uniform(0, MINUTE) for _ in range(FLASH)]
    result.append(
        Trace(
            "flash crowd",
            sessions(rng, sorted(flash + crowd)),
            quiet_hour,
            quiet_hour + 3 * HOUR,
            crowd=min(crowd),
        )
    )
    night = midnight(10) - 2 * HOUR  # Wednesday 22:00
    result.append(
        Trace("quiet night", sessions(rng, quiet(rng, night, night + 8 * HOUR)), night, night + 8 * HOUR)
    )
    result.append(Trace("two weeks", sessions(rng, weeks), midnight(0), midnight(14), weeks=(midnight(7),)))
    return result


# -- the simulated pool ---------------------------------------------------------------------


@dataclass
class Pod:
    name: str
    state: PodState
    since: float  # entered this state
    created: float
    ready_at: float | None = None  # first became an idle Jibri
    session: int | None = None


@dataclass
class Outcome:
    waits: list[float] = field(default_factory=list)
    killed: int = 0
    idle_seconds: float = 0.0  # pod-seconds not recording, within the window
    week_waits: list[list[float]] = field(default_factory=list)

    def percentile(self, q: float) -> float:
        if not self.waits:
            return 0.0
        ordered = sorted(self.waits)
        return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]

    @property
    def long_waits(self) -> int:
        return sum(1 for wait in self.waits if wait > WAIT_LIMIT)

    @property
    def pod_hours(self) -> float:
        return self.idle_seconds / HOUR


class Pool:
    """The simulated world: pods, sessions, a clock and an event queue."""

    def __init__(self, trace: Trace, policy: Policy) -> None:
        self.trace = trace
        self.policy = policy
        self.rng = random.Random(SEED)  # the k-th pod takes as long to start under every policy
        self.now = trace.start - HOUR  # an hour to settle before the window
        self.events: list[tuple[float, int, str, object]] = []
        self.seq = 0
        self.pods: dict[str, Pod] = {}
        self.queue: deque[int] = deque()
        self.sessions = trace.sessions
        self.waits: dict[int, float] = {}
        self.outcome = Outcome()
        self.not_recording = 0  # pods alive and not busy
        self.counted_at = self.now
        self.names = 0

    # plumbing
    def at(self, when: float, kind: str, payload: object = None) -> None:
        self.seq += 1
        heapq.heappush(self.events, (max(when, self.now), self.seq, kind, payload))

    def _count(self) -> None:
        """Integrate non-recording pods over the window up to now."""
        begin, end = max(self.counted_at, self.trace.start), min(self.now, self.trace.end)
        if end > begin:
            self.outcome.idle_seconds += self.not_recording * (end - begin)
        self.counted_at = self.now

    def _set(self, pod: Pod, state: PodState) -> None:
        self._count()
        was_busy, is_busy = pod.state is PodState.BUSY, state is PodState.BUSY
        self.not_recording += int(was_busy) - int(is_busy)
        pod.state, pod.since = state, self.now

    # actions the policies take
    def create(self, count: int = 1) -> None:
        for _ in range(count):
            self.names += 1
            pod = Pod(f"pod-{self.names}", PodState.STARTING, self.now, self.now)
            self._count()
            self.pods[pod.name] = pod
            self.not_recording += 1
            self.at(self.now + self.rng.uniform(*POD_START), "ready", pod.name)

    def delete(self, name: str) -> None:
        pod = self.pods.pop(name)
        self._count()
        if pod.state is PodState.BUSY:
            assert pod.session is not None
            self.outcome.killed += int(
                self.trace.start <= self.sessions[pod.session].arrival < self.trace.end
            )
        else:
            self.not_recording -= 1

    # the world
    def run(self) -> Outcome:
        for index, session in enumerate(self.sessions):
            if self.now <= session.arrival < self.trace.end:
                self.at(session.arrival, "arrive", index)
        self.policy.begin(self)
        cutoff = self.trace.end + 4 * HOUR
        while self.events:
            when, _, kind, payload = heapq.heappop(self.events)
            if (
                when > self.trace.end
                and not self.queue
                and all(pod.state is not PodState.BUSY for pod in self.pods.values())
            ):
                break
            if when > cutoff:
                break
            self.now = when
            if kind == "arrive":
                assert isinstance(payload, int)
                self.policy.arrived(self, self.sessions[payload].arrival)
                idle = self._idle()
                if idle is None:
                    self.queue.append(payload)
                else:
                    self._assign(idle, payload)
            elif kind == "ready":
                pod = self.pods.get(str(payload))
                if pod is None:
                    continue
                pod.ready_at = self.now
                self._set(pod, PodState.IDLE)
                self._serve(pod)
            elif kind == "end":
                assert isinstance(payload, tuple)
                name, index = payload
                pod = self.pods.get(name)
                if pod is None or pod.session != index:
                    continue  # killed meanwhile
                pod.session = None
                if self.policy.single_use:
                    self._set(pod, PodState.SPENT)
                    self.delete(name)
                else:
                    self._set(pod, PodState.IDLE)
                    self._serve(pod)
            elif kind == "tick":
                assert callable(payload)
                payload(self)
                continue
            self.policy.changed(self)
        self.now = max(self.now, self.trace.end)
        self._count()
        for index in self.queue:  # still waiting at the cutoff
            self.waits[index] = self.now - self.sessions[index].arrival
        window = [
            index for index in self.waits if self.trace.start <= self.sessions[index].arrival < self.trace.end
        ]
        self.outcome.waits = [self.waits[index] for index in window]
        bounds = [self.trace.start, *self.trace.weeks, self.trace.end]
        self.outcome.week_waits = [
            [self.waits[index] for index in window if begin <= self.sessions[index].arrival < end]
            for begin, end in itertools.pairwise(bounds)
        ]
        return self.outcome

    def _idle(self) -> Pod | None:
        idle = [pod for pod in self.pods.values() if pod.state is PodState.IDLE]
        return min(idle, key=lambda pod: pod.since) if idle else None

    def _serve(self, pod: Pod) -> None:
        if self.queue:
            self._assign(pod, self.queue.popleft())

    def _assign(self, pod: Pod, index: int) -> None:
        session = self.sessions[index]
        self.waits[index] = self.now - session.arrival
        self._set(pod, PodState.BUSY)
        pod.session = index
        self.at(self.now + session.duration, "end", (pod.name, index))

    def count(self, *states: PodState) -> int:
        return sum(1 for pod in self.pods.values() if pod.state in states)

    def replica_set_victims(self, count: int, rng: random.Random) -> list[str]:
        """The pods a ReplicaSet deletes when scaled down by ``count``: not ready (starting)
        first, newest first; then ready ones that have been ready the shortest (in
        logarithmic buckets, ties at random). Whether a pod records is not considered."""

        def rank(pod: Pod) -> tuple[int, float, float]:
            if pod.ready_at is None:
                return (0, -pod.created, 0.0)
            ready_for = max(1.0, self.now - pod.ready_at)
            return (1, math.floor(math.log2(ready_for)), rng.random())

        return [pod.name for pod in sorted(self.pods.values(), key=rank)[:count]]


# -- policies ---------------------------------------------------------------------------------


class Policy:
    name = ""
    single_use = False
    kills = False  # may remove a busy pod (shown in the table; such a baseline is not a bar)

    def begin(self, pool: Pool) -> None:
        pass

    def arrived(self, pool: Pool, at: float) -> None:
        pass

    def changed(self, pool: Pool) -> None:
        pass

    def every(self, pool: Pool, period: float, action: Callable[[Pool], None]) -> None:
        def tick(pool: Pool) -> None:
            action(pool)
            pool.at(pool.now + period, "tick", tick)

        pool.at(pool.now, "tick", tick)


class Decide(Policy):
    """The operator's policy: ``decide`` after every change and at ``recheck_at``."""

    def __init__(
        self, name: str, idle_target: int, profile: ArrivalProfile | None = None, **foresight: Any
    ) -> None:
        self.name = name
        self.foresight = foresight
        self.spec = PoolSpec(minimum=1, maximum=MAXIMUM, idle_target=idle_target, scale_down_delay=DELAY)
        self.profile = profile
        self.surplus_since: float | None = None
        self.wake = math.inf

    def begin(self, pool: Pool) -> None:
        self.changed(pool)

    def arrived(self, pool: Pool, at: float) -> None:
        if self.profile is not None:
            self.profile.record_arrival(at)

    def changed(self, pool: Pool) -> None:
        anticipation = NO_ANTICIPATION
        if self.profile is not None:
            self.profile.advance(pool.now)
            anticipation = anticipate(pool.now, profile=self.profile, **self.foresight)
        views = [PodView(pod.name, pod.state, pod.since) for pod in pool.pods.values()]
        decision = decide(self.spec, views, len(pool.queue), pool.now, self.surplus_since, anticipation)
        self.surplus_since = decision.surplus_since
        pool.create(decision.create)
        for name in decision.delete:
            pool.delete(name)
        if decision.recheck_at is not None and (decision.recheck_at < self.wake or self.wake <= pool.now):
            self.wake = decision.recheck_at
            pool.at(decision.recheck_at, "tick", self.changed)


class Fixed(Policy):
    def __init__(self, size: int) -> None:
        self.name = f"fixed-{size}"
        self.size = size

    def begin(self, pool: Pool) -> None:
        pool.create(self.size)


class Deployment(Policy):
    """A Deployment scaled by an HPA: victims are the ReplicaSet's choice."""

    kills = True
    SYNC = 15.0
    STABILISATION = 300.0
    MINIMUM = 2

    def __init__(self) -> None:
        self.rng = random.Random(SEED)
        self.recommendations: deque[tuple[float, int]] = deque()

    def begin(self, pool: Pool) -> None:
        pool.create(self.MINIMUM)
        self.every(pool, self.SYNC, self.sync)

    def target(self, pool: Pool) -> int:
        raise NotImplementedError

    def sync(self, pool: Pool) -> None:
        current = len(pool.pods)
        wanted = max(self.MINIMUM, min(MAXIMUM, self.target(pool)))
        self.recommendations.append((pool.now, wanted))
        while self.recommendations[0][0] < pool.now - self.STABILISATION:
            self.recommendations.popleft()
        if wanted > current:
            pool.create(min(wanted, max(2 * current, current + 4)) - current)
        else:
            stable = max(value for _, value in self.recommendations)
            if stable < current:
                for name in pool.replica_set_victims(current - stable, self.rng):
                    pool.delete(name)


class Hpa(Deployment):
    name = "hpa-70%"

    def target(self, pool: Pool) -> int:
        ready = pool.count(PodState.IDLE, PodState.BUSY)
        current = len(pool.pods)
        if not ready:
            return current
        ratio = pool.count(PodState.BUSY) / ready / 0.7
        if abs(ratio - 1) <= 0.1:
            return current
        return math.ceil(ready * ratio)


class Keda(Deployment):
    name = "keda"
    SYNC = 30.0

    def target(self, pool: Pool) -> int:
        return pool.count(PodState.BUSY) + len(pool.queue) + 2


class Autoscaler(Policy):
    name = "autoscaler"
    MINIMUM = 2

    def __init__(self) -> None:
        self.low = self.high = 0

    def begin(self, pool: Pool) -> None:
        pool.create(self.MINIMUM)
        self.every(pool, 60.0, self.period)

    def period(self, pool: Pool) -> None:
        available = pool.count(PodState.IDLE, PodState.STARTING)
        self.low = self.low + 1 if available < 2 else 0
        self.high = self.high + 1 if available > 4 else 0
        if self.low >= 2:
            pool.create(min(2, MAXIMUM - len(pool.pods)))
            self.low = 0
        if self.high >= 10:
            self.high = 0
            idle = [pod for pod in pool.pods.values() if pod.state is PodState.IDLE]
            if idle and len(pool.pods) > self.MINIMUM:
                pool.delete(min(idle, key=lambda pod: pod.since).name)


class PodController(Policy):
    single_use = True

    def __init__(self, spare: int) -> None:
        self.name = f"pod-ctl-{spare}"
        self.spare = spare

    def begin(self, pool: Pool) -> None:
        self.changed(pool)

    def changed(self, pool: Pool) -> None:
        spare = pool.count(PodState.IDLE, PodState.STARTING)
        if spare < self.spare:
            pool.create(self.spare - spare)


def learned(history: Sequence[float]) -> ArrivalProfile:
    """A profile that watched ``history`` (and every minute between arrivals)."""
    profile = ArrivalProfile(time_zone=TIME_ZONE)
    if history:
        at = history[0]
        for arrival in history:
            while at + MINUTE < arrival:
                at += MINUTE
                profile.advance(at)
            profile.record_arrival(arrival)
        profile.advance(history[-1] + MINUTE)
    return profile


class ReactAtOnce(Decide):
    """Not a policy: a bound. keep-2-idle that, when the first session of the crowd arrives,
    starts a pod for every session of the crowd at once (knowing how many will come)."""

    def __init__(self, crowd: float) -> None:
        super().__init__("(bound)", 2)
        self.crowd = crowd
        self.done = False

    def arrived(self, pool: Pool, at: float) -> None:
        if not self.done and at >= self.crowd:
            self.done = True
            pool.create(FLASH)


def policies(trace: Trace) -> list[Policy]:
    return [
        Decide("ours", 2, learned(trace.history)),
        Decide("keep-2-idle", 2),
        Decide("keep-4-idle", 4),
        Fixed(FIXED_N),
        Hpa(),
        Keda(),
        Autoscaler(),
        PodController(4),
    ]


# -- report -----------------------------------------------------------------------------------


def recorded_hours(trace: Trace) -> float:
    """Recording hours inside the window if every session started at once."""
    return (
        sum(
            max(0.0, min(trace.end, session.arrival + session.duration) - max(trace.start, session.arrival))
            for session in trace.sessions
        )
        / HOUR
    )


def peak_concurrency(trace: Trace) -> int:
    changes = sorted(
        [(session.arrival, 1) for session in trace.sessions]
        + [(session.arrival + session.duration, -1) for session in trace.sessions]
    )
    level = peak = 0
    for _, step in changes:
        level += step
        peak = max(peak, level)
    return peak


def main() -> int:
    started = time.perf_counter()
    results: dict[str, dict[str, Outcome]] = {}
    header = (
        f"{'trace':<13} {'policy':<12} {'sessions':>8} {'p50 s':>6} {'p95 s':>6} {'>10 s':>6} "
        f"{'idle pod-h':>10} {'killed':>6}"
    )
    rows = [header, "-" * len(header)]
    all_traces = traces()
    bounds: dict[str, tuple[int, int]] = {}  # trace -> (bound's waits > 10 s, idle pods at the crowd)
    for trace in all_traces:
        results[trace.name] = {}
        for policy in policies(trace):
            outcome = Pool(trace, policy).run()
            results[trace.name][policy.name] = outcome
            rows.append(
                f"{trace.name:<13} {policy.name:<12} {len(outcome.waits):>8} {outcome.percentile(0.5):>6.1f} "
                f"{outcome.percentile(0.95):>6.1f} {outcome.long_waits:>6} {outcome.pod_hours:>10.1f} "
                f"{outcome.killed:>6}"
            )
        if trace.crowd is not None:
            bound = Pool(trace, ReactAtOnce(trace.crowd)).run()
            bounds[trace.name] = (bound.long_waits, 0)
        rows.append("")
    print("\n".join(rows))
    weeks = results["two weeks"]["ours"].week_waits
    print(
        "ours on two weeks, learning from nothing: sessions waiting > 10 s in week 1: "
        f"{sum(1 for wait in weeks[0] if wait > WAIT_LIMIT)}, in week 2: "
        f"{sum(1 for wait in weeks[1] if wait > WAIT_LIMIT)}"
    )
    day_trace = all_traces[0]
    peak = peak_concurrency(day_trace)
    print(
        f"a fixed fleet making nobody wait on the business day needs {peak} pods (its peak), "
        f"{peak * 24 - recorded_hours(day_trace):.0f} idle pod-hours"
    )

    checks: list[tuple[str, str]] = []  # (ok | MISSED | BOUND, text)

    def check(passed: bool, text: str) -> None:
        checks.append(("ok" if passed else "MISSED", text))

    day = results["business day"]
    ours = day["ours"]
    budget = 1.15 * day["keep-2-idle"].pod_hours
    check(ours.percentile(0.95) <= 5.0, f"business day: p95 wait {ours.percentile(0.95):.1f} s <= 5 s")
    check(ours.long_waits <= 15, f"business day: {ours.long_waits} sessions waiting > 10 s <= 15")
    check(
        ours.pod_hours <= budget,
        f"business day: {ours.pod_hours:.1f} idle pod-hours <= {budget:.1f} (keep-2-idle + 15 %)",
    )
    for name, outcomes in results.items():
        mine = outcomes["ours"]
        check(mine.killed == 0, f"{name}: ours killed {mine.killed} recordings")
        for policy, outcome in outcomes.items():
            if policy == "ours" or outcome.killed:
                continue  # a baseline that kills recordings is no bar
            theirs = outcome.long_waits
            text = f"{name}: ours {mine.long_waits} waits > 10 s, {policy} {theirs}"
            if mine.long_waits < theirs or mine.long_waits == theirs == 0:
                check(True, text)
            elif name in bounds and bounds[name][0] >= theirs:
                checks.append(
                    (
                        "BOUND",
                        f"{text}: no policy can do better without holding that many idle pods "
                        f"through the quiet hour: starting a pod for each of the {FLASH} the moment "
                        f"the first arrives still leaves {bounds[name][0]} waiting > 10 s (pods take "
                        f"{POD_START[0]:g}-{POD_START[1]:g} s); {policy} pays "
                        f"{outcome.pod_hours:.1f} idle pod-hours for it here, ours "
                        f"{mine.pod_hours:.1f}",
                    )
                )
            else:
                check(False, text)
    print()
    for verdict, text in checks:
        print(f"{verdict:<7}{text}")
    print(f"\nsimulated in {time.perf_counter() - started:.1f} s (seed {SEED})")
    return 1 if any(verdict == "MISSED" for verdict, _ in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
