"""The brewery client against a real Prosody: presence, resync, malformed input, secrets.

Jibris here are raw XMPP occupants (tests/e2e/peers.py) sending real stanzas,
so each test controls exactly what crosses the wire.
"""

from __future__ import annotations

import asyncio
import logging
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from peers import RawPeer
from slixmpp.stanza import Iq
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from jibri_operator.api.constants import JIBRI_NS
from jibri_operator.api.secret import Secret
from jibri_operator.api.types import BusyStatus, Dialect, Health, RecordingMode, RecordingStatus
from jibri_operator.xmpp import stanzas
from jibri_operator.xmpp.brewery import BreweryClient, BreweryConfig, BreweryListener
from jibri_operator.xmpp.stanzas import JibriPresence, StartRequest, StatusUpdate
from jibri_sandbox.prosody import Prosody

pytestmark = pytest.mark.e2e


class Recorder(BreweryListener):
    def __init__(self) -> None:
        self.changes: list[JibriPresence] = []
        self.reports: list[tuple[str, StatusUpdate]] = []
        self.connections: list[tuple[bool, str]] = []

    def jibri_changed(self, presence: JibriPresence) -> None:
        self.changes.append(presence)

    def jibri_report(self, occupant: str, update: StatusUpdate) -> None:
        self.reports.append((occupant, update))

    def connection_changed(self, joined: bool, reason: str) -> None:
        self.connections.append((joined, reason))


Factory = Callable[..., Any]


@pytest.fixture
async def controller(prosody: Prosody, xmpp_account: Factory, brewery: str) -> AsyncIterator[Factory]:
    """Factory of joined brewery clients; all are stopped at the end."""
    clients: list[BreweryClient] = []

    async def make(nickname: str = "controller", listener: BreweryListener | None = None) -> BreweryClient:
        jid, password = xmpp_account("operator")
        config = BreweryConfig(
            name="test",
            jid=jid,
            password=Secret(password),
            room=brewery,
            nickname=nickname,
            host=prosody.host,
            port=prosody.port,
            ca_file=str(prosody.ca_file),
            reconnect_min=0.1,
            reconnect_max=1.0,
        )
        client = BreweryClient(config, listener)
        clients.append(client)
        await client.start()
        await client.wait_joined(10)
        return client

    yield make
    for client in clients:
        await client.stop()


@pytest.fixture
async def peer(prosody: Prosody, xmpp_account: Factory) -> AsyncIterator[Factory]:
    peers: list[RawPeer] = []

    async def make() -> RawPeer:
        jid, password = xmpp_account("jibri")
        raw = RawPeer(jid, password, prosody.ca_file)
        peers.append(raw)
        return await raw.online(prosody.host, prosody.port)

    yield make
    for raw in peers:
        await raw.close()


def answer_starts(raw: RawPeer, dialect: Dialect, occupant: str) -> list[stanzas.JibriCommand]:
    """Make ``raw`` answer commands like a Jibri: pending then busy presence; stop -> off.

    In the legacy dialect it answers as jibri-spec.xml says: plain results, no status."""
    received: list[stanzas.JibriCommand] = []
    current = dialect is Dialect.CURRENT

    def handle(iq: Any) -> None:
        if iq["type"] != "set":
            return
        command = stanzas.parse_command(iq.xml)
        received.append(command)
        if command.start is not None:
            pending = StatusUpdate(RecordingStatus.PENDING) if current else None
            Iq(raw, xml=stanzas.build_result(iq.xml, pending)).send()
            raw.join(occupant, stanzas.build_jibri_status(dialect, BusyStatus.BUSY))
        else:
            off = StatusUpdate(RecordingStatus.OFF) if current else None
            Iq(raw, xml=stanzas.build_result(iq.xml, off)).send()
            raw.join(occupant, stanzas.build_jibri_status(dialect, BusyStatus.IDLE))

    raw.register_handler(Callback("jibri", MatchXPath(f"{{jabber:client}}iq/{{{JIBRI_NS}}}jibri"), handle))
    return received


