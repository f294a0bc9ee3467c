"""API errors as `Status` objects, worded like the real API server's.

Clients match on `reason`, `code` and, for 422, `details.causes[].field`; kubectl
prints `message` verbatim. So the wording follows apimachinery's `errors` and
`field` packages closely: tests written against a real cluster should read the same.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """An HTTP error answered with a `Status` body (or, `plain`, with its message as text)."""

    def __init__(
        self, code: int, reason: str, message: str, details: dict[str, Any] | None = None, plain: bool = False
    ):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.plain = plain

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if not self.reason:
            del body["reason"]  # omitempty: a Status built by hand (the eviction's 500) has none
        if self.details is not None:
            body["details"] = self.details
        return body


class Undecodable(ApiError):
    """A create or update body that is no JSON object, worded as kube-apiserver's decoder
    words it once the kind it wanted is known (`as_kind`)."""

    def __init__(self, raw: bytes, why: str):
        super().__init__(400, "BadRequest", why)
        self.raw, self.why = raw, why

    def as_kind(self, kind: str) -> ApiError:
        raw = self.raw
        if not raw:
            summary = "<empty>"
        elif raw[:1] == b"{":
            summary = raw[:30].decode(errors="replace") + (" ..." if len(raw) > 30 else "")
        else:
            summary = raw[:30].hex() + (" ..." if len(raw) > 30 else "")
        return bad_request(
            f"the object provided is unrecognized (must be of type {kind}): {self.why} ({summary})"
        )


_GO_KIND_STRUCT = (
    'struct { APIVersion string "json:\\"apiVersion,omitempty\\""; Kind string "json:\\"kind,omitempty\\"" }'
)
_GO_JSON_ERRORS = {
    "Expecting value": "invalid character {ch} looking for beginning of value",
    "Expecting ':' delimiter": "invalid character {ch} after object key",
    "Expecting ',' delimiter": "invalid character {ch} after object key:value pair",
    "Expecting property name enclosed in double quotes": "invalid character {ch} looking for beginning of object key string",
    "Extra data": "invalid character {ch} after top-level value",
}


def decode_object(raw: bytes) -> Any:
    """A JSON create/update body; raises Undecodable with Go's encoding/json words for what it is not."""
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        text = raw.decode(errors="replace")
        if exc.pos >= len(text.rstrip()):
            why = "unexpected end of JSON input"
        elif exc.msg in _GO_JSON_ERRORS:
            why = _GO_JSON_ERRORS[exc.msg].format(ch=repr(text[exc.pos]))
        else:
            why = exc.msg
        raise Undecodable(raw, f"couldn't get version/kind; json parse error: {why}") from None
    if value is not None and not isinstance(value, dict):
        kind = {list: "array", str: "string", bool: "bool"}.get(type(value), "number")
        raise Undecodable(
            raw,
            f"couldn't get version/kind; json parse error: json: cannot unmarshal {kind} into Go value of type {_GO_KIND_STRUCT}",
        )
    return value


def qualified(plural_or_kind: str, group: str) -> str:
    """`widgets.test.example.com`, or `pods` for the core group."""
    return f"{plural_or_kind}.{group}" if group else plural_or_kind


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": kind} if name else {"kind": kind}
    if group:
        details["group"] = group
    return details


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{qualified(plural, group)} "{name}" not found', _details(name, group, plural)
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409,
        "AlreadyExists",
        f'{qualified(plural, group)} "{name}" already exists',
        _details(name, group, plural),
    )


def conflict(plural: str, group: str, name: str, why: str | None = None) -> ApiError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        _details(name, group, plural),
    )


def path_not_found() -> ApiError:
    """What the real server answers for a URL of a group version it serves that names no resource."""
    return ApiError(404, "NotFound", "the server could not find the requested resource", {})


