"""A small real XMPP client for the e2e tests: log in, join a MUC, send IQs, collect stanzas.

No mocks: it talks to the real Prosody over TLS, verifying the sandbox CA.
Everything waits on conditions with timeouts, never on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import slixmpp
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from jibri_operator.api.constants import JIBRI_NS
from jibri_operator.xmpp import stanzas

T = TypeVar("T")
_JIBRI_IQ = f"{{jabber:client}}iq/{{{JIBRI_NS}}}jibri"


class LoginFailed(Exception):
    """The server refused the session (no TLS, bad password, ...)."""


class TestClient(slixmpp.ClientXMPP):
    """A controller-like test client.

    It records every brewery presence and every Jibri report (an IQ set with a
    ``<jibri status=.../>``), acknowledging reports with an empty result, as a
    controller must.
    """

    __test__ = False  # not a pytest class

    def __init__(self, jid: str, password: str, ca_file: Path | str | None, *, tls: bool = True) -> None:
        super().__init__(jid, password)
        self.register_plugin("xep_0045")
        if ca_file is not None:
            self.ca_certs = Path(ca_file)
        # slixmpp tries direct TLS first on an explicit port; Prosody's c2s port speaks STARTTLS.
        self.enable_direct_tls = False
        if not tls:
            self.enable_starttls = False
            self.enable_plaintext = True
            self.plugin["feature_mechanisms"].unencrypted_plain = True
        self.presences: list[ET.Element] = []
        self.reports: list[stanzas.StatusUpdate] = []
        self._changed = asyncio.Event()
        self._outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_all_auth", lambda _e: self._fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self._fail(f"connection failed: {e}"))
        self.add_event_handler("disconnected", lambda _e: self._fail("disconnected"))
        # Without TLS, Prosody offers only <starttls><required/>: features end with no SASL at all.
        self.add_event_handler("stream_negotiated", self._on_negotiated)
        # Not "presence": after a room's first presence, slixmpp's xep_0045 marks the room
        # ignore_updates and the generic event stops firing for it. This one always fires.
        self.add_event_handler("groupchat_presence", self._on_presence)
        self.register_handler(Callback("jibri report", MatchXPath(_JIBRI_IQ), self._on_jibri_iq))

    def _fail(self, reason: str) -> None:
        if not self._outcome.done():
            self._outcome.set_exception(LoginFailed(reason))
            self._outcome.exception()  # retrieved here: a late failure after a timeout is not an error

    def _on_negotiated(self, _event: Any) -> None:
        if not self.authenticated:
            self._fail("stream negotiated without authentication (the server requires TLS)")
            self.abort()

    async def _on_session_start(self, _event: Any) -> None:
        self.send_presence()
        if not self._outcome.done():
            self._outcome.set_result(None)

    def _on_presence(self, presence: slixmpp.Presence) -> None:
        self.presences.append(presence.xml)
        self._notify()

    def _on_jibri_iq(self, iq: slixmpp.Iq) -> None:
        if iq["type"] != "set":
            return
        with contextlib.suppress(stanzas.MalformedStanza):
            self.reports.append(stanzas.parse_report(iq.xml))
            self._notify()
        self.send_element(stanzas.build_result(iq.xml))

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def login(self, host: str, port: int, timeout: float = 10) -> None:
        """Connect and wait for the session; raise LoginFailed if the server refuses it."""
        self.connect(host, port)
        try:
            await asyncio.wait_for(asyncio.shield(self._outcome), timeout)
        except BaseException:
            self.abort()
            raise

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.disconnect(wait=1), 3)

    def send_element(self, element: ET.Element) -> None:
        """Send a prebuilt stanza from stanzas.py."""
        self.send(slixmpp.stanza.Iq(self, xml=element) if element.tag.endswith("}iq") else element)

    async def iq(self, element: ET.Element, timeout: float = 5) -> ET.Element:
        """Send an IQ built by stanzas.py; return the answer (result or error) as XML."""
        stanza = slixmpp.stanza.Iq(self, xml=element)
        if not stanza["id"]:
            stanza["id"] = uuid.uuid4().hex
        try:
            reply = await stanza.send(timeout=timeout)
        except slixmpp.exceptions.IqError as error:
            reply = error.iq
        return reply.xml

    async def join(self, room: str, nick: str) -> None:
        await self.plugin["xep_0045"].join_muc_wait(slixmpp.JID(room), nick, maxstanzas=0, timeout=10)

    async def wait_for(self, condition: Callable[[], T | None], timeout: float = 5) -> T:
        """Wait until ``condition()`` is truthy (re-checked on every stanza) and return it."""
        async with asyncio.timeout(timeout):
            while True:
                changed = self._changed
                value = condition()
                if value:
                    return value
                await changed.wait()

    def jibri_presences(self, room: str) -> list[stanzas.JibriPresence]:
        found = []
        for element in self.presences:
            if element.get("from", "").startswith(room + "/"):
                with contextlib.suppress(stanzas.MalformedStanza):
                    parsed = stanzas.parse_presence(element)
                    if parsed is not None:
                        found.append(parsed)
        return found

    def last_presence(self, occupant: str) -> stanzas.JibriPresence | None:
        room = occupant.partition("/")[0]
        for parsed in reversed(self.jibri_presences(room)):
            if parsed.occupant == occupant:
                return parsed
        return None
