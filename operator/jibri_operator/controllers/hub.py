"""The operator's shared runtime: brewery links, the registry, and who waits on what.

Presence flows in from each environment's brewery client into the fleet
registry; a change that frees a Jibri wakes the sessions waiting in that
environment at once (no polling). Reports from a Jibri are routed to the
session that runs on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Final, Protocol

from jibri_operator import metrics
from jibri_operator.api.types import BreweryKind, BusyStatus, Dialect, RecordingMode
from jibri_operator.fleet.registry import Observation, Registry
from jibri_operator.kube.client import Kube
from jibri_operator.xmpp.brewery import BreweryClient, BreweryListener
from jibri_operator.xmpp.stanzas import JibriPresence, StatusUpdate

log = logging.getLogger(__name__)

EnvKey = tuple[str, str]  # (namespace, name) of an XmppEnvironment


@dataclass(frozen=True)
class JibriReport:
    occupant: str
    update: StatusUpdate


@dataclass(frozen=True)
class JibriSeen:
    observation: Observation


@dataclass(frozen=True)
class BreweryLost:
    pass


@dataclass(frozen=True)
class BreweryBack:
    """The brewery is joined again. A Jibri whose presence did not change meanwhile sends
    nothing new: what it says now is in the registry."""


@dataclass(frozen=True)
class JibriGone:
    """The Jibri's pod is being deleted, or is gone: it will not come back."""

    occupant: str


@dataclass(frozen=True)
class Orphan:
    """A recording a session left behind: its Jibri left the brewery, the session went on
    elsewhere, and if that Jibri comes back still busy with it, it must be stopped."""

    session_id: str
    dialect: Dialect
    until: float  # hub clock: after this, a busy return is no longer taken to be this recording


ORPHAN_WATCH: Final = 6 * 3600.0  # as long as a recording may last


@dataclass(frozen=True)
class Arrival:
    """A RecordingSession was created in an environment: what a pool learns its demand from."""

    uid: str
    at: float  # wall clock (epoch seconds) of its creation
    mode: RecordingMode


ARRIVALS_KEPT: Final = 600.0  # seconds of arrivals replayed to a pool that starts watching late


@dataclass(frozen=True)
class PoolClaim:
    """What a pool serves, for sharing out the sessions waiting in its environments."""

    environments: tuple[EnvKey, ...]
    modes: frozenset[RecordingMode]
    room: int  # pods it may still add


@dataclass(frozen=True)
class CapacityChanged:
    """A Jibri may have become available, or the brewery was joined."""


class SessionInbox(Protocol):
    """A running session; the hub posts it what concerns it."""

    def post(self, event: object) -> None: ...


def env_label(key: EnvKey) -> str:
    return f"{key[0]}/{key[1]}"


@dataclass
class EnvironmentLink:
    """One XmppEnvironment's live connections (its brewery, and its SIP brewery if it names
    one) and what they feed."""

    key: EnvKey
    hub: Hub
    client: BreweryClient | None = None
    sip_client: BreweryClient | None = None
    fingerprint: str = ""
    recording_methods: frozenset[str] = frozenset({"file", "stream"})
    status_dirty: asyncio.Event = field(default_factory=asyncio.Event)

    def client_for(self, brewery: BreweryKind) -> BreweryClient | None:
        return self.sip_client if brewery is BreweryKind.SIP else self.client

    def listener(self, brewery: BreweryKind) -> BreweryListener:
        return _BreweryView(self, brewery)

    def jibri_changed(self, presence: JibriPresence, brewery: BreweryKind) -> None:
        observation = Observation(
            environment=env_label(self.key),
            occupant=presence.occupant,
            nickname=presence.nickname,
            busy=presence.busy,
            health=presence.health,
            dialect=presence.dialect,
            present=not presence.unavailable,
            brewery=brewery,
        )
        self.hub.observe(self.key, observation)
        self.status_dirty.set()

    def connection_changed(self, joined: bool, brewery: BreweryKind) -> None:
        client = self.client_for(brewery)
        if brewery is BreweryKind.RECORDING:
            metrics.BREWERY_JOINED.labels(*self.key).set(1 if joined else 0)
        if not joined:
            if brewery is BreweryKind.RECORDING and client is not None and client.reconnects:
                metrics.BREWERY_RECONNECTS.labels(*self.key).inc()
            self.hub.brewery_lost(self.key)
        else:
            self.hub.brewery_back(self.key)
            self.hub.wake(self.key)
        self.status_dirty.set()


