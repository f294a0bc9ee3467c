"""Fault switches: what an overloaded, failing or restarting API server does to its clients.

Set at runtime through `/sandbox/faults` (same bearer token as the API), from the CLI with
`--fault JSON` (from each start), or from Python with the helpers of `testing.RunningApiServer`.
Each lasts `seconds`, or `times` answers, or until cleared; several may be active at once (the
first that matches a request answers it).

- `{"fault": "error", "code": 500}`: an internal error, a `Status` with reason InternalError (as
  an etcd failure gives); `{"fault": "error", "code": 429}`: "Too many requests, please try again
  later." with `Retry-After` (`retryAfterSeconds`, 1 by default), the plain-text answer of the
  max-in-flight and priority-and-fairness filters. Optional `verbs` (get, list, watch, create,
  update, patch, delete, deletecollection), `resources` (`pods`, `pods/status`, `pods/eviction`,
  `widgets.test.example.com`, `*`; RBAC-like: `pods` is not `pods/status`), and `fraction` (0..1).
  Discovery and OpenAPI requests are `get`s of no resource.
- `{"fault": "statusConflict"}`: status writes (PUT/PATCH of a `/status` subresource, optionally
  only of `resources`, a `fraction`) are answered 409 Conflict, "the object has been modified".
- `{"fault": "delay", "delaySeconds": 2}`: the request is served (a write is stored and seen by
  watches) but its answer is held back that long, as a slow network or an overloaded server
  does; optional `verbs`, `resources`, `fraction`. It lets a test act between a client's write
  and what the client does next (e.g. kill an operator after its write-ahead, before its start).
- `{"fault": "dropWatches"}`: every open watch ends now, as at a watch timeout (`"abort": true`
  resets the connections instead). Immediate: nothing stays set.
- `{"fault": "restart", "downtime": 1.5}`: the process saves its objects, stops listening, waits
  `downtime` seconds and starts again on the same port with the same objects (see server.py).
"""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from . import errors

Obj = dict[str, Any]
VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"})
KINDS = ("error", "statusConflict", "delay", "dropWatches", "restart")
TOO_MANY_REQUESTS = "Too many requests, please try again later.\n"


@dataclass
class Fault:
    kind: str  # error | statusConflict | delay
    code: int = 500
    delay: float = 0.0  # delay: seconds the answer is held
    verbs: frozenset[str] = frozenset()  # empty: every verb
    resources: frozenset[str] = frozenset()  # empty: every request
    fraction: float = 1.0
    seconds: float | None = None
    times: int | None = None
    retry_after: int = 1
    message: str = ""
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    expires: float | None = None  # time.monotonic()
    injected: int = 0

    def live(self, now: float) -> bool:
        return (self.expires is None or now < self.expires) and (self.times is None or self.times > 0)

    def matches(self, verb: str, names: set[str]) -> bool:
        """Whether this fault answers a request of `verb` on a resource known by `names`."""
        if self.verbs and verb not in self.verbs:
            return False
        if self.resources and "*" not in self.resources and not names & self.resources:
            return False
        return self.fraction >= 1.0 or random.random() < self.fraction

    def fire(self) -> None:
        self.injected += 1
        if self.times is not None:
            self.times -= 1

    def describe(self, now: float) -> Obj:
        out: Obj = {"id": self.id, "fault": self.kind}
        if self.kind == "delay":
            out["delaySeconds"] = self.delay
        if self.kind == "error":
            out["code"] = self.code
            if self.code == 429:
                out["retryAfterSeconds"] = self.retry_after
        if self.verbs:
            out["verbs"] = sorted(self.verbs)
        if self.resources:
            out["resources"] = sorted(self.resources)
        if self.fraction < 1.0:
            out["fraction"] = self.fraction
        if self.expires is not None:
            out["remainingSeconds"] = round(max(self.expires - now, 0.0), 3)
        if self.times is not None:
            out["remainingTimes"] = self.times
        if self.message:
            out["message"] = self.message
        out["injected"] = self.injected
        return out

    def error(self) -> errors.ApiError:
        """The 500 this fault answers (a 429 is plain text, see TOO_MANY_REQUESTS)."""
        why = self.message or "the sandbox API server was told to fail this request (fault injection)"
        return errors.ApiError(
            500, "InternalError", f"Internal error occurred: {why}", {"causes": [{"message": why}]}
        )


def _strings(spec: Obj, key: str) -> frozenset[str]:
    value = spec.get(key)
    if value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.bad_request(f"fault: {key} must be a list of strings")
    return frozenset(value)


def _number(spec: Obj, key: str, low: float, high: float | None = None) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < low
        or (high is not None and value > high)
    ):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise errors.bad_request(f"fault: {key} must be a number {bounds}")
    return float(value)


