"""The server's own controllers: garbage collector, namespace cleanup, CRD instance cleanup.

They run asynchronously after the writes that trigger them, as kube-controller-manager
and apiextensions do, so clients see the same sequence of events as on a cluster:

- ownerReferences (background): when an owner is gone, dependents with no other
  live owner are deleted; dangling references are dropped from the others.
- foreground: an owner with the `foregroundDeletion` finalizer gets its
  dependents deleted and loses the finalizer once no dependent with
  `blockOwnerDeletion: true` remains.
- orphan: an owner with the `orphan` finalizer has its references removed from
  its dependents, then loses the finalizer.
- a Namespace being deleted has all its content deleted, then its
  `spec.finalizers` cleared, and goes.
- a CRD being deleted has all its instances deleted, then loses
  `customresourcecleanup.apiextensions.k8s.io`, and goes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import audit, crds
from .rest import FOREGROUND, ORPHAN, Api
from .store import Event, Obj, Storage

log = logging.getLogger(__name__)
NAMESPACES: Storage = ("", "namespaces")
CRDS: Storage = ("apiextensions.k8s.io", "customresourcedefinitions")


class Collector:
    def __init__(self, api: Api):
        self.api = api
        self.store = api.store
        self._pending: dict[tuple[str, Any], Any] = {}
        self._wake = asyncio.Event()
        self.store.listeners.append(self._observe)

    def _queue(self, kind: str, key: Any, payload: Any = None) -> None:
        self._pending[(kind, key)] = payload
        self._wake.set()

    def _observe(self, event: Event) -> None:
        """Called synchronously on every write: note the work, do it later."""
        obj = event.obj
        m = obj["metadata"]
        uid = m.get("uid")
        if event.type == "DELETED":
            if uid and self.store.dependents.get(uid):
                self._queue("orphaned", uid)
            for ref in m.get("ownerReferences") or ():
                self._queue("owner", ref.get("uid"))
            if m.get("namespace"):
                self._queue("namespace", m["namespace"])
            if event.storage == CRDS:
                self._queue("crd", m["name"])
            elif event.storage[0]:
                self._queue("crd", f"{event.storage[1]}.{event.storage[0]}")
        elif m.get("deletionTimestamp"):
            finalizers = m.get("finalizers") or ()
            if FOREGROUND in finalizers or ORPHAN in finalizers:
                self._queue("owner", uid)
            if event.storage == NAMESPACES:
                self._queue("namespace", m["name"])
            elif event.storage == CRDS:
                self._queue("crd", m["name"])

    def resync(self) -> None:
        """Look for pending work in what is stored (at start, e.g. after a restart: no events)."""
        for uid in list(self.store.dependents):
            if self.store.find_uid(uid) is None:
                self._queue("orphaned", uid)
        for storage in list(self.store.objects):
            for obj in self.store.items(storage):
                m = obj["metadata"]
                if not m.get("deletionTimestamp"):
                    continue
                if FOREGROUND in (m.get("finalizers") or ()) or ORPHAN in (m.get("finalizers") or ()):
                    self._queue("owner", m.get("uid"))
                if storage == NAMESPACES:
                    self._queue("namespace", m["name"])
                elif storage == CRDS:
                    self._queue("crd", m["name"])

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                (kind, key), _ = self._pending.popitem()
                try:
                    getattr(self, f"_do_{kind}")(key)
                except Exception:
                    log.exception("collector failed on %s %s", kind, key)
                await asyncio.sleep(0)

    # --- work items --------------------------------------------------------------------------------

    def _do_orphaned(self, uid: str) -> None:
        for storage, dep in self.store.dependents_of(uid):
            self._attempt(storage, dep)

    def _attempt(self, storage: Storage, dep: Obj) -> None:
        """Decide for one dependent whose owner went or is being deleted in the foreground."""
        solid, gone, waiting = [], [], []
        for ref in dep["metadata"].get("ownerReferences") or ():
            owner = self.store.find_uid(ref.get("uid", ""))
            if owner is None:
                gone.append(ref)
            elif owner["metadata"].get("deletionTimestamp") and FOREGROUND in (
                owner["metadata"].get("finalizers") or ()
            ):
                waiting.append(ref)
            else:
                solid.append(ref)
        if solid:
            if gone or waiting:
                self.api.system_update(storage, dep, {"metadata": {"ownerReferences": solid}})
            return
        if dep["metadata"].get("deletionTimestamp"):
            return
        has_dependents = bool(self.store.dependents.get(dep["metadata"].get("uid", "")))
        self.api.system_delete(storage, dep, "Foreground" if waiting and has_dependents else "Background")

    def _do_owner(self, uid: str | None) -> None:
        if not uid:
            return
        owner = self.store.find_uid(uid)
        if owner is None or not owner["metadata"].get("deletionTimestamp"):
            return
        storage = self.store.by_uid[uid][0]
        finalizers = list(owner["metadata"].get("finalizers") or ())
        dependents = self.store.dependents_of(uid)
        if ORPHAN in finalizers:
            for dep_storage, dep in dependents:
                refs = [r for r in dep["metadata"].get("ownerReferences") or () if r.get("uid") != uid]
                self.api.system_update(dep_storage, dep, {"metadata": {"ownerReferences": refs or None}})
            finalizers.remove(ORPHAN)
            self.api.system_update(storage, owner, {"metadata": {"finalizers": finalizers or None}})
            return
        if FOREGROUND not in finalizers:
            return
        for dep_storage, dep in dependents:
            self._attempt(dep_storage, dep)
        blocking = [
            dep
            for _, dep in self.store.dependents_of(uid)
            if any(
                r.get("uid") == uid and r.get("blockOwnerDeletion")
                for r in dep["metadata"].get("ownerReferences") or ()
            )
        ]
        if not blocking:
            finalizers.remove(FOREGROUND)
            self.api.system_update(storage, owner, {"metadata": {"finalizers": finalizers or None}})

    def _do_namespace(self, name: str) -> None:
        ns = self.store.get(NAMESPACES, "", name)
        if ns is None or not ns["metadata"].get("deletionTimestamp"):
            return
        remaining = False
        for storage in list(self.store.objects):
            for obj in self.store.items(storage, name):
                remaining = True
                if not obj["metadata"].get("deletionTimestamp"):
                    self.api.system_delete(storage, obj, user=audit.NAMESPACE_CONTROLLER)
        if not remaining or not self.store.namespace_has_objects(name):
            self.api.system_update(NAMESPACES, ns, {"spec": {**(ns.get("spec") or {}), "finalizers": []}})

    def _do_crd(self, name: str) -> None:
        crd = self.store.get(CRDS, "", name)
        if crd is None or not crd["metadata"].get("deletionTimestamp"):
            return
        storage = (crd["spec"]["group"], crd["spec"]["names"]["plural"])
        for obj in self.store.items(storage):
            if not obj["metadata"].get("deletionTimestamp"):
                self.api.system_delete(storage, obj)
        if not self.store.count(storage):
            finalizers = [f for f in crd["metadata"].get("finalizers") or () if f != crds.CLEANUP_FINALIZER]
            self.api.system_update(CRDS, crd, {"metadata": {"finalizers": finalizers or None}})
