"""The registry of Jibris the operator can see, and how one is chosen.

Pure logic: presences and outcomes go in, decisions come out, and the caller
passes the clock (``now``, seconds on a monotonic clock). No I/O happens here,
so every rule below is tested exhaustively with hypothesis.

Selection follows Jicofo and improves on it where a Kubernetes operator can:

* only Jibris that are idle, healthy (or silent about health), in the
  session's environment, and able to do the session's mode. What a Jibri can
  do is known from three sources, in order: the pool that owns its pod
  (:meth:`Registry.declare_pod`), the brewery it sits in (SIP gateways in the
  SIP brewery only), and what it has refused (:meth:`Registry.mark_unable`);
* a pool pod serving several environments is one Jibri seen in several
  breweries: busy, unhealthy or reserved in one means unavailable in all, so
  sessions of two environments never race for it;
* never one reserved by another session of this operator: a reservation is
  taken at selection and held until the Jibri's busy presence arrives or the
  caller releases it (Jicofo only skips a Jibri picked in the last 200 ms);
* never one in ``exclude`` (the Jibris this session already tried);
* skip one that failed in the last ``failure_backoff`` seconds (a new idle
  presence clears that mark, as in Jicofo), then prefer the one whose last
  failure is oldest (never failed first);
* among equals, spread load: the one picked least recently, then an order
  of its own: each registry orders Jibris by a hash salted with ``tie_salt``
  (the operator's nickname), so two controllers sharing a brewery do not
  both reach for the same idle Jibri first and lose the race to each other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from jibri_operator.api.types import (
    BreweryKind,
    BusyStatus,
    Dialect,
    Health,
    RecordingMode,
    brewery_serves,
    dialect_supports,
)

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
    brewery: BreweryKind = BreweryKind.RECORDING

    @property
    def idle_and_healthy(self) -> bool:
        return self.present and self.busy is BusyStatus.IDLE and self.health is not Health.UNHEALTHY


@dataclass
class _Entry:
    observation: Observation
    order: bytes = b""  # the registry's salted tie-break for this occupant, computed once
    reserved_by: str | None = None
    reserved_until: float = 0.0
    last_failure: float | None = None
    avoid_until: float = 0.0
    last_picked: float = float("-inf")
    unable: set[RecordingMode] = field(default_factory=set)  # modes it refused to start


@dataclass(frozen=True)
class ModeCounts:
    """For one recording mode: Jibris that could take it now, that are busy, that cannot."""

    idle: int = 0
    busy: int = 0
    unable: int = 0


_Name = tuple[str, str, BreweryKind]


def _name(observation: Observation) -> _Name:
    return (observation.environment, observation.nickname, observation.brewery)


@dataclass(frozen=True)
class _Pod:
    """What a pool declared about one of its pods."""

    identity: str
    modes: frozenset[RecordingMode] | None


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
    """What one observation changed; ``freed`` means a session waiting here may now start.

    ``also_freed`` names other environments where the same pod became available."""

    freed: bool
    left: bool
    also_freed: tuple[str, ...] = ()
    appeared: bool = False  # a Jibri not present before: it joined, or came back


@dataclass
class Registry:
    """Every Jibri seen in every environment's brewery, keyed by (environment, occupant)."""

    failure_backoff: float = FAILURE_BACKOFF
    reservation_ttl: float = RESERVATION_TTL
    tie_salt: str = ""
    _entries: dict[tuple[str, str], _Entry] = field(default_factory=dict)
    # The same entries by environment, then occupant: selection, counts and the status a
    # presence triggers look at one environment's Jibris, never at the whole fleet's.
    _by_env: dict[str, dict[str, _Entry]] = field(default_factory=dict)
    # Of those, the ones whose last presence says idle and healthy: the only ones selection
    # can choose, and in a busy fleet a small part of it.
    _idle: dict[str, dict[str, _Entry]] = field(default_factory=dict)
    # Entries whose reservation or failure mark may still expire (see next_deadline).
    _marked: set[tuple[str, str]] = field(default_factory=set)
    # A Jibri's name in one brewery: (environment, nickname, brewery kind). A pool finds its
    # pods by name in O(1), and one pod is one name per brewery it sits in.
    _by_nickname: dict[_Name, str] = field(default_factory=dict)  # -> occupant
    _pods: dict[_Name, _Pod] = field(default_factory=dict)
    _members: dict[str, set[_Name]] = field(default_factory=dict)  # identity -> its names

    # -- observing -------------------------------------------------------------

    def observe(self, observation: Observation, now: float) -> Change:
        key = (observation.environment, observation.occupant)
        name = _name(observation)
        entry = self._entries.get(key)
        siblings_before = self._siblings_available(name, now)
        if not observation.present:
            if entry is None:
                return Change(freed=False, left=False)
            del self._entries[key]
            del self._by_env[observation.environment][observation.occupant]
            self._idle.get(observation.environment, {}).pop(observation.occupant, None)
            if self._by_nickname.get(name) == observation.occupant:
                del self._by_nickname[name]
            return Change(freed=False, left=True, also_freed=self._newly_available(siblings_before, now))
        if entry is None:
            entry = self._entries[key] = _Entry(observation, order=self._order(observation.occupant))
            self._by_env.setdefault(observation.environment, {})[observation.occupant] = entry
            self._index_idle(entry)
            self._by_nickname[name] = observation.occupant
            return Change(
                freed=self._available(entry, now),
                left=False,
                also_freed=self._newly_available(siblings_before, now),
                appeared=True,
            )
        was_available = self._available(entry, now)
        entry.observation = observation
        self._index_idle(entry)
        if observation.busy is BusyStatus.BUSY:
            # The busy presence our reservation was waiting for: the Jibri is now visibly taken.
            entry.reserved_by = None
        elif observation.idle_and_healthy:
            entry.avoid_until = 0.0  # a new idle presence clears the recent-failure mark
        return Change(
            freed=not was_available and self._available(entry, now),
            left=False,
            also_freed=self._newly_available(siblings_before, now),
        )

    def forget_environment(self, environment: str) -> None:
        for occupant in self._by_env.pop(environment, {}):
            del self._entries[(environment, occupant)]
        self._idle.pop(environment, None)
        for name in [name for name in self._by_nickname if name[0] == environment]:
            del self._by_nickname[name]

    def get(self, environment: str, occupant: str) -> Observation | None:
        entry = self._entries.get((environment, occupant))
        return entry.observation if entry is not None else None

    def get_by_nickname(
        self, environment: str, nickname: str, brewery: BreweryKind = BreweryKind.RECORDING
    ) -> Observation | None:
        """The Jibri called ``nickname`` in ``environment`` (a pool's pod name is its nickname)."""
        occupant = self._by_nickname.get((environment, nickname, brewery))
        return self.get(environment, occupant) if occupant is not None else None

    # -- what Jibris can do ------------------------------------------------------

    def declare_pod(
        self,
        identity: str,
        nickname: str,
        environments: Iterable[str],
        modes: Iterable[RecordingMode] | None = None,
    ) -> None:
        """A pool's pod: seen as ``nickname`` in each brewery of each of ``environments``, one
        Jibri (``identity``), able to do ``modes`` (None: whatever its brewery and dialect allow)."""
        self.forget_pod(identity)
        pod = _Pod(identity, frozenset(modes) if modes is not None else None)
        members = self._members[identity] = set()
        for environment in environments:
            for brewery in BreweryKind:
                self._pods[(environment, nickname, brewery)] = pod
                members.add((environment, nickname, brewery))

    def forget_pod(self, identity: str) -> None:
        for name in self._members.pop(identity, ()):
            self._pods.pop(name, None)

    def mark_unable(self, environment: str, occupant: str, mode: RecordingMode) -> None:
        """The Jibri refused ``mode`` for good (off/error, no retry): never offer it that mode again."""
        entry = self._entries.get((environment, occupant))
        if entry is not None:
            entry.unable.add(mode)

    def can_do(self, observation: Observation, mode: RecordingMode) -> bool:
        """Whether this Jibri can take ``mode`` at all, busy or not."""
        entry = self._entries.get((observation.environment, observation.occupant))
        return entry is not None and self._can_do(entry, mode)

    def mode_counts(self, environment: str) -> dict[RecordingMode, ModeCounts]:
        """Per mode: idle (selectable now, reservations aside), busy, and unable Jibris."""
        result = {}
        for mode in RecordingMode:
            idle = busy = unable = 0
            for entry in self._in(environment):
                if not self._can_do(entry, mode):
                    unable += 1
                elif entry.observation.busy is BusyStatus.BUSY:
                    busy += 1
                elif entry.observation.idle_and_healthy:
                    idle += 1
            result[mode] = ModeCounts(idle, busy, unable)
        return result

    def capable(self, environment: str, mode: RecordingMode) -> int:
        """How many Jibris in ``environment`` could ever take ``mode`` (busy or not)."""
        return sum(1 for entry in self._in(environment) if self._can_do(entry, mode))

    def refusals(self, environment: str) -> dict[str, frozenset[RecordingMode]]:
        """Nickname -> the modes that Jibri refused, for the environment's status."""
        return {
            entry.observation.nickname: frozenset(entry.unable)
            for entry in self._in(environment)
            if entry.unable
        }

    def observations(self, environment: str | None = None) -> Iterator[Observation]:
        entries = self._entries.values() if environment is None else self._in(environment)
        for entry in entries:
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
        best_rank: tuple[float, float, bytes, str] | None = None
        for occupant, entry in self._idle.get(environment, {}).items():
            if occupant in excluded:
                continue
            if not self._can_do(entry, mode) or not self._available(entry, now, session):
                continue
            rank = (
                entry.last_failure if entry.last_failure is not None else float("-inf"),
                entry.last_picked,
                entry.order,  # stable for this registry, different for another's
                occupant,
            )
            if best_rank is None or rank < best_rank:
                best, best_rank = entry, rank
        if best is None:
            return None
        best.reserved_by = session
        best.reserved_until = now + self.reservation_ttl
        best.last_picked = now
        self._marked.add((environment, best.observation.occupant))
        return best.observation

    def available(self, environment: str, mode: RecordingMode, now: float) -> int:
        """How many Jibris ``select`` could choose right now."""
        return sum(
            1
            for entry in self._idle.get(environment, {}).values()
            if self._can_do(entry, mode) and self._available(entry, now)
        )

    def claim(self, environment: str, occupant: str, holder: str, now: float) -> bool:
        """Reserve one given Jibri for ``holder`` (e.g. a pool removing it) if it is available."""
        entry = self._entries.get((environment, occupant))
        if entry is None or not self._available(entry, now, holder):
            return False
        entry.reserved_by = holder
        entry.reserved_until = now + self.reservation_ttl
        self._marked.add((environment, occupant))
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
            self._marked.add((environment, occupant))

    def next_deadline(self, now: float) -> float | None:
        """The next time a reservation or failure mark expires, making a Jibri available without a presence."""
        soonest: float | None = None
        for key in list(self._marked):
            entry = self._entries.get(key)
            pending = (
                [
                    d
                    for d in (entry.reserved_until if entry.reserved_by else 0.0, entry.avoid_until)
                    if d > now
                ]
                if entry is not None
                else []
            )
            if not pending:
                self._marked.discard(key)  # expired, released or gone: nothing left to wait for
            elif entry is not None and entry.observation.idle_and_healthy:
                soonest = min(pending) if soonest is None else min(soonest, *pending)
        return soonest

    def _in(self, environment: str) -> Iterable[_Entry]:
        return self._by_env.get(environment, {}).values()

    def _index_idle(self, entry: _Entry) -> None:
        observation = entry.observation
        if observation.idle_and_healthy:
            self._idle.setdefault(observation.environment, {})[observation.occupant] = entry
        else:
            self._idle.get(observation.environment, {}).pop(observation.occupant, None)

    def _order(self, occupant: str) -> bytes:
        return hashlib.blake2b(f"{self.tie_salt}\0{occupant}".encode(), digest_size=8).digest()

    def _can_do(self, entry: _Entry, mode: RecordingMode) -> bool:
        observation = entry.observation
        pod = self._pods.get(_name(observation))
        return (
            dialect_supports(observation.dialect, mode)
            and brewery_serves(observation.brewery, mode)
            and (pod is None or pod.modes is None or mode in pod.modes)
            and mode not in entry.unable
        )

    def _available(self, entry: _Entry, now: float, session: str | None = None) -> bool:
        if not self._free(entry, now, session):
            return False
        own = _name(entry.observation)
        pod = self._pods.get(own)
        if pod is None:
            return True
        # The same pod seen from its other breweries must be free there too.
        for name in self._members.get(pod.identity, ()):
            if name == own:
                continue
            occupant = self._by_nickname.get(name)
            sibling = self._entries.get((name[0], occupant)) if occupant is not None else None
            if sibling is not None and not self._free(sibling, now, session, failures=False):
                return False
        return True

    @staticmethod
    def _free(entry: _Entry, now: float, session: str | None, failures: bool = True) -> bool:
        if not entry.observation.idle_and_healthy or (failures and entry.avoid_until > now):
            return False
        reserved = entry.reserved_by is not None and entry.reserved_until > now
        return not reserved or entry.reserved_by == session

    def _siblings_available(self, name: _Name, now: float) -> dict[_Name, bool]:
        """Availability of the other environments' views of the pod called ``name``, if any."""
        pod = self._pods.get(name)
        if pod is None:
            return {}
        result = {}
        for member in self._members.get(pod.identity, ()):
            occupant = self._by_nickname.get(member)
            entry = self._entries.get((member[0], occupant)) if occupant is not None else None
            if member != name and entry is not None:
                result[member] = self._available(entry, now)
        return result

    def _newly_available(self, before: dict[_Name, bool], now: float) -> tuple[str, ...]:
        freed = []
        for member, was in before.items():
            occupant = self._by_nickname.get(member)
            entry = self._entries.get((member[0], occupant)) if occupant is not None else None
            if not was and entry is not None and self._available(entry, now) and member[0] not in freed:
                freed.append(member[0])
        return tuple(freed)
