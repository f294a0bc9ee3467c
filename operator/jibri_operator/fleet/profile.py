"""A pool's learned arrival profile: how many sessions may arrive before a new pod is idle.

A pod needs 20 to 60 s to become an idle Jibri. A session arriving while no Jibri is
idle waits for one, unless the pool held enough idle pods when it came. Meetings are
regular (the top of the hour, the Monday stand-up), so the profile learns, per
*bucket* (a weekday and a time-of-day slot, 5 minutes by default, in the pool's time
zone: 7 * 288 buckets), two things about the sessions arriving in that slot:

* ``peak``: the most sessions that arrived within one *horizon* (30 s by default)
  anywhere in the slot: how many idle pods it takes so that nobody waits for a pod
  that is still starting (a pod asked for when the first of them came is ready
  20 to 60 s later; a session that waits less than ~10 s for it hardly notices);
* ``count``: how many arrived in the whole slot.

What to hold idle at an instant (:meth:`ArrivalProfile.need`): the high quantile (p90)
of ``peak``, but no more than the median of the sessions still to come in the slot:
of the slot-weeks with at least as many arrivals as seen so far, the median count,
less those seen. So the pool is warm before a burst (the next slot's need is asked
a horizon ahead) and stops refilling once the burst it expected has come; a burst
larger than usual keeps it refilling, since the slot-weeks that had more say so.

The estimator, and why
----------------------
Each bucket keeps two *decayed histograms* (weight by level) of those per-week
values: each week a slot ends, its ``peak`` and ``count`` add one unit of weight to
their levels, and older weeks lose half their weight every ``half_life_weeks`` (2).
Quantiles are read from the histograms. Compared with the alternatives:

* a quantile of a histogram is robust: one odd week (a flash crowd) moves a p90 only
  while it is more than 10 % of the weight, then drops out as it decays, where a
  mean/variance model would inflate the estimate in proportion to the outlier;
* one maximum per slot-week (``peak``) catches a 30-second burst that a quantile over
  the instants of a 5-minute slot would dilute to nothing; ``peak`` and ``count`` only
  count arrivals before the slot's end, so a burst at 9:00 does not leak into the
  8:55 bucket (which would warm pods five minutes early);
* the median of what is still to come, not its p90, bounds the refill: the
  simulator (``benchmarks/policy_sim.py``) shows a p90 there keeps pods idle for
  bursts that never come, for the few waits it saves;
* decay is *forward decay*: weights are stored scaled by ``2 ** (t / half-life)``
  against a landmark, so an update touches only its bucket and nothing is rewritten
  as time passes; the landmark moves (and every weight is rescaled, the faded ones
  dropped) every 4 half-lives, which keeps the stored numbers short.

While a bucket has less than ``borrow_weeks`` (2) of its own (decayed) history, its
histograms are completed with the same slot of the other weekdays, in proportion to
what it lacks: a young pool learns on Tuesday from Monday, and an old one keeps its
weekdays apart (the weekend is not warmed like a Monday).

A slot counts only when the operator watched at least half of it (it calls
:meth:`ArrivalProfile.advance` every few seconds); slots during a long outage are
unknown, not quiet, and are skipped.

The last few minutes of arrivals are kept too, for the surge signal of
:func:`jibri_operator.fleet.policy.anticipate` (a crowd nobody scheduled).

It serialises to a small JSON-able dict (:meth:`ArrivalProfile.to_dict`): per
bucket two short lists of integer weights by level (hundredths of a week): about
50 KB for a busy pool, bounded by 2016 buckets of levels up to 255, small enough
for a ConfigMap the pool owns.

Pure: no clock is read here; callers pass wall times (epoch seconds).
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

WEEK: Final = 7 * 24 * 3600.0
FORMAT: Final = 1
MAX_LEVEL: Final = 255  # arrivals within one horizon beyond this are counted as this
UNIT: Final = 100  # stored weights are integers, in hundredths of a slot-week
REBASE_HALF_LIVES: Final = 4  # move the landmark when weights grew 16-fold (keeps numbers short)
MAX_GAP: Final = 15 * 60.0  # slots passing unwatched for longer than this are unknown, not quiet
KEEP_RECENT: Final = 300.0  # recent arrivals kept for the surge signal, seconds
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class LearnedNeed:
    idle: int  # idle headroom the profile wants now
    why: str  # in words: which bucket and what it saw
    valid_for: float  # seconds during which this answer cannot change (without a new arrival)
    expected: int  # the most arrivals within a horizon that the slot of now is known for


@dataclass(frozen=True)
class _Estimate:
    peak: int  # the quantile of the most arrivals within one horizon
    count: int  # the quantile of the arrivals in the whole slot
    counts: tuple[float, ...]  # weight by arrivals in the whole slot
    weeks: float  # own history, in (decayed) weeks
    borrowed: float  # weeks of other days' history lent to it

    def remaining(self, seen: int, quantile: float) -> int:
        """The quantile of the arrivals still to come in the slot, given ``seen`` so far:
        of the slot-weeks with at least ``seen`` arrivals, less ``seen``."""
        if not seen:
            return self.count
        return max(0, _quantile([0.0] * seen + list(self.counts[seen:]), quantile) - seen)


class ArrivalProfile:
    """Learn per (weekday, slot) high quantiles of the arrivals to come, and say what to hold idle.

    Feed it every session arrival (:meth:`record_arrival`) and the time now and then
    (:meth:`advance`); ask it what headroom to keep (:meth:`need`) and how many arrived
    lately (:meth:`arrivals_since`); persist it with :meth:`to_dict`/:meth:`from_dict`.
    """

    def __init__(
        self,
        *,
        time_zone: str = "UTC",
        slot: int = 300,
        horizon: float = 30.0,
        half_life_weeks: float = 2.0,
        quantile: float = 0.9,
        count_quantile: float = 0.5,
        borrow_weeks: float = 2.0,
    ) -> None:
        if slot <= 0 or 900 % slot:
            raise ValueError("slot must divide 15 minutes (time zones differ by whole quarter hours)")
        if not (0 < quantile < 1 and 0 < count_quantile < 1):
            raise ValueError("quantiles must be within (0, 1)")
        if horizon <= 0 or half_life_weeks <= 0 or borrow_weeks < 0:
            raise ValueError("horizon and half_life_weeks must be positive, borrow_weeks not negative")
        self.time_zone = time_zone
        self.slot = slot
        self.horizon = horizon
        self.half_life_weeks = half_life_weeks
        self.quantile = quantile
        self.count_quantile = count_quantile
        self.borrow_weeks = borrow_weeks
        self._zone = ZoneInfo(time_zone)
        self._per_day = 86400 // slot
        self._half_life = half_life_weeks * WEEK
        self._landmark: float | None = None  # epoch of weight scale 1
        # key -> (weight by peak level, weight by count level), forward-decayed integers
        self._buckets: dict[int, tuple[list[int], list[int]]] = {}
        self._open: float | None = None  # start of the slot being watched
        self._open_arrivals: list[float] = []
        self._watched_from = 0.0
        self._last_seen: float | None = None
        self._recent: deque[float] = deque()
        self._clock = 0.0  # end of the last closed slot: absolute weights are read then
        self._cache: dict[int, _Estimate] = {}
        self._keys: dict[float, int] = {}

    # -- observations ----------------------------------------------------------------------

    def record_arrival(self, at: float) -> None:
        """A session arrived (was created) at ``at`` in one of the pool's environments."""
        self.advance(at)
        if self._open is not None and self._open <= at < self._open + self.slot:
            bisect.insort(self._open_arrivals, at)
        if not self._recent or at >= self._recent[-1]:
            self._recent.append(at)
        else:  # out of order (creation times in whole seconds): keep it sorted
            bisect.insort(self._recent, at)

    def advance(self, wall: float) -> None:
        """Time passed: close the slots that ended by ``wall`` into their buckets."""
        if self._open is None or self._last_seen is None:
            self._open = self._slot_start(wall)
            self._watched_from = wall
            self._last_seen = wall
            return
        if wall < self._last_seen:
            return  # a late arrival or a clock step back: nothing to close
        gap = wall - self._last_seen
        current = self._slot_start(wall)
        if current > self._open:
            self._close(self._open, self._open_arrivals, self._watched_from)
            if gap <= MAX_GAP:  # watched all along: the slots in between were quiet
                start = self._open + self.slot
                while start < current:
                    self._close(start, [], start)
                    start += self.slot
            self._open = current
            self._open_arrivals = []
            self._watched_from = current if gap <= MAX_GAP else wall
        self._last_seen = wall
        while self._recent and self._recent[0] < wall - KEEP_RECENT:
            self._recent.popleft()

    def arrivals_since(self, since: float) -> list[float]:
        """The arrivals recorded at or after ``since`` (looking back five minutes at most)."""
        return list(itertools.islice(self._recent, bisect.bisect_left(self._recent, since), None))

    # -- questions -------------------------------------------------------------------------

    def need(self, wall: float, lead: float) -> LearnedNeed:
        """Idle headroom to hold at ``wall`` (after :meth:`advance` to it).

        In the slot of ``wall``: the quantile of arrivals within a horizon, but no more
        than the quantile of the slot's arrivals less those already seen in it (a burst
        that has come needs no more pods). Within ``lead`` of the next slot, also what
        that one wants from its start, so its pods are idle when it begins.
        """
        here = self._slot_start(wall)
        seen = len(self._open_arrivals) if self._open == here else 0
        now = self._estimate(self._key(here))
        idle = min(now.peak, now.remaining(seen, self.count_quantile))
        why = self._why(here, now, seen) if idle else ""
        ahead = self._slot_start(wall + lead)
        if ahead != here:
            next_ = self._estimate(self._key(ahead))
            if min(next_.peak, next_.count) > idle:
                idle = min(next_.peak, next_.count)
                why = self._why(ahead, next_, 0)
        valid_for = min(self.slot - wall % self.slot, self.slot - (wall + lead) % self.slot)
        return LearnedNeed(idle, why, max(0.001, valid_for), now.peak)

    @property
    def closed_through(self) -> float:
        """The end of the last slot closed into the buckets: the profile's saved state changes with it."""
        return self._clock

    @property
    def last_seen(self) -> float | None:
        """The latest time (arrival or :meth:`advance`) the profile was told about."""
        return self._last_seen

    def weeks(self, wall: float) -> float:
        """Weeks of (decayed) history of the bucket of ``wall``, for tests and status."""
        return self._estimate(self._key(self._slot_start(wall))).weeks

    # -- persistence -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: settings, landmark, buckets, and the slot being watched."""
        return {
            "format": FORMAT,
            "timeZone": self.time_zone,
            "slot": self.slot,
            "horizon": self.horizon,
            "halfLifeWeeks": self.half_life_weeks,
            "quantile": self.quantile,
            "countQuantile": self.count_quantile,
            "borrowWeeks": self.borrow_weeks,
            "landmark": self._landmark,
            "clock": self._clock,
            # One entry per bucket, Monday 00:00 first: 0 when never watched, a number when
            # every watched week was quiet (its weight at level 0), else [peaks, counts].
            "buckets": [self._encode(self._buckets.get(key)) for key in range(7 * self._per_day)],
            "open": None
            if self._open is None
            else {
                "start": self._open,
                "watchedFrom": self._watched_from,
                "lastSeen": self._last_seen,
                "arrivals": list(self._open_arrivals),
                "recent": list(self._recent),
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ArrivalProfile:
        """The profile :meth:`to_dict` wrote; ValueError (or KeyError, TypeError) if it is not one."""
        if data.get("format") != FORMAT:
            raise ValueError(f"not an arrival profile of format {FORMAT}")
        profile = cls(
            time_zone=str(data["timeZone"]),
            slot=int(data["slot"]),
            horizon=float(data["horizon"]),
            half_life_weeks=float(data["halfLifeWeeks"]),
            quantile=float(data["quantile"]),
            count_quantile=float(data["countQuantile"]),
            borrow_weeks=float(data["borrowWeeks"]),
        )
        landmark = data.get("landmark")
        profile._landmark = None if landmark is None else float(landmark)
        profile._clock = float(data.get("clock", 0.0))
        buckets = list(data.get("buckets") or ())
        if len(buckets) != 7 * profile._per_day:
            raise ValueError(f"{len(buckets)} buckets, not 7 days of {profile._per_day}")
        for key, entry in enumerate(buckets):
            if isinstance(entry, int):
                if entry:
                    profile._buckets[key] = ([entry], [entry])
            else:
                peaks, counts = entry
                profile._buckets[key] = (
                    [int(weight) for weight in peaks][: MAX_LEVEL + 1],
                    [int(weight) for weight in counts][: MAX_LEVEL + 1],
                )
        opened = data.get("open")
        if opened:
            profile._open = float(opened["start"])
            profile._watched_from = float(opened["watchedFrom"])
            profile._last_seen = float(opened["lastSeen"])
            profile._open_arrivals = sorted(float(at) for at in opened.get("arrivals") or ())
            profile._recent = deque(sorted(float(at) for at in opened.get("recent") or ()))
        return profile

    # -- inside ----------------------------------------------------------------------------

    @staticmethod
    def _encode(bucket: tuple[list[int], list[int]] | None) -> int | list[list[int]]:
        if bucket is None:
            return 0
        peaks, counts = bucket
        if len(peaks) == len(counts) == 1 and peaks[0] == counts[0]:
            return peaks[0]
        return [list(peaks), list(counts)]

    def _slot_start(self, wall: float) -> float:
        return math.floor(wall / self.slot) * self.slot

    def _key(self, slot_start: float) -> int:
        key = self._keys.get(slot_start)
        if key is None:
            local = datetime.fromtimestamp(slot_start, self._zone)
            key = local.weekday() * self._per_day + (local.hour * 3600 + local.minute * 60) // self.slot
            if len(self._keys) > 4096:
                self._keys.clear()
            self._keys[slot_start] = key
        return key

    def _why(self, slot_start: float, estimate: _Estimate, seen: int) -> str:
        local = datetime.fromtimestamp(slot_start, self._zone)
        end = datetime.fromtimestamp(slot_start + self.slot, self._zone)
        percent = f"p{round(self.quantile * 100)}"
        history = f"{estimate.weeks:.1f} week(s) of history"
        if estimate.borrowed:
            history += f", {estimate.borrowed:.1f} borrowed from other days"
        so_far = f", {seen} so far" if seen else ""
        return (
            f"learned: {local:%a %H:%M}-{end:%H:%M} {percent} {estimate.peak} arrivals within "
            f"{self.horizon:g} s, {estimate.count} in the slot{so_far} ({history})"
        )

    def _scale(self, wall: float) -> float:
        if self._landmark is None:
            return 1.0
        return float(2.0 ** ((wall - self._landmark) / self._half_life))

    def _close(self, start: float, arrivals: list[float], watched_from: float) -> None:
        """Fold the slot ``[start, start + slot)`` into its bucket."""
        end = start + self.slot
        begin = max(start, watched_from)
        if end - begin < self.slot / 2:
            return  # watched too little of it to say
        inside = [at for at in arrivals if begin <= at < end]
        peak, ahead = 0, 0
        for index, at in enumerate(inside):  # N(t) is largest just at an arrival
            ahead = max(ahead, index)
            while ahead < len(inside) and inside[ahead] < at + self.horizon:
                ahead += 1
            peak = max(peak, ahead - index)
        count = round(len(inside) * self.slot / (end - begin))
        if self._landmark is None:
            self._landmark = start
        elif (start - self._landmark) / self._half_life > REBASE_HALF_LIVES:
            self._rebase(start)
        weight = round(self._scale(start) * UNIT)
        peaks, counts = self._buckets.setdefault(self._key(start), ([], []))
        for levels, level in ((peaks, min(peak, MAX_LEVEL)), (counts, min(count, MAX_LEVEL))):
            while len(levels) <= level:
                levels.append(0)
            levels[level] += weight
        self._clock = max(self._clock, end)
        self._cache.clear()

    def _rebase(self, landmark: float) -> None:
        assert self._landmark is not None
        factor = 2.0 ** ((self._landmark - landmark) / self._half_life)
        for key, histograms in list(self._buckets.items()):
            rescaled = []
            for levels in histograms:
                scaled = [round(weight * factor) for weight in levels]
                while scaled and scaled[-1] == 0:
                    scaled.pop()
                rescaled.append(scaled)
            if rescaled[0]:
                self._buckets[key] = (rescaled[0], rescaled[1])
            else:
                del self._buckets[key]
        self._landmark = landmark

    def _estimate(self, key: int) -> _Estimate:
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._compute(key)
        return cached

    def _compute(self, key: int) -> _Estimate:
        scale = self._scale(self._clock) * UNIT
        own = self._buckets.get(key, ([], []))
        weeks = sum(own[0]) / scale
        lent = [list(map(float, own[0])), list(map(float, own[1]))]
        borrowed = 0.0
        lacking = self.borrow_weeks - weeks
        if lacking > 0:
            index = key % self._per_day
            others = [
                self._buckets[day * self._per_day + index]
                for day in range(7)
                if day * self._per_day + index != key and day * self._per_day + index in self._buckets
            ]
            total = sum(sum(peaks) for peaks, _ in others)
            if total > 0:
                borrowed = min(lacking, total / scale)
                share = borrowed * scale / total
                for histograms in others:
                    for mixture, levels in zip(lent, histograms, strict=True):
                        for level, weight in enumerate(levels):
                            while len(mixture) <= level:
                                mixture.append(0.0)
                            mixture[level] += weight * share
        return _Estimate(
            _quantile(lent[0], self.quantile),
            _quantile(lent[1], self.count_quantile),
            tuple(lent[1]),
            weeks,
            borrowed,
        )


def _quantile(weights: list[float], quantile: float) -> int:
    """The smallest level whose cumulative weight reaches ``quantile`` of the total (0 if empty)."""
    total = sum(weights)
    if total <= 0:
        return 0
    running = 0.0
    for level, weight in enumerate(weights):
        running += weight
        if running >= quantile * total * (1 - 1e-12):
            return level
    return len(weights) - 1
