"""The registry of Jibris the operator can see, and how one is chosen.

Pure logic: presences and outcomes go in, decisions come out, and the caller
passes the clock (``now``, seconds on a monotonic clock). No I/O happens here,
so every rule below is tested exhaustively with hypothesis.

Selection follows Jicofo and improves on it where a Kubernetes operator can:

* only Jibris that are idle, healthy (or silent about health), in the
  session's environment, and able to do the session's mode;
* never one reserved by another session of this operator: a reservation is
  taken at selection and held until the Jibri's busy presence arrives or the
  caller releases it (Jicofo only skips a Jibri picked in the last 200 ms);
* never one in ``exclude`` (the Jibris this session already tried);
* skip one that failed in the last ``failure_backoff`` seconds (a new idle
  presence clears that mark, as in Jicofo), then prefer the one whose last
  failure is oldest (never failed first);
* among equals, spread load: the one picked least recently.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from jibri_operator.api.types import BusyStatus, Dialect, Health, RecordingMode, dialect_supports

FAILURE_BACKOFF: Final = 60.0
RESERVATION_TTL: Final = 30.0


@dataclass(frozen=True)
class Observation:
    """One Jibri as one brewery sees it (the fleet's copy of a parsed presence)."""

    environment: str
    occupant: str
    nickname: str
    busy: BusyStatus
    health: Health
    dialect: Dialect
    present: bool = True

    @property
    def idle_and_healthy(self) -> bool:
        return self.present and self.busy is BusyStatus.IDLE and self.health is not Health.UNHEALTHY


@dataclass
class _Entry:
    observation: Observation
    reserved_by: str | None = None
    reserved_until: float = 0.0
    last_failure: float | None = None
    avoid_until: float = 0.0
    last_picked: float = float("-inf")


@dataclass(frozen=True)
class Counts:
    idle: int = 0
    busy: int = 0
    unhealthy: int = 0

    @property
    def total(self) -> int:
        return self.idle + self.busy + self.unhealthy


@dataclass(frozen=True)
class Change:
    """What one observation changed; ``freed`` means a session waiting here may now start."""

    freed: bool
    left: bool


@dataclass
class Registry:
    """Every Jibri seen in every environment's brewery, keyed by (environment, occupant)."""

    failure_backoff: float = FAILURE_BACKOFF
    reservation_ttl: float = RESERVATION_TTL
    _entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)

    # -- observing -------------------------------------------------------------

    def observe(self, observation: Observation, now: float) -> Change:
        key = (observation.environment, observation.occupant)
        entry = self._entries.get(key)
        if not observation.present:
            if entry is None:
                return Change(freed=False, left=False)
            del self._entries[key]
            return Change(freed=False, left=True)
        if entry is None:
            self._entries[key] = _Entry(observation)
            return Change(freed=observation.idle_and_healthy, left=False)
        was_available = self._available(entry, now)
        entry.observation = observation
        if observation.busy is BusyStatus.BUSY:
            # The busy presence our reservation was waiting for: the Jibri is now visibly taken.
            entry.reserved_by = None
        elif observation.idle_and_healthy:
            entry.avoid_until = 0.0  # a new idle presence clears the recent-failure mark
        return Change(freed=not was_available and self._available(entry, now), left=False)

    def forget_environment(self, environment: str) -> None:
        for key in [key for key in self._entries if key[0] == environment]:
            del self._entries[key]

    def get(self, environment: str, occupant: str) -> Observation | None:
        entry = self._entries.get((environment, occupant))
        return entry.observation if entry is not None else None

    def get_by_nickname(self, environment: str, nickname: str) -> Observation | None:
        """The Jibri called ``nickname`` in ``environment`` (a pool's pod name is its nickname)."""
        return next((o for o in self.observations(environment) if o.nickname == nickname), None)

    def observations(self, environment: str | None = None) -> Iterator[Observation]:
        for (env, _), entry in self._entries.items():
            if environment is None or env == environment:
                yield entry.observation

    def counts(self, environment: str) -> Counts:
        idle = busy = unhealthy = 0
        for observation in self.observations(environment):
            if observation.busy is BusyStatus.BUSY:
                busy += 1
            elif observation.health is Health.UNHEALTHY:
                unhealthy += 1
            else:
                idle += 1
        return Counts(idle, busy, unhealthy)

    # -- choosing ---------------------------------------------------------------

    def select(
        self,
        environment: str,
        mode: RecordingMode,
        session: str,
        now: float,
        exclude: Iterable[str] = (),
    ) -> Observation | None:
        """Choose a Jibri for ``session`` and reserve it; None when none is available."""
        excluded = set(exclude)
        best: _Entry | None = None
        best_rank: tuple[float, float, str] | None = None
        for (env, occupant), entry in self._entries.items():
            if env != environment or occupant in excluded:
                continue
            if not dialect_supports(entry.observation.dialect, mode) or not self._available(
                entry, now, session
            ):
                continue
            rank = (
                entry.last_failure if entry.last_failure is not None else float("-inf"),
                entry.last_picked,
                occupant,  # a stable order, so equal choices are reproducible
            )
            if best_rank is None or rank < best_rank:
                best, best_rank = entry, rank
        if best is None:
            return None
        best.reserved_by = session
        best.reserved_until = now + self.reservation_ttl
        best.last_picked = now
        return best.observation

    def available(self, environment: str, mode: RecordingMode, now: float) -> int:
        """How many Jibris ``select`` could choose right now."""
        return sum(
            1
            for (env, _), entry in self._entries.items()
            if env == environment
            and dialect_supports(entry.observation.dialect, mode)
            and self._available(entry, now)
        )

    def claim(self, environment: str, occupant: str, holder: str, now: float) -> bool:
        """Reserve one given Jibri for ``holder`` (e.g. a pool removing it) if it is available."""
        entry = self._entries.get((environment, occupant))
        if entry is None or not self._available(entry, now, holder):
            return False
        entry.reserved_by = holder
        entry.reserved_until = now + self.reservation_ttl
        return True

    def release(self, environment: str, occupant: str, session: str) -> None:
        """Drop ``session``'s reservation (a busy answer, a failure, or the session is over)."""
        entry = self._entries.get((environment, occupant))
        if entry is not None and entry.reserved_by == session:
            entry.reserved_by = None

    def record_failure(self, environment: str, occupant: str, now: float) -> None:
        """A start or a recording failed on this Jibri: skip it for a while. Busy answers are not failures."""
        entry = self._entries.get((environment, occupant))
        if entry is not None:
            entry.last_failure = now
            entry.avoid_until = now + self.failure_backoff

    def next_deadline(self, now: float) -> float | None:
        """The next time a reservation or failure mark expires, making a Jibri available without a presence."""
        deadlines = [
            deadline
            for entry in self._entries.values()
            if entry.observation.idle_and_healthy
            for deadline in (entry.reserved_until if entry.reserved_by else 0.0, entry.avoid_until)
            if deadline > now
        ]
        return min(deadlines, default=None)

    def _available(self, entry: _Entry, now: float, session: str | None = None) -> bool:
        if not entry.observation.idle_and_healthy or entry.avoid_until > now:
            return False
        reserved = entry.reserved_by is not None and entry.reserved_until > now
        return not reserved or entry.reserved_by == session