def page_not_found() -> ApiError:
    """A URL outside every served group version: kube-apiserver's mux answers in plain text."""
    return ApiError(404, "NotFound", "404 page not found\n", plain=True)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(plural: str, group: str, name: str, why: str) -> ApiError:
    target = f'{qualified(plural, group)} "{name}"' if name else qualified(plural, group)
    return ApiError(403, "Forbidden", f"{target} is forbidden: {why}", _details(name, group, plural))


def method_not_allowed(
    message: str = "the server does not allow this method on the requested resource",
) -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unknown_media_type() -> ApiError:
    """A PATCH whose Content-Type is no patch type at all."""
    return ApiError(415, "UnsupportedMediaType", "415: Unsupported Media Type", {})


def invalid_options(kind: str, causes: list[FieldError]) -> ApiError:
    """Bad query options, e.g. dryRun=Maybe: `CreateOptions.meta.k8s.io "" is invalid: ...`."""
    return invalid_object(kind, "meta.k8s.io", "", causes)


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: {', '.join(accepted)}",
    )


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def timeout(message: str) -> ApiError:
    return ApiError(504, "Timeout", message)


def internal(message: str) -> ApiError:
    return ApiError(500, "InternalError", f"Internal error occurred: {message}")


# --- field errors: apimachinery/pkg/util/validation/field ------------------------------------

_REASONS = {
    "Required value": "FieldValueRequired",
    "Unsupported value": "FieldValueNotSupported",
    "Invalid value": "FieldValueInvalid",
    "Duplicate value": "FieldValueDuplicate",
    "Forbidden": "FieldValueForbidden",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
    "Not found": "FieldValueNotFound",
}
_NO_VALUE_SHOWN = {"Required value", "Forbidden", "Too long", "Internal error"}


def go_value(value: Any) -> str:
    """Render a bad value the way Go's field.Error does (%v, %q, or JSON for composites)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value) if isinstance(value, float) and not value.is_integer() else str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def go_strings(values: list[str]) -> str:
    """A []string as Go's %#v prints it: []string{"a", "b"}."""
    return "[]string{" + ", ".join(json.dumps(v) for v in values) + "}"


@dataclass(frozen=True)
class FieldError:
    """One `field.Error`: a path, an error type and a detail."""

    type: str
    field: str
    detail: str = ""
    value: Any = None
    reason: str | None = None  # overrides the cause reason (e.g. FieldValueTypeInvalid)

    def body(self) -> str:
        text = self.type if self.type in _NO_VALUE_SHOWN else f"{self.type}: {go_value(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def __str__(self) -> str:
        return f"{self.field or '<nil>'}: {self.body()}"

    def cause(self) -> dict[str, str]:
        return {
            "reason": self.reason or _REASONS.get(self.type, "FieldValueInvalid"),
            "message": self.body(),
            "field": self.field,
        }


def required(path: str, detail: str = "") -> FieldError:
    return FieldError("Required value", path, detail)


def invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid value", path, detail, value)


def type_invalid(path: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid value", path, detail, value, reason="FieldValueTypeInvalid")


def not_supported(path: str, value: Any, allowed: list[Any]) -> FieldError:
    values = ", ".join(json.dumps(v, separators=(",", ":")) for v in allowed)
    return FieldError("Unsupported value", path, f"supported values: {values}", value)


def forbidden_field(path: str, detail: str) -> FieldError:
    return FieldError("Forbidden", path, detail)


def duplicate(path: str, value: Any) -> FieldError:
    return FieldError("Duplicate value", path, "", value)


def too_long(path: str, max_length: int) -> FieldError:
    return FieldError("Too long", path, f"may not be longer than {max_length}")


def too_many(path: str, actual: int, maximum: int) -> FieldError:
    return FieldError("Too many", path, f"must have at most {maximum} items", actual)


def invalid_object(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """422 Invalid, worded as `Kind.group "name" is invalid: field: detail` (aggregated with [..])."""
    texts = [str(e) for e in errors]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = _details(name, group, kind)
    details["causes"] = [e.cause() for e in errors]
    return ApiError(422, "Invalid", f'{qualified(kind, group)} "{name}" is invalid: {joined}', details)
