"""Leader election: the pure decisions (kube.election), and the elector (kube.lease) against an
in-memory Lease with the API server's resourceVersion semantics."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from jibri_operator.kube.election import (
    LeaseRecord,
    LeaseTiming,
    Observation,
    can_take,
    micro_time,
    next_record,
    released,
)
from jibri_operator.kube.lease import Conflict, LeaseElector, StoredLease

WALL = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
FAST = LeaseTiming(lease_duration=1, renew_deadline=0.6, retry_period=0.15)


# -- the decisions -----------------------------------------------------------------------------------


def test_timing_defaults_and_their_order_is_enforced() -> None:
    default = LeaseTiming()
    assert (default.lease_duration, default.renew_deadline, default.retry_period) == (6.0, 4.0, 1.0)
    assert default.lease_seconds == 6
    with pytest.raises(ValueError, match="whole seconds"):
        LeaseTiming(1.5, 0.8, 0.2)
    with pytest.raises(ValueError, match="lease duration must exceed the renew deadline"):
        LeaseTiming(4, 4, 1)
    with pytest.raises(ValueError, match="renew deadline must exceed the retry period"):
        LeaseTiming(6, 1.1, 1)
    with pytest.raises(ValueError, match="positive"):
        LeaseTiming(6, 4, 0)


def test_a_lease_nobody_holds_or_we_hold_can_be_taken_at_once() -> None:
    assert can_take(None, "a", observed_at=0, now=0)
    assert can_take(LeaseRecord(holder="", duration=1), "a", observed_at=100, now=100)
    assert can_take(LeaseRecord(holder="a", duration=6), "a", observed_at=100, now=100)


def test_another_holder_is_waited_out_on_our_own_clock_for_its_duration() -> None:
    held = LeaseRecord(holder="b", duration=6, renew_time="1999-01-01T00:00:00.000000Z")
    # an ancient renewTime (another clock) does not count: only how long we have seen no change
    assert not can_take(held, "a", observed_at=100, now=105.9)
    assert can_take(held, "a", observed_at=100, now=106)


def test_the_observation_clock_restarts_only_when_the_record_changes() -> None:
    seen = Observation()
    first = LeaseRecord("b", 6, "t0", "t0", 0)
    seen.see(first, 10)
    seen.see(LeaseRecord("b", 6, "t0", "t0", 0), 15)
    assert seen.at == 10, "the same record again: the holder did not renew"
    seen.see(next_record(first, "b", LeaseTiming(), WALL), 16)
    assert seen.at == 16


def test_renewal_keeps_the_acquisition_and_a_takeover_counts_a_transition() -> None:
    timing = LeaseTiming()
    first = next_record(None, "a", timing, WALL)
    assert first == LeaseRecord("a", 6, micro_time(WALL), micro_time(WALL), 0)
    later = WALL + timedelta(seconds=1)
    renewed = next_record(first, "a", timing, later)
    assert renewed.acquire_time == first.acquire_time and renewed.renew_time == micro_time(later)
    assert renewed.transitions == 0
    taken = next_record(renewed, "b", timing, later)
    assert taken.holder == "b" and taken.acquire_time == micro_time(later) and taken.transitions == 1
    assert micro_time(WALL) == "2025-03-01T12:00:00.123456Z"


def test_a_released_lease_has_no_holder_and_lasts_one_second() -> None:
    record = LeaseRecord("a", 6, "t0", "t1", 3)
    out = released(record, WALL)
    assert out.holder == "" and out.duration == 1 and out.transitions == 3
    assert out.renew_time == micro_time(WALL)
    assert LeaseRecord.from_spec(out.to_spec()) == out


# -- the elector ---------------------------------------------------------------------------------------


class MemoryLease:
    """One Lease with resourceVersion semantics; ``down`` makes every call fail like a dead API."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.stored: StoredLease | None = None
        self.version = 0
        self.down = False
        self.writes: list[LeaseRecord] = []

    def _check(self) -> None:
        if self.down:
            raise ConnectionRefusedError("the API server is unreachable")

    def _store(self, record: LeaseRecord) -> StoredLease:
        self.version += 1
        self.stored = StoredLease(record, str(self.version))
        self.writes.append(record)
        return self.stored

    def get(self) -> StoredLease | None:
        self._check()
        with self.lock:
            return self.stored

    def create(self, record: LeaseRecord) -> StoredLease:
        self._check()
        with self.lock:
            if self.stored is not None:
                raise Conflict("exists")
            return self._store(record)

    def update(self, record: LeaseRecord, resource_version: str) -> StoredLease:
        self._check()
        with self.lock:
            if self.stored is None or self.stored.resource_version != resource_version:
                raise Conflict("changed")
            return self._store(record)


