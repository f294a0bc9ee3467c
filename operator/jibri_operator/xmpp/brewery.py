"""The brewery client: one XMPP connection per environment, controlling Jibris.

It joins the brewery MUC the way Jicofo does, keeps the last presence of every
Jibri in it (Jibris do not repeat presence on a timer, so the last one is the
truth), sends start and stop IQs, and acknowledges the status reports Jibris
send back.

Connection policy:

* TLS is required unless ``allow_plaintext`` is set; even then slixmpp refuses
  to authenticate in the clear unless told to, which we only do on that flag.
* A dropped connection or a server restart is followed by reconnection with
  jittered exponential backoff. While away the view is kept but marked stale
  (``joined`` is False, nothing is selectable); on rejoin the room's presence
  burst rebuilds it, and every Jibri that is no longer there is reported as
  gone, so none lingers as idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import Iq
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from jibri_operator.api.constants import JIBRI_NS, MUC_USER_NS
from jibri_operator.api.secret import Secret
from jibri_operator.api.types import BusyStatus, Dialect, Health
from jibri_operator.xmpp import redact, scram, stanzas
from jibri_operator.xmpp.stanzas import JibriPresence, MalformedStanza, Reply, StartRequest, StatusUpdate

log = logging.getLogger(__name__)

MUC_NS: Final = "http://jabber.org/protocol/muc"
_SELF_PRESENCE_CODE: Final = "110"


class BreweryError(Exception):
    """A command could not be delivered (not connected, timed out)."""


class NotJoined(BreweryError):
    pass


class CommandTimeout(BreweryError):
    pass


@dataclass(frozen=True)
class BreweryConfig:
    """How to reach one environment's brewery. ``password`` is a :class:`Secret`."""

    name: str  # the environment's name, for logs and metrics
    jid: str  # the control login, user@domain
    password: Secret
    room: str  # the brewery MUC, e.g. jibribrewery@internal.auth.example.com
    nickname: str  # ours in the room; must be unique among controllers
    host: str | None = None  # defaults to the JID's domain
    port: int = 5222
    ca_file: str | None = None  # verify the server with this CA instead of the system store
    allow_plaintext: bool = False  # sandboxes only: loud, explicit
    direct_tls: bool = False  # TLS from the first byte (XEP-0368, port 5223) instead of STARTTLS
    command_timeout: float = 10.0
    join_timeout: float = 10.0
    reconnect_min: float = 0.2
    reconnect_max: float = 15.0
    keepalive_interval: float = 30.0


class BreweryListener:
    """What the owner of a client hears. Called in the event loop; must not block."""

    def jibri_changed(self, presence: JibriPresence) -> None:
        """A Jibri's presence changed, or it left (``presence.unavailable``)."""

    def jibri_report(self, occupant: str, update: StatusUpdate) -> None:
        """A Jibri reported on a recording it runs for us (on, off, failures)."""

    def connection_changed(self, joined: bool, reason: str) -> None:
        """We joined the brewery, or lost it (``reason`` says why)."""


@dataclass
class _Attempt:
    """One connection attempt's client and its outcome."""

    client: slixmpp.ClientXMPP
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    joined: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    burst: dict[str, JibriPresence] = field(default_factory=dict)


