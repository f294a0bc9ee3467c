"""POST pods/<name>/eviction: a pod deletion that respects PodDisruptionBudgets.

Follows k8s.io/kubernetes `pkg/registry/core/pod/storage/eviction.go` (v1.32), step by step:

1. The body is a policy/v1 (or v1beta1) Eviction naming the pod of the URL; its `deleteOptions`
   are those of the deletion, and a `dryRun` query parameter joins them.
2. A pod that is Pending, Succeeded or Failed, or already being deleted, is deleted without
   looking at any budget (a Pending pod with its resourceVersion as a precondition).
3. Otherwise the budgets of its namespace that select it are found: more than one is a 500
   ("This pod has more than one PodDisruptionBudget, which the eviction subresource does not
   support."); none lets the deletion go ahead.
4. With one budget, a pod that is not Ready is deleted without using the budget when the
   budget says `unhealthyPodEvictionPolicy: AlwaysAllow`, or when it is healthy enough
   (currentHealthy >= desiredHealthy > 0); the deletion is then conditional on the pod's
   resourceVersion, and a conflict there is answered 429.
5. Else the budget must allow a disruption: a budget whose status has not caught up with its
   generation is a 429 with Retry-After 10; `disruptionsAllowed: 0` is a 429 "Cannot evict pod as
   it would violate the pod's disruption budget." with a DisruptionBudget cause; a negative
   count or too many unconfirmed evictions is a 403. An allowed eviction decrements
   `disruptionsAllowed` and records the pod in `disruptedPods` before the pod is deleted.
6. The pod gets the condition DisruptionTarget=True (EvictionByEvictionAPI), then is deleted
   with the eviction's options; the answer is a Status Success (201).

Each eviction runs synchronously on the server's loop, so the check and the decrement of one
eviction and of the next cannot interleave: of two concurrent evictions against a budget
allowing one disruption, exactly one passes.
"""

from __future__ import annotations

from typing import Any

from . import errors, meta, policy
from .kinds import ResourceType
from .rest import Api, Result
from .selectors import selector_matches
from .store import Obj, Storage

PODS: Storage = ("", "pods")
PDBS: Storage = ("policy", "poddisruptionbudgets")
API_VERSIONS = ("policy/v1", "policy/v1beta1")
MAX_DISRUPTED_PODS = 2000
MESSAGE = "Cannot evict pod as it would violate the pod's disruption budget."
MULTIPLE = "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."


def too_many_requests(pdb_name: str, why: str, retry_after: int) -> errors.ApiError:
    details: dict[str, Any] = {"causes": [{"reason": "DisruptionBudget", "message": why}]}
    if retry_after:
        details["retryAfterSeconds"] = retry_after
    return errors.ApiError(429, "TooManyRequests", MESSAGE, details)


def still_processing(pdb_name: str) -> errors.ApiError:
    """createTooManyRequestsError."""
    return too_many_requests(
        pdb_name, f"The disruption budget {pdb_name} is still being processed by the server.", 10
    )


def _conflict(name: str, why: str) -> errors.ApiError:
    return errors.ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on Pod "{name}": {why}',
        {"name": name, "kind": "Pod"},
    )


def _delete_options(body: Obj, query_dry_run: list[str]) -> Obj:
    """propagateDryRun: the Eviction's deleteOptions, with the request's dryRun if they have none."""
    options = body.get("deleteOptions")
    options = dict(options) if isinstance(options, dict) else {}
    mine = list(options.get("dryRun") or [])
    if not mine:
        if query_dry_run:
            options["dryRun"] = list(query_dry_run)
    elif query_dry_run and mine != query_dry_run:
        raise errors.ApiError(
            500,
            "",
            f"Non-matching dry-run options in request and content: {query_dry_run} and {mine}",
        )
    return options


def _check_body(body: Any, namespace: str, name: str) -> Obj:
    if not isinstance(body, dict):
        raise errors.bad_request("the body of an eviction must be an Eviction object")
    kind, api_version = body.get("kind"), body.get("apiVersion")
    if kind is not None and kind != "Eviction":
        raise errors.bad_request(f"the kind in the data ({kind}) does not match the expected kind (Eviction)")
    if api_version is not None and api_version not in API_VERSIONS:
        raise errors.bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version (policy/v1)"
        )
    metadata: Obj = body["metadata"] if isinstance(body.get("metadata"), dict) else {}
    if metadata.get("namespace") and metadata["namespace"] != namespace:
        raise errors.bad_request(
            "the namespace of the provided object does not match the namespace sent on the request"
        )
    if metadata.get("name", "") != name:
        raise errors.bad_request("name in URL does not match name in Eviction object")
    return body