@pytest.mark.parametrize("dialect", list(Dialect))
async def test_presence_idle_busy_idle_is_seen(
    controller: Factory, peer: Factory, brewery: str, dialect: Dialect
) -> None:
    recorder = Recorder()
    client = await controller(listener=recorder)
    jibri = await peer()
    occupant = f"{brewery}/jibri-1"

    for busy in (BusyStatus.IDLE, BusyStatus.BUSY, BusyStatus.IDLE):
        jibri.join(occupant, stanzas.build_jibri_status(dialect, busy, Health.HEALTHY))
        await client.wait_for(lambda c, b=busy: occupant in c.jibris and c.jibris[occupant].busy is b, 5)

    seen = [(p.busy, p.dialect) for p in recorder.changes if p.occupant == occupant]
    assert seen == [(BusyStatus.IDLE, dialect), (BusyStatus.BUSY, dialect), (BusyStatus.IDLE, dialect)]
    assert client.jibris[occupant].real_jid is not None  # the brewery is non-anonymous
    assert [p.occupant for p in client.selectable()] == [occupant]


async def test_unhealthy_and_departed_jibris_are_not_selectable(
    controller: Factory, peer: Factory, brewery: str
) -> None:
    client = await controller()
    sick, leaving = await peer(), await peer()
    sick.join(
        f"{brewery}/sick", stanzas.build_jibri_status(Dialect.CURRENT, BusyStatus.IDLE, Health.UNHEALTHY)
    )
    leaving.join(f"{brewery}/leaving", stanzas.build_jibri_status(Dialect.CURRENT, BusyStatus.IDLE))
    await client.wait_for(lambda c: len(c.jibris) == 2, 5)
    assert [p.nickname for p in client.selectable()] == ["leaving"]
    await leaving.close()
    await client.wait_for(lambda c: len(c.jibris) == 1, 5)
    assert client.selectable() == []


async def test_malformed_stanzas_are_logged_and_ignored(
    controller: Factory, peer: Factory, brewery: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="jibri_operator")
    recorder = Recorder()
    client = await controller(listener=recorder)
    bad, good = await peer(), await peer()
    bad_status = ET.Element(f"{{{JIBRI_NS}}}jibri-status", {"status": "dancing"})
    bad.join(f"{brewery}/bad", bad_status)
    good.join(f"{brewery}/good", stanzas.build_jibri_status(Dialect.CURRENT, BusyStatus.IDLE))
    await client.wait_for(lambda c: f"{brewery}/good" in c.jibris, 5)

    # A garbage report straight to the controller's occupant JID gets bad-request, not a crash.
    garbage = ET.fromstring(
        f"<iq xmlns='jabber:client' type='set' id='g1' to='{client.occupant_jid}'>"
        f"<jibri xmlns='{JIBRI_NS}' status='exploded'/></iq>"
    )
    with pytest.raises(Exception, match="bad-request"):
        await bad.send_iq(garbage)

    assert f"{brewery}/bad" not in client.jibris
    assert recorder.reports == []
    messages = [record.getMessage() for record in caplog.records]
    assert any("malformed presence" in m and "'status' must be one of idle|busy" in m for m in messages)
    assert any("malformed report" in m for m in messages)
    # Still working afterwards.
    good.join(f"{brewery}/good", stanzas.build_jibri_status(Dialect.CURRENT, BusyStatus.BUSY))
    await client.wait_for(lambda c: c.jibris[f"{brewery}/good"].busy is BusyStatus.BUSY, 5)


async def test_prosody_restart_reconnects_and_resyncs_without_ghosts(
    prosody: Prosody, controller: Factory, peer: Factory, brewery: str, xmpp_account: Factory
) -> None:
    recorder = Recorder()
    client = await controller(listener=recorder)
    stays, goes = await peer(), await peer()
    stays.join(f"{brewery}/stays", stanzas.build_jibri_status(Dialect.CURRENT, BusyStatus.IDLE))
    goes.join(f"{brewery}/goes", stanzas.build_jibri_status(Dialect.LEGACY, BusyStatus.IDLE))
    await client.wait_for(lambda c: len(c.jibris) == 2, 5)

    await asyncio.to_thread(prosody.restart)
    await client.wait_for(lambda c: not c.joined, 10)
    assert client.selectable() == []  # nothing is offered while the view is stale

    # Only one Jibri comes back; the other stays away.
    again = RawPeer(stays.boundjid.bare, stays.password, prosody.ca_file)
    await again.online(prosody.host, prosody.port)
    try:
        again.join(f"{brewery}/stays", stanzas.build_jibri_status(Dialect.CURRENT, BusyStatus.IDLE))
        await client.wait_for(lambda c: c.joined and f"{brewery}/stays" in c.jibris, 20)
        await client.wait_for(lambda c: f"{brewery}/goes" not in c.jibris, 5)
        assert [p.nickname for p in client.selectable()] == ["stays"]
        gone = [p for p in recorder.changes if p.occupant == f"{brewery}/goes" and p.unavailable]
        assert gone, "the listener must hear that the missing Jibri is gone"
        assert client.reconnects >= 1
    finally:
        await again.close()


