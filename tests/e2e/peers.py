"""A raw XMPP occupant for tests: sends exactly the stanzas a test asks for.

The simulated Jibri behaves; this peer can misbehave (malformed presence,
garbage reports), which is what the brewery client must survive.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import slixmpp
from slixmpp.stanza import Iq

MUC_NS = "http://jabber.org/protocol/muc"


class RawPeer(slixmpp.ClientXMPP):  # type: ignore[misc]
    def __init__(self, jid: str, password: str, ca_file: Path) -> None:
        super().__init__(jid, password)
        self.ca_certs = ca_file
        self.enable_direct_tls = False
        self.ready = asyncio.Event()
        self.add_event_handler("session_start", lambda _: self.ready.set())

    async def online(self, host: str, port: int) -> RawPeer:
        self.connect(host, port)
        await asyncio.wait_for(self.ready.wait(), 10)
        return self

    def join(self, occupant: str, *payload: ET.Element) -> None:
        """Join (or update presence in) a room as ``occupant``, with ``payload`` in the presence."""
        presence = self.make_presence(pto=occupant)
        ET.SubElement(presence.xml, f"{{{MUC_NS}}}x")
        for element in payload:
            presence.xml.append(element)
        presence.send()

    def send_xml(self, text: str) -> None:
        self.send_raw(text)

    async def send_iq(self, element: ET.Element, timeout: float = 5) -> Iq:
        return await Iq(self, xml=element).send(timeout=timeout)

    async def close(self) -> None:
        await self.disconnect(wait=1.0)