class Evictions:
    """The eviction subresource of one server's pods."""

    def __init__(self, api: Api):
        self.api = api

    @property
    def pods(self) -> ResourceType:
        rt = self.api.registry.get("", "v1", "pods")
        assert rt is not None
        return rt

    def create(self, namespace: str, name: str, body: Any, query_dry_run: list[str]) -> Result:
        _check_body(body, namespace, name)
        options = _delete_options(body, query_dry_run)
        dry_run = "All" in (options.get("dryRun") or [])
        user_rv = bool((options.get("preconditions") or {}).get("resourceVersion"))
        pod = self.api.get(self.pods, namespace, name)
        phase = (pod.get("status") or {}).get("phase")
        deleting = bool(pod["metadata"].get("deletionTimestamp"))
        if phase in ("Succeeded", "Failed", "Pending") or deleting:  # canIgnorePDB
            if phase not in ("Succeeded", "Failed") and not deleting and not user_rv:
                options = self._pin(options, pod)  # shouldEnforceResourceVersion
            self._delete(pod, options, dry_run)
            return self._success()
        pdbs = [
            pdb
            for pdb in self.api.store.items(PDBS, namespace)
            if selector_matches((pdb.get("spec") or {}).get("selector"), pod["metadata"].get("labels") or {})
        ]
        if len(pdbs) > 1:
            raise errors.ApiError(500, "", MULTIPLE)
        pin = False
        if pdbs:
            pdb = pdbs[0]
            status = pdb.get("status") or {}
            if not policy.pod_ready(pod) and (
                (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == policy.ALWAYS_ALLOW
                or int(status.get("currentHealthy") or 0) >= int(status.get("desiredHealthy") or 0) > 0
            ):
                pin = True  # an unhealthy pod whose loss does not disrupt the application
            else:
                self._check_and_decrement(pdb, name, dry_run)
        if pin and not user_rv:
            options = self._pin(options, pod)
        try:
            self._delete(pod, options, dry_run)
        except errors.ApiError as exc:
            if exc.code == 409 and pin and not user_rv:
                raise still_processing(pdbs[0]["metadata"]["name"]) from None
            raise
        return self._success()

    def _check_and_decrement(self, pdb: Obj, pod_name: str, dry_run: bool) -> None:
        name, status = pdb["metadata"]["name"], dict(pdb.get("status") or {})
        if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 0):
            raise still_processing(name)
        allowed = int(status.get("disruptionsAllowed") or 0)
        if allowed < 0:
            raise errors.forbidden(
                "poddisruptionbudget", "policy", name, "pdb disruptions allowed is negative"
            )
        if len(status.get("disruptedPods") or {}) > MAX_DISRUPTED_PODS:
            raise errors.forbidden("poddisruptionbudget", "policy", name,
                                   "DisruptedPods map too big - too many evictions not confirmed by PDB controller")  # fmt: skip
        if allowed == 0:
            raise too_many_requests(
                name,
                f"The disruption budget {name} needs {int(status.get('desiredHealthy') or 0)} healthy pods "
                f"and has {int(status.get('currentHealthy') or 0)} currently",
                0,
            )
        status["disruptionsAllowed"] = allowed - 1
        if status["disruptionsAllowed"] == 0:
            status["conditions"] = policy.disruption_allowed_condition(status)
        if dry_run:
            return
        status["disruptedPods"] = {**(status.get("disruptedPods") or {}), pod_name: policy.timestamp()}
        self.api.system_update(PDBS, pdb, {"status": status})

    @staticmethod
    def _pin(options: Obj, pod: Obj) -> Obj:
        pre = dict(options.get("preconditions") or {})
        pre["resourceVersion"] = pod["metadata"]["resourceVersion"]
        return {**options, "preconditions": pre}

    def _delete(self, pod: Obj, options: Obj, dry_run: bool) -> None:
        """addConditionAndDeletePod: mark the pod DisruptionTarget, then delete it."""
        m = pod["metadata"]
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != m.get("uid"):
            raise _conflict(m["name"], f"the UID in the precondition ({pre['uid']}) does not match the UID in record "
                                       f"({m.get('uid')}). The object might have been deleted and then recreated")  # fmt: skip
        if pre.get("resourceVersion") and pre["resourceVersion"] != m["resourceVersion"]:
            raise _conflict(m["name"], f"the ResourceVersion in the precondition ({pre['resourceVersion']}) does not "
                                       f"match the ResourceVersion in record ({m['resourceVersion']}). The object might "
                                       "have been modified")  # fmt: skip
        if not dry_run:
            status = dict(pod.get("status") or {})
            status["conditions"] = _with_disruption_target(list(status.get("conditions") or []))
            updated = self.api.system_update(PODS, pod, {"status": status})
            if updated is not None and pre.get("resourceVersion"):
                options = {
                    **options,
                    "preconditions": {**pre, "resourceVersion": updated["metadata"]["resourceVersion"]},
                }
        self.api.delete(self.pods, m.get("namespace") or "", m["name"], options, dry_run)

    @staticmethod
    def _success() -> Result:
        return Result(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )


def _with_disruption_target(conditions: list[Obj]) -> list[Obj]:
    """podutil.UpdatePodCondition with DisruptionTarget=True (EvictionByEvictionAPI)."""
    new = {"type": "DisruptionTarget", "status": "True", "lastProbeTime": None, "lastTransitionTime": meta.now(),
           "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting"}  # fmt: skip
    for i, condition in enumerate(conditions):
        if condition.get("type") == "DisruptionTarget":
            if condition.get("status") == "True":
                new["lastTransitionTime"] = condition.get("lastTransitionTime")
            return [*conditions[:i], new, *conditions[i + 1 :]]
    return [*conditions, new]
