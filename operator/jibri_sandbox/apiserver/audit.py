"""An audit record of pod removals: one JSON line per pod deletion request and per eviction.

Written when the server runs with `--audit-log FILE` (appended to, across restarts). It lets a
test prove what was never done, e.g. that no pod labelled busy was ever deleted or evicted: a line
carries the pod's labels and annotations as they were when the request arrived, and the answer.

    {"time": "2026-01-01T00:00:00.000000Z", "verb": "evict", "namespace": "ns", "name": "p",
     "uid": "…", "code": 429, "reason": "TooManyRequests", "message": "Cannot evict pod …",
     "labels": {…}, "annotations": {…}, "phase": "Running", "node": "n1", "terminating": false,
     "gracePeriodSeconds": null, "dryRun": false, "user": "sandbox-admin", "userAgent": "kubectl/…"}

`verb` is `delete` (DELETE of one pod), `deletecollection` (one line per pod a collection delete
reached) or `evict` (POST pods/<name>/eviction, allowed or refused). `code` is the HTTP status of
the answer (for a collection, the pod's own outcome), including answers made by an injected fault.
`uid` is null when the pod did not exist. `terminating` says the pod was already being deleted
(the kubelet's final grace-0 delete after a graceful one is such a line). Deletions the server's own
controllers make are recorded too, with their `user` (`system:serviceaccount:kube-system:
generic-garbage-collector`, `…:namespace-controller`), as a real cluster's audit log shows them.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
CLIENT = "sandbox-admin"
GARBAGE_COLLECTOR = "system:serviceaccount:kube-system:generic-garbage-collector"
NAMESPACE_CONTROLLER = "system:serviceaccount:kube-system:namespace-controller"
VERBS = ("delete", "deletecollection", "evict")


class AuditLog:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()  # the in-thread server and its caller may both write

    def record(
        self,
        verb: str,
        namespace: str,
        name: str,
        pod: Obj | None,
        code: int,
        *,
        reason: str = "",
        message: str = "",
        user: str = CLIENT,
        user_agent: str = "",
        dry_run: bool = False,
        grace: Any = None,
    ) -> None:
        m = (pod or {}).get("metadata") or {}
        line: Obj = {
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "verb": verb,
            "namespace": namespace,
            "name": name,
            "uid": m.get("uid"),
            "code": code,
        }
        if reason:
            line["reason"] = reason
        if message:
            line["message"] = message
        line.update(
            {
                "labels": dict(m.get("labels") or {}),
                "annotations": dict(m.get("annotations") or {}),
                "phase": ((pod or {}).get("status") or {}).get("phase"),
                "node": ((pod or {}).get("spec") or {}).get("nodeName"),
                "terminating": bool(m.get("deletionTimestamp")),
                "gracePeriodSeconds": grace,
                "dryRun": dry_run,
                "user": user,
                "userAgent": user_agent,
            }
        )
        with self._lock:
            self._file.write(json.dumps(line, separators=(",", ":"), ensure_ascii=False) + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def read(path: Path) -> list[Obj]:
    """The records of an audit log, oldest first (a missing file is an empty log)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
