"""Kubernetes label selectors (``metav1.LabelSelector``), evaluated against a set of labels.

Pure, so the tenancy rule (which namespaces may use an XmppEnvironment) is tested
without a cluster. The semantics are apimachinery's ``LabelSelectorAsSelector``:
every ``matchLabels`` pair and every ``matchExpressions`` requirement must hold,
and an empty selector (``{}``) matches everything. Invalid selectors raise
:class:`ValueError` naming the field, which the CRD schema should already refuse.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def selector_matches(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for index, requirement in enumerate(selector.get("matchExpressions") or []):
        if not _requirement_holds(requirement, labels, f"matchExpressions[{index}]"):
            return False
    return True


def _requirement_holds(requirement: Mapping[str, Any], labels: Mapping[str, str], where: str) -> bool:
    key = str(requirement.get("key") or "")
    operator = str(requirement.get("operator") or "")
    values = list(requirement.get("values") or [])
    if not key:
        raise ValueError(f"{where}.key is required")
    if operator in ("In", "NotIn"):
        if not values:
            raise ValueError(f"{where}.values must be non-empty for operator {operator}")
        present = key in labels and labels[key] in values
        return present if operator == "In" else not present
    if operator in ("Exists", "DoesNotExist"):
        if values:
            raise ValueError(f"{where}.values must be empty for operator {operator}")
        return (key in labels) == (operator == "Exists")
    raise ValueError(f"{where}.operator must be In, NotIn, Exists or DoesNotExist")
