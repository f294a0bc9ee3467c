"""`x-kubernetes-validations` rules, evaluated with cel-python (`celpy`).

What is evaluated: `self`, `oldSelf` (transition rules run only on update and
only where the old value exists, or always with `optionalOldSelf`), `has()`,
macros (`all`, `exists`, `exists_one`, `map`, `filter`), `size`, `matches`,
`startsWith`/`endsWith`/`contains`, arithmetic and comparisons, `message`,
`messageExpression`, `reason` and `fieldPath`. Kubernetes' string extensions
`lowerAscii`, `upperAscii`, `trim`, `split`, `join`, `replace` are added here.

Ratcheting (KEP-4008, on by default since 1.30, GA in 1.33): on an update, a rule
that does not use `oldSelf` and fails on a value equal to the stored one is not an
error (upstream turns it into a warning). Such a rule is therefore not evaluated at
all here, which is most of the cost of a status write; nor is `self == oldSelf` on an
unchanged value, which cannot fail. Other transition rules always run, as upstream.

What is skipped (logged once per rule, never refused): rules celpy cannot parse,
and rules calling functions it lacks — the Kubernetes CEL libraries `isURL`,
`url()`, `quantity()`, `ip()`/`cidr()`, `format.*`, `optional` types and the
`lists` extension (`sets.contains`, `indexOf` on lists...). Cost budgets are not
enforced. A runtime error (e.g. a missing key) fails the rule, as it does on a
real server.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Final

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from . import errors

log = logging.getLogger(__name__)
_env = celpy.Environment()
_programs: dict[str, Any] = {}
_skipped: set[str] = set()


def _str_fn(fn: Any) -> Any:
    return lambda s, *a: celtypes.StringType(fn(str(s), *[str(x) for x in a]))


_FUNCTIONS: dict[str, Any] = {
    "lowerAscii": _str_fn(str.lower),
    "upperAscii": _str_fn(str.upper),
    "trim": _str_fn(str.strip),
    "replace": _str_fn(str.replace),
    "split": lambda s, sep: celtypes.ListType([celtypes.StringType(p) for p in str(s).split(str(sep))]),
    "join": lambda lst, sep="": celtypes.StringType(str(sep).join(str(x) for x in lst)),
}


@dataclass(frozen=True)
class Rule:
    rule: str
    message: str = ""
    message_expression: str = ""
    reason: str = ""
    field_path: str = ""
    optional_old_self: bool = False

    @classmethod
    def from_schema(cls, item: dict[str, Any]) -> Rule:
        return cls(
            rule=item.get("rule", ""),
            message=item.get("message", ""),
            message_expression=item.get("messageExpression", ""),
            reason=item.get("reason", ""),
            field_path=item.get("fieldPath", ""),
            optional_old_self=bool(item.get("optionalOldSelf", False)),
        )

    @property
    def is_transition(self) -> bool:
        return "oldSelf" in self.rule


class Skip(Exception):
    """The rule cannot be evaluated here; it is not enforced."""


def _program(expr: str) -> Any:
    if expr in _programs:
        return _programs[expr]
    try:
        program = _env.program(_env.compile(expr), functions=_FUNCTIONS)
    except Exception as exc:
        program = None
        _skip(expr, f"does not compile in cel-python: {exc}")
    _programs[expr] = program
    return program


def _skip(expr: str, why: str) -> None:
    if expr not in _skipped:
        _skipped.add(expr)
        log.warning("CEL rule %r is not enforced: %s", expr, why.splitlines()[0][:200])


def _run(expr: str, activation: dict[str, Any]) -> Any:
    program = _program(expr)
    if program is None:
        raise Skip()
    result = program.evaluate(activation)
    if isinstance(result, CELEvalError):
        raise result
    return result


def _fails_for_real(exc: Exception) -> bool:
    text = str(exc)
    return "no such key" in text or "no such member" in text or "no such overload" in text


_IMMUTABLE: Final = "self==oldSelf"


def check(
    rules: list[dict[str, Any]],
    value: Any,
    old: Any,
    has_old: bool,
    schema_type: str,
    path: str,
    unchanged: bool = False,
) -> list[errors.FieldError]:
    """Evaluate one schema node's rules; returns field errors for the rules that fail.

    ``unchanged``: an update left this value as it was (see ratcheting, above)."""
    found: list[errors.FieldError] = []
    for item in rules:
        rule = Rule.from_schema(item)
        if rule.is_transition and not has_old and not rule.optional_old_self:
            continue
        if unchanged and (not rule.is_transition or "".join(rule.rule.split()) == _IMMUTABLE):
            continue
        activation: dict[str, Any] = {"self": json_to_cel(value)}
        if rule.is_transition:
            activation["oldSelf"] = json_to_cel(old) if has_old else None
        message = ""
        try:
            ok = bool(_run(rule.rule, activation))
        except Skip:
            continue
        except Exception as exc:
            if not _fails_for_real(exc):
                _skip(rule.rule, f"cel-python cannot evaluate it: {exc}")
                continue
            ok, message = False, f"{rule.rule}: {str(exc).splitlines()[0]}"
        if ok:
            continue
        if not message:
            message = rule.message or f"failed rule: {rule.rule}"
            if rule.message_expression:
                with contextlib.suppress(Exception):  # a broken messageExpression falls back, as upstream
                    message = str(_run(rule.message_expression, activation)) or message
        where = (path + rule.field_path).lstrip(".") if rule.field_path else path
        if rule.reason == "FieldValueRequired":
            found.append(errors.required(where, message))
        elif rule.reason == "FieldValueForbidden":
            found.append(errors.forbidden_field(where, message))
        elif rule.reason == "FieldValueDuplicate":
            found.append(errors.FieldError("Duplicate value", where, message, schema_type))
        else:
            found.append(errors.invalid(where, schema_type, message))
    return found