class BreweryClient:
    """A controlling member of one brewery. See the module docstring."""

    def __init__(self, config: BreweryConfig, listener: BreweryListener | None = None) -> None:
        self.config = config
        self.listener = listener or BreweryListener()
        self._jibris: dict[str, JibriPresence] = {}
        self._joined = False
        self._attempt: _Attempt | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._changed = asyncio.Condition()
        self._nickname = config.nickname
        self.reconnects = 0
        self.last_error = ""
        redact.install()
        scram.install()
        if config.allow_plaintext:
            log.warning(
                "brewery %s: plaintext XMPP is allowed; stream keys and passwords may cross the network in the clear",
                config.name,
            )

    # -- the view ---------------------------------------------------------------

    @property
    def joined(self) -> bool:
        return self._joined

    @property
    def occupant_jid(self) -> str:
        return f"{self.config.room}/{self._nickname}"

    @property
    def jibris(self) -> Mapping[str, JibriPresence]:
        """The last presence of every Jibri in the room, by occupant JID."""
        return self._jibris

    def selectable(self) -> list[JibriPresence]:
        if not self._joined:
            return []
        return [presence for presence in self._jibris.values() if presence.selectable]

    async def wait_for(self, predicate: Callable[[BreweryClient], bool], timeout: float) -> None:
        """Wait until ``predicate(self)`` holds after some change; TimeoutError otherwise."""
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self))

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Begin connecting in the background; use :meth:`wait_joined` to wait."""
        if self._runner is None:
            self._closing = False
            self._runner = asyncio.create_task(self._run(), name=f"brewery-{self.config.name}")

    async def wait_joined(self, timeout: float | None = None) -> None:
        await self.wait_for(
            lambda client: client.joined, self.config.join_timeout if timeout is None else timeout
        )

    async def stop(self) -> None:
        """Leave the room and disconnect; the view is forgotten."""
        self._closing = True
        attempt = self._attempt
        if attempt is not None and attempt.client.is_connected():
            with contextlib.suppress(Exception):
                attempt.client.send_presence(pto=self.occupant_jid, ptype="unavailable")
                await asyncio.wait_for(attempt.client.disconnect(wait=1.0), timeout=2.0)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        if attempt is not None:
            _dispose(attempt.client)
        await self._set_joined(False, "stopped")
        self._jibris.clear()

    async def _run(self) -> None:
        delay = self.config.reconnect_min
        while not self._closing:
            attempt = _Attempt(self._make_client())
            self._attempt = attempt
            started = time.monotonic()
            try:
                await self._connect_once(attempt)
            except Exception:  # the loop must survive anything a connection throws
                log.exception("brewery %s: connection attempt failed unexpectedly", self.config.name)
                attempt.reason = attempt.reason or "internal error"
            finally:
                attempt.client.cancel_connection_attempt()
                _dispose(attempt.client)
            await self._set_joined(False, attempt.reason or "disconnected")
            if self._stopping():
                return
            self.last_error = attempt.reason
            self.reconnects += 1
            # A session that lasted a while earned a quick retry; a flapping one backs off.
            if time.monotonic() - started > 30:
                delay = self.config.reconnect_min
            sleep = min(delay, self.config.reconnect_max) * random.uniform(0.8, 1.2)
            log.info("brewery %s: %s; reconnecting in %.1fs", self.config.name, attempt.reason, sleep)
            await asyncio.sleep(sleep)
            delay = min(delay * 2, self.config.reconnect_max)

    def _stopping(self) -> bool:
        # A method, not the attribute, so type checkers do not assume it cannot change across awaits.
        return self._closing

    async def _connect_once(self, attempt: _Attempt) -> None:
        client = attempt.client
        host = self.config.host or client.boundjid.domain
        client.connect(host, self.config.port)
        try:
            async with asyncio.timeout(self.config.join_timeout):
                done = asyncio.create_task(attempt.ended.wait())
                joined = asyncio.create_task(attempt.joined.wait())
                await asyncio.wait({done, joined}, return_when=asyncio.FIRST_COMPLETED)
                for task in (done, joined):
                    task.cancel()
        except TimeoutError:
            attempt.reason = attempt.reason or "timed out connecting or joining the brewery"
            return
        if attempt.ended.is_set():
            return
        await attempt.ended.wait()

    # -- slixmpp wiring -----------------------------------------------------------------

    def _make_client(self) -> slixmpp.ClientXMPP:
        config = self.config
        client = slixmpp.ClientXMPP(config.jid, config.password.reveal())
        client.register_plugin(
            "xep_0199", {"keepalive": True, "interval": config.keepalive_interval, "timeout": 10}
        )
        if config.ca_file:
            client.ca_certs = Path(config.ca_file)
        if config.allow_plaintext:
            client.enable_starttls = False
            client.enable_direct_tls = False
            client.enable_plaintext = True
            client["feature_mechanisms"].security_settings["unencrypted_plain"] = True
            client["feature_mechanisms"].security_settings["unencrypted_scram"] = True
        else:
            # One transport per attempt: slixmpp would otherwise try direct TLS first on a
            # STARTTLS port and report that expected failure as a connection failure.
            client.enable_plaintext = False
            client.enable_direct_tls = config.direct_tls
            client.enable_starttls = not config.direct_tls
        client.add_event_handler("session_start", lambda _: self._on_session_start(client))
        client.add_event_handler(
            "disconnected", lambda reason: self._on_ended(client, f"disconnected ({reason})")
        )
        client.add_event_handler(
            "connection_failed", lambda error: self._on_ended(client, f"connection failed: {error}")
        )
        client.add_event_handler("failed_all_auth", lambda _: self._on_ended(client, "authentication failed"))
        client.add_event_handler(
            "stream_error", lambda error: self._on_ended(client, f"stream error: {error}")
        )
        client.register_handler(
            Callback("brewery presence", MatchXPath("{jabber:client}presence"), self._on_presence_stanza)
        )
        # slixmpp's own presence handler keeps a roster of every occupant's resources and fires
        # a few events per presence; the brewery's view is ours (``_jibris``), so that work was
        # only cost, paid again for every presence of every Jibri.
        client.remove_handler("Presence")
        client.register_handler(
            Callback(
                "jibri report", MatchXPath(f"{{jabber:client}}iq/{{{JIBRI_NS}}}jibri"), self._on_iq_stanza
            )
        )
        return client

    def _current(self, client: slixmpp.ClientXMPP) -> _Attempt | None:
        attempt = self._attempt
        return attempt if attempt is not None and attempt.client is client else None

    def _on_ended(self, client: slixmpp.ClientXMPP, reason: str) -> None:
        attempt = self._current(client)
        if attempt is not None and not attempt.ended.is_set():
            attempt.reason = reason
            attempt.ended.set()

    def _on_session_start(self, client: slixmpp.ClientXMPP) -> None:
        attempt = self._current(client)
        if attempt is None:
            return
        transport = client.transport
        encrypted = transport is not None and transport.get_extra_info("ssl_object") is not None
        if not encrypted and not self.config.allow_plaintext:
            attempt.reason = "the server did not encrypt the connection and plaintext is not allowed"
            attempt.ended.set()
            return
        attempt.burst.clear()
        join = client.make_presence(pto=self.occupant_jid)
        muc = ET.SubElement(join.xml, f"{{{MUC_NS}}}x")
        ET.SubElement(muc, f"{{{MUC_NS}}}history", {"maxstanzas": "0"})
        join.send()

    def _on_presence_stanza(self, presence: Any) -> None:
        client = presence.stream
        attempt = self._current(client)
        element: ET.Element = presence.xml
        sender = element.get("from", "")
        if attempt is None or sender.partition("/")[0] != self.config.room:
            return
        if element.get("type") == "error":
            self._on_join_error(attempt, element)
            return
        if self._is_self_presence(element, sender):
            if not attempt.joined.is_set():
                attempt.joined.set()
                self._resync(attempt.burst)
                asyncio.get_running_loop().create_task(self._set_joined(True, "joined"))
            return
        try:
            parsed = stanzas.parse_presence(element)
        except MalformedStanza as error:
            log.warning(
                "brewery %s: ignoring a malformed presence from %s: %s", self.config.name, sender, error
            )
            return
        if parsed is None:
            return
        if attempt.joined.is_set():
            self._apply(parsed)
        elif not parsed.unavailable:
            attempt.burst[parsed.occupant] = parsed
        else:
            attempt.burst.pop(parsed.occupant, None)

    def _is_self_presence(self, element: ET.Element, sender: str) -> bool:
        codes = {
            status.get("code") for status in element.iterfind(f"{{{MUC_USER_NS}}}x/{{{MUC_USER_NS}}}status")
        }
        return _SELF_PRESENCE_CODE in codes or sender == self.occupant_jid

    def _on_join_error(self, attempt: _Attempt, element: ET.Element) -> None:
        conflict = element.find("{jabber:client}error/{urn:ietf:params:xml:ns:xmpp-stanzas}conflict")
        if conflict is not None and not attempt.joined.is_set():
            # Another controller (or a ghost of our last connection) holds the nickname.
            self._nickname = f"{self.config.nickname}-{random.randrange(16**4):04x}"
            log.info("brewery %s: nickname taken, joining as %s", self.config.name, self._nickname)
            self._on_session_start(attempt.client)
            return
        attempt.reason = "could not join the brewery room"
        attempt.ended.set()

    def _resync(self, fresh: dict[str, JibriPresence]) -> None:
        """Replace the view with the room's presence burst; report who left meanwhile."""
        for occupant, old in list(self._jibris.items()):
            if occupant not in fresh:
                self._apply(replace(old, unavailable=True, busy=BusyStatus.BUSY, health=Health.UNKNOWN))
        for presence in fresh.values():
            self._apply(presence)

    def _apply(self, presence: JibriPresence) -> None:
        if presence.unavailable:
            if self._jibris.pop(presence.occupant, None) is None:
                return
        elif self._jibris.get(presence.occupant) == presence:
            return
        else:
            self._jibris[presence.occupant] = presence
        try:
            self.listener.jibri_changed(presence)
        except Exception:
            log.exception("brewery %s: listener failed on a presence", self.config.name)
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _set_joined(self, joined: bool, reason: str) -> None:
        if self._joined == joined:
            return
        self._joined = joined
        log.info("brewery %s: %s", self.config.name, "joined" if joined else f"left ({reason})")
        try:
            self.listener.connection_changed(joined, reason)
        except Exception:
            log.exception("brewery %s: listener failed on a connection change", self.config.name)
        await self._notify()

    def _on_iq_stanza(self, iq: Any) -> None:
        element: ET.Element = iq.xml
        if element.get("type") != "set":
            return  # results of our own commands are matched by slixmpp's id handlers
        sender = element.get("from", "")
        try:
            update = stanzas.parse_report(element)
        except MalformedStanza as error:
            log.warning(
                "brewery %s: ignoring a malformed report from %s: %s", self.config.name, sender, error
            )
            Iq(iq.stream, xml=stanzas.build_error(element, stanzas.ErrorCondition.BAD_REQUEST)).send()
            return
        Iq(iq.stream, xml=stanzas.build_result(element)).send()
        try:
            self.listener.jibri_report(sender, update)
        except Exception:
            log.exception("brewery %s: listener failed on a report", self.config.name)

    # -- commands -------------------------------------------------------------------

    async def start_recording(
        self, occupant: str, request: StartRequest, dialect: Dialect, timeout: float | None = None
    ) -> Reply:
        """Send a start IQ in the Jibri's dialect and return its answer, busy included."""
        client = self._ready_client()
        element = stanzas.build_start(occupant, request, dialect, client.new_id())
        return await self._command(client, element, timeout)

    async def stop_recording(
        self, occupant: str, dialect: Dialect, session_id: str | None = None, timeout: float | None = None
    ) -> Reply:
        client = self._ready_client()
        element = stanzas.build_stop(occupant, dialect, client.new_id(), session_id)
        return await self._command(client, element, timeout)

    def _ready_client(self) -> slixmpp.ClientXMPP:
        attempt = self._attempt
        if not self._joined or attempt is None:
            raise NotJoined(f"brewery {self.config.name} is not joined")
        return attempt.client

    async def _command(self, client: slixmpp.ClientXMPP, element: ET.Element, timeout: float | None) -> Reply:
        seconds = self.config.command_timeout if timeout is None else timeout
        iq = Iq(client, xml=element)
        try:
            answer = await iq.send(timeout=seconds)
        except IqError as error:
            answer = error.iq
        except IqTimeout:
            raise CommandTimeout(f"no answer from {element.get('to')} within {seconds:g}s") from None
        return stanzas.parse_reply(answer.xml)


def _dispose(client: slixmpp.ClientXMPP) -> None:
    """Close a client for good. slixmpp cancels its outgoing-filter task only when the client is
    garbage-collected: left alone, one lingers per connection attempt, and kopf waits 5 s for such
    stray tasks when the operator stops (which delays a leader's handover)."""
    client.abort()
    filters = getattr(client, "_run_out_filters", None)
    if filters is not None:
        filters.cancel()
