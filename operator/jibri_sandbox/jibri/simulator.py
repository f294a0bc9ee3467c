"""A simulated Jibri that speaks the real control protocol over real XMPP.

It logs in to every environment of its jibri.conf at once, joins each brewery,
announces itself with the ``jibri-status`` presence of its dialect, and answers
start and stop IQs the way a Jibri does (see shared/design/PROTOCOL.md). The
recording itself is only a timer.

Three variants, as found in the field:

- ``current``: today's Jibri. Start is answered ``pending``, then ``on`` and
  ``off`` report IQs follow; busy is ``off/busy``.
- ``legacy``: the 2016 ``jibri-spec.xml`` to the letter. Start is answered with
  a plain IQ ``result`` and the Jibri "immediately broadcasts a presence
  indicating that it is now busy"; it never sends a report. The recording's end
  is its presence returning to ``idle``; stop is answered with a plain result.
  Busy (or unable) is the stanza error ``service-unavailable``.
- ``legacy-with-reports``: a 2017-era Jibri: 2016 presence and 503, but the
  ``pending`` answer and ``on``/``off`` reports of the current dialect. Every wire format comes from
:mod:`jibri_operator.xmpp.stanzas`, so the simulator and the operator cannot
drift apart on what a stanza looks like.

Tests drive it in-process (:class:`SimulatedJibri`); the sandbox kubelet runs
it as ``jibri-sandbox jibri --config jibri.conf``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import StanzaBase
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from jibri_operator.api.constants import JIBRI_NS
from jibri_operator.api.secret import Secret
from jibri_operator.api.types import (
    Action,
    BusyStatus,
    Dialect,
    FailureReason,
    Health,
    RecordingMode,
    RecordingStatus,
)
from jibri_operator.xmpp import scram, stanzas
from jibri_sandbox.jibri.config import Faults, JibriConfig, XmppEnvironment

log = logging.getLogger(__name__)

T = TypeVar("T")
_CLIENT: Final = "{jabber:client}"
_JIBRI_IQ: Final = f"{_CLIENT}iq/{{{JIBRI_NS}}}jibri"
_MUC_NS: Final = "http://jabber.org/protocol/muc"
_JOIN_TIMEOUT: Final = 15.0


class JibriError(RuntimeError):
    """The simulated Jibri could not connect or join a brewery."""


@dataclass(frozen=True)
class ReceivedStart:
    """An accepted start command, kept for tests to assert on."""

    environment: str
    room: str
    mode: RecordingMode
    session_id: str | None
    stream_key: Secret | None
    sender: str  # the requester's occupant JID: where reports go
    dialect: Dialect
    received_at: float = field(default_factory=time.time)  # wall clock, for latency benchmarks


@dataclass
class Recorded:
    """One recording this Jibri made: its own record, for counting who recorded what and when."""

    room: str
    session_id: str
    environment: str
    started: float  # wall clock: the start was accepted
    ended: float | None = None  # wall clock; None while it records (or if the Jibri died)
    ended_by: str | None = None  # stop (a stop command), done (it ended by itself), error


@dataclass(frozen=True)
class SentReport:
    environment: str
    to: str
    update: stanzas.StatusUpdate
    acknowledged: bool


@dataclass
class _Session:
    start: ReceivedStart
    link: _Link
    session_id: str
    task: asyncio.Task[None] | None = None
    on: bool = False


class _Link(slixmpp.ClientXMPP):
    """One XMPP connection: the Jibri's control login in one environment, in one brewery."""

    def __init__(self, jibri: SimulatedJibri, env: XmppEnvironment) -> None:
        super().__init__(env.control_login.jid, env.control_login.password.reveal())
        self.jibri = jibri
        self.env = env
        self.occupant = env.control_muc.occupant
        # A SIP gateway Jibri also joins its sip-control-muc, on the same connection, as Jibri does.
        self.rooms = [self.occupant] + ([env.sip_control_muc.occupant] if env.sip_control_muc else [])
        self._in: set[str] = set()  # our occupants present in their rooms right now
        self._left = False  # we left the rooms on purpose (leave_breweries): a rejoin is no reconnect
        # Prosody's c2s port speaks STARTTLS; slixmpp would try direct TLS first on an explicit port.
        self.enable_direct_tls = False
        self.enable_starttls = True
        self.enable_plaintext = False
        ca_file = jibri.config.sandbox.ca_file
        if ca_file:
            self.ca_certs = Path(ca_file)
        elif env.trust_all_xmpp_certs:
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
        self.joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # the first join
        self.reconnect = True  # off when we leave on purpose or drop the line as a fault
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_all_auth", lambda _e: self._fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self._fail(f"connection failed: {e}"))
        self.add_event_handler("stream_negotiated", self._on_negotiated)
        self.add_event_handler("disconnected", self._on_disconnected)
        self.register_handler(Callback("jibri command", MatchXPath(_JIBRI_IQ), self._on_jibri_iq))
        self.register_handler(
            Callback("brewery presence", MatchXPath(f"{_CLIENT}presence"), self._on_presence)
        )
        # slixmpp's own presence handler keeps a roster of every occupant's resources and fires
        # events for each presence; a Jibri ignores the brewery's other occupants, and in a
        # brewery of a hundred that bookkeeping was most of a simulated Jibri's CPU.
        self.remove_handler("Presence")

    # -- connection ---------------------------------------------------------

    def _fail(self, reason: str) -> None:
        if not self.joined.done():
            self.joined.set_exception(JibriError(f"{self.env.name}: {reason}"))
            self.joined.exception()  # a failure after the caller gave up is not an error
            self.abort()

    def _on_negotiated(self, _event: Any) -> None:
        if not self.authenticated:
            self._fail("the server offered no authentication (TLS required?)")

    def _on_disconnected(self, _event: Any) -> None:
        was_joined = self.joined.done() and self.joined.exception() is None
        self._in.clear()
        self._fail("disconnected")
        self.jibri._link_lost(self)
        if was_joined and self.reconnect:
            # Like a real Jibri: come back when the server does. slixmpp keeps retrying
            # a failed connect() by itself, with a growing back-off.
            log.info("%s: connection lost; reconnecting", self.env.name)
            asyncio.get_running_loop().call_later(0.2, self._reconnect)

    def _reconnect(self) -> None:
        if self.reconnect and not self.is_connected():
            self.connect_first_server()

    @property
    def in_room(self) -> bool:
        """Every room of ours (the brewery, and the SIP brewery if any) has us now."""
        return len(self._in) == len(self.rooms)

    async def _on_session_start(self, _event: Any) -> None:
        self.join_rooms()

    def join_rooms(self) -> None:
        """Join each room with our status in the join presence itself, as Jibri does."""
        for room in self.rooms:
            presence = self._status_presence(room)
            muc = ET.SubElement(presence, f"{{{_MUC_NS}}}x")
            ET.SubElement(muc, f"{{{_MUC_NS}}}history", {"maxstanzas": "0"})
            self._send(presence)

    def _on_presence(self, presence: StanzaBase) -> None:
        element = presence.xml
        sender = element.get("from")
        if sender not in self.rooms or sender in self._in:
            return
        if element.get("type") == "error":
            self._fail("the brewery refused the join (nickname in use?)")
            return
        if element.get("type") != "unavailable":
            self._in.add(str(sender))
            if not self.in_room:
                return
            if not self.joined.done():
                self.joined.set_result(None)
            elif self._left:
                self._left = False
            else:
                self.jibri.reconnects += 1
                log.info("%s: back in %s", self.env.name, ", ".join(self.rooms))
            self.jibri._changed()

    def connect_first_server(self) -> None:
        host, port = self.env.servers()[0]
        self.connect(host, port)

    # -- presence -----------------------------------------------------------

    def _status_presence(self, room: str) -> ET.Element:
        presence = ET.Element(f"{_CLIENT}presence", {"to": room})
        presence.append(
            stanzas.build_jibri_status(self.jibri.dialect, self.jibri.busy_status, self.jibri.health)
        )
        return presence

    def send_status(self) -> None:
        if self.in_room and self.is_connected():
            for room in self.rooms:
                self._send(self._status_presence(room))

    def leave(self) -> None:
        if self.is_connected():
            for room in self.rooms:
                self._send(ET.Element(f"{_CLIENT}presence", {"to": room, "type": "unavailable"}))

    def leave_rooms(self) -> None:
        """Leave every room but keep the connection; :meth:`join_rooms` comes back."""
        self.leave()
        self._in.clear()
        self._left = True

    def _send(self, element: ET.Element) -> None:
        if element.tag == f"{_CLIENT}iq":
            self.send(slixmpp.stanza.Iq(self, xml=element))
        else:
            self.send(slixmpp.stanza.Presence(self, xml=element))

    # -- commands -----------------------------------------------------------

    def _on_jibri_iq(self, iq: StanzaBase) -> None:
        if iq["type"] != "set":
            return  # answers to our own reports are handled by their waiters
        self.jibri._on_command(self, iq.xml)

    def reply(self, element: ET.Element) -> None:
        self._send(element)

    async def report(self, to: str, update: stanzas.StatusUpdate) -> bool:
        """Send a status report; True if the controller acknowledged it in time."""
        element = stanzas.build_report(to, update, uuid.uuid4().hex)
        try:
            await slixmpp.stanza.Iq(self, xml=element).send(timeout=self.jibri.config.sandbox.report_timeout)
        except (IqError, IqTimeout):
            log.info("%s: report %s to %s was not acknowledged", self.env.name, update.status, to)
            return False
        except Exception:  # e.g. the connection is gone; a Jibri must survive it
            log.info("%s: report %s to %s could not be sent", self.env.name, update.status, to)
            return False
        return True


