"""policy/v1 PodDisruptionBudget: the kind's strategy, and the helpers the eviction handler and the
disruption controller share with it.

Followed from k8s.io/kubernetes: `pkg/apis/policy/validation` (the spec and status rules),
`pkg/registry/policy/poddisruptionbudget` (status is reset on create, generation follows the
spec), `k8s.io/component-helpers/apps/poddisruptionbudget` (the DisruptionAllowed condition) and
`k8s.io/apimachinery/pkg/util/intstr` (`GetScaledValueFromIntOrPercent`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from . import errors, meta
from .selectors import check_label_selector

Obj = dict[str, Any]
DISRUPTION_ALLOWED = "DisruptionAllowed"
SUFFICIENT_PODS = "SufficientPods"
INSUFFICIENT_PODS = "InsufficientPods"
SYNC_FAILED = "SyncFailed"
ALWAYS_ALLOW = "AlwaysAllow"
IF_HEALTHY_BUDGET = "IfHealthyBudget"
_PERCENT = "[0-9]+%"
_PERCENT_MESSAGE = (
    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', "
    f"regex used for validation is '{_PERCENT}')"
)
STATUS_COUNTS = ("disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods")


def empty_status() -> Obj:
    """What the strategy stores on create: the zero status (its counts have no omitempty)."""
    return {count: 0 for count in STATUS_COUNTS}


def _int_or_percent(value: Any, path: str) -> list[errors.FieldError]:
    """appsvalidation.ValidatePositiveIntOrPercent and IsNotMoreThan100Percent."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return [errors.invalid(path, value, "must be an integer or percentage (e.g '5%')")]
    if isinstance(value, int):
        return [] if value >= 0 else [errors.invalid(path, value, "must be greater than or equal to 0")]
    if not re.fullmatch(_PERCENT, value):
        return [errors.invalid(path, value, _PERCENT_MESSAGE)]
    if int(value[:-1]) > 100:
        return [errors.invalid(path, value, "must not be greater than 100%")]
    return []


def check(obj: Obj, subresource: str) -> list[errors.FieldError]:
    """ValidatePodDisruptionBudget (spec) or its status update (the counts are non-negative)."""
    found: list[errors.FieldError] = []
    if subresource != "status":
        spec = obj.get("spec") or {}
        if not isinstance(spec, dict):
            return [errors.invalid("spec", spec, "must be an object")]
        if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
            found.append(errors.invalid("spec", spec, "minAvailable and maxUnavailable cannot be both set"))
        for field in ("minAvailable", "maxUnavailable"):
            if spec.get(field) is not None:
                found += _int_or_percent(spec[field], f"spec.{field}")
        found += check_label_selector(spec.get("selector"), "spec.selector")
        policy = spec.get("unhealthyPodEvictionPolicy")
        if policy is not None and policy not in (ALWAYS_ALLOW, IF_HEALTHY_BUDGET):
            found.append(
                errors.not_supported(
                    "spec.unhealthyPodEvictionPolicy", policy, [ALWAYS_ALLOW, IF_HEALTHY_BUDGET]
                )
            )
    status = obj.get("status") or {}
    for count in STATUS_COUNTS:
        value = status.get(count, 0) if isinstance(status, dict) else 0
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            found.append(errors.invalid(f"status.{count}", value, "must be greater than or equal to 0"))
    return found


def scaled_value(value: Any, total: int) -> int:
    """intstr.GetScaledValueFromIntOrPercent(value, total, roundUp=true); ValueError if not a percent."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or not value.endswith("%"):
        raise ValueError("invalid value for IntOrString: invalid type: string is not a percentage")
    try:
        percent = int(value[:-1])
    except ValueError:
        raise ValueError(
            f"invalid value {value!r}: strconv.Atoi: parsing {value[:-1]!r}: invalid syntax"
        ) from None
    return -(-percent * total // 100)  # math.Ceil(percent * total / 100)


def pod_ready(pod: Obj) -> bool:
    """podutil.IsPodReady: the Ready condition is True (the phase is not looked at)."""
    for condition in (pod.get("status") or {}).get("conditions") or ():
        if isinstance(condition, dict) and condition.get("type") == "Ready":
            return condition.get("status") == "True"
    return False


def set_condition(conditions: list[Obj], new: Obj) -> list[Obj]:
    """apimeta.SetStatusCondition on a copy: lastTransitionTime moves only when the status does."""
    out = [dict(c) for c in conditions]
    for existing in out:
        if existing.get("type") == new["type"]:
            if existing.get("status") != new["status"]:
                existing["status"] = new["status"]
                existing["lastTransitionTime"] = meta.now()
            for key in ("reason", "message", "observedGeneration"):
                existing[key] = new.get(key, "" if key != "observedGeneration" else 0)
            if not existing.get("observedGeneration"):
                existing.pop("observedGeneration", None)
            return out
    condition: Obj = {"type": new["type"], "status": new["status"]}
    if new.get("observedGeneration"):
        condition["observedGeneration"] = new["observedGeneration"]
    condition.update(
        {"lastTransitionTime": meta.now(), "reason": new.get("reason", ""), "message": new.get("message", "")}
    )
    out.append(condition)
    return out


def disruption_allowed_condition(status: Obj) -> list[Obj]:
    """pdbhelper.UpdateDisruptionAllowedCondition: the conditions `status` should carry."""
    allowed = int(status.get("disruptionsAllowed") or 0) > 0
    return set_condition(
        list(status.get("conditions") or []),
        {
            "type": DISRUPTION_ALLOWED,
            "status": "True" if allowed else "False",
            "reason": SUFFICIENT_PODS if allowed else INSUFFICIENT_PODS,
            "message": "",
            "observedGeneration": status.get("observedGeneration") or 0,
        },
    )


def conditions_up_to_date(pdb: Obj) -> bool:
    """pdbhelper.ConditionsAreUpToDate."""
    status = pdb.get("status") or {}
    condition = next((c for c in status.get("conditions") or () if c.get("type") == DISRUPTION_ALLOWED), None)
    if condition is None or status.get("observedGeneration") != pdb["metadata"].get("generation"):
        return False
    if int(status.get("disruptionsAllowed") or 0) > 0:
        return bool(condition.get("status") == "True" and condition.get("reason") == SUFFICIENT_PODS)
    return bool(condition.get("status") == "False" and condition.get("reason") == INSUFFICIENT_PODS)


def timestamp(when: datetime | None = None) -> str:
    return (when or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def table_cells(pdb: Obj) -> list[Any]:
    """kubectl's printer: Name, Min Available, Max Unavailable, Allowed Disruptions, Age."""
    from .tables import human_age  # a cycle-free late import, as builtins does

    spec, status = pdb.get("spec") or {}, pdb.get("status") or {}

    def shown(value: Any) -> str:
        return "N/A" if value is None else str(value)

    return [
        pdb["metadata"]["name"],
        shown(spec.get("minAvailable")),
        shown(spec.get("maxUnavailable")),
        int(status.get("disruptionsAllowed") or 0),
        human_age(pdb["metadata"].get("creationTimestamp")),
    ]
