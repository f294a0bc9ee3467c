"""The simulated Jibri against a real Prosody, driven by a raw test controller in the brewery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from xmpp_helpers import TestClient

from jibri_operator.api.secret import Secret
from jibri_operator.api.types import (
    BusyStatus,
    Dialect,
    FailureReason,
    Health,
    RecordingMode,
    RecordingStatus,
)
from jibri_operator.xmpp import stanzas
from jibri_sandbox.jibri import (
    Faults,
    SandboxSettings,
    SimulatedJibri,
    parse_jibri_conf,
    render_sandbox_jibri_conf,
    sandbox_environment,
)
from jibri_sandbox.prosody import Prosody

pytestmark = pytest.mark.e2e

MEETING = "meeting@conference.localhost"
Controller = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def controller(prosody: Prosody, xmpp_account) -> AsyncIterator[Controller]:
    """Factory: a controller-like client joined to a brewery (it acknowledges every report)."""
    clients: list[TestClient] = []

    async def create(brewery: str, domain: str | None = None) -> TestClient:
        jid, password = xmpp_account("focus", domain)
        client = TestClient(jid, password, prosody.ca_file)
        await client.login(prosody.host, prosody.port)
        await client.join(brewery, f"focus-{uuid.uuid4().hex[:6]}")
        clients.append(client)
        return client

    yield create
    for client in clients:
        await client.close()


def start_iq(jibri: SimulatedJibri, dialect: Dialect, mode: RecordingMode = RecordingMode.FILE, **fields):
    request = stanzas.StartRequest(
        MEETING,
        mode,
        session_id=None if dialect is Dialect.LEGACY else uuid.uuid4().hex[:8],
        stream_key=Secret("live-key-123") if mode is RecordingMode.STREAM else None,
        **fields,
    )
    return stanzas.build_start(jibri.occupants[0], request, dialect, uuid.uuid4().hex)


async def presence_of(
    focus: TestClient, occupant: str, timeout: float = 5, **expected
) -> stanzas.JibriPresence:
    """Wait for the occupant's latest presence to have the expected fields."""

    def matches() -> stanzas.JibriPresence | None:
        last = focus.last_presence(occupant)
        if last is not None and all(getattr(last, k) == v for k, v in expected.items()):
            return last
        return None

    return await focus.wait_for(matches, timeout)


@pytest.mark.parametrize("dialect", [Dialect.CURRENT, Dialect.LEGACY])
async def test_joins_and_announces_idle_and_health(brewery, controller, simulated_jibri, dialect) -> None:
    focus = await controller(brewery)
    jibri = await simulated_jibri(brewery, nickname="jibri-0", dialect=dialect)
    seen = await presence_of(focus, f"{brewery}/jibri-0", busy=BusyStatus.IDLE)
    assert seen.dialect is dialect
    assert seen.health is (Health.HEALTHY if dialect is Dialect.CURRENT else Health.UNKNOWN)
    assert seen.real_jid is not None and seen.real_jid.startswith("jibri-")
    assert seen.selectable
    assert jibri.joined and not jibri.busy


@pytest.mark.parametrize("dialect", [Dialect.CURRENT, Dialect.LEGACY], ids=["current", "legacy-with-reports"])
async def test_start_pending_on_then_stop_off(brewery, controller, simulated_jibri, dialect) -> None:
    focus = await controller(brewery)
    jibri = await simulated_jibri(brewery, dialect=dialect, legacy_reports=True)
    occupant = jibri.occupants[0]

    reply = stanzas.parse_reply(await focus.iq(start_iq(jibri, dialect, RecordingMode.STREAM)))
    assert stanzas.classify_start_reply(reply) is stanzas.StartOutcome.ACCEPTED
    assert isinstance(reply, stanzas.StatusUpdate) and reply.status is RecordingStatus.PENDING
    await presence_of(focus, occupant, busy=BusyStatus.BUSY)
    on = await focus.wait_for(lambda: focus.reports and focus.reports[-1])
    assert on.status is RecordingStatus.ON
    await jibri.wait_until(lambda j: j.reports and j.reports[-1].acknowledged)

    [start] = jibri.starts
    assert start.stream_key == Secret("live-key-123") and start.mode is RecordingMode.STREAM
    assert start.room == MEETING
    assert start.sender.startswith(f"{brewery}/focus-")

    stop = stanzas.build_stop(occupant, dialect, uuid.uuid4().hex, session_id=reply.session_id)
    off = stanzas.parse_reply(await focus.iq(stop))
    assert isinstance(off, stanzas.StatusUpdate) and off.status is RecordingStatus.OFF
    await presence_of(focus, occupant, busy=BusyStatus.IDLE)
    assert not jibri.busy


