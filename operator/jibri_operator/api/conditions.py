"""Conditions the Kubernetes way: a list keyed by type whose lastTransitionTime
moves only when the status does."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]


def now_rfc3339(milliseconds: bool = False) -> str:
    """Now, as the API writes times (whole seconds), or to the millisecond where a duration
    is counted from it across processes (a session's startedAt)."""
    if milliseconds:
        return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[dict[str, Any]] | None,
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    observed_generation: int | None = None,
    now: str | None = None,
) -> list[dict[str, Any]]:
    """A new list with ``type_`` set; the others are kept as they were."""
    result = [dict(condition) for condition in conditions or []]
    existing = get_condition(result, type_)
    transition = now or now_rfc3339()
    if existing is not None and existing.get("status") == status:
        transition = existing.get("lastTransitionTime") or transition
    updated: dict[str, Any] = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if observed_generation is not None:
        updated["observedGeneration"] = observed_generation
    if existing is None:
        result.append(updated)
    else:
        result[result.index(existing)] = updated
    return result


def get_condition(conditions: list[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((condition for condition in conditions or [] if condition.get("type") == type_), None)