@pytest.mark.parametrize("dialect", list(Dialect))
async def test_start_stop_and_reports(
    controller: Factory, peer: Factory, brewery: str, dialect: Dialect
) -> None:
    recorder = Recorder()
    client = await controller(listener=recorder)
    jibri = await peer()
    occupant = f"{brewery}/jibri-1"
    received = answer_starts(jibri, dialect, occupant)
    jibri.join(occupant, stanzas.build_jibri_status(dialect, BusyStatus.IDLE))
    await client.wait_for(lambda c: occupant in c.jibris, 5)

    request = StartRequest(f"room@{brewery.split('@')[1]}", RecordingMode.FILE, session_id="s-1")
    reply = await client.start_recording(occupant, request, client.jibris[occupant].dialect)
    assert stanzas.classify_start_reply(reply) is stanzas.StartOutcome.ACCEPTED
    await client.wait_for(lambda c: c.jibris[occupant].busy is BusyStatus.BUSY, 5)

    # The Jibri reports `on` to the controller's occupant JID; the client acknowledges it.
    ack = await jibri.send_iq(
        stanzas.build_report(client.occupant_jid, StatusUpdate(RecordingStatus.ON), "r1")
    )
    assert ack["type"] == "result"
    assert recorder.reports == [(occupant, StatusUpdate(RecordingStatus.ON))]

    stop = await client.stop_recording(occupant, dialect, "s-1")
    if dialect is Dialect.CURRENT:
        assert isinstance(stop, StatusUpdate) and stop.status is RecordingStatus.OFF
    else:
        assert stop == stanzas.EmptyResult()
    await client.wait_for(lambda c: c.jibris[occupant].busy is BusyStatus.IDLE, 5)
    assert [c.action.value for c in received] == ["start", "stop"]
    assert received[0].dialect is dialect


async def test_stream_key_never_reaches_the_logs(
    controller: Factory, peer: Factory, brewery: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, slixmpp's wire log included
    key = "sk-live-4f9c2d7e1a"
    client = await controller()
    jibri = await peer()
    occupant = f"{brewery}/jibri-1"
    received = answer_starts(jibri, Dialect.CURRENT, occupant)
    jibri.join(occupant, stanzas.build_jibri_status(Dialect.CURRENT, BusyStatus.IDLE))
    await client.wait_for(lambda c: occupant in c.jibris, 5)

    request = StartRequest(
        f"room@{brewery.split('@')[1]}", RecordingMode.STREAM, "s-2", stream_key=Secret(key)
    )
    await client.start_recording(occupant, request, Dialect.CURRENT)
    assert received[0].start is not None and received[0].start.stream_key == Secret(key)  # it did travel

    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "SEND:" in logged  # the wire log was on, so the test could have caught a leak
    assert key not in logged
    assert client.config.password.reveal() not in logged


@pytest.mark.parametrize("dialect", list(Dialect))
async def test_two_controllers_race_for_one_jibri(
    controller: Factory, simulated_jibri: Factory, brewery: str, dialect: Dialect
) -> None:
    """Both see it idle and send start at once: the Jibri settles it, one wins, the other hears busy."""
    jibri = await simulated_jibri(brewery, dialect=dialect)
    first, second = await controller("operator-a"), await controller("operator-b")
    occupant = jibri.config.environments[0].control_muc.occupant
    for client in (first, second):
        await client.wait_for(lambda c: occupant in c.jibris and c.jibris[occupant].selectable, 5)

    room = f"race@{brewery.split('@')[1]}"
    replies = await asyncio.gather(
        first.start_recording(occupant, StartRequest(room, RecordingMode.FILE, "a"), dialect),
        second.start_recording(occupant, StartRequest(room, RecordingMode.FILE, "b"), dialect),
    )
    outcomes = sorted(stanzas.classify_start_reply(reply).value for reply in replies)
    assert outcomes == ["accepted", "busy"]
    assert len(jibri.starts) == 1, "exactly one recording started"
    loser = (
        replies[0] if stanzas.classify_start_reply(replies[0]) is stanzas.StartOutcome.BUSY else replies[1]
    )
    if dialect is Dialect.LEGACY:
        assert isinstance(loser, stanzas.ErrorReply) and loser.code == 503
    else:
        assert isinstance(loser, StatusUpdate) and loser.busy and loser.should_retry
    for client in (first, second):  # and both see it busy now
        await client.wait_for(lambda c: c.jibris[occupant].busy is BusyStatus.BUSY, 5)