async def test_legacy_follows_the_2016_spec_to_the_letter(brewery, controller, simulated_jibri) -> None:
    """jibri-spec.xml: a plain result, then the busy presence; no pending, no on, no off, ever."""
    focus = await controller(brewery)
    jibri = await simulated_jibri(brewery, dialect=Dialect.LEGACY)
    occupant = jibri.occupants[0]

    reply = stanzas.parse_reply(await focus.iq(start_iq(jibri, Dialect.LEGACY, RecordingMode.STREAM)))
    assert reply == stanzas.EmptyResult()
    await presence_of(focus, occupant, busy=BusyStatus.BUSY)
    await jibri.wait_until(lambda j: j.recording)
    (start,) = jibri.starts
    assert start.stream_key == Secret("live-key-123") and start.room == MEETING

    stop = stanzas.parse_reply(await focus.iq(stanzas.build_stop(occupant, Dialect.LEGACY, uuid.uuid4().hex)))
    assert stop == stanzas.EmptyResult()
    await presence_of(focus, occupant, busy=BusyStatus.IDLE)
    assert focus.reports == [] and jibri.reports == []


async def test_legacy_recording_ends_with_an_idle_presence_only(brewery, controller, simulated_jibri) -> None:
    focus = await controller(brewery)
    jibri = await simulated_jibri(brewery, dialect=Dialect.LEGACY, recording_duration=0.2)
    occupant = jibri.occupants[0]
    await focus.iq(start_iq(jibri, Dialect.LEGACY))
    await presence_of(focus, occupant, busy=BusyStatus.BUSY)
    await presence_of(focus, occupant, busy=BusyStatus.IDLE)
    assert focus.reports == [] and jibri.reports == [] and not jibri.busy


async def test_legacy_refuses_an_unoffered_mode_with_503(brewery, controller, simulated_jibri) -> None:
    focus = await controller(brewery)
    jibri = await simulated_jibri(brewery, dialect=Dialect.LEGACY, recording_modes=(RecordingMode.FILE,))
    reply = stanzas.parse_reply(await focus.iq(start_iq(jibri, Dialect.LEGACY, RecordingMode.STREAM)))
    assert isinstance(reply, stanzas.ErrorReply) and reply.code == 503
    assert not jibri.busy and not jibri.starts


async def test_busy_presence_delay_keeps_the_brewery_seeing_idle(
    brewery, controller, simulated_jibri
) -> None:
    """The fault that makes a controller race lose: the Jibri is taken, its busy presence still in flight."""
    focus, other = await controller(brewery), await controller(brewery)
    jibri = await simulated_jibri(brewery, dialect=Dialect.LEGACY, faults=Faults(busy_presence_delay=30))
    occupant = jibri.occupants[0]
    await presence_of(other, occupant, busy=BusyStatus.IDLE)
    await focus.iq(start_iq(jibri, Dialect.LEGACY))
    reply = stanzas.parse_reply(await other.iq(start_iq(jibri, Dialect.LEGACY)))
    assert reply.busy
    assert other.last_presence(occupant).busy is BusyStatus.IDLE


async def test_busy_refusal_current_dialect(brewery, controller, simulated_jibri) -> None:
    first, second = await controller(brewery), await controller(brewery)
    jibri = await simulated_jibri(brewery, dialect=Dialect.CURRENT)
    await first.iq(start_iq(jibri, Dialect.CURRENT))
    reply = stanzas.parse_reply(await second.iq(start_iq(jibri, Dialect.CURRENT)))
    assert reply == stanzas.StatusUpdate(RecordingStatus.OFF, FailureReason.BUSY, True, reply.session_id)
    assert stanzas.classify_start_reply(reply) is stanzas.StartOutcome.BUSY
    assert len(jibri.starts) == 1 and jibri.refusals == 1


