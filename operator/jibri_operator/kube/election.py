"""Leader election's decisions, pure: a Lease record, the timing, who may take it and what to write.

client-go's leaderelection semantics (see :mod:`jibri_operator.kube.lease` for the I/O):
a candidate may take a Lease that nobody holds, that it holds itself, or whose record
has not changed for the holder's ``leaseDurationSeconds`` as measured on the
candidate's own monotonic clock from when it saw the record change (never on another
machine's ``renewTime``: clock skew cannot make two leaders). No I/O, no clock of its
own: every time is an argument.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final

JITTER: Final = 0.2  # a failed try waits retry_period * (1 + up to 20 %)


@dataclass(frozen=True)
class LeaseTiming:
    """How long a Lease lasts, how long a leader may fail to renew it, how often to try.

    The defaults hand over within ``lease_duration + 2 * retry_period`` (about 8 s) after
    the leader dies without a word, and within about ``retry_period`` after it releases.
    """

    lease_duration: float = 6.0
    renew_deadline: float = 4.0
    retry_period: float = 1.0

    def __post_init__(self) -> None:
        if self.retry_period <= 0:
            raise ValueError("the retry period must be positive")
        if self.renew_deadline <= self.retry_period * (1 + JITTER):
            raise ValueError("the renew deadline must exceed the retry period (with its jitter)")
        if self.lease_duration <= self.renew_deadline:
            raise ValueError("the lease duration must exceed the renew deadline")
        if self.lease_duration != int(self.lease_duration):
            raise ValueError("the lease duration must be whole seconds (spec.leaseDurationSeconds)")

    @property
    def lease_seconds(self) -> int:
        """``spec.leaseDurationSeconds``."""
        return int(self.lease_duration)


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec, as far as election goes."""

    holder: str = ""  # empty: nobody (released)
    duration: int = 0  # leaseDurationSeconds
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0

    @classmethod
    def from_spec(cls, spec: dict[str, Any] | None) -> LeaseRecord:
        spec = spec or {}
        return cls(
            holder=str(spec.get("holderIdentity") or ""),
            duration=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
        )

    def to_spec(self) -> dict[str, Any]:
        return {
            "holderIdentity": self.holder,
            "leaseDurationSeconds": self.duration,
            "acquireTime": self.acquire_time,
            "renewTime": self.renew_time,
            "leaseTransitions": self.transitions,
        }


def micro_time(moment: datetime) -> str:
    """A MicroTime as the API writes it: RFC 3339, microseconds, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Observation:
    """The last record seen and when (monotonic), as the candidate's own clock measured it."""

    record: LeaseRecord | None = None
    at: float = 0.0

    def see(self, record: LeaseRecord, now: float) -> None:
        """A record read or written; the clock restarts only when it differs from the last one."""
        if record != self.record:
            self.record = record
            self.at = now


def can_take(record: LeaseRecord | None, identity: str, observed_at: float, now: float) -> bool:
    """Whether ``identity`` may write itself into the Lease now.

    Yes when there is no Lease or no holder, when it holds it already, or when the
    holder's record has not changed for its own ``leaseDurationSeconds`` (on our clock).
    """
    if record is None or not record.holder or record.holder == identity:
        return True
    return observed_at + record.duration <= now


def next_record(
    record: LeaseRecord | None, identity: str, timing: LeaseTiming, wall: datetime
) -> LeaseRecord:
    """The record a successful try writes: a renewal keeps acquireTime, a takeover counts a transition."""
    stamp = micro_time(wall)
    if record is not None and record.holder == identity:
        return replace(record, duration=timing.lease_seconds, renew_time=stamp)
    transitions = record.transitions + 1 if record is not None else 0
    return LeaseRecord(identity, timing.lease_seconds, stamp, stamp, transitions)


def released(record: LeaseRecord, wall: datetime) -> LeaseRecord:
    """What a leader writes on its way out (as client-go's ReleaseOnCancel): no holder, 1 s."""
    stamp = micro_time(wall)
    return replace(record, holder="", duration=1, acquire_time=stamp, renew_time=stamp)
