"""ObjectMeta: what the server fills in on create and what it checks on every write.

Names are checked against the rule of their kind (RFC 1123 subdomain by
default, label for namespaces, RFC 1035 label for services), labels and owner
references as apimachinery's `ValidateObjectMeta` does, with its wording.
"""

from __future__ import annotations

import random
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from . import errors

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QNAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"

NAME_RULES: dict[str, tuple[str, int, str]] = {
    "subdomain": (
        _SUBDOMAIN,
        253,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
        f"validation is '{_SUBDOMAIN}')",
    ),
    "label": (
        _LABEL,
        63,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
        "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
        f"validation is '{_LABEL}')",
    ),
    "dns1035": (
        _DNS1035,
        63,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
        "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
        f"regex used for validation is '{_DNS1035}')",
    ),
}
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def generate_name(prefix: str) -> str:
    return prefix + "".join(random.choice(_GENERATE_ALPHABET) for _ in range(5))


def check_name(name: str, rule: str, path: str = "metadata.name") -> list[errors.FieldError]:
    if rule == "path":
        if name in (".", "..") or "/" in name or "%" in name:
            return [errors.invalid(path, name, "may not contain '/' or '%', and may not be '.' or '..'")]
        return []
    regex, max_len, message = NAME_RULES[rule]
    found = []
    if len(name) > max_len:
        found.append(errors.invalid(path, name, f"must be no more than {max_len} characters"))
    if not re.fullmatch(regex, name):
        found.append(errors.invalid(path, name, message))
    return found


def _qualified_name_errors(key: str, path: str) -> list[errors.FieldError]:
    prefix, _, name = key.rpartition("/")
    msg = (
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is "
        f"'{_QNAME}')"
    )
    found = []
    if not re.fullmatch(_QNAME, name) or len(name) > 63:
        found.append(errors.invalid(path, key, msg))
    if prefix and (not re.fullmatch(_SUBDOMAIN, prefix) or len(prefix) > 253):
        found.append(errors.invalid(path, key, "prefix part " + NAME_RULES["subdomain"][2]))
    return found


def check_meta(meta: dict[str, Any], name_rule: str) -> list[errors.FieldError]:
    found: list[errors.FieldError] = []
    name = meta.get("name")
    if not name:
        found.append(errors.required("metadata.name", "name or generateName is required"))
    elif isinstance(name, str):
        found += check_name(name, name_rule)
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        return [*found, errors.invalid("metadata.labels", labels, "must be a map")]
    for key, value in labels.items():
        found += _qualified_name_errors(key, "metadata.labels")
        if not isinstance(value, str) or len(value) > 63 or not re.fullmatch(_LABEL_VALUE, value):
            found.append(
                errors.invalid(
                    "metadata.labels",
                    value,
                    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
                    "or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or "
                    f"'my_value',  or '12345', regex used for validation is '{_LABEL_VALUE}')",
                )
            )
    for key, value in (meta.get("annotations") or {}).items():
        found += _qualified_name_errors(key, "metadata.annotations")
        if not isinstance(value, str):
            found.append(errors.invalid(f"metadata.annotations[{key}]", value, "must be a string"))
    controllers = 0
    for i, ref in enumerate(meta.get("ownerReferences") or ()):
        for req in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(req):
                found.append(
                    errors.invalid(
                        f"metadata.ownerReferences[{i}].{req}", ref.get(req, ""), f"{req} must not be empty"
                    )
                )
        controllers += bool(ref.get("controller"))
    if controllers > 1:
        found.append(
            errors.invalid(
                "metadata.ownerReferences",
                meta.get("ownerReferences"),
                "Only one reference can have Controller set to true",
            )
        )
    return found


def fill_on_create(obj: dict[str, Any], namespace: str | None, generation: bool) -> None:
    """Server-owned fields of a new object (obj is a fresh dict; metadata is replaced)."""
    meta = dict(obj.get("metadata") or {})
    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = generate_name(meta["generateName"])
    if namespace is not None:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = now()
    for server_owned in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"):
        meta.pop(server_owned, None)
    if generation:
        meta["generation"] = 1
    else:
        meta.pop("generation", None)
    obj["metadata"] = meta