async def test_busy_refusal_legacy_dialect_is_503(brewery, controller, simulated_jibri) -> None:
    first, second = await controller(brewery), await controller(brewery)
    jibri = await simulated_jibri(brewery, dialect=Dialect.LEGACY)
    await first.iq(start_iq(jibri, Dialect.LEGACY))
    reply = stanzas.parse_reply(await second.iq(start_iq(jibri, Dialect.LEGACY)))
    assert isinstance(reply, stanzas.ErrorReply)
    assert reply.condition is stanzas.ErrorCondition.SERVICE_UNAVAILABLE and reply.code == 503
    assert stanzas.classify_start_reply(reply) is stanzas.StartOutcome.BUSY
    assert len(jibri.starts) == 1


async def test_bad_request_and_unoffered_mode(brewery, controller, simulated_jibri) -> None:
    focus = await controller(brewery)
    jibri = await simulated_jibri(brewery, recording_modes=(RecordingMode.FILE,))
    bad = start_iq(jibri, Dialect.CURRENT)
    bad.find(f"{{{stanzas.JIBRI_NS}}}jibri").set("action", "explode")
    reply = stanzas.parse_reply(await focus.iq(bad))
    assert isinstance(reply, stanzas.ErrorReply) and reply.condition is stanzas.ErrorCondition.BAD_REQUEST

    reply = stanzas.parse_reply(await focus.iq(start_iq(jibri, Dialect.CURRENT, RecordingMode.STREAM)))
    assert reply == stanzas.StatusUpdate(RecordingStatus.OFF, FailureReason.ERROR, False, reply.session_id)
    assert not jibri.busy and not jibri.starts


@pytest.mark.parametrize("retry", [True, False])
async def test_fault_start_fails(brewery, controller, simulated_jibri, retry) -> None:
    focus = await controller(brewery)
    jibri = await simulated_jibri(brewery, faults=Faults(start_fails=True, start_fails_should_retry=retry))
    reply = stanzas.parse_reply(await focus.iq(start_iq(jibri, Dialect.CURRENT)))
    assert isinstance(reply, stanzas.StatusUpdate) and reply.status is RecordingStatus.PENDING
    failed = await focus.wait_for(lambda: focus.reports and focus.reports[-1])
    assert (failed.status, failed.failure_reason, failed.should_retry) == (
        RecordingStatus.OFF,
        FailureReason.ERROR,
        retry,
    )
    await presence_of(focus, jibri.occupants[0], busy=BusyStatus.IDLE)


async def test_fault_never_leaves_pending(brewery, controller, simulated_jibri) -> None:
    focus = await controller(brewery)
    jibri = await simulated_jibri(brewery)
    jibri.faults.never_on = True  # switched at runtime
    await focus.iq(start_iq(jibri, Dialect.CURRENT))
    await jibri.wait_until(lambda j: j.stalled)
    assert focus.reports == [] and jibri.reports == []
    off = stanzas.parse_reply(await focus.iq(stanzas.build_stop(jibri.occupants[0], Dialect.CURRENT, "s1")))
    assert isinstance(off, stanzas.StatusUpdate) and off.status is RecordingStatus.OFF
    await jibri.wait_until(lambda j: not j.busy)


async def test_fault_disconnects_after_on(brewery, controller, simulated_jibri) -> None:
    focus = await controller(brewery)
    jibri = await simulated_jibri(brewery, faults=Faults(disconnect_after_on=True))
    await focus.iq(start_iq(jibri, Dialect.CURRENT))
    await focus.wait_for(lambda: any(r.status is RecordingStatus.ON for r in focus.reports))
    gone = await presence_of(focus, jibri.occupants[0], unavailable=True)
    assert gone.unavailable and jibri.disconnected


async def test_fault_unhealthy_at_runtime(brewery, controller, simulated_jibri) -> None:
    focus = await controller(brewery)
    jibri = await simulated_jibri(brewery, healthy=False)
    occupant = jibri.occupants[0]
    seen = await presence_of(focus, occupant, health=Health.UNHEALTHY)
    assert not seen.selectable
    jibri.set_healthy(True)
    await presence_of(focus, occupant, health=Health.HEALTHY, busy=BusyStatus.IDLE)


async def test_single_use_never_returns_to_idle(brewery, controller, simulated_jibri) -> None:
    focus = await controller(brewery)
    jibri = await simulated_jibri(brewery, single_use=True, recording_duration=0.05)
    await focus.iq(start_iq(jibri, Dialect.CURRENT))
    await focus.wait_for(lambda: [r for r in focus.reports if r.status is RecordingStatus.OFF])
    await jibri.wait_until(lambda j: not j.recording)
    assert jibri.busy
    assert focus.last_presence(jibri.occupants[0]).busy is BusyStatus.BUSY
    again = stanzas.parse_reply(await focus.iq(start_iq(jibri, Dialect.CURRENT)))
    assert again.busy and len(jibri.starts) == 1


