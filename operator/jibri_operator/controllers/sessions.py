"""RecordingSession: from `kubectl apply` to a running recording, and back.

One :class:`SessionRunner` per session runs as a kopf daemon. Everything that
concerns it (its Jibri's reports and presence, free capacity in its
environment, a stop request, its deletion) arrives as an event in one queue,
so the flow below reads top to bottom:

1. schedule: pick an idle Jibri (fleet.Registry), write the choice to status
   *before* sending start (so a restart knows where it may be recording),
   send start in the Jibri's dialect, read the answer: busy -> pick again at
   once; retry -> another Jibri, up to maxAttempts; failed -> Failed;
   accepted -> follow.
2. follow: pending -> on (Recording) -> off (Completed, or Failed, or retry);
   the Jibri leaving, a pending timeout or maxDuration are handled as Jicofo
   does.
3. stop: spec.stop or deletion sends stop and waits for off, with a timeout
   so a vanished Jibri cannot block deletion.

On operator restart the runner resumes from status: it waits for the
brewery, then adopts the Jibri named in status if that Jibri is busy, and
otherwise concludes what happened while it was away. The session_id is the
object's UID, so every attempt and restart speaks of the same session.

What each stanza means for the session, per dialect (shared/design/PROTOCOL.md):

====================================  =====================================  ===================================
stanza                                current dialect                        legacy (2016 spec, jibri-spec.xml)
====================================  =====================================  ===================================
start answered ``pending``/``on``     accepted (Starting)                    accepted (a 2017-era Jibri)
start answered by a plain ``result``  accepted (Starting)                    accepted (Starting): the spec's way
start answered ``off/busy``, or 503   busy: pick another, no attempt spent   busy: pick another, no attempt spent
``on`` report                         Recording                              Recording (honoured, never awaited)
busy presence after the start         (only noted)                           Recording: the spec's only sign
``off`` report                        Completed / Failed / retry             Completed / Failed / retry
idle presence after busy              Completed if on, else retry (error)    Completed: ended, no reason given
the Jibri leaves the brewery          retry                                  retry
no Recording within pendingTimeout    busy: Recording; else stop, retry      stop, retry elsewhere
stop answered ``off`` or ``result``   Completed (Stopped)                    Completed (Stopped)
====================================  =====================================  ===================================

pendingTimeout runs from the accepted start to whatever marks Recording in the
Jibri's dialect: the ``on`` report, or for a legacy Jibri also its busy presence.

A report can be lost: Jibri never repeats one, and the operator may have been
restarted, or its brewery connection cut, between a start and its ``on``. So a
Jibri busy since it took the start is never cut for want of an ``on``: the busy
presence found after a restart or a reconnect is taken as recording at once, and
at pendingTimeout otherwise. Found idle instead, a start it accepted
(status.jibri.acceptedAt) may have recorded: the session fails as OutcomeUnknown
rather than be recorded twice. maxDuration counts from status.startedAt, the
first accepted start, in every phase and across restarts.

``self.status`` is the status the runner means to be written; a write the API server
refuses (RBAC, see refusals.py) stays owed and is written first on the next try. The
one write that must land before anything else happens, the write-ahead before a start,
is undone locally when refused, so nothing is started that status does not name.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import kopf

from jibri_operator import metrics
from jibri_operator.api.conditions import ConditionStatus, get_condition, now_rfc3339, set_condition
from jibri_operator.api.constants import FINALIZER, PLURAL_ENVIRONMENT, PLURAL_SESSION
from jibri_operator.api.durations import parse_duration
from jibri_operator.api.secret import Secret
from jibri_operator.api.selectors import selector_matches
from jibri_operator.api.types import (
    BreweryKind,
    BusyStatus,
    Dialect,
    FailureReason,
    Phase,
    RecordingMode,
    RecordingStatus,
)
from jibri_operator.controllers.hub import (
    ORPHAN_WATCH,
    Arrival,
    BreweryBack,
    BreweryLost,
    EnvKey,
    Hub,
    JibriGone,
    JibriReport,
    JibriSeen,
    Orphan,
    env_label,
)
from jibri_operator.controllers.refusals import REASON as FORBIDDEN
from jibri_operator.controllers.refusals import Refusals
from jibri_operator.fleet.registry import Observation
from jibri_operator.kube.client import Forbidden, SecretMissing
from jibri_operator.xmpp.brewery import BreweryClient, BreweryError, CommandTimeout, NotJoined
from jibri_operator.xmpp.stanzas import (
    EmptyResult,
    MalformedStanza,
    StartOutcome,
    StartRequest,
    StatusUpdate,
    classify_start_reply,
)

log = logging.getLogger(__name__)


def _epoch(timestamp: str) -> float:
    """An RFC 3339 timestamp (whole seconds as the API writes them, or with a fraction as this
    runner writes startedAt) in epoch seconds; now if unreadable."""
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return time.time()
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


TERMINAL: Final = frozenset({Phase.COMPLETED.value, Phase.FAILED.value})
STOP_TIMEOUT: Final = 30.0  # how long deletion waits for a Jibri to confirm it stopped
RECHECK: Final = 30.0  # a safety net: re-evaluate a waiting session even without events
SECRET_RECHECK: Final = 5.0
LEAVE_GRACE: Final = 20.0  # spec.jibriLeaveGrace's default
FINALIZER_WAIT: Final = 5.0  # how long a session's first status write waits for kopf's finalizer


@dataclass(frozen=True)
class Poke:
    """The spec changed (e.g. stop: true)."""


@dataclass(frozen=True)
class Stopped:
    """kopf stops the daemon: the object is being deleted, or the operator exits."""

    deleted: bool


@dataclass
class Current:
    """The Jibri this session runs on."""

    observation: Observation
    seen_busy: bool = False
    pod_gone: bool = False  # its pod is being deleted: once it leaves, it will not come back
    recording_since: float | None = None  # monotonic time the recording began (on report, or legacy busy)
    # A report may have been sent while nobody listened (a brewery reconnect since the start):
    # the busy presence then stands for the `on`, and an idle one for an end of unknown outcome.
    reports_may_be_lost: bool = False

    @property
    def recording(self) -> bool:
        return self.recording_since is not None


class SessionEnded(Exception):
    """Unwinds the runner once a terminal phase is written."""


class SessionRunner:
    def __init__(
        self, hub: Hub, body: kopf.Body, logger: logging.Logger | logging.LoggerAdapter[Any]
    ) -> None:
        self.hub = hub
        self.body = body  # kopf keeps it live: spec changes show here
        self.logger = logger
        self.namespace: str = body.metadata.namespace or "default"
        self.name: str = body.metadata.name or ""
        self.uid: str = body.metadata.uid or ""
        self.status: dict[str, Any] = dict(body.get("status") or {})
        # An environment of another namespace only where its spec.allowedNamespaces says so.
        env_namespace = str(body.spec.get("environmentNamespace") or self.namespace)
        self.env_key: EnvKey = (env_namespace, str(body.spec.get("environment", "")))
        self.env = env_label(self.env_key)
        self.events: asyncio.Queue[object] = asyncio.Queue()
        self.current: Current | None = None
        self.tried: set[str] = set()
        self.deleting = False
        self.exiting = False
        self.finished = asyncio.Event()
        self.stop_seen = False
        self.finalized = asyncio.Event()  # kopf's finalizer is on the object (set by the event handler)
        self.seen_at = hub.clock()
        self.allowed_until = float("-inf")  # tenancy was checked and holds until then
        self.unwritten: dict[str, Any] = {}  # status changes the API server has not taken yet
        self.refusals = Refusals(body, logger, hub.clock)

    # -- the hub's side --------------------------------------------------------------

    def post(self, event: object) -> None:
        self.events.put_nowait(event)

    # -- spec ------------------------------------------------------------------------------

    @property
    def spec(self) -> Any:
        return self.body.spec

    @property
    def mode(self) -> RecordingMode:
        return RecordingMode(self.spec.get("mode", "file"))

    @property
    def brewery(self) -> BreweryKind:
        """The brewery whose Jibris can take this session: SIP gateways sit in their own."""
        return BreweryKind.SIP if self.mode is RecordingMode.SIP else BreweryKind.RECORDING

    @property
    def session_id(self) -> str:
        return str(self.status.get("sessionId") or self.uid)

    def stop_requested(self) -> bool:
        return self.deleting or bool(self.spec.get("stop", False))

    def _seconds(self, field: str, default: float | None) -> float | None:
        value = self.spec.get(field)
        return parse_duration(value) if value else default

    # -- the run ------------------------------------------------------------------------------

    async def run(self, stopped: kopf.DaemonStopped | None) -> None:
        """Drive the session until it ends. Without ``stopped``, the object is already being
        deleted (see :meth:`stop_for_deletion`)."""
        watcher = asyncio.create_task(self._watch_stopped(stopped)) if stopped is not None else None
        try:
            if self.status.get("phase") in TERMINAL:
                return
            created = self.body.metadata.get("creationTimestamp")
            if created and stopped is not None:
                self.hub.session_arrived(self.env_key, Arrival(self.uid, _epoch(str(created)), self.mode))
            await self._resume_unless_refused()
            while True:
                try:
                    if self.unwritten:
                        await self._flush()
                    if self.status.get("phase") in TERMINAL:
                        return  # ended while its status write was refused, now written
                    if self.current is None:
                        await self._schedule()
                    else:
                        await self._follow()
                except Forbidden as error:
                    await self._refused(error)
        except SessionEnded:
            pass
        finally:
            if watcher is not None:
                watcher.cancel()
            self._release()
            self.finished.set()

    async def stop_for_deletion(self) -> None:
        """The object was marked for deletion while no daemon ran (e.g. during an operator
        restart): kopf spawns no daemon for it, so stop whatever status says may be recording.

        The status is read afresh: the deletion event's copy may predate the end its daemon
        has just written, and following it would send a second stop to a Jibri now idle."""
        self.deleting = True
        try:
            latest = await self.hub.kube.get_custom(PLURAL_SESSION, self.namespace, self.name)
        except Forbidden as error:
            self.refusals.refused(error)  # the deletion event's status will have to do
            latest = None
        if latest is not None:
            self.status = dict(latest.get("status") or {})
        await self.run(None)

    async def _resume_unless_refused(self) -> None:
        """Resume from status; a refused call meanwhile is waited out like any other."""
        while True:
            try:
                await self._resume()
                return
            except Forbidden as error:
                await self._refused(error)

    async def _refused(self, error: Forbidden) -> None:
        """Say what RBAC refused (log and Event, not too often), show it in the session's
        conditions while no Jibri runs it (unless the status write is what was refused),
        and wait before trying again; a stop or a deletion meanwhile is acted on."""
        delay = self.refusals.refused(error)
        if self.current is None and error.resource != f"{PLURAL_SESSION}/status":
            if self._condition("Scheduled", "reason") != FORBIDDEN:
                self._remember(
                    phase=Phase.PENDING.value,
                    conditions=self._conditions("Scheduled", "False", FORBIDDEN, str(error)),
                )
            if self.unwritten:
                try:
                    await self._write_status()
                except Forbidden as again:
                    self.refusals.refused(again)
        # The whole delay, however busy its Jibri is: what arrives meanwhile is kept for the flow,
        # except a deletion, which is acted on at once (a recording must stop, status or not).
        deadline = self.hub.clock() + delay
        held = []
        while not self.deleting and (remaining := deadline - self.hub.clock()) > 0:
            event = await self._next_event(remaining)
            if event is None:
                break
            if not isinstance(event, Stopped):
                held.append(event)
        for event in held:
            self.post(event)

    async def _watch_stopped(self, stopped: kopf.DaemonStopped) -> None:
        await stopped.wait()
        reason = stopped.reason
        deleted = reason is not None and bool(reason & kopf.DaemonStoppingReason.RESOURCE_DELETED)
        self.post(Stopped(deleted=deleted))

    async def _next_event(self, timeout: float | None) -> object | None:
        """The next event, or None after ``timeout``. Stop events are absorbed into flags."""
        try:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can turn kopf's cancellation
            # of a stopping daemon into a TimeoutError, and the runner would carry on.
            async with asyncio.timeout(timeout):
                event = await self.events.get()
        except TimeoutError:
            return None
        if isinstance(event, Stopped):
            self.deleting = self.deleting or event.deleted
            self.exiting = not event.deleted
            if self.exiting:
                raise SessionEnded  # the operator exits: leave status as it is, a restart resumes
        return event

    # -- resuming after a restart ------------------------------------------------------

    async def _resume(self) -> None:
        jibri = self.status.get("jibri") or {}
        phase = self.status.get("phase")
        occupant = jibri.get("occupant")
        if not occupant or phase not in (Phase.STARTING.value, Phase.RECORDING.value, Phase.STOPPING.value):
            return
        await self._wait_joined()
        observation = self.hub.registry.get(self.env, occupant)
        if observation is None:
            await self._event(
                "JibriLeft",
                f"Jibri {jibri.get('nickname')} left the brewery while the operator was away",
                warning=True,
            )
            # If it was only cut off and comes back still recording this session, stop it then.
            self._leave_behind(occupant, Dialect(jibri.get("dialect") or Dialect.CURRENT.value))
            await self._retry_or_fail("JibriLeft")
            return
        if observation.busy is BusyStatus.BUSY:
            # Busy with the Jibri this session was sent to: adopt it, never start again. A
            # session still Starting is adopted as Recording: its `on` report (or, for a legacy
            # Jibri, the busy presence) may have come while nobody listened (Jibri never repeats
            # a report), and a pending timeout would then cut a running recording. A failure
            # still arrives as `off`, or as the idle presence.
            self.current = Current(observation, seen_busy=True)
            self.hub.attach(self.env_key, occupant, self)
            self.logger.info(f"resumed following {observation.nickname}")
            if phase == Phase.STARTING.value:
                # maxDuration counts from the accepted start; were it not written (the operator
                # died in between), from the moment just before the start was sent.
                started = jibri.get("acceptedAt") or jibri.get("selectedAt")
                await self._mark_recording(
                    self.current,
                    "AdoptedAfterRestart",
                    f"adopted after an operator restart: {observation.nickname} is busy with this"
                    " session's start (its on report, if any, came while no operator listened)",
                    started_at=str(started) if started else None,
                )
            else:
                self.current.recording_since = self.hub.clock()
            return
        if phase == Phase.STARTING.value:
            if jibri.get("acceptedAt"):
                # It accepted, and is idle again: it ended, or failed, unseen. It may have
                # recorded, and a session is never recorded twice: end it, saying why.
                await self._outcome_unknown(str(jibri.get("nickname")), "when the operator came back")
            # Status names the Jibri but no accepted start: the operator died between the
            # write-ahead and the start's answer, and the Jibri idle now never took it (an
            # accepted start is written within a round trip, long before a recording could
            # have begun and ended). Schedule again, with the same session_id.
            self.logger.info(f"{jibri.get('nickname')} never accepted the start; scheduling again")
            return
        await self._finish(Phase.COMPLETED, "Completed", "the recording ended while the operator was away")

    async def _outcome_unknown(self, nickname: str, when: str) -> None:
        """A Jibri that took the start is idle again, and no report of it was heard: it may
        have recorded part of the session, which is therefore never started twice."""
        await self._finish(
            Phase.FAILED,
            "OutcomeUnknown",
            f"Jibri {nickname} accepted the start and was idle again {when}: it may have recorded"
            " part of it; not started again, so as never to record a session twice",
        )

    def _limit(self) -> float | None:
        """The hub-clock time spec.maxDuration ends the session: from status.startedAt (to the
        millisecond), the first accepted start, so neither a restart nor a retry extends it."""
        max_duration = self._seconds("maxDuration", None)
        started = self.status.get("startedAt")
        if max_duration is None or not started:
            return None
        return self.hub.clock() - max(0.0, time.time() - _epoch(str(started))) + max_duration

    async def _wait_joined(self) -> None:
        """Wait until the environment's client has joined (and so knows every Jibri).

        A deletion meanwhile waits for the brewery up to STOP_TIMEOUT, since a Jibri
        may be recording for this session; after that the session is let go with a
        warning rather than blocking deletion forever.
        """
        deadline: float | None = None
        while True:
            client = self.hub.client(self.env_key, self.brewery)
            if client is not None and client.joined:
                self.hub.unwait(self.env_key, self)
                return
            if self.deleting:
                deadline = deadline or self.hub.clock() + STOP_TIMEOUT
                if self.hub.clock() >= deadline:
                    await self._finish(
                        Phase.COMPLETED,
                        "StopUnconfirmed",
                        "deleted while the brewery was unreachable; the recording may need a manual stop",
                    )
            self.hub.wait(self.env_key, self, self.mode)
            await self._next_event(RECHECK if deadline is None else max(0.0, deadline - self.hub.clock()))

    async def _maybe_stop_while_unassigned(self) -> None:
        if self.stop_requested() and self.current is None:
            await self._finish(
                Phase.COMPLETED, "StoppedBeforeStart", "stopped before any Jibri started recording"
            )

    # -- scheduling -----------------------------------------------------------------------

    async def _schedule(self) -> None:
        busy_this_round: set[str] = set()
        while self.current is None:
            await self._maybe_stop_while_unassigned()
            limit = self._limit()
            if limit is not None and self.hub.clock() >= limit:
                await self._finish(
                    Phase.FAILED,
                    "MaxDuration",
                    "spec.maxDuration ran out (counted from the first accepted start) before the"
                    " session could be recorded again",
                )
            if int(self.status.get("attempts", 0)) >= int(self.spec.get("maxAttempts", 5)):
                await self._finish(
                    Phase.FAILED,
                    "MaxAttemptsReached",
                    f"{self.status.get('attempts')} Jibris failed to record this session",
                )
            if not await self._allowed():
                continue
            link = self.hub.links.get(self.env_key)
            client = link.client_for(self.brewery) if link is not None else None
            if link is not None and link.client is not None and client is None:
                await self._pending(
                    "NoJibriForMode",
                    f"XmppEnvironment {self.env_key[1]} names no SIP brewery (spec.sipBrewery) for sip sessions",
                )
                continue
            if link is None or client is None or not client.joined:
                reason = "EnvironmentNotFound" if link is None else "EnvironmentNotConnected"
                await self._pending(
                    reason, f"XmppEnvironment {self.env_key[1]} is not connected to its brewery"
                )
                continue
            if self.mode.value not in link.recording_methods:
                await self._finish(
                    Phase.FAILED,
                    "ModeNotOffered",
                    f"environment {self.env_key[1]} does not offer {self.mode.value} recording",
                )
            if self.mode is RecordingMode.STREAM and client.config.allow_plaintext:
                await self._finish(
                    Phase.FAILED,
                    "InsecureTransport",
                    "stream keys are only sent over TLS; the environment allows plaintext",
                )
            request = await self._start_request()
            if request is None:
                continue
            now = self.hub.clock()
            exclude = self.tried | busy_this_round
            choice = self.hub.registry.select(self.env, self.mode, self.uid, now, exclude=exclude)
            if choice is None and self.tried:
                choice = self.hub.registry.select(self.env, self.mode, self.uid, now, exclude=busy_this_round)
            if choice is None:
                busy_this_round.clear()
                registry = self.hub.registry
                if registry.capable(self.env, self.mode) == 0 and registry.counts(self.env).total:
                    await self._pending(
                        "NoJibriForMode",
                        f"no Jibri in environment {self.env_key[1]} can do {self.mode.value} recording;"
                        " waiting for one that can",
                    )
                else:
                    await self._pending(
                        "NoIdleJibri", f"no idle Jibri in environment {self.env_key[1]}; waiting for one"
                    )
                continue
            outcome = await self._try_start(client, choice, request)
            if outcome is StartOutcome.BUSY:
                busy_this_round.add(choice.occupant)

    async def _pending(self, reason: str, message: str) -> None:
        """Wait in Pending until something changes in the environment."""
        # Registered before any await: a Jibri freed while the status is being written must
        # still wake this session, or it would sleep until RECHECK with an idle Jibri there.
        self.hub.wait(self.env_key, self, self.mode)
        if (
            self.status.get("phase") != Phase.PENDING.value
            or self._condition("Scheduled", "reason") != reason
        ):
            await self.save(
                phase=Phase.PENDING.value,
                conditions=self._conditions("Scheduled", "False", reason, message),
            )
            if reason != "NoIdleJibri" or self.status.get("attempts"):
                await self._event(reason, message, warning=reason != "NoIdleJibri")
        deadline = self.hub.registry.next_deadline(self.hub.clock())
        timeout = RECHECK if deadline is None else max(0.0, min(RECHECK, deadline - self.hub.clock()))
        # Any event may change the answer (capacity, a stop, a deletion): look again.
        await self._next_event(timeout)
        self.hub.unwait(self.env_key, self)

    async def _allowed(self) -> bool:
        """Tenancy: a session may use an environment of its own namespace, or of another whose
        ``spec.allowedNamespaces`` selects the session's namespace (checked every RECHECK)."""
        if self.env_key[0] == self.namespace or self.hub.clock() < self.allowed_until:
            return True
        environment = await self.hub.kube.get_custom(PLURAL_ENVIRONMENT, *self.env_key)
        reason = message = ""
        if environment is None:
            reason = "EnvironmentNotFound"
            message = f"XmppEnvironment {self.env_key[0]}/{self.env_key[1]} does not exist"
        else:
            selector = (environment.get("spec") or {}).get("allowedNamespaces")
            labels = await self.hub.kube.namespace_labels(self.namespace)
            try:
                allowed = selector is not None and labels is not None and selector_matches(selector, labels)
            except ValueError as error:
                allowed, message = False, f"its spec.allowedNamespaces is invalid: {error}"
            if not allowed:
                reason = "EnvironmentNotAllowed"
                message = (
                    f"XmppEnvironment {self.env_key[0]}/{self.env_key[1]} does not allow sessions from"
                    f" namespace {self.namespace} (its spec.allowedNamespaces"
                    f" {'does not select it' if not message else message.partition(': ')[2]})"
                )
        if reason:
            await self._pending_for(RECHECK, reason, message)
            return False
        self.allowed_until = self.hub.clock() + RECHECK
        return True

    async def _start_request(self) -> StartRequest | None:
        """The start fields; the stream key is read now, at the last moment."""
        spec = self.spec
        stream_key: Secret | None = None
        if self.mode is RecordingMode.STREAM:
            ref = spec.get("streamKeySecretRef") or {}
            try:  # a Forbidden goes up to run(): it waits, says why, and comes back here
                stream_key = await self.hub.kube.read_secret(
                    self.namespace, ref.get("name", ""), ref.get("key", "streamKey")
                )
            except SecretMissing as error:
                await self._pending_for(SECRET_RECHECK, "StreamKeyMissing", str(error))
                return None
        app_data = spec.get("appData")
        return StartRequest(
            room=spec["room"],
            mode=self.mode,
            session_id=self.session_id,
            stream_key=stream_key,
            youtube_broadcast_id=spec.get("youtubeBroadcastId"),
            app_data=json.dumps(dict(app_data), separators=(",", ":")) if app_data else None,
            display_name=spec.get("displayName"),
            sip_address=spec.get("sipAddress"),
        )

    async def _pending_for(self, seconds: float, reason: str, message: str) -> None:
        if self._condition("Scheduled", "reason") != reason:
            await self.save(
                phase=Phase.PENDING.value, conditions=self._conditions("Scheduled", "False", reason, message)
            )
            await self._event(reason, message, warning=True)
        await self._next_event(seconds)  # any event, or the time, is a reason to look again

    async def _try_start(
        self, client: BreweryClient, choice: Observation, request: StartRequest
    ) -> StartOutcome:
        attempts = int(self.status.get("attempts", 0))
        # Write-ahead, in one write: where this session may now be recording (so a restart
        # knows), and the attempt it counts as (a busy answer takes it back). Refused, it is
        # undone: nothing is sent that status does not name.
        before = dict(self.status), dict(self.unwritten)
        try:
            await self.save(
                phase=Phase.STARTING.value,
                jibri={**self._jibri_status(choice), "selectedAt": now_rfc3339(milliseconds=True)},
                attempts=attempts + 1,
                conditions=self._conditions(
                    "Scheduled", "True", "JibriSelected", f"selected {choice.nickname}"
                ),
            )
        except Forbidden:
            self.status, self.unwritten = before
            self._release(choice.occupant)
            raise
        self.hub.attach(self.env_key, choice.occupant, self)
        labels = (self.namespace, self.env_key[1])
        unconfirmed = refused_mode = False
        try:
            reply = await client.start_recording(choice.occupant, request, choice.dialect)
            outcome = classify_start_reply(reply)
            detail = ""
            if isinstance(reply, StatusUpdate) and reply.failure_reason is not None:
                detail = reply.failure_reason.value
            refused_mode = outcome is StartOutcome.FAILED and isinstance(reply, StatusUpdate)
        except NotJoined:
            # Nothing was sent: not the Jibri's fault, and not an attempt. Wait for the brewery.
            self._release(choice.occupant)
            await self.save(phase=Phase.PENDING.value, jibri=None, attempts=attempts)
            return StartOutcome.BUSY
        except (CommandTimeout, MalformedStanza) as error:
            # The Jibri may have started all the same. Follow it as if it had accepted: its `on`
            # report settles it, and pendingTimeout stops it and retries elsewhere if none comes.
            outcome, unconfirmed = StartOutcome.ACCEPTED, True
            metrics.START_ANSWERS.labels(*labels, "timeout").inc()
            await self._event("StartUnanswered", f"Jibri {choice.nickname}: {error}", warning=True)
        else:
            metrics.START_ANSWERS.labels(*labels, outcome.value).inc()
        if outcome is StartOutcome.ACCEPTED:
            self.current = Current(choice)
            self.tried.add(choice.occupant)
            # Written at once: a restart that finds this Jibri idle again must know it took the
            # start (and may have recorded), and maxDuration counts from the first accepted one.
            accepted_at = now_rfc3339(milliseconds=True)
            changes: dict[str, Any] = {"jibri": {**self.status.get("jibri", {}), "acceptedAt": accepted_at}}
            if not unconfirmed and not self.status.get("startedAt"):
                changes["startedAt"] = accepted_at
            await self.save(**changes)
            if not unconfirmed:
                # creationTimestamp has whole seconds only; the operator's own clock is precise.
                metrics.ASSIGN_SECONDS.labels(self.namespace).observe(self.hub.clock() - self.seen_at)
                await self._event(
                    "Started",
                    f"Jibri {choice.nickname} ({choice.dialect.value} dialect) accepted the session",
                )
            return outcome
        self._release(choice.occupant)
        if outcome is StartOutcome.BUSY:
            metrics.BUSY_RETRIES.labels(*labels).inc()
            await self.save(phase=Phase.PENDING.value, jibri=None, attempts=attempts)
            await self._event(
                "BusyRetried", f"Jibri {choice.nickname} was taken by another controller; picking another"
            )
            return outcome
        if refused_mode:
            # "Not this mode, ever" (off/error without should_retry): learn it, try another Jibri.
            # Not an attempt: the session did not fail, this Jibri just cannot do it.
            self.hub.mark_unable(self.env_key, choice.occupant, self.mode)
            await self.save(phase=Phase.PENDING.value, jibri=None, attempts=attempts)
            await self._event(
                "ModeRefused",
                f"Jibri {choice.nickname} cannot do {self.mode.value} recording; trying another",
                warning=True,
            )
            return outcome
        self.tried.add(choice.occupant)
        self.hub.registry.record_failure(self.env, choice.occupant, self.hub.clock())
        if outcome is StartOutcome.RETRY:
            await self._event(
                "StartFailed",
                f"Jibri {choice.nickname} could not start ({detail or 'error'}); retrying elsewhere",
                warning=True,
            )
            await self.save(phase=Phase.PENDING.value, jibri=None)
            return outcome
        await self._finish(
            Phase.FAILED,
            detail or "StartRefused",
            f"Jibri {choice.nickname} refused the session and said not to retry",
        )
        return outcome  # not reached: _finish raises

    # -- following a recording ---------------------------------------------------------

    async def _follow(self) -> None:
        current = self.current
        assert current is not None
        pending_timeout = self._seconds("pendingTimeout", 90.0) or 90.0
        pending_deadline = self.hub.clock() + pending_timeout
        while self.current is current:
            if self.stop_requested():
                await self._stop(current)
                return
            now = self.hub.clock()
            limit = self._limit()  # maxDuration, in every phase
            deadlines = [] if limit is None else [limit]
            if not current.recording:
                deadlines.append(pending_deadline)
            timeout = max(0.0, min(deadlines) - now) if deadlines else None
            event = await self._next_event(timeout)
            if event is None:
                if limit is not None and self.hub.clock() >= limit:
                    await self._event("MaxDuration", "the session reached spec.maxDuration; stopping")
                    await self._stop(current)
                    return
                if current.recording:
                    continue
                if current.seen_busy:
                    # Busy since it took the start, with no `on`: a report lost on the way (Jibri
                    # never repeats one) is no reason to cut a live recording.
                    await self._mark_recording(
                        current,
                        "JibriBusy",
                        f"{current.observation.nickname} is busy with this session's start; no on"
                        f" report came within {pending_timeout:g}s (one may have been lost)",
                    )
                    continue
                await self._event(
                    "PendingTimeout",
                    f"Jibri {current.observation.nickname} stayed pending for {pending_timeout:g}s; stopping it and retrying",
                    warning=True,
                )
                await self._send_stop(current)
                self.hub.registry.record_failure(self.env, current.observation.occupant, self.hub.clock())
                await self._retry_or_fail("PendingTimeout")
                return
            if isinstance(event, JibriReport) and event.occupant == current.observation.occupant:
                await self._on_report(current, event.update)
            elif isinstance(event, JibriGone) and event.occupant == current.observation.occupant:
                current.pod_gone = True
            elif isinstance(event, JibriSeen) and event.observation.occupant == current.observation.occupant:
                await self._on_presence(current, event.observation)
            elif isinstance(event, BreweryLost):
                current.reports_may_be_lost = True
                self.logger.info("brewery connection lost; following resumes when it is back")
            elif isinstance(event, BreweryBack) and current.reports_may_be_lost and not current.recording:
                # Its presence may be what it was before the cut, and then nothing new is heard
                # of it: what it says now decides (busy: recording; idle: it ended unseen).
                now_seen = self.hub.registry.get(self.env, current.observation.occupant)
                if now_seen is not None:
                    await self._on_presence(current, now_seen)

    async def _mark_recording(
        self, current: Current, reason: str, message: str, started_at: str | None = None
    ) -> None:
        current.recording_since = self.hub.clock()
        if reason != "AdoptedAfterRestart":  # since this process took it up; it did not see the start
            metrics.TIME_TO_RECORDING.labels(self.namespace).observe(current.recording_since - self.seen_at)
        await self.save(
            phase=Phase.RECORDING.value,
            startedAt=self.status.get("startedAt") or started_at or now_rfc3339(milliseconds=True),
            conditions=self._conditions("Recording", "True", reason, message),
        )
        await self._event("Recording", f"Jibri {current.observation.nickname} is recording")

    async def _on_report(self, current: Current, update: StatusUpdate) -> None:
        if update.status is RecordingStatus.ON and not current.recording:
            await self._mark_recording(
                current, "JibriReportedOn", f"{current.observation.nickname} is recording"
            )
        elif update.status is RecordingStatus.OFF:
            if update.failure_reason is FailureReason.ERROR and not self.stop_requested():
                self.hub.registry.record_failure(self.env, current.observation.occupant, self.hub.clock())
                if update.should_retry:
                    await self._event(
                        "JibriFailed",
                        f"Jibri {current.observation.nickname} failed and asked for a retry",
                        warning=True,
                    )
                    await self._retry_or_fail("error")
                else:
                    await self._finish(
                        Phase.FAILED,
                        "error",
                        f"Jibri {current.observation.nickname} failed and said not to retry",
                    )
            elif update.failure_reason is not None and not self.stop_requested():
                await self._retry_or_fail(update.failure_reason.value)
            else:
                await self._finish(
                    Phase.COMPLETED,
                    "Completed",
                    f"Jibri {current.observation.nickname} finished the recording",
                )

    async def _on_presence(self, current: Current, observation: Observation) -> None:
        if not observation.present:
            if self.stop_requested():
                await self._finish(Phase.COMPLETED, "Completed", "the Jibri left while stopping")
            back = await self._came_back(current, observation)
            if back is None:
                self._leave_behind(observation.occupant, current.observation.dialect)
                await self._retry_or_fail("JibriLeft")
                return
            observation = back
        current.observation = observation
        if observation.busy is BusyStatus.BUSY:
            current.seen_busy = True
            if observation.dialect is Dialect.LEGACY and not current.recording:
                # The 2016 spec has no `on`: the busy presence after an accepted start is the sign.
                await self._mark_recording(
                    current,
                    "JibriBusy",
                    f"{observation.nickname} is busy with this session (its dialect sends no on report)",
                )
            elif current.reports_may_be_lost and not current.recording:
                # Back from a brewery reconnect and still busy with the start: its `on` may
                # have been sent while the operator was away; it is recording.
                await self._mark_recording(
                    current,
                    "AdoptedAfterReconnect",
                    f"{observation.nickname} is busy with this session's start after a brewery"
                    " reconnect (its on report, if any, came while the operator was away)",
                )
        elif current.reports_may_be_lost and not current.recording and not self.stop_requested():
            # Idle after a reconnect, no report seen: it ended, or failed, unseen. It may have
            # recorded: never record the session twice.
            await self._outcome_unknown(observation.nickname, "after a brewery reconnect")
        elif current.seen_busy:
            if observation.dialect is Dialect.LEGACY:
                # Idle again by itself: the recording ended. The 2016 spec gives no reason, so it
                # is not a failure and nothing is retried.
                await self._finish(
                    Phase.COMPLETED,
                    "Completed",
                    f"Jibri {observation.nickname} is idle again: the recording ended (the Jibri gave no reason)",
                )
            # Back to idle without an `off` report reaching us (e.g. sent while we reconnected).
            if current.recording or self.stop_requested():
                await self._finish(
                    Phase.COMPLETED,
                    "Completed",
                    f"Jibri {observation.nickname} is idle again: the recording ended",
                )
            await self._retry_or_fail("error")

    async def _came_back(self, current: Current, gone: Observation) -> Observation | None:
        """A Jibri whose connection dropped (an XMPP server restart, a blip) keeps recording and
        comes back busy; a dead one does not come back, or comes back idle. Wait for it up to
        ``spec.jibriLeaveGrace`` before recording elsewhere: its presence if it is back busy."""
        grace = 0.0 if current.pod_gone else self._seconds("jibriLeaveGrace", LEAVE_GRACE)
        await self._event(
            "JibriLeft",
            f"Jibri {gone.nickname} left the brewery during the session"
            + (f"; waiting {grace:g}s for it to come back" if grace else ""),
            warning=True,
        )
        deadline = self.hub.clock() + (grace or 0.0)
        while self.hub.clock() < deadline:
            event = await self._next_event(deadline - self.hub.clock())
            if self.stop_requested():
                await self._finish(Phase.COMPLETED, "Completed", "the Jibri left while stopping")
            if isinstance(event, JibriGone) and event.occupant == gone.occupant:
                return None  # its pod is being deleted: it will not come back
            if isinstance(event, JibriReport) and event.occupant == gone.occupant:
                await self._on_report(current, event.update)  # e.g. its `off`, sent on its way out
            if isinstance(event, JibriSeen) and event.observation.occupant == gone.occupant:
                back = event.observation
                if back.present and back.busy is BusyStatus.BUSY:
                    await self._event("JibriBack", f"Jibri {back.nickname} is back, still recording")
                    return back
                if back.present:
                    return None  # back idle: the recording did not survive
        return None

    def _leave_behind(self, occupant: str, dialect: Dialect) -> None:
        """If this Jibri comes back still recording this session, it is stopped then (the hub
        watches): the session goes on elsewhere, and must never be recorded twice."""
        orphan = Orphan(self.session_id, dialect, self.hub.clock() + ORPHAN_WATCH)
        self.hub.watch_orphan(self.env_key, occupant, orphan)

    async def _retry_or_fail(self, reason: str) -> None:
        """Jicofo's failed-with-retry: try another Jibri unless the attempts are used up."""
        self._release()
        if int(self.status.get("attempts", 0)) >= int(self.spec.get("maxAttempts", 5)):
            await self._finish(
                Phase.FAILED, reason, f"giving up after {self.status.get('attempts')} attempts"
            )
        await self.save(
            phase=Phase.PENDING.value,
            jibri=None,
            conditions=self._conditions("Scheduled", "False", "Retrying", f"retrying after {reason}"),
        )

    # -- stopping --------------------------------------------------------------------------------

    async def _stop(self, current: Current) -> None:
        await self.save(phase=Phase.STOPPING.value)
        await self._event("Stopping", f"stopping the recording on Jibri {current.observation.nickname}")
        confirmed = await self._send_stop(current)
        if not confirmed:
            # Wait for the Jibri to go idle or leave, but not forever: deletion must finish.
            deadline = self.hub.clock() + STOP_TIMEOUT
            occupant = current.observation.occupant
            while self.hub.clock() < deadline:
                event = await self._next_event(deadline - self.hub.clock())
                if (
                    isinstance(event, JibriReport)
                    and event.occupant == occupant
                    and event.update.status is RecordingStatus.OFF
                ):
                    break
                if (
                    isinstance(event, JibriSeen)
                    and event.observation.occupant == occupant
                    and (not event.observation.present or event.observation.busy is BusyStatus.IDLE)
                ):
                    break
            else:
                await self._event(
                    "StopUnconfirmed",
                    f"Jibri {current.observation.nickname} did not confirm the stop within {STOP_TIMEOUT:g}s",
                    warning=True,
                )
        await self._finish(
            Phase.COMPLETED, "Stopped", f"Jibri {current.observation.nickname} stopped the recording"
        )

    async def _send_stop(self, current: Current) -> bool:
        """Send stop; True when the Jibri answered off, or (2016 spec) with a plain result."""
        client = self.hub.client(self.env_key, current.observation.brewery)
        if client is None or not client.joined:
            return False
        dialect = current.observation.dialect
        try:
            reply = await client.stop_recording(
                current.observation.occupant, dialect, self.session_id if dialect is Dialect.CURRENT else None
            )
        except (BreweryError, MalformedStanza) as error:
            self.logger.warning(f"stop was not answered: {error}")
            return False
        if isinstance(reply, EmptyResult):
            return True
        return isinstance(reply, StatusUpdate) and reply.status is RecordingStatus.OFF

    # -- endings and bookkeeping ------------------------------------------------------------

    async def _finish(self, phase: Phase, reason: str, message: str) -> None:
        succeeded = phase is Phase.COMPLETED
        if self.current is not None:
            self.hub.recording_ended(self.current.observation.nickname)  # a single-use pod is now spent
        changes: dict[str, Any] = {
            "phase": phase.value,
            "endedAt": now_rfc3339(),
            "conditions": self._conditions(
                "Succeeded",
                "True" if succeeded else "False",
                reason,
                message,
                base=self._conditions("Recording", "False", reason, message)
                if self._condition("Recording", "status") == "True"
                else None,
            ),
        }
        if not succeeded:
            changes["failureReason"] = reason
        self._release()
        try:
            await self.save(**changes)  # refused, run() writes it (and ends) once it may
        finally:
            await self._event(phase.value, message, warning=not succeeded)
        raise SessionEnded

    def _release(self, occupant: str | None = None) -> None:
        self.hub.unwait(self.env_key, self)
        target = occupant or (self.current.observation.occupant if self.current else None)
        if target is not None:
            self.hub.registry.release(self.env, target, self.uid)
            self.hub.detach(self.env_key, target, self)
        if occupant is None or (self.current and self.current.observation.occupant == occupant):
            self.current = None

    def _jibri_status(self, observation: Observation) -> dict[str, Any]:
        return {
            "occupant": observation.occupant,
            "nickname": observation.nickname,
            "dialect": observation.dialect.value,
        }

    def _condition(self, type_: str, field: str) -> str | None:
        condition = get_condition(self.status.get("conditions"), type_)
        return None if condition is None else str(condition.get(field))

    def _conditions(
        self, type_: str, status: Any, reason: str, message: str, base: list[dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        generation = self.body.metadata.get("generation")
        return set_condition(
            base if base is not None else self.status.get("conditions"),
            type_,
            status,
            reason,
            message,
            generation,
        )

    def finalizer_present(self) -> bool:
        """kopf's finalizer is on the object (or no longer needed: it is being deleted)."""
        metadata = self.body.metadata
        return FINALIZER in (metadata.get("finalizers") or []) or bool(metadata.get("deletionTimestamp"))

    async def _await_finalizer(self) -> None:
        """Let kopf's finalizer land before this session's first status write.

        kopf adds it with a JSON patch that tests the resourceVersion, sent just after it starts
        this daemon; a status write landing first fails it (409), and kopf tries again after the
        next event: another API write and handling cycle per session, often two, in a burst.
        The wait overlaps the selection, is short (one API round trip and its watch event), and
        is bounded: a missing finalizer is no reason to hold a recording back."""
        if self.finalized.is_set():
            return
        if not self.finalizer_present():
            try:
                async with asyncio.timeout(FINALIZER_WAIT):
                    await self.finalized.wait()
            except TimeoutError:
                self.logger.warning(f"no finalizer after {FINALIZER_WAIT:g}s; going on without it")
        self.finalized.set()

    async def save(self, **changes: Any) -> None:
        """Merge ``changes`` into status and write them (None removes a field).

        The first write also records the session id, so no write is spent on it alone.
        A refused write raises :class:`Forbidden` and stays owed (``unwritten``), except
        while the session is being deleted: then status no longer matters, and the
        recording must still be stopped and the object let go."""
        self._remember(**changes)
        await self._flush()

    async def _flush(self) -> None:
        try:
            await self._write_status()
        except Forbidden as error:
            if not self.deleting:
                raise
            self.refusals.refused(error)
            self.unwritten.clear()
            return
        self.refusals.cleared()

    def _remember(self, **changes: Any) -> None:
        if not self.status.get("sessionId"):
            changes.setdefault("sessionId", self.session_id)
        if "phase" in changes and changes["phase"] != self.status.get("phase"):
            metrics.SESSION_PHASES.labels(self.namespace, changes["phase"]).inc()
        if "phase" in changes:
            changes["conditions"] = self._summary(
                changes["phase"], changes.get("conditions", self.status.get("conditions"))
            )
        for key, value in changes.items():
            if value is None:
                self.status.pop(key, None)
            else:
                self.status[key] = value
        self.unwritten.update(changes)

    async def _write_status(self) -> None:
        """Write what status owes (a merge patch: None removes a field)."""
        await self._await_finalizer()
        changes = {**self.unwritten, "observedGeneration": self.body.metadata.get("generation")}
        self.status["observedGeneration"] = changes["observedGeneration"]
        await self.hub.kube.patch_status(PLURAL_SESSION, self.namespace, self.name, changes)
        self.unwritten.clear()

    def _summary(self, phase: str, conditions: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """kstatus' summary conditions, so `kubectl wait --for=condition=Ready`, Flux and Argo CD
        read a session like any resource: Ready while it records or once it completed; Stalled
        when it failed for good."""
        generation = self.body.metadata.get("generation")
        scheduled = get_condition(conditions, "Scheduled") or {}
        summaries: dict[str, tuple[ConditionStatus, str, str]] = {
            Phase.PENDING.value: ("False", str(scheduled.get("reason") or "Pending"), "waiting for a Jibri"),
            Phase.STARTING.value: ("False", "Starting", "a Jibri is starting the recording"),
            Phase.RECORDING.value: ("True", "Recording", "the recording runs"),
            Phase.STOPPING.value: ("True", "Stopping", "the recording is being stopped"),
            Phase.COMPLETED.value: ("True", "Completed", "the recording ended"),
            Phase.FAILED.value: ("False", "Failed", "the session failed; see the Succeeded condition"),
        }
        ready = summaries.get(phase, ("Unknown", "Unknown", phase))
        result = set_condition(conditions, "Ready", *ready, generation)
        if phase == Phase.FAILED.value or get_condition(result, "Stalled") is not None:
            stalled: ConditionStatus = "True" if phase == Phase.FAILED.value else "False"
            result = set_condition(result, "Stalled", stalled, ready[1], ready[2], generation)
        return result

    async def _event(self, reason: str, message: str, warning: bool = False) -> None:
        (kopf.warn if warning else kopf.info)(self.body, reason=reason, message=message)
        if warning:
            self.logger.warning(f"{reason}: {message}")
        else:
            self.logger.info(f"{reason}: {message}")