class Candidate:
    def __init__(self, lease: MemoryLease, identity: str, timing: LeaseTiming = FAST) -> None:
        self.lost: list[tuple[float, str]] = []
        self.elector = LeaseElector(
            lease, identity, lambda reason: self.lost.append((time.monotonic(), reason)), timing
        )
        self.stop = asyncio.Event()
        self.renewing: asyncio.Task[None] | None = None

    async def lead(self) -> bool:
        if not await self.elector.acquire(self.stop):
            return False
        self.renewing = asyncio.create_task(self.elector.renew())
        return True

    async def die(self) -> None:
        """SIGKILL: renewing stops, nothing is released."""
        self.stop.set()
        if self.renewing is not None:
            self.renewing.cancel()
            await asyncio.gather(self.renewing, return_exceptions=True)
        self.elector.close()


async def test_one_leads_the_other_waits_and_takes_over_once_the_lease_expires() -> None:
    lease = MemoryLease()
    a, b = Candidate(lease, "a"), Candidate(lease, "b")
    assert await a.lead()
    waiting = asyncio.create_task(b.lead())
    await asyncio.sleep(FAST.lease_duration * 2)
    assert not waiting.done(), "b never leads while a renews"
    assert a.elector.leading and not b.elector.leading
    assert {record.holder for record in lease.writes} == {"a"}
    killed = time.monotonic()
    await a.die()
    assert await asyncio.wait_for(waiting, FAST.lease_duration * 3)
    took = time.monotonic() - killed
    # a's last renewal came up to a retry period before the kill; b then waits out the duration
    assert (
        FAST.lease_duration - FAST.retry_period <= took <= FAST.lease_duration + 3 * FAST.retry_period + 0.5
    )
    assert lease.stored is not None and lease.stored.record.holder == "b"
    assert lease.stored.record.transitions == 1
    assert not a.lost, "a died; nobody told it anything"
    await b.die()


async def test_a_released_lease_is_taken_over_within_a_retry_period() -> None:
    lease = MemoryLease()
    a, b = Candidate(lease, "a"), Candidate(lease, "b")
    assert await a.lead()
    waiting = asyncio.create_task(b.lead())
    await asyncio.sleep(FAST.retry_period * 3)
    assert a.renewing is not None
    a.renewing.cancel()
    released_at = time.monotonic()
    await a.elector.release()
    assert await asyncio.wait_for(waiting, FAST.lease_duration)
    assert time.monotonic() - released_at < FAST.lease_duration, "no need to wait the Lease out"
    assert not a.lost and not a.elector.leading
    assert lease.stored is not None and lease.stored.record.holder == "b"
    await b.die()


async def test_a_leader_that_cannot_renew_gives_up_before_anyone_may_take_over() -> None:
    lease = MemoryLease()
    a, b = Candidate(lease, "a"), Candidate(lease, "b")
    assert await a.lead()
    waiting = asyncio.create_task(b.lead())
    await asyncio.sleep(FAST.retry_period * 2)
    assert lease.stored is not None
    last_renewal = lease.stored.record.renew_time
    cut = time.monotonic()
    lease.down = True  # a cannot renew; (b cannot read either, and the lease cannot expire for it)
    for _ in range(100):
        if a.lost:
            break
        await asyncio.sleep(0.02)
    assert a.lost, "the watchdog fired"
    lost_at, reason = a.lost[0]
    assert "not renewed within 0.6s" in reason
    # lost within the renew deadline of its last renewal: before the Lease could expire for anyone
    assert lost_at - cut < FAST.lease_duration
    assert not a.elector.leading
    lease.down = False
    assert await asyncio.wait_for(waiting, FAST.lease_duration * 3)
    assert lease.stored.record.holder == "b" and lease.stored.record.renew_time != last_renewal
    await a.die()
    await b.die()


async def test_a_leader_that_sees_another_holder_gives_up_at_once() -> None:
    lease = MemoryLease()
    a = Candidate(lease, "a")
    assert await a.lead()
    with lease.lock:
        assert lease.stored is not None
        lease._store(next_record(lease.stored.record, "intruder", FAST, WALL))
    for _ in range(50):
        if a.lost:
            break
        await asyncio.sleep(0.02)
    assert a.lost and "held by intruder" in a.lost[0][1]
    await a.die()


async def test_candidates_racing_for_a_new_lease_elect_exactly_one() -> None:
    lease = MemoryLease()
    candidates = [Candidate(lease, f"c{i}") for i in range(5)]
    tasks = [asyncio.create_task(c.lead()) for c in candidates]
    done, pending = await asyncio.wait(tasks, timeout=FAST.retry_period * 5)
    assert len(done) == 1 and len(pending) == 4
    (leader,) = [c for c in candidates if c.elector.leading]
    assert lease.stored is not None and lease.stored.record.holder == leader.elector.identity
    for c in candidates:
        await c.die()
    await asyncio.gather(*pending, return_exceptions=True)
