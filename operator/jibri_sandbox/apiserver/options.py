"""The query options of a write (`CreateOptions`, `UpdateOptions`, `PatchOptions`,
`DeleteOptions`), refused as kube-apiserver refuses them: 422, worded
`PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: ...`."""

from __future__ import annotations

from collections.abc import Mapping

from . import errors

KINDS = {"POST": "CreateOptions", "PUT": "UpdateOptions", "PATCH": "PatchOptions", "DELETE": "DeleteOptions"}
APPLY = "application/apply-patch+yaml"


def check(method: str, query: Mapping[str, str], dry_run: list[str], content_type: str) -> None:
    """`dry_run`: every `dryRun` value of the query (it may repeat)."""
    kind = KINDS.get(method)
    if kind is None:
        return
    causes = []
    if any(value != "All" for value in dry_run):
        causes.append(errors.not_supported("dryRun", dry_run, ["All"]))
    if method == "PATCH" and content_type == APPLY and not query.get("fieldManager"):
        causes.append(errors.required("fieldManager", "is required for apply patch"))
    if causes:
        raise errors.invalid_options(kind, causes)
