"""Label and field selectors, parsed as apimachinery's `labels.Parse` and `fields.ParseSelector` do.

Label selectors: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`,
`a>1`, `a<1`. Field selectors: `f=v`, `f==v`, `f!=v`, only on the fields a
resource declares (unknown ones are a 400, as on a real server).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors

Obj = dict[str, Any]


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # =, !=, in, notin, exists, !exists, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "=":
            return present and value == self.values[0]
        if self.op == "!=":
            return not present or value != self.values[0]
        if self.op == "in":
            return present and value in self.values
        if self.op == "notin":
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        try:
            number, bound = int(value or ""), int(self.values[0])
        except ValueError:
            return False
        return number > bound if self.op == "gt" else number < bound


_OPERATORS = {"!=", "==", "=", ">", "<", "(", ")", "!"}
_TOKEN = re.compile(r"\s*(!=|==|=|>|<|\(|\)|,|!|[^\s!=<>(),]+)")
_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)


def _tokens(text: str) -> list[str]:
    pos, out = 0, []
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise errors.bad_request(f"unable to parse requirement: {text!r}")
        out.append(m.group(1))
        pos = m.end()
    return out


def parse_labels(text: str | None) -> list[Requirement]:
    if not text or not text.strip():
        return []
    toks, i, reqs = _tokens(text), 0, []

    def bad(why: str) -> errors.ApiError:
        return errors.bad_request(f"unable to parse requirement: {why}")

    while i < len(toks):
        negate = toks[i] == "!"
        if negate:
            i += 1
        if i >= len(toks):
            raise bad("found end of string, expected: identifier")
        key = toks[i]
        if not _KEY.match(key):
            raise errors.bad_request(f"unable to parse requirement: invalid label key {key!r}")
        i += 1
        if negate:
            reqs.append(Requirement(key, "!exists"))
        elif i >= len(toks) or toks[i] == ",":
            reqs.append(Requirement(key, "exists"))
        else:
            op = toks[i]
            i += 1
            if op in ("=", "==", "!="):
                value = toks[i] if i < len(toks) and toks[i] != "," else ""
                if value in _OPERATORS:
                    raise bad(f"found '{value}', expected: identifier")
                if value:
                    i += 1
                reqs.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
            elif op in (">", "<"):
                reqs.append(Requirement(key, "gt" if op == ">" else "lt", (toks[i],)))
                i += 1
            elif op in ("in", "notin"):
                if i >= len(toks) or toks[i] != "(":
                    raise bad(f"found '{toks[i] if i < len(toks) else ''}', expected: '('")
                i += 1
                values: list[str] = []
                while i < len(toks) and toks[i] != ")":
                    if toks[i] != ",":
                        values.append(toks[i])
                    i += 1
                if i >= len(toks):
                    raise bad("found end of string, expected: ')'")
                i += 1
                reqs.append(Requirement(key, op, tuple(values)))
            else:
                raise bad(f"found '{op}', expected: in, notin, =, ==, !=, gt, lt")
        if i < len(toks):
            if toks[i] != ",":
                raise bad(f"found '{toks[i]}', expected: ','")
            i += 1
    return reqs


def label_matcher(text: str | None) -> Callable[[Obj], bool] | None:
    reqs = parse_labels(text)
    if not reqs:
        return None

    def match(obj: Obj) -> bool:
        labels = obj["metadata"].get("labels") or {}
        return all(r.matches(labels) for r in reqs)

    return match


def selector_from_match(selector: dict[str, Any] | None) -> str:
    """Render a metav1.LabelSelector (matchLabels/matchExpressions) as a selector string."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or ():
        op, key, values = expr.get("operator"), expr.get("key"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def selector_matches(selector: Any, labels: dict[str, str]) -> bool:
    """Whether a metav1.LabelSelector selects `labels`, as `LabelSelectorAsSelector` reads it:
    a null selector selects nothing, an empty one everything, an invalid one nothing."""
    if not isinstance(selector, dict):
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or ():
        if not isinstance(expr, dict):
            return False
        op, key, values = expr.get("operator"), str(expr.get("key")), expr.get("values") or []
        if op == "In" and (not values or labels.get(key) not in values):
            return False
        if op == "NotIn" and (not values or (key in labels and labels[key] in values)):
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def check_label_selector(selector: Any, path: str) -> list[errors.FieldError]:
    """apimachinery's ValidateLabelSelector, for the mistakes a hand-written selector makes."""
    if selector is None:
        return []
    if not isinstance(selector, dict):
        return [errors.invalid(path, selector, "must be a label selector")]
    found: list[errors.FieldError] = []
    for i, expr in enumerate(selector.get("matchExpressions") or ()):
        where = f"{path}.matchExpressions[{i}]"
        op, values = (expr or {}).get("operator"), (expr or {}).get("values") or []
        if op in ("In", "NotIn") and not values:
            found.append(
                errors.required(f"{where}.values", "must be specified when `operator` is 'In' or 'NotIn'")
            )
        elif op in ("Exists", "DoesNotExist") and values:
            found.append(
                errors.forbidden_field(
                    f"{where}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                )
            )
        elif op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            found.append(errors.invalid(f"{where}.operator", op, "not a valid selector operator"))
    return found


# --- field selectors ---------------------------------------------------------------------------


def lookup(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _as_field_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_fields(text: str | None) -> list[tuple[str, str, str]]:
    if not text or not text.strip():
        return []
    out = []
    for term in text.split(","):
        term = term.strip()
        if not term:
            continue
        for op in ("!=", "==", "="):
            if op in term:
                field, _, value = term.partition(op)
                out.append((field.strip(), "!=" if op == "!=" else "=", value.strip()))
                break
        else:
            raise errors.bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
    return out


META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})


def field_matcher(
    text: str | None, allowed: set[str], extract: Callable[[Obj, str], Any] = lookup, builtin: bool = False
) -> Callable[[Obj], bool] | None:
    """`builtin`: a built-in kind, whose refusal of an unknown field is worded by its own
    conversion function, or apimachinery's default one where it selects by name only."""
    terms = parse_fields(text)
    if not terms:
        return None
    for field, _, _ in terms:
        if field not in allowed:
            if builtin and allowed == META_FIELDS:
                raise errors.bad_request(
                    f'"{field}" is not a known field selector: only "metadata.name", "metadata.namespace"'
                )
            raise errors.bad_request(f"field label not supported: {field}")

    def match(obj: Obj) -> bool:
        for field, op, value in terms:
            actual = _as_field_string(extract(obj, field))
            if (actual == value) != (op == "="):
                return False
        return True

    return match


def both(*matchers: Callable[[Obj], bool] | None) -> Callable[[Obj], bool]:
    active = [m for m in matchers if m is not None]
    if not active:
        return lambda _obj: True
    if len(active) == 1:
        return active[0]
    return lambda obj: all(m(obj) for m in active)
