"""The in-memory object store: objects, one resourceVersion counter, a bounded event history.

Concurrency model: the whole server runs on one asyncio loop and every store
method is synchronous, so each read-check-write in a request handler is atomic
without locks (no `await` between the check and the write). Stored objects are
never mutated after they are written; writers hand in fresh dicts and readers
may serialise the stored dicts directly, so no per-write deep copies of the store.

History: the last `history_size` events are kept, each with the object before
and after. That serves watches from a resourceVersion, `resourceVersionMatch=Exact`
lists and consistent `continue` pages (by rolling back), and tells when a
version is too old (410 Gone), like etcd compaction does. A custom resource's
history also begins when its CRD is established (`begin`): kube-apiserver's watch
cache for it starts there, and a watch from an earlier version is too old.

Persistence: `dump()` and `load()` carry the objects and the resourceVersion counter
over a restart. The history is not kept: like kube-apiserver's watch cache, which
starts again from the current revision, a restarted server answers 410 Gone to a
watch from any older resourceVersion, and clients relist.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import errors

Storage = tuple[str, str]  # (group, plural)
Key = tuple[str, str]  # (namespace or "", name)
Obj = dict[str, Any]


@dataclass(slots=True)
class Event:
    rv: int
    storage: Storage
    type: str  # ADDED, MODIFIED, DELETED
    obj: Obj
    old: Obj | None
    encoded: dict[str, bytes] = field(default_factory=dict)  # per-format wire encodings, shared by watchers


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace") or "", meta["name"])


class Watcher:
    """One open watch: a filter and a queue. Filters see old and new objects, so an
    object that stops matching a selector is reported DELETED, and one that starts
    matching ADDED, as the real watch cache does."""

    MAX_BACKLOG = 50_000

    def __init__(self, storage: Storage, namespace: str | None, match: Callable[[Obj], bool]):
        self.storage = storage
        self.namespace = namespace
        self.match = match
        self.queue: asyncio.Queue[tuple[str, Event] | None] = asyncio.Queue()
        self.overflowed = False

    def _matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        if self.namespace is not None and obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.match(obj)

    def classify(self, event: Event) -> str | None:
        """The event type this watcher sees for `event`, or None if it is not for it."""
        now = self._matches(event.obj)
        if event.type == "ADDED":
            kind = "ADDED" if now else None
        elif event.type == "DELETED":
            kind = "DELETED" if now or self._matches(event.old) else None
        else:
            before = self._matches(event.old)
            kind = ("MODIFIED" if before else "ADDED") if now else ("DELETED" if before else None)
        return kind

    def offer(self, event: Event) -> None:
        kind = self.classify(event)
        if kind is None:
            return
        if self.queue.qsize() >= self.MAX_BACKLOG:
            self.overflowed = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait((kind, event))

    def close(self) -> None:
        self.queue.put_nowait(None)


class Store:
    def __init__(self, history_size: int = 10_000):
        self.rv = 1
        self.objects: dict[Storage, dict[Key, Obj]] = collections.defaultdict(dict)
        self.by_uid: dict[str, tuple[Storage, Key]] = {}
        self.dependents: dict[str, set[tuple[Storage, Key]]] = collections.defaultdict(set)
        self.history: collections.deque[Event] = collections.deque(maxlen=history_size)
        self.compacted = 1  # versions at or below this are no longer in the history
        self.origins: dict[Storage, int] = {}  # where a custom resource's history begins
        self.watchers: dict[Storage, set[Watcher]] = collections.defaultdict(set)
        self.listeners: list[Callable[[Event], None]] = []

    # --- reads -------------------------------------------------------------------------------

    def get(self, storage: Storage, namespace: str, name: str) -> Obj | None:
        return self.objects[storage].get((namespace, name))

    def items(self, storage: Storage, namespace: str | None = None) -> list[Obj]:
        objs = self.objects[storage]
        keys = sorted(objs if namespace is None else (k for k in objs if k[0] == namespace))
        return [objs[k] for k in keys]

    def count(self, storage: Storage) -> int:
        return len(self.objects[storage])

    def namespace_has_objects(self, namespace: str) -> bool:
        return any(k[0] == namespace for objs in self.objects.values() for k in objs)

    def find_uid(self, uid: str) -> Obj | None:
        where = self.by_uid.get(uid)
        return None if where is None else self.objects[where[0]].get(where[1])

    def dependents_of(self, uid: str) -> list[tuple[Storage, Obj]]:
        found = []
        for storage, key in list(self.dependents.get(uid, ())):
            obj = self.objects[storage].get(key)
            if obj is not None:
                found.append((storage, obj))
        return found

    # --- writes ------------------------------------------------------------------------------

    def _stamp(self, obj: Obj) -> Obj:
        self.rv += 1
        obj["metadata"] = {**obj["metadata"], "resourceVersion": str(self.rv)}
        return obj

    def put(self, storage: Storage, obj: Obj) -> Obj:
        """Create or replace; `obj` must be a fresh dict the caller no longer mutates."""
        self._stamp(obj)
        key = key_of(obj)
        old = self.objects[storage].get(key)
        self.objects[storage][key] = obj
        self._index(storage, key, old, obj)
        self._emit(Event(self.rv, storage, "MODIFIED" if old is not None else "ADDED", obj, old))
        return obj

    def remove(self, storage: Storage, obj: Obj) -> Obj:
        """Delete; the DELETED event carries the object's last state at a new resourceVersion."""
        key = key_of(obj)
        old = self.objects[storage].pop(key)
        final = self._stamp(dict(obj))
        self._index(storage, key, old, None)
        self._emit(Event(self.rv, storage, "DELETED", final, old))
        return final

    def _index(self, storage: Storage, key: Key, old: Obj | None, new: Obj | None) -> None:
        for obj, add in ((old, False), (new, True)):
            if obj is None:
                continue
            meta = obj["metadata"]
            uid = meta.get("uid")
            if uid:
                if add:
                    self.by_uid[uid] = (storage, key)
                elif new is None:
                    self.by_uid.pop(uid, None)
            for ref in meta.get("ownerReferences") or ():
                owner = ref.get("uid")
                if not owner:
                    continue
                if add:
                    self.dependents[owner].add((storage, key))
                else:
                    deps = self.dependents.get(owner)
                    if deps is not None:
                        deps.discard((storage, key))
                        if not deps:
                            del self.dependents[owner]

    def _emit(self, event: Event) -> None:
        if len(self.history) == self.history.maxlen:
            self.compacted = self.history[0].rv
        self.history.append(event)
        for watcher in list(self.watchers.get(event.storage, ())):
            watcher.offer(event)
            if watcher.overflowed:
                self.unwatch(watcher)
        for listener in self.listeners:
            listener(event)

    # --- persistence ---------------------------------------------------------------------------

    def dump(self) -> Obj:
        """The objects and the counter, as JSON-ready data."""
        objects = [
            {"group": storage[0], "resource": storage[1], "object": obj}
            for storage, objs in sorted(self.objects.items())
            for _, obj in sorted(objs.items())
        ]
        return {"version": 1, "resourceVersion": self.rv, "objects": objects}

    def load(self, data: Obj) -> None:
        """Take over `dump()`'s objects: no events, and the history starts at the counter."""
        if data.get("version") != 1:
            raise ValueError(f"unknown state version {data.get('version')!r}")
        self.rv = self.compacted = int(data["resourceVersion"])
        for item in data["objects"]:
            storage, obj = (item["group"], item["resource"]), item["object"]
            key = key_of(obj)
            self.objects[storage][key] = obj
            self._index(storage, key, None, obj)

    # --- history -----------------------------------------------------------------------------

    def check_version(self, rv: int, storage: Storage | None = None) -> None:
        oldest = max(self.compacted, self.origins.get(storage, 0) if storage else 0)
        if rv < oldest:
            raise errors.gone(f"too old resource version: {rv} ({oldest})")

    def begin(self, storage: Storage) -> None:
        """A custom resource is served from now on: its history starts here."""
        self.origins.setdefault(storage, self.rv)

    def end(self, storage: Storage) -> None:
        self.origins.pop(storage, None)

    def events_since(self, storage: Storage, rv: int) -> Iterable[Event]:
        """Events of one storage after `rv`; raises 410 Gone if the history no longer reaches back."""
        self.check_version(rv, storage)
        return [e for e in self.history if e.rv > rv and e.storage == storage]

    def snapshot(self, storage: Storage, rv: int) -> dict[Key, Obj]:
        """The objects of one storage as they were at `rv`, rolled back through the history."""
        if rv < self.compacted:
            raise errors.gone("The resourceVersion for the provided list is too old.")
        state = dict(self.objects[storage])
        for event in reversed(self.history):
            if event.rv <= rv:
                break
            if event.storage != storage:
                continue
            key = key_of(event.obj)
            if event.type == "ADDED":
                state.pop(key, None)
            elif event.old is not None:
                state[key] = event.old
        return state

    def watch(self, watcher: Watcher) -> None:
        self.watchers[watcher.storage].add(watcher)

    def unwatch(self, watcher: Watcher) -> None:
        self.watchers[watcher.storage].discard(watcher)
        watcher.close()