@dataclass
class _BreweryView(BreweryListener):
    """What one of an environment's brewery clients hears, tagged with which brewery it is."""

    link: EnvironmentLink
    brewery: BreweryKind

    def jibri_changed(self, presence: JibriPresence) -> None:
        self.link.jibri_changed(presence, self.brewery)

    def jibri_report(self, occupant: str, update: StatusUpdate) -> None:
        self.link.hub.route_report(self.link.key, occupant, update)

    def connection_changed(self, joined: bool, reason: str) -> None:
        self.link.connection_changed(joined, self.brewery)


class Hub:
    """Shared state of one operator process. Everything here runs in one event loop."""

    def __init__(self, kube: Kube, nickname: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.kube = kube
        self.nickname = nickname
        self.clock = clock
        self.registry = Registry(tie_salt=nickname)
        self.links: dict[EnvKey, EnvironmentLink] = {}
        # Insertion-ordered, so waiting sessions are woken, and so served, oldest first; each
        # with the mode it waits for, so a pool scales only for sessions it can serve.
        self._waiting: dict[EnvKey, dict[SessionInbox, RecordingMode]] = {}
        self._running_on: dict[tuple[EnvKey, str], SessionInbox] = {}
        self._watchers: dict[EnvKey, list[Callable[[], None]]] = {}
        self._arrivals: dict[EnvKey, deque[Arrival]] = {}
        self._arrival_watchers: dict[EnvKey, list[Callable[[Arrival], None]]] = {}
        self.ended: set[str] = set()  # nicknames of Jibris whose recording ended (single-use: spent)
        self.pools: dict[tuple[str, str], PoolClaim] = {}
        self.orphans: dict[tuple[EnvKey, str], Orphan] = {}  # (environment, occupant)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- environments -------------------------------------------------------------

    def link(self, key: EnvKey) -> EnvironmentLink:
        if key not in self.links:
            self.links[key] = EnvironmentLink(key, self)
            # Read at scrape time, so the gauge can never drift from the truth.
            metrics.WAITING_SESSIONS.labels(*key).set_function(lambda: self.waiting(key))
        return self.links[key]

    def client(self, key: EnvKey, brewery: BreweryKind = BreweryKind.RECORDING) -> BreweryClient | None:
        link = self.links.get(key)
        return link.client_for(brewery) if link is not None else None

    async def drop_link(self, key: EnvKey) -> None:
        link = self.links.pop(key, None)
        with contextlib.suppress(KeyError):
            metrics.WAITING_SESSIONS.remove(*key)
        for client in (link.client, link.sip_client) if link is not None else ():
            if client is not None:
                await client.stop()
        self.registry.forget_environment(env_label(key))
        self.brewery_lost(key)
        self.wake(key)

    # -- presence and reports ---------------------------------------------------------

    def watch(self, key: EnvKey, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` on every presence change in ``key``; returns the way to stop."""
        self._watchers.setdefault(key, []).append(callback)
        return lambda: self._watchers.get(key, []).remove(callback)

    def session_arrived(self, key: EnvKey, arrival: Arrival) -> None:
        """Tell the pools serving ``key``; kept a while for pools that start watching later."""
        kept = self._arrivals.setdefault(key, deque())
        kept.append(arrival)
        while kept and kept[0].at < arrival.at - ARRIVALS_KEPT:
            kept.popleft()
        for callback in list(self._arrival_watchers.get(key, ())):
            callback(arrival)

    def watch_arrivals(self, key: EnvKey, callback: Callable[[Arrival], None]) -> Callable[[], None]:
        """Call ``callback`` for each session created in ``key``, the recent ones first."""
        for arrival in list(self._arrivals.get(key, ())):
            callback(arrival)
        self._arrival_watchers.setdefault(key, []).append(callback)
        return lambda: self._arrival_watchers.get(key, []).remove(callback)

    def recording_ended(self, nickname: str) -> None:
        self.ended.add(nickname)

    def observe(self, key: EnvKey, observation: Observation) -> None:
        change = self.registry.observe(observation, self.clock())
        if change.appeared:
            self._orphan_back(key, observation)
        for callback in list(self._watchers.get(key, ())):
            callback()
        inbox = self._running_on.get((key, observation.occupant))
        if inbox is not None:
            inbox.post(JibriSeen(observation))
        if change.freed:
            self.wake(key)
        for label in change.also_freed:  # the same pod, free now in its other environments too
            namespace, _, name = label.partition("/")
            self.wake((namespace, name))

    def watch_orphan(self, key: EnvKey, occupant: str, orphan: Orphan) -> None:
        self.orphans[(key, occupant)] = orphan

    def _orphan_back(self, key: EnvKey, observation: Observation) -> None:
        """A Jibri came back: if it is still busy with a recording a session left behind, stop it.
        Its first presence back being busy means it never went idle: that recording goes on."""
        orphan = self.orphans.pop((key, observation.occupant), None)
        if orphan is None or orphan.until < self.clock() or observation.busy is not BusyStatus.BUSY:
            return
        client = self.client(key, observation.brewery)
        if client is None or not client.joined:
            return
        session_id = orphan.session_id if orphan.dialect is Dialect.CURRENT else None

        async def stop() -> None:
            try:
                await client.stop_recording(observation.occupant, orphan.dialect, session_id)
                log.warning(
                    "%s came back still recording a session that was recorded elsewhere meanwhile: stopped it",
                    observation.nickname,
                )
            except Exception as error:  # the next return, or the Jibri's own limits, will end it
                log.warning("could not stop the orphaned recording on %s: %s", observation.nickname, error)

        task = asyncio.get_running_loop().create_task(stop())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def pod_gone(self, keys: Collection[EnvKey], nickname: str) -> None:
        """A pool's pod is being deleted: a session waiting for its Jibri to come back need not."""
        for (env, occupant), inbox in list(self._running_on.items()):
            if env in keys and occupant.rpartition("/")[2] == nickname:
                inbox.post(JibriGone(occupant))

    def route_report(self, key: EnvKey, occupant: str, update: StatusUpdate) -> None:
        inbox = self._running_on.get((key, occupant))
        if inbox is None:
            log.info("report from %s in %s for no session of ours; ignored", occupant, env_label(key))
            return
        inbox.post(JibriReport(occupant, update))

    def brewery_lost(self, key: EnvKey) -> None:
        self._post_to_sessions(key, BreweryLost())

    def brewery_back(self, key: EnvKey) -> None:
        self._post_to_sessions(key, BreweryBack())

    def _post_to_sessions(self, key: EnvKey, event: object) -> None:
        """Tell every session running on a Jibri of ``key``."""
        for (env, _), inbox in list(self._running_on.items()):
            if env == key:
                inbox.post(event)

    def attach(self, key: EnvKey, occupant: str, inbox: SessionInbox) -> None:
        """Route what ``occupant`` says to ``inbox`` until :meth:`detach`."""
        self._running_on[(key, occupant)] = inbox

    def detach(self, key: EnvKey, occupant: str, inbox: SessionInbox) -> None:
        if self._running_on.get((key, occupant)) is inbox:
            del self._running_on[(key, occupant)]

    # -- waiting for capacity -----------------------------------------------------------

    def wait(self, key: EnvKey, inbox: SessionInbox, mode: RecordingMode) -> None:
        """Post :class:`CapacityChanged` to ``inbox`` whenever ``key`` may have a Jibri for it."""
        waiting = self._waiting.setdefault(key, {})
        if inbox not in waiting:
            waiting[inbox] = mode
            for callback in list(self._watchers.get(key, ())):
                callback()  # a pool serving ``key`` may have to grow for it, now

    def unwait(self, key: EnvKey, inbox: SessionInbox) -> None:
        self._waiting.get(key, {}).pop(inbox, None)

    def waiting(self, key: EnvKey, modes: Collection[RecordingMode] | None = None) -> int:
        """Sessions waiting for a Jibri in ``key`` (only those wanting one of ``modes``, if given)."""
        waiting = self._waiting.get(key, {})
        if modes is None:
            return len(waiting)
        return sum(1 for mode in waiting.values() if mode in modes)

    def waiting_for_pool(self, pool: tuple[str, str]) -> int:
        """The waiting sessions this pool should scale for. Each waiting session counts for one
        pool only: the first (by name) serving its environment and mode that can still grow,
        or the first at all when none can (so it reports the limit); two pools serving one
        environment never both start a pod for the same session."""
        claim = self.pools.get(pool)
        if claim is None:
            return 0
        count = 0
        for key in claim.environments:
            for mode in self._waiting.get(key, {}).values():
                if mode not in claim.modes:
                    continue
                serving = sorted(
                    p for p, c in self.pools.items() if key in c.environments and mode in c.modes
                )
                growing = [p for p in serving if self.pools[p].room > 0]
                count += (growing or serving)[0] == pool
        return count

    def mark_unable(self, key: EnvKey, occupant: str, mode: RecordingMode) -> None:
        """A Jibri refused ``mode`` for good; the environment's status shows it."""
        self.registry.mark_unable(env_label(key), occupant, mode)
        link = self.links.get(key)
        if link is not None:
            link.status_dirty.set()

    def wake(self, key: EnvKey) -> None:
        """Something changed in ``key`` that may let a waiting session start."""
        for inbox in list(self._waiting.get(key, ())):
            inbox.post(CapacityChanged())
