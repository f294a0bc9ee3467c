"""The disruption controller: PodDisruptionBudget status, kept current as pods change.

What kube-controller-manager's `pkg/controller/disruption` does, run asynchronously after the
writes that trigger it (like gc.py), so clients see the same sequence as on a cluster:

- the pods of a budget are the pods of its namespace its selector selects (a null selector
  selects none, an empty one all), whatever their phase;
- `expectedPods`: with an integer `minAvailable`, the number of those pods; otherwise the sum
  of the scales of their controllers, read through each controller's scale subresource (the
  emulation serves no Deployments or StatefulSets, so a custom resource with a scale
  subresource is the controller there is). Pods with no controller are "unmanaged" and do not
  count; a controller that cannot be found, or has no scale subresource, fails the sync;
- `desiredHealthy`: `minAvailable` (a percent of expectedPods, rounded up), or expectedPods
  minus `maxUnavailable` (a percent rounded up too), never below 0;
- `currentHealthy`: the pods whose Ready condition is True, that are not being deleted and not
  recorded in `disruptedPods` (an eviction's note that the pod is about to go) in the last 2
  minutes;
- `disruptionsAllowed`: currentHealthy - desiredHealthy, 0 when negative or when no pod is
  expected; `observedGeneration` and the `DisruptionAllowed` condition (SufficientPods /
  InsufficientPods) follow;
- a failed sync writes the fail-safe status: `disruptionsAllowed: 0` and the condition False
  with reason `SyncFailed`, and is retried with a growing delay.

Unlike the real controller, which on a pod's change refreshes only one of the budgets that select
it (chosen arbitrarily) and only the new labels' one, the emulation refreshes every budget that
selects the pod before or after the change. It records no Events (NoPods, UnmanagedPods).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from . import errors, policy
from .meta import parse_time
from .rest import Api
from .selectors import selector_matches
from .store import Event, Obj, Storage

log = logging.getLogger(__name__)
PDBS: Storage = ("policy", "poddisruptionbudgets")
PODS: Storage = ("", "pods")
DELETION_TIMEOUT = timedelta(minutes=2)
RETRY_FIRST, RETRY_MAX = 0.1, 10.0


class SyncError(Exception):
    """The expected pod count cannot be computed (the controller's failSafe path)."""


def _labels(obj: Obj | None) -> dict[str, str]:
    return dict((obj or {}).get("metadata", {}).get("labels") or {})


def _controller_of(pod: Obj) -> dict[str, Any] | None:
    for ref in pod["metadata"].get("ownerReferences") or ():
        if ref.get("controller"):
            return dict(ref)
    return None


class DisruptionController:
    def __init__(self, api: Api):
        self.api = api
        self.store = api.store
        self._pending: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._retry: dict[tuple[str, str], float] = {}
        self._timers: dict[tuple[str, str], asyncio.TimerHandle] = {}
        self.store.listeners.append(self._observe)

    # --- what to sync ------------------------------------------------------------------------------

    def _queue(self, key: tuple[str, str]) -> None:
        self._pending.add(key)
        self._wake.set()

    def _queue_later(self, key: tuple[str, str], delay: float) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._timers[key] = asyncio.get_running_loop().call_later(delay, self._queue, key)

    def _observe(self, event: Event) -> None:
        """Called synchronously on every write: note which budgets to look at again."""
        if event.storage == PDBS:
            if event.type != "DELETED":
                m = event.obj["metadata"]
                self._queue((m.get("namespace") or "", m["name"]))
            return
        if event.storage != PODS:
            return
        namespace = event.obj["metadata"].get("namespace") or ""
        before, after = _labels(event.old), _labels(event.obj)
        for pdb in self.store.items(PDBS, namespace):
            selector = (pdb.get("spec") or {}).get("selector")
            if selector_matches(selector, after) or (
                event.old is not None and selector_matches(selector, before)
            ):
                self._queue((namespace, pdb["metadata"]["name"]))

    def resync_all(self) -> None:
        """Look at every budget again (at start, e.g. after a restart)."""
        for pdb in self.store.items(PDBS):
            self._queue((pdb["metadata"].get("namespace") or "", pdb["metadata"]["name"]))

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                key = self._pending.pop()
                try:
                    self.sync(*key)
                except Exception:
                    log.exception("disruption controller failed on %s/%s", *key)
                await asyncio.sleep(0)

    # --- one budget ----------------------------------------------------------------------------------

    def sync(self, namespace: str, name: str) -> None:
        pdb = self.store.get(PDBS, namespace, name)
        if pdb is None:
            return
        pods = [
            pod
            for pod in self.store.items(PODS, namespace)
            if selector_matches((pdb.get("spec") or {}).get("selector"), _labels(pod))
        ]
        now = datetime.now(UTC)
        try:
            expected, desired = self._expected(pdb, pods)
        except SyncError as exc:
            self._fail_safe(pdb, str(exc))
            delay = self._retry.get((namespace, name), RETRY_FIRST)
            self._retry[(namespace, name)] = min(delay * 2, RETRY_MAX)
            self._queue_later((namespace, name), delay)
            return
        self._retry.pop((namespace, name), None)
        disrupted, recheck = self._disrupted(pdb, pods, now)
        healthy = sum(
            1
            for pod in pods
            if not pod["metadata"].get("deletionTimestamp")
            and not (pod["metadata"]["name"] in disrupted and parse_time(disrupted[pod["metadata"]["name"]]) + DELETION_TIMEOUT > now)
            and policy.pod_ready(pod)
        )  # fmt: skip
        allowed = healthy - desired
        if expected <= 0 or allowed <= 0:
            allowed = 0
        status = pdb.get("status") or {}
        if (
            status.get("currentHealthy") == healthy
            and status.get("desiredHealthy") == desired
            and status.get("expectedPods") == expected
            and status.get("disruptionsAllowed") == allowed
            and (status.get("disruptedPods") or {}) == disrupted
            and policy.conditions_up_to_date(pdb)
        ):
            pass
        else:
            new: Obj = {"observedGeneration": pdb["metadata"].get("generation")}
            if disrupted:
                new["disruptedPods"] = disrupted
            new.update(
                {"disruptionsAllowed": allowed, "currentHealthy": healthy, "desiredHealthy": desired,
                 "expectedPods": expected, "conditions": status.get("conditions") or []}
            )  # fmt: skip
            new["conditions"] = policy.disruption_allowed_condition(new)
            self._write(pdb, new)
        if recheck is not None:
            self._queue_later((namespace, name), max((recheck - now).total_seconds(), 0.0))

    def _expected(self, pdb: Obj, pods: list[Obj]) -> tuple[int, int]:
        """getExpectedPodCount: (expectedCount, desiredHealthy)."""
        spec = pdb.get("spec") or {}
        try:
            if spec.get("maxUnavailable") is not None:
                expected = self._expected_scale(pods)
                desired = max(expected - policy.scaled_value(spec["maxUnavailable"], expected), 0)
                return expected, desired
            min_available = spec.get("minAvailable")
            if isinstance(min_available, int):
                return len(pods), min_available
            if min_available is not None:
                expected = self._expected_scale(pods)
                return expected, policy.scaled_value(min_available, expected)
        except ValueError as exc:
            raise SyncError(str(exc)) from None
        return 0, 0

    def _expected_scale(self, pods: list[Obj]) -> int:
        """getExpectedScale: the scales of the pods' controllers, each counted once."""
        scales: dict[str, int] = {}
        for pod in pods:
            ref = _controller_of(pod)
            if ref is None:
                continue  # an unmanaged pod
            if ref.get("uid") in scales:
                continue
            found = self._scale_of(ref, pod["metadata"].get("namespace") or "")
            if found is None:
                raise SyncError(f'found no controllers for pod "{pod["metadata"]["name"]}"')
            scales[found[0]] = found[1]
        return sum(scales.values())

    def _scale_of(self, ref: dict[str, Any], namespace: str) -> tuple[str, int] | None:
        """getScaleController: the controller through its scale subresource, if it is that one."""
        api_version, kind = str(ref.get("apiVersion") or ""), str(ref.get("kind") or "")
        rt = self.api.registry.by_kind(api_version, kind)
        if rt is None:
            raise SyncError(f'no matches for kind "{kind}" in version "{api_version}"')
        if rt.scale is None:
            resource = f"{rt.plural}.{rt.group}" if rt.group else rt.plural
            raise SyncError(f"{resource} does not implement the scale subresource")
        try:
            scale = self.api.get_scale(rt, namespace, str(ref.get("name") or ""))
        except errors.ApiError:
            return None  # not found: no controller of this kind
        if scale["metadata"].get("uid") != ref.get("uid"):
            return None
        return str(scale["metadata"]["uid"]), int(scale["spec"].get("replicas") or 0)

    def _disrupted(self, pdb: Obj, pods: list[Obj], now: datetime) -> tuple[dict[str, str], datetime | None]:
        """buildDisruptedPodMap: entries for pods still present, not yet being deleted, not expired."""
        recorded = (pdb.get("status") or {}).get("disruptedPods") or {}
        kept: dict[str, str] = {}
        recheck: datetime | None = None
        for pod in pods:
            m = pod["metadata"]
            if m.get("deletionTimestamp") or m["name"] not in recorded:
                continue
            try:
                expected_deletion = parse_time(recorded[m["name"]]) + DELETION_TIMEOUT
            except ValueError:
                continue
            if expected_deletion < now:
                continue  # the pod was expected to be deleted and was not
            kept[m["name"]] = recorded[m["name"]]
            if recheck is None or expected_deletion < recheck:
                recheck = expected_deletion
        return kept, recheck

    def _fail_safe(self, pdb: Obj, message: str) -> None:
        status = dict(pdb.get("status") or {})
        status["disruptionsAllowed"] = 0
        status["conditions"] = policy.set_condition(
            list(status.get("conditions") or []),
            {"type": policy.DISRUPTION_ALLOWED, "status": "False", "reason": policy.SYNC_FAILED,
             "message": message, "observedGeneration": status.get("observedGeneration") or 0},
        )  # fmt: skip
        self._write(pdb, status)

    def _write(self, pdb: Obj, status: Obj) -> None:
        if status == pdb.get("status"):
            return  # a no-op update is not written (etcd's GuaranteedUpdate keeps the revision)
        self.api.system_update(PDBS, pdb, {"status": status})
