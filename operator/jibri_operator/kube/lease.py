"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's leaderelection semantics.

Every replica is a candidate with a unique identity (``POD_NAME_<random>``). Every
``retry_period`` a candidate reads the Lease and takes it when nobody holds it
(``holderIdentity`` empty: released), when it already holds it, or when the holder
has not renewed for the holder's ``leaseDurationSeconds``. Like client-go, that
last test runs on the candidate's own monotonic clock, from the moment it *saw*
the record change, never on the ``renewTime`` written by another machine's clock:
clock skew cannot make two leaders. Writes are updates guarded by the
``resourceVersion`` read, so two candidates racing for one expired Lease cannot
both win.

The leader renews every ``retry_period``. If it has not renewed for
``renew_deadline`` (shorter than ``lease_duration``, so it stops before anyone
may take over), or it sees another holder, ``on_lost`` is called: the process
must stop acting at once (the operator exits). A watchdog thread, not the event
loop, keeps that deadline, so a stalled loop cannot outlive its lease. On a clean
shutdown the leader :meth:`~LeaseElector.release`\\ s the Lease (empty holder,
``leaseDurationSeconds: 1``): a standby takes over on its next try.

The decisions are pure functions of records and times in
:mod:`jibri_operator.kube.election`; the I/O here is the small :class:`LeaseApi`
face, with :class:`KubernetesLeaseApi` for the real thing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from functools import partial
from pathlib import Path
from typing import Any, Final, Protocol

import kubernetes
from kubernetes.client.exceptions import ApiException

from jibri_operator.kube.election import (
    JITTER,
    LeaseRecord,
    LeaseTiming,
    Observation,
    can_take,
    next_record,
    released,
)

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_identity() -> str:
    """Unique per process: the pod's name (or host name) and a random suffix."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def default_namespace(fallback: Callable[[], str]) -> str:
    """$POD_NAMESPACE, else the service account's namespace in a pod, else ``fallback()``."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        text = SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    except OSError:
        text = ""
    return text or fallback()


# -- the API -----------------------------------------------------------------------------------------


class Conflict(Exception):
    """The Lease changed (or appeared) since it was read: someone else wrote first."""


@dataclass(frozen=True)
class StoredLease:
    record: LeaseRecord
    resource_version: str


class LeaseApi(Protocol):
    """The three calls election needs; synchronous, run in the elector's own threads."""

    def get(self) -> StoredLease | None: ...
    def create(self, record: LeaseRecord) -> StoredLease: ...
    def update(self, record: LeaseRecord, resource_version: str) -> StoredLease: ...