def parse(spec: Any) -> Fault:
    """A fault from its JSON form (error or statusConflict); 400 if it is not one."""
    if not isinstance(spec, dict) or spec.get("fault") not in ("error", "statusConflict", "delay"):
        raise errors.bad_request(f"fault: expected an object with fault one of {', '.join(KINDS)}")
    known = {
        "fault",
        "code",
        "verbs",
        "resources",
        "fraction",
        "seconds",
        "times",
        "retryAfterSeconds",
        "message",
        "delaySeconds",
    }
    unknown = sorted(set(spec) - known)
    if unknown:
        raise errors.bad_request(f"fault: unknown fields {unknown}")
    kind = str(spec["fault"])
    code = spec.get("code", 500 if kind == "error" else 409)
    if kind == "error" and code not in (500, 429):
        raise errors.bad_request("fault: an error fault answers 500 or 429")
    if kind == "statusConflict" and code != 409:
        raise errors.bad_request("fault: a statusConflict fault answers 409")
    delay = _number(spec, "delaySeconds", 0.0, 300.0)
    if kind == "delay" and delay is None:
        raise errors.bad_request("fault: a delay fault needs delaySeconds")
    verbs = _strings(spec, "verbs")
    if verbs - VERBS:
        raise errors.bad_request(f"fault: unknown verbs {sorted(verbs - VERBS)}")
    seconds = _number(spec, "seconds", 0.0)
    times = _number(spec, "times", 1.0)
    retry_after = _number(spec, "retryAfterSeconds", 0.0)
    message = spec.get("message") or ""
    if not isinstance(message, str):
        raise errors.bad_request("fault: message must be a string")
    fraction = _number(spec, "fraction", 0.0, 1.0)
    return Fault(
        kind=kind,
        code=int(code),
        verbs=verbs,
        resources=_strings(spec, "resources"),
        fraction=1.0 if fraction is None else fraction,
        seconds=seconds,
        times=None if times is None else int(times),
        retry_after=1 if retry_after is None else int(retry_after),
        message=message,
        delay=delay or 0.0,
        expires=None if seconds is None else time.monotonic() + seconds,
    )


def parse_downtime(spec: Obj) -> float:
    """A restart's `downtime` in seconds (0 by default, at most 300)."""
    known = {"fault", "downtime"}
    if set(spec) - known:
        raise errors.bad_request(f"fault: unknown fields {sorted(set(spec) - known)}")
    downtime = _number(spec, "downtime", 0.0, 300.0)
    return 0.0 if downtime is None else downtime


class Faults:
    """The active faults of one server."""

    def __init__(self) -> None:
        self._active: dict[str, Fault] = {}

    def add(self, fault: Fault) -> Fault:
        self._active[fault.id] = fault
        return fault

    def clear(self, fault_id: str | None = None) -> int:
        if fault_id is None:
            count = len(self._active)
            self._active.clear()
            return count
        return 1 if self._active.pop(fault_id, None) is not None else 0

    def describe(self) -> list[Obj]:
        now = time.monotonic()
        self._expire(now)
        return [f.describe(now) for f in self._active.values()]

    def _expire(self, now: float) -> None:
        for fault_id in [i for i, f in self._active.items() if not f.live(now)]:
            del self._active[fault_id]

    def _first(self, kind: str, verb: str, names: set[str]) -> Fault | None:
        if not self._active:
            return None
        now = time.monotonic()
        self._expire(now)
        for fault in self._active.values():
            if fault.kind == kind and fault.matches(verb, names):
                fault.fire()
                return fault
        return None

    def error_for(
        self, verb: str, resource: str = "", group: str = "", subresource: str = ""
    ) -> Fault | None:
        """The error fault answering this request, if one does."""
        return self._first("error", verb, _names(resource, group, subresource))

    def delay_for(self, verb: str, resource: str = "", group: str = "", subresource: str = "") -> float:
        """Seconds to hold this request's answer back (0: none)."""
        fault = self._first("delay", verb, _names(resource, group, subresource))
        return fault.delay if fault is not None else 0.0

    def conflict_for(self, verb: str, resource: str, group: str) -> Fault | None:
        """The statusConflict fault answering this status write (`widgets` or `widgets/status`)."""
        return self._first(
            "statusConflict", verb, _names(resource, group, "") | _names(resource, group, "status")
        )


def _names(resource: str, group: str, subresource: str) -> set[str]:
    """How a fault's `resources` may name this one: `pods/status`, `widgets.test.example.com`."""
    if not resource:
        return set()
    sub = f"/{subresource}" if subresource else ""
    return {f"{resource}{sub}", f"{resource}.{group}{sub}" if group else f"{resource}{sub}"}