async def test_recording_ends_by_itself_and_survives_unacknowledged_reports(
    prosody: Prosody, brewery, controller, simulated_jibri
) -> None:
    focus = await controller(brewery)
    jibri = await simulated_jibri(brewery, recording_duration=0.1, report_timeout=0.3)
    await focus.iq(start_iq(jibri, Dialect.CURRENT))
    await focus.wait_for(lambda: any(r.status is RecordingStatus.ON for r in focus.reports))
    await focus.close()  # the controller is gone: the off report cannot be acknowledged
    await jibri.wait_until(lambda j: len(j.reports) == 2 and not j.busy)
    assert [r.update.status for r in jibri.reports] == [RecordingStatus.ON, RecordingStatus.OFF]
    assert not jibri.reports[-1].acknowledged
    other = await controller(brewery)
    await presence_of(other, jibri.occupants[0], busy=BusyStatus.IDLE)


async def test_two_environments_busy_in_both(prosody: Prosody, controller, simulated_jibri) -> None:
    second = prosody.domains[1]
    brewery_a = f"brewery-{uuid.uuid4().hex[:8]}@{prosody.muc_domain}"
    brewery_b = f"brewery-{uuid.uuid4().hex[:8]}@{second.muc_domain}"
    focus_a = await controller(brewery_a)
    focus_b = await controller(brewery_b, second.domain)
    jibri = await simulated_jibri(brewery_a, brewery_b, nickname="multi")
    await presence_of(focus_a, f"{brewery_a}/multi", busy=BusyStatus.IDLE)
    await presence_of(focus_b, f"{brewery_b}/multi", busy=BusyStatus.IDLE)

    await focus_a.iq(start_iq(jibri, Dialect.CURRENT))
    await presence_of(focus_a, f"{brewery_a}/multi", busy=BusyStatus.BUSY)
    await presence_of(focus_b, f"{brewery_b}/multi", busy=BusyStatus.BUSY)
    request = stanzas.StartRequest(MEETING, RecordingMode.FILE, session_id="b1")
    refused = stanzas.parse_reply(
        await focus_b.iq(stanzas.build_start(f"{brewery_b}/multi", request, Dialect.CURRENT, "b-start"))
    )
    assert refused.busy and len(jibri.starts) == 1 and jibri.starts[0].environment == "env0"


async def test_cli_reads_jibri_conf_and_leaves_on_sigterm(
    prosody: Prosody, brewery, controller, xmpp_account, tmp_path: Path
) -> None:
    focus = await controller(brewery)
    jid, password = xmpp_account("jibri")
    env = sandbox_environment(
        server=(prosody.host, prosody.port), brewery=brewery, nickname="cli-jibri", jid=jid, password=password
    )
    conf = tmp_path / "jibri.conf"
    conf.write_text(
        render_sandbox_jibri_conf(
            [env], SandboxSettings(dialect=Dialect.LEGACY, ca_file=str(prosody.ca_file))
        )
    )
    process = subprocess.Popen([sys.executable, "-m", "jibri_sandbox.cli", "jibri", "--config", str(conf)])
    try:
        occupant = f"{brewery}/cli-jibri"
        seen = await presence_of(focus, occupant, timeout=20, busy=BusyStatus.IDLE)
        assert seen.dialect is Dialect.LEGACY
        os.kill(process.pid, signal.SIGTERM)
        await presence_of(focus, occupant, unavailable=True)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def test_rejoins_after_the_server_restarts(xmpp_account) -> None:
    # A Prosody of its own: restarting the shared one would cut every other test's clients.
    with Prosody() as server:
        jid, password = server.register("jibri", "pw"), "pw"
        env = sandbox_environment(
            server=(server.host, server.port),
            brewery=f"b@{server.muc_domain}",
            nickname="j",
            jid=jid,
            password=password,
        )
        config = parse_jibri_conf(
            render_sandbox_jibri_conf([env], SandboxSettings(ca_file=str(server.ca_file)))
        )
        async with SimulatedJibri(config) as jibri:
            server.restart()
            await jibri.wait_until(lambda j: j.reconnects == 1 and j.joined, timeout=10)
            assert jibri.disconnected