class SimulatedJibri:
    """A Jibri in every brewery of its jibri.conf; busy in one means busy in all.

    ``faults`` and :meth:`set_healthy` can be changed at runtime; ``starts``,
    ``commands`` and ``reports`` record what happened for tests.
    """

    def __init__(self, config: JibriConfig) -> None:
        scram.install()  # a login's salted password in C, not in a Python loop (many Jibris log in at once)
        self.config = config
        self.dialect: Dialect = config.sandbox.dialect
        # Whether this Jibri sends pending/on/off at all (the 2016 spec has none of them).
        self.sends_reports = self.dialect is Dialect.CURRENT or config.sandbox.legacy_reports
        self.faults: Faults = dataclasses.replace(config.sandbox.faults)
        self.recording_modes = set(config.sandbox.recording_modes)
        if any(env.sip_control_muc is not None for env in config.environments):
            self.recording_modes.add(RecordingMode.SIP)  # a SIP gateway Jibri takes SIP calls
        self.starts: list[ReceivedStart] = []
        self.commands: list[stanzas.JibriCommand] = []
        self.reports: list[SentReport] = []
        self.history: list[Recorded] = []  # every accepted start, with when it ended
        # Told of each recording as it starts ("start") and ends ("end"): how the sandbox keeps
        # a record outside the process (see jibri_sandbox.jibri.cli, JIBRI_SANDBOX_HISTORY_DIR).
        self.record_hook: Callable[[str, Recorded], None] | None = None
        self.refusals = 0
        self.bad_requests = 0
        self.disconnected = False  # set when a connection was lost (fault or server)
        self.reconnects = 0  # rejoins after a lost connection
        self.stalled = False  # the never-on fault is holding a session in pending
        self._healthy = config.sandbox.healthy
        self._busy = False
        self._spent = False  # single-use: one recording done, never idle again
        self._session: _Session | None = None
        self._links: list[_Link] = []
        self._wake = asyncio.Event()

    # -- state --------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def busy_status(self) -> BusyStatus:
        return BusyStatus.BUSY if self._busy else BusyStatus.IDLE

    @property
    def health(self) -> Health:
        return Health.HEALTHY if self._healthy else Health.UNHEALTHY

    @property
    def healthy(self) -> bool:
        return self._healthy

    @property
    def recording(self) -> bool:
        """A session reached ``on`` and has not ended."""
        return self._session is not None and self._session.on

    @property
    def session_id(self) -> str | None:
        return self._session.session_id if self._session else None

    @property
    def joined(self) -> bool:
        """Every brewery has seen this Jibri's presence."""
        return bool(self._links) and all(link.in_room and link.is_connected() for link in self._links)

    @property
    def occupants(self) -> list[str]:
        return [link.occupant for link in self._links]

    def set_healthy(self, healthy: bool) -> None:
        """Flip health; the new presence goes to every brewery at once."""
        if healthy != self._healthy:
            self._healthy = healthy
            self._announce()

    def set_busy_elsewhere(self, busy: bool) -> None:
        """Busy (or idle again) with a recording another controller (e.g. Jicofo) runs: only the
        presence says so, and a start meanwhile is answered busy. Ignored while it records for a
        start of its own."""
        if self._session is None and not self._spent and busy != self._busy:
            self._busy = busy
            self._announce()

    def leave_breweries(self) -> None:
        """Leave every brewery (an unavailable presence) but stay connected, as a Jibri shutting
        down its control MUC would; :meth:`rejoin_breweries` joins again with its current status."""
        for link in self._links:
            link.leave_rooms()
        self._changed()

    def rejoin_breweries(self) -> None:
        for link in self._links:
            if link.is_connected():
                link.join_rooms()

    async def wait_until(self, condition: Callable[[SimulatedJibri], T], timeout: float = 5) -> T:
        """Wait until ``condition(self)`` is truthy; re-checked on every state change."""
        async with asyncio.timeout(timeout):
            while True:
                wake = self._wake
                value = condition(self)
                if value:
                    return value
                await wake.wait()

    def _changed(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------

    async def start(self, timeout: float = _JOIN_TIMEOUT) -> None:
        """Connect to every environment and join every brewery; raise JibriError if one fails."""
        self._links = [_Link(self, env) for env in self.config.environments]
        for link in self._links:
            link.connect_first_server()
        try:
            async with asyncio.timeout(timeout):
                await asyncio.gather(*(asyncio.shield(link.joined) for link in self._links))
        except TimeoutError:
            await self.stop()
            raise JibriError("timed out joining the breweries") from None
        except JibriError:
            await self.stop()
            raise
        log.info("joined %s as %s (%s dialect)", ", ".join(self.occupants), self.busy_status, self.dialect)
        self._changed()

    async def stop(self) -> None:
        """Leave every brewery (unavailable presence) and disconnect."""
        if self._session is not None and self._session.task is not None:
            self._session.task.cancel()
        for link in self._links:
            link.reconnect = False
            link.leave()
        await asyncio.gather(
            *(asyncio.wait_for(link.disconnect(wait=1), 3) for link in self._links if link.is_connected()),
            return_exceptions=True,
        )
        self._changed()

    def drop_connections(self) -> None:
        """Cut every connection at once, without an unavailable presence (a crash, seen from XMPP)."""
        self.disconnected = True
        for link in self._links:
            link.reconnect = False  # a crashed Jibri stays gone; its pod would be replaced
            link.abort()
        self._changed()

    def blip(self, offline: float) -> None:
        """Lose every connection for ``offline`` seconds, then come back as Jibri does after a
        network blip: the recording goes on meanwhile, and it rejoins still busy."""
        self.disconnected = True
        for link in self._links:
            link.reconnect = False
            link.abort()

        def back() -> None:
            for link in self._links:
                link.reconnect = True
                link._reconnect()

        asyncio.get_running_loop().call_later(offline, back)
        self._changed()

    async def __aenter__(self) -> SimulatedJibri:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _link_lost(self, link: _Link) -> None:
        if link.joined.done() and link.joined.exception() is None:
            self.disconnected = True
        self._changed()

    def _announce(self) -> None:
        for link in self._links:
            link.send_status()
        self._changed()

    # -- the protocol -------------------------------------------------------

    def _on_command(self, link: _Link, iq: ET.Element) -> None:
        try:
            command = stanzas.parse_command(iq)
        except stanzas.BadRequest as error:
            self.bad_requests += 1
            log.info("%s: bad request: %s", link.env.name, error)
            link.reply(stanzas.build_error(iq, stanzas.ErrorCondition.BAD_REQUEST, str(error)))
            self._changed()
            return
        self.commands.append(command)
        if command.action is Action.START:
            self._on_start(link, iq, command)
        else:
            self._on_stop(link, iq, command)
        self._changed()

    def _on_start(self, link: _Link, iq: ET.Element, command: stanzas.JibriCommand) -> None:
        request = command.start
        assert request is not None
        if self._busy:
            self.refusals += 1
            if self.dialect is Dialect.LEGACY:
                link.reply(stanzas.build_error(iq, stanzas.ErrorCondition.SERVICE_UNAVAILABLE, "busy"))
            else:
                busy = stanzas.StatusUpdate(RecordingStatus.OFF, FailureReason.BUSY, True, command.session_id)
                link.reply(stanzas.build_result(iq, busy))
            return
        if request.mode not in self.recording_modes:
            self.refusals += 1
            if not self.sends_reports:  # the 2016 spec's only refusal is 503
                link.reply(stanzas.build_error(iq, stanzas.ErrorCondition.SERVICE_UNAVAILABLE, "unable"))
                return
            refused = stanzas.StatusUpdate(
                RecordingStatus.OFF, FailureReason.ERROR, False, command.session_id
            )
            link.reply(stanzas.build_result(iq, refused))
            return
        start = ReceivedStart(
            environment=link.env.name,
            room=request.room,
            mode=request.mode,
            session_id=request.session_id,
            stream_key=request.stream_key,
            sender=command.sender,
            dialect=command.dialect,
        )
        self.starts.append(start)
        session_id = request.session_id or uuid.uuid4().hex[:12]
        self._session = _Session(start, link, session_id)
        self.history.append(Recorded(request.room, session_id, link.env.name, start.received_at))
        if self.record_hook is not None:
            self.record_hook("start", self.history[-1])
        self._busy = True
        if not self.faults.lose_start_reply:
            pending = stanzas.StatusUpdate(RecordingStatus.PENDING, session_id=session_id)
            link.reply(stanzas.build_result(iq, pending if self.sends_reports else None))
        log.info("%s: start accepted (%s, session %s)", link.env.name, request.mode, session_id)
        if self.sends_reports or not self.faults.never_on:
            # The 2016 spec's only sign of a running recording is this busy presence; a
            # spec-literal Jibri stuck before recording (never-on) therefore never sends it.
            if self.faults.busy_presence_delay > 0:
                asyncio.get_running_loop().call_later(self.faults.busy_presence_delay, self._announce)
            else:
                self._announce()
        self._session.task = asyncio.get_running_loop().create_task(self._run_session(self._session))

    def _on_stop(self, link: _Link, iq: ET.Element, command: stanzas.JibriCommand) -> None:
        if self.faults.stop_reply_delay > 0:
            delay = self.faults.stop_reply_delay
            asyncio.get_running_loop().call_later(delay, self._stop_now, link, iq, command)
            return
        self._stop_now(link, iq, command)

    def _stop_now(self, link: _Link, iq: ET.Element, command: stanzas.JibriCommand) -> None:
        session = self._session
        off = stanzas.StatusUpdate(RecordingStatus.OFF, session_id=command.session_id)
        link.reply(stanzas.build_result(iq, off if self.sends_reports else None))
        if session is None:
            return
        if command.session_id and command.session_id != session.session_id:
            log.info("%s: stop for another session ignored", link.env.name)
            return
        if session.task is not None:
            session.task.cancel()
        log.info("%s: stopped session %s", link.env.name, session.session_id)
        self._end_session(session, "stop")

    async def _run_session(self, session: _Session) -> None:
        """pending -> on -> off, with the configured delays and faults.

        A spec-literal legacy Jibri goes through the same states but tells nobody:
        :meth:`_report` sends nothing, and its end is only its idle presence."""
        sandbox = self.config.sandbox
        await asyncio.sleep(sandbox.start_delay)  # the simulated Chrome and ffmpeg starting up
        if self.faults.never_on:
            self.stalled = True
            self._changed()
            try:
                await asyncio.Event().wait()  # stuck in pending until stopped
            finally:
                self.stalled = False
        if self.faults.start_fails:
            failed = stanzas.StatusUpdate(
                RecordingStatus.OFF,
                FailureReason.ERROR,
                self.faults.start_fails_should_retry,
                session.session_id,
            )
            await self._report(session, failed)
            self._end_session(session, "error")
            return
        session.on = True
        await self._report(session, stanzas.StatusUpdate(RecordingStatus.ON, session_id=session.session_id))
        if self.faults.disconnect_after_on:
            self.drop_connections()
            return
        limits = [sandbox.recording_duration, session.link.env.usage_timeout]
        remaining = min((limit for limit in limits if limit), default=None)
        if remaining is None:
            return  # records until stopped
        await asyncio.sleep(remaining)  # the recording's own length
        await self._report(session, stanzas.StatusUpdate(RecordingStatus.OFF, session_id=session.session_id))
        self._end_session(session)

    async def _report(self, session: _Session, update: stanzas.StatusUpdate) -> None:
        if not self.sends_reports:
            self._changed()  # the state moved all the same; only nobody is told
            return
        acknowledged = await session.link.report(session.start.sender, update)
        self.reports.append(SentReport(session.link.env.name, session.start.sender, update, acknowledged))
        self._changed()

    def _end_session(self, session: _Session, ended_by: str = "done") -> None:
        if self._session is not session:
            return
        self._session = None
        self.history[-1].ended = time.time()
        self.history[-1].ended_by = ended_by
        if self.record_hook is not None:
            self.record_hook("end", self.history[-1])
        if self.config.single_use_mode:
            self._spent = True  # stays busy, and keeps its last presence: it must be replaced
            self._changed()
            return
        self._busy = False
        self._announce()


async def run_until_cancelled(jibri: SimulatedJibri) -> None:
    """Start, then wait forever; leave the breweries cleanly when cancelled."""
    await jibri.start()
    try:
        await asyncio.Event().wait()
    finally:
        with contextlib.suppress(Exception):
            await jibri.stop()