class KubernetesLeaseApi:
    """:class:`LeaseApi` over the official client (raw JSON: MicroTimes stay as the API wrote them)."""

    def __init__(self, api_client: kubernetes.client.ApiClient, namespace: str, name: str, timeout: float):
        self.api = kubernetes.client.CoordinationV1Api(api_client)
        self.namespace = namespace
        self.name = name
        self.timeout = timeout

    def _stored(self, response: Any) -> StoredLease:
        body = json.loads(response.data)
        return StoredLease(LeaseRecord.from_spec(body.get("spec")), str(body["metadata"]["resourceVersion"]))

    def _body(self, record: LeaseRecord, resource_version: str | None) -> Any:  # the client takes a dict too
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": record.to_spec(),
        }

    def get(self) -> StoredLease | None:
        try:
            response = self.api.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False, _request_timeout=self.timeout
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return self._stored(response)

    def create(self, record: LeaseRecord) -> StoredLease:
        try:
            response = self.api.create_namespaced_lease(
                self.namespace,
                self._body(record, None),
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        except ApiException as error:
            if error.status == 409:
                raise Conflict(f"Lease {self.namespace}/{self.name} was created by another") from None
            raise
        return self._stored(response)

    def update(self, record: LeaseRecord, resource_version: str) -> StoredLease:
        try:
            response = self.api.replace_namespaced_lease(
                self.name,
                self.namespace,
                self._body(record, resource_version),
                _preload_content=False,
                _request_timeout=self.timeout,
            )
        except ApiException as error:
            if error.status == 409:
                raise Conflict(f"Lease {self.namespace}/{self.name} changed since it was read") from None
            raise
        return self._stored(response)


# -- the elector -------------------------------------------------------------------------------------


class Attempt(Enum):
    TAKEN = "taken"  # acquired or renewed
    HELD = "held"  # another holder's Lease is still valid
    FAILED = "failed"  # the API refused or did not answer, or another candidate wrote first


class LeaseElector:
    """One candidate; see the module docstring.

    ``await acquire(stop)`` waits until this candidate leads (True) or ``stop`` is set
    (False); ``renew()`` then runs until cancelled, and ``release()`` hands the Lease
    back. ``on_lost(reason)`` is called (from any thread) the moment leadership is lost.
    """

    def __init__(
        self,
        api: LeaseApi,
        identity: str,
        on_lost: Callable[[str], None],
        timing: LeaseTiming | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        description: str = "the Lease",
    ) -> None:
        self.api = api
        self.identity = identity
        self.on_lost = on_lost
        self.timing = timing or LeaseTiming()
        self.clock = clock
        self.wall = wall
        self.description = description
        self.observed = Observation()
        self.stored: StoredLease | None = None
        self.leading = False
        self.acquired_at: float | None = None  # monotonic, when this candidate took the Lease
        self._deadline = 0.0  # monotonic: lose leadership unless renewed before
        self._executor = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="lease")
        self._watchdog: threading.Thread | None = None
        self._done = threading.Event()  # released, or lost: the watchdog stands down
        self._lost = False

    async def _call(self, function: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(function, *args))

    async def try_acquire_or_renew(self) -> Attempt:
        """One try: read, decide, write (guarded by the resourceVersion read)."""
        try:
            current = await self._call(self.api.get)
            if current is None:
                stored = await self._call(
                    self.api.create, next_record(None, self.identity, self.timing, self.wall())
                )
            else:
                self.observed.see(current.record, self.clock())
                if not can_take(current.record, self.identity, self.observed.at, self.clock()):
                    self.stored = current
                    return Attempt.HELD
                record = next_record(current.record, self.identity, self.timing, self.wall())
                stored = await self._call(self.api.update, record, current.resource_version)
        except Conflict as conflict:
            log.debug("%s: %s", self.description, conflict)
            return Attempt.FAILED
        except Exception as error:  # the API unreachable, refused, timed out: try again later
            log.warning("%s: could not read or write it: %s", self.description, _short(error))
            return Attempt.FAILED
        self.stored = stored
        self.observed.see(stored.record, self.clock())
        return Attempt.TAKEN

    def _pause(self) -> float:
        return self.timing.retry_period * (1 + JITTER * random.random())

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Try every retry period until this candidate leads (True) or ``stop`` is set (False)."""
        reported: str | None = None
        while not stop.is_set():
            began = self.clock()
            attempt = await self.try_acquire_or_renew()
            if attempt is Attempt.TAKEN:
                self._lead(began)
                return True
            holder = self.stored.record.holder if self.stored is not None else ""
            if attempt is Attempt.HELD and holder != reported:
                log.info("standby: %s is held by %s", self.description, holder)
                reported = holder
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._pause())
        return False

    def _lead(self, began: float) -> None:
        self.leading = True
        self.acquired_at = self.clock()
        # The write may have taken a while: the deadline counts from before it was sent.
        self._deadline = began + self.timing.renew_deadline
        record = self.stored.record if self.stored is not None else None
        log.info(
            "leading: %s is ours (%s, transitions %s)",
            self.description,
            self.identity,
            record.transitions if record else 0,
        )
        self._watchdog = threading.Thread(target=self._watch, name="lease-watchdog", daemon=True)
        self._watchdog.start()

    def _watch(self) -> None:
        """Keep the renew deadline whatever the event loop does."""
        while not self._done.wait(max(0.0, self._deadline - self.clock())):
            if self.clock() >= self._deadline:
                self._lose(f"not renewed within {self.timing.renew_deadline:g}s")
                return

    def _lose(self, reason: str) -> None:
        if self._lost or self._done.is_set():
            return
        self._lost = True
        self.leading = False
        self._done.set()
        self.on_lost(reason)

    async def renew(self) -> None:
        """Renew every retry period until cancelled (or until leadership is lost)."""
        while self.leading:
            began = self.clock()
            attempt = await self.try_acquire_or_renew()
            if attempt is Attempt.TAKEN:
                self._deadline = began + self.timing.renew_deadline
            elif attempt is Attempt.HELD:
                holder = self.stored.record.holder if self.stored is not None else "?"
                self._lose(f"{self.description} is held by {holder}")
                return
            await asyncio.sleep(max(0.0, began + self.timing.retry_period - self.clock()))

    async def release(self) -> None:
        """Hand the Lease back (if still ours) so that a standby takes over at once."""
        if not self.leading:
            self._done.set()
            return
        self.leading = False
        self._done.set()
        try:
            current = await asyncio.wait_for(self._call(self.api.get), self.timing.renew_deadline)
            if current is not None and current.record.holder == self.identity:
                await asyncio.wait_for(
                    self._call(
                        self.api.update, released(current.record, self.wall()), current.resource_version
                    ),
                    self.timing.renew_deadline,
                )
                log.info("released %s", self.description)
        except Exception as error:  # it expires by itself within leaseDuration
            log.warning(
                "%s: could not release it (%s); it expires by itself", self.description, _short(error)
            )

    def close(self) -> None:
        self._done.set()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _short(error: BaseException) -> str:
    if isinstance(error, ApiException):
        return f"HTTP {error.status} {error.reason}"
    return f"{type(error).__name__}: {error}"
