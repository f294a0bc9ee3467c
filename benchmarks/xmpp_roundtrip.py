"""XMPP control-path latency: one real Prosody (TLS), 100 simulated Jibris in one brewery.

The Jibris run in a child process (see _common.Fleet); the controllers (BreweryClient)
run here. Operations are measured one at a time unless said otherwise. Prints one
`name: value` line per figure:

- setup: the controllers joining, then 100 Jibris logging in and joining until the
  controller's view holds all 100;
- start_rtt: controller sends a start IQ -> receives the Jibri's `pending` result,
  200 starts spread over the 100 Jibris (each stopped, and seen idle, before the next);
  the floor ENVIRONMENT.md quotes is 3-6 ms for one Jibri alone in a brewery;
- presence_busy: that start sent -> a second controller in the same brewery sees the
  Jibri busy (the window in which two controllers can race for one Jibri);
- start_rtt_burst: 100 starts sent at once, one per Jibri (what a wave of sessions does),
  with the CPU each process spent until both controllers saw all 100 busy: every accepted
  start makes a busy presence that Prosody fans out to all 102 occupants;
- presence_health: a Jibri flips its health -> the controller's listener sees the presence.

Cross-process intervals (presence_health) use the wall clock, the rest perf_counter.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid

from _common import CpuMeter, Fleet, XmppSite, account, child_pid, report
from jibri_operator.api.secret import Secret
from jibri_operator.api.types import BusyStatus, Dialect, Health, RecordingMode
from jibri_operator.xmpp.brewery import BreweryClient, BreweryConfig, BreweryListener
from jibri_operator.xmpp.stanzas import JibriPresence, StartRequest, StatusUpdate
from jibri_sandbox.prosody import Prosody

JIBRIS = 100
STARTS = 200
FLIPS = 200
SETTLE = 0.02  # seconds between sequential operations


class Stamps(BreweryListener):
    """Wall-clock timestamps of the presences a client applies, for whoever waits for one."""

    def __init__(self) -> None:
        self.waiters: dict[tuple[str, object], asyncio.Future[float]] = {}

    def expect(self, occupant: str, state: BusyStatus | Health) -> asyncio.Future[float]:
        future = asyncio.get_running_loop().create_future()
        self.waiters[(occupant, state)] = future
        return future

    def jibri_changed(self, presence: JibriPresence) -> None:
        now = time.time()
        for state in (presence.busy, presence.health):
            future = self.waiters.pop((presence.occupant, state), None)
            if future is not None and not future.done():
                future.set_result(now)


def controller(prosody: Prosody, brewery: str, nick: str, listener: BreweryListener) -> BreweryClient:
    jid, password = account(prosody, nick)
    config = BreweryConfig(
        nick, jid, Secret(password), brewery, nick, prosody.host, prosody.port, str(prosody.ca_file)
    )
    return BreweryClient(config, listener)


async def start_once(client: BreweryClient, occupant: str, index: int) -> float:
    """One start on an idle Jibri; returns its round trip in seconds."""
    request = StartRequest(f"room-{index}@conference.localhost", RecordingMode.FILE, f"s{index}")
    began = time.perf_counter()
    reply = await client.start_recording(occupant, request, Dialect.CURRENT)
    elapsed = time.perf_counter() - began
    assert isinstance(reply, StatusUpdate) and reply.failure_reason is None, reply
    return elapsed


async def stop_and_idle(client: BreweryClient, occupant: str, index: int) -> None:
    await client.stop_recording(occupant, Dialect.CURRENT, f"s{index}")
    await client.wait_for(lambda c: c.jibris[occupant].busy is BusyStatus.IDLE, 5)


async def measure(prosody: Prosody, fleet: Fleet, brewery: str) -> None:
    stamps, watcher = Stamps(), Stamps()
    client = controller(prosody, brewery, "focus", stamps)
    other = controller(prosody, brewery, "other", watcher)
    occupants = [f"{brewery}/jibri-{i:03d}" for i in range(JIBRIS)]
    try:
        began = time.perf_counter()
        await client.start()
        await other.start()
        await client.wait_joined(10)
        await other.wait_joined(10)
        joined = time.perf_counter()
        print(f"setup_controllers_join_s: {joined - began:.3f}")
        print(f"setup_jibris: {JIBRIS}")
        print(f"setup_jibris_join_s: {await asyncio.to_thread(fleet.start):.3f}")
        await client.wait_for(lambda c: len(c.jibris) == JIBRIS, 30)
        await other.wait_for(lambda c: len(c.jibris) == JIBRIS, 30)
        print(f"setup_until_controller_sees_all_s: {time.perf_counter() - joined:.3f}")

        # (a) start round trips, one at a time; the other controller times the busy presence.
        rtts, busy_seen = [], []
        for index in range(STARTS):
            occupant = occupants[index % JIBRIS]
            seen = watcher.expect(occupant, BusyStatus.BUSY)
            began_wall = time.time()
            rtts.append(await start_once(client, occupant, index))
            busy_seen.append(await asyncio.wait_for(seen, 5) - began_wall)
            await stop_and_idle(client, occupant, index)
            # Let the 100 Jibris (one process here, 100 machines in real life) finish parsing the
            # idle presence that every one of them received, so the next start meets a quiet fleet.
            await asyncio.sleep(SETTLE)
        report("start_rtt", rtts)
        report("presence_busy", busy_seen)

        # (a') a burst: one start per Jibri, all sent at once. Each accepted start makes a busy
        # presence that Prosody sends to all 102 occupants: the CPU figures show who pays.
        cpu = CpuMeter({"prosody": child_pid("prosody"), "jibris": fleet.pid, "controllers": os.getpid()})
        cpu.start()
        burst = await asyncio.gather(*(start_once(client, o, STARTS + i) for i, o in enumerate(occupants)))
        await client.wait_for(lambda c: all(j.busy is BusyStatus.BUSY for j in c.jibris.values()), 10)
        await other.wait_for(lambda c: all(j.busy is BusyStatus.BUSY for j in c.jibris.values()), 10)
        cpu.stop()
        print(f"start_burst_total_ms: {max(burst) * 1000:.2f}")
        report("start_rtt_burst", list(burst))
        cpu.print("start_burst_until_all_busy_seen", JIBRIS)
        await asyncio.gather(*(stop_and_idle(client, o, STARTS + i) for i, o in enumerate(occupants)))

        # (b) presence propagation: health flips, one at a time.
        flips = []
        for index in range(FLIPS):
            occupant = occupants[index % JIBRIS]
            healthy = client.jibris[occupant].health is Health.HEALTHY
            seen = stamps.expect(occupant, Health.UNHEALTHY if healthy else Health.HEALTHY)
            sent = await asyncio.to_thread(fleet.call, "flip", index % JIBRIS)
            flips.append(await asyncio.wait_for(seen, 5) - sent)
            await asyncio.sleep(SETTLE)
        report("presence_health", flips)
    finally:
        await client.stop()
        await other.stop()


def main() -> None:
    began = time.perf_counter()
    prosody = Prosody()
    prosody.start()
    fleet = None
    try:
        brewery = f"brewery-{uuid.uuid4().hex[:8]}@{prosody.muc_domain}"
        accounts = [account(prosody, "jibri") for _ in range(JIBRIS)]
        fleet = Fleet(XmppSite.of(prosody, brewery), accounts)
        asyncio.run(measure(prosody, fleet, brewery))
    finally:
        if fleet is not None:
            fleet.stop()
        prosody.close()
    print(f"total_runtime_s: {time.perf_counter() - began:.1f}")


if __name__ == "__main__":
    main()
