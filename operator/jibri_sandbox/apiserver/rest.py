"""The REST verbs over the store: the rules a real registry applies on every write.

Each public method is synchronous and so atomic on the server's event loop (see
store.py). The HTTP layer (server.py) only parses requests and encodes answers;
everything about what a write means lives here: preconditions and 409s,
`generation`, the status subresource split, schema pruning/defaulting/validation,
finalizers and `deletionTimestamp`, graceful pod deletion, dry runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from . import audit, builtins, crds, errors, meta, patch, schema
from .kinds import Registry, ResourceType
from .store import Obj, Store

log = logging.getLogger(__name__)
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
APPLY = "application/apply-patch+yaml"


@dataclass
class Result:
    obj: Obj
    code: int = 200
    warnings: list[str] = field(default_factory=list)


def _body(obj: Obj) -> Obj:
    """Everything but metadata (and resourceVersion-free), for change detection."""
    return {k: v for k, v in obj.items() if k != "metadata"}


def _meta_sans_rv(obj: Obj) -> Obj:
    return {k: v for k, v in obj["metadata"].items() if k != "resourceVersion"}


def _get_path(obj: Any, dotted: str) -> Any:
    for part in dotted.strip(".").split("."):
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def _set_path(obj: Obj, dotted: str, value: Any) -> None:
    parts = dotted.strip(".").split(".")
    for part in parts[:-1]:
        child = obj.get(part)
        child = dict(child) if isinstance(child, dict) else {}
        obj[part] = child
        obj = child
    obj[parts[-1]] = value


class Api:
    def __init__(self, store: Store, registry: Registry):
        self.store = store
        self.registry = registry
        self.audit: audit.AuditLog | None = None
        for rt in builtins.builtin_types():
            registry.add(rt)

    def restored(self) -> None:
        """After `store.load()`: serve the stored CRDs' resources again, keep Service IPs unique."""
        for crd in self.store.items(("apiextensions.k8s.io", "customresourcedefinitions")):
            for served in crds.resource_types(crd):
                self.registry.add(served)
        builtins.reserve_cluster_ips(self.store.items(("", "services")))

    # --- presentation ----------------------------------------------------------------------------

    def present(self, rt: ResourceType, obj: Obj) -> Obj:
        """A stored object as served in `rt`'s version (apiVersion rewritten, events converted)."""
        if rt.from_storage is not None:
            return rt.from_storage(obj)
        if obj.get("apiVersion") != rt.api_version:
            return {**obj, "apiVersion": rt.api_version}
        return obj

    # --- reads -------------------------------------------------------------------------------------

    def get(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        obj = self.store.get(rt.storage, namespace if rt.namespaced else "", name)
        if obj is None:
            raise errors.not_found(rt.plural, rt.group, name)
        return obj

    def check_namespace(self, rt: ResourceType, namespace: str | None, creating: bool) -> None:
        if not rt.namespaced or namespace is None:
            return
        ns = self.store.get(("", "namespaces"), "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if creating and ns["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                rt.plural,
                rt.group,
                "",
                f"unable to create new content in namespace {namespace} because it is being terminated",
            )

    # --- create --------------------------------------------------------------------------------------

    def create(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: Any,
        dry_run: bool = False,
        validation: str = "Warn",
    ) -> Result:
        obj = self._incoming(rt, body, namespace)
        if rt.builtin and rt.kind in {kind for _, _, kind in builtins.REVIEWS}:
            return Result(builtins.review(rt.kind, obj), 201)
        if (obj.get("metadata") or {}).get("name") is None and not (obj.get("metadata") or {}).get(
            "generateName"
        ):
            raise errors.invalid_object(
                rt.kind, rt.group, "", [errors.required("metadata.name", "name or generateName is required")]
            )
        self.check_namespace(rt, namespace, creating=True)
        if rt.extra.get("crd"):
            crd = self.store.get(("apiextensions.k8s.io", "customresourcedefinitions"), "", rt.extra["crd"])
            if crd is not None and crd["metadata"].get("deletionTimestamp"):
                raise errors.ApiError(
                    405,
                    "MethodNotAllowed",
                    "create not allowed while custom resource definition is terminating",
                )
        meta.fill_on_create(obj, namespace if rt.namespaced else None, rt.generation)
        if rt.builtin:
            builtins.prepare(rt.kind, obj, None)
        if rt.status and not rt.builtin:
            obj.pop("status", None)  # a CR's status is written through /status only
        warnings = self._validate(rt, obj, None, validation)
        name = obj["metadata"]["name"]
        if self.store.get(rt.storage, obj["metadata"].get("namespace") or "", name) is not None:
            raise errors.already_exists(rt.plural, rt.group, name)
        if dry_run:
            return Result(self.present(rt, obj), 201, warnings)
        stored = self.store.put(rt.storage, obj)
        self._after_write(rt, stored, None)
        return Result(self.present(rt, stored), 201, warnings)

    def _incoming(self, rt: ResourceType, body: Any, namespace: str | None) -> Obj:
        if not isinstance(body, dict):
            raise errors.bad_request(f"Object '{rt.kind}' is invalid: the body must be a JSON object")
        kind, api_version = body.get("kind"), body.get("apiVersion")
        if rt.builtin and (kind or rt.kind, api_version or rt.api_version) != (rt.kind, rt.api_version):
            raise self._cannot_decode(rt, kind or rt.kind, api_version or rt.api_version)
        if kind is not None and kind != rt.kind:
            name = str((body.get("metadata") or {}).get("name") or "")
            raise errors.invalid_object(
                kind, rt.group, name, [errors.invalid("kind", kind, f"must be {rt.kind}")]
            )
        if api_version is not None and api_version != rt.api_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
            )
        obj = patch.clone(body)
        if rt.builtin:  # Go's omitempty: an empty ConfigMap's or Secret's data is no data
            for empty in ("data", "binaryData", "stringData"):
                if obj.get(empty) == {}:
                    del obj[empty]
        obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
        if not isinstance(obj.get("metadata"), dict):
            obj["metadata"] = {}
        body_ns = obj["metadata"].get("namespace")
        if rt.namespaced and body_ns and namespace and body_ns != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        if rt.to_storage is not None:
            obj = rt.to_storage(obj)
        storage_version = rt.extra.get("storage_version")
        if storage_version and storage_version != rt.version:
            obj["apiVersion"] = f"{rt.group}/{storage_version}"
        result: Obj = obj
        return result

    def _cannot_decode(self, rt: ResourceType, kind: str, api_version: str) -> errors.ApiError:
        """A built-in kind's body of another kind or version, worded as kube-apiserver's decoder does."""
        version = api_version.rpartition("/")[2]
        prefix = f'{kind} in version "{version}" cannot be handled as a {rt.kind}'
        if api_version == rt.api_version == "v1" and self.registry.by_kind(api_version, kind) is not None:
            return errors.bad_request(
                f"{prefix}: converting (v1.{kind}) to (core.{rt.kind}): unknown conversion"
            )
        return errors.bad_request(
            f'{prefix}: no kind "{kind}" is registered for version "{api_version}" in scheme "pkg/runtime/scheme.go:110"'
        )

    def _validate(
        self, rt: ResourceType, obj: Obj, old: Obj | None, validation: str, subresource: str = ""
    ) -> list[str]:
        for empty in ("labels", "annotations", "finalizers", "ownerReferences"):
            if empty in obj["metadata"] and not obj["metadata"][empty]:
                del obj["metadata"][empty]  # ObjectMeta's omitempty: an empty map or list is no map or list
        found = meta.check_meta(obj["metadata"], rt.name_rule)
        unknown: list[str] = []
        if rt.schema is not None:
            unknown, schema_errors = schema.apply_schema(obj, rt.schema, old)
            found += schema_errors
        if rt.kind == "CustomResourceDefinition" and rt.group == "apiextensions.k8s.io":
            found += crds.check(obj)
        if rt.builtin:
            found += builtins.check(rt.kind, obj, old, subresource)
        name = obj["metadata"].get("name") or ""
        if unknown and validation == "Strict":
            fields = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise errors.bad_request(
                f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: strict decoding error: {fields}'
            )
        if found:
            raise errors.invalid_object(rt.kind, rt.group, name, found)
        return [f'unknown field "{u}"' for u in unknown] if validation != "Ignore" else []

    # --- update and patch ---------------------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        body: Any,
        subresource: str = "",
        dry_run: bool = False,
        validation: str = "Warn",
        require_rv: bool = True,
    ) -> Result:
        obj = self._incoming(rt, body, namespace)
        body_name = obj["metadata"].get("name")
        if body_name and body_name != name:
            raise errors.bad_request(
                f"the name of the object ({body_name}) does not match the name on the URL ({name})"
            )
        old = self.store.get(rt.storage, namespace if rt.namespaced else "", name)
        if old is None:
            if subresource or rt.kind not in ("Event", "Lease", "Endpoints"):
                raise errors.not_found(rt.plural, rt.group, name)
            obj["metadata"]["name"] = name
            obj["metadata"].pop("resourceVersion", None)
            return self.create(rt, namespace if rt.namespaced else None, obj, dry_run, validation)
        rv = obj["metadata"].get("resourceVersion")
        if rv:
            if rv != old["metadata"]["resourceVersion"]:
                raise errors.conflict(rt.plural, rt.group, name)
        elif require_rv and not rt.builtin:
            raise errors.invalid_object(
                rt.kind,
                rt.group,
                name,
                [errors.invalid("metadata.resourceVersion", 0, "must be specified for an update")],
            )
        return self._replace(rt, old, obj, subresource, dry_run, validation)

    def _replace(
        self, rt: ResourceType, old: Obj, new: Obj, subresource: str, dry_run: bool, validation: str
    ) -> Result:
        """Write `new` (fresh) over `old`, keeping what a client may not change."""
        name = old["metadata"]["name"]
        if subresource == "status":
            merged = {k: v for k, v in old.items() if k != "status"}
            if "status" in new:
                merged["status"] = new["status"]
            new = merged
        else:
            if rt.status:
                new = {k: v for k, v in new.items() if k != "status"}
                if "status" in old:
                    new["status"] = old["status"]
            new_meta = dict(new["metadata"])
            if new_meta.get("uid") and new_meta["uid"] != old["metadata"].get("uid"):
                raise errors.invalid_object(
                    rt.kind,
                    rt.group,
                    name,
                    [errors.invalid("metadata.uid", new_meta["uid"], "field is immutable")],
                )
            for kept in (
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
                "name",
            ):
                if kept in old["metadata"]:
                    new_meta[kept] = old["metadata"][kept]
                else:
                    new_meta.pop(kept, None)
            new["metadata"] = new_meta
        if subresource == "status":
            new["metadata"] = dict(old["metadata"])
        new["metadata"].pop("resourceVersion", None)
        if old["metadata"].get("deletionTimestamp"):
            added = [
                f
                for f in new["metadata"].get("finalizers") or ()
                if f not in (old["metadata"].get("finalizers") or ())
            ]
            if added:
                raise errors.invalid_object(rt.kind, rt.group, name, [errors.forbidden_field(
                    "metadata.finalizers", f"no new finalizers can be added if the object is being deleted, found new finalizers {errors.go_strings(added)}")])  # fmt: skip
        if rt.builtin:
            builtins.prepare(rt.kind, new, old)
        warnings = self._validate(rt, new, old, validation, subresource)
        if rt.generation and _body(
            {k: v for k, v in new.items() if not (rt.status and k == "status")}
        ) != _body({k: v for k, v in old.items() if not (rt.status and k == "status")}):
            new["metadata"]["generation"] = int(old["metadata"].get("generation") or 0) + 1
        if _body(new) == _body(old) and new["metadata"] == _meta_sans_rv(old):
            return Result(self.present(rt, old), 200, warnings)  # a no-op write is not written
        if dry_run:
            return Result(
                self.present(
                    rt,
                    {
                        **new,
                        "metadata": {
                            **new["metadata"],
                            "resourceVersion": old["metadata"]["resourceVersion"],
                        },
                    },
                ),
                200,
                warnings,
            )
        stored = self._commit(rt, new, old)
        return Result(self.present(rt, stored), 200, warnings)

    def _commit(self, rt: ResourceType, new: Obj, old: Obj | None) -> Obj:
        """Store a write; an object being deleted whose last finalizer went is removed."""
        if (
            new["metadata"].get("deletionTimestamp")
            and not new["metadata"].get("finalizers")
            and not self._pending(rt, new)
        ):
            final = self.store.remove(rt.storage, new)
            self._after_remove(rt, final)
            return final
        stored = self.store.put(rt.storage, new)
        self._after_write(rt, stored, old)
        return stored

    def _pending(self, rt: ResourceType, obj: Obj) -> bool:
        """Deletion waits on something else than metadata.finalizers: a bound pod stays until its
        kubelet deletes it with grace 0, a namespace until its spec.finalizers are done."""
        if not rt.builtin:
            return False
        if rt.kind == "Pod":
            return bool(obj["metadata"].get("deletionGracePeriodSeconds"))
        if rt.kind == "Namespace":
            return bool((obj.get("spec") or {}).get("finalizers"))
        return False

    def patch(
        self,
        rt: ResourceType,
        namespace: str,
        name: str,
        content_type: str,
        body: Any,
        subresource: str = "",
        dry_run: bool = False,
        validation: str = "Warn",
        force: bool = False,
    ) -> Result:
        old = self.store.get(rt.storage, namespace if rt.namespaced else "", name)
        if content_type == APPLY:
            if old is None:
                return self.create(
                    rt,
                    namespace if rt.namespaced else None,
                    {**body, "metadata": {**(body.get("metadata") or {}), "name": name}},
                    dry_run,
                    validation,
                )
            content_type = MERGE
        if old is None:
            raise errors.not_found(rt.plural, rt.group, name)
        current = self.present(rt, old)
        if content_type == MERGE:
            new = patch.merge_patch(current, body)
        elif content_type == JSON_PATCH:
            new = patch.json_patch(current, body)
        elif content_type == STRATEGIC:
            if not rt.builtin:
                raise errors.unsupported_media_type(content_type, [JSON_PATCH, MERGE, APPLY])
            new = patch.strategic_merge(current, body)
        else:
            raise errors.unknown_media_type()
        if not isinstance(new, dict):
            raise errors.bad_request("the patch did not produce an object")
        new = patch.clone(new)
        new_meta = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
        rv = new_meta.get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, name)
        new_meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        new["metadata"] = new_meta
        obj = self._incoming(rt, new, namespace)
        if obj["metadata"].get("name") != name:
            raise errors.bad_request(
                f"the name of the object ({obj['metadata'].get('name')}) does not match the name on the URL ({name})"
            )
        obj["metadata"].pop("resourceVersion", None)
        return self._replace(rt, old, obj, subresource, dry_run, validation)

    def bind(self, rt: ResourceType, namespace: str, name: str, binding: Any) -> Result:
        """POST pods/<name>/binding."""
        if not (rt.builtin and rt.kind == "Pod") or not isinstance(binding, dict):
            raise errors.path_not_found()
        old = self.get(rt, namespace, name)
        new = builtins.bind(old, binding)
        new["metadata"] = {k: v for k, v in old["metadata"].items() if k != "resourceVersion"}
        self._commit(rt, new, old)
        return Result(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}, 201
        )

    # --- scale -----------------------------------------------------------------------------------

    def get_scale(self, rt: ResourceType, namespace: str, name: str) -> Obj:
        if rt.scale is None:
            raise errors.not_found(rt.plural, rt.group, name)
        obj = self.get(rt, namespace, name)
        m = obj["metadata"]
        status: Obj = {"replicas": _get_path(obj, rt.scale.status_replicas_path) or 0}
        if rt.scale.label_selector_path:
            selector = _get_path(obj, rt.scale.label_selector_path)
            if selector is not None:
                status["selector"] = selector
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                k: m[k]
                for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
                if k in m
            },
            "spec": {"replicas": _get_path(obj, rt.scale.spec_replicas_path) or 0},
            "status": status,
        }

    def update_scale(
        self, rt: ResourceType, namespace: str, name: str, scale: Any, dry_run: bool = False
    ) -> Obj:
        if rt.scale is None:
            raise errors.not_found(rt.plural, rt.group, name)
        if not isinstance(scale, dict):
            raise errors.bad_request("the body must be a Scale object")
        old = self.get(rt, namespace, name)
        rv = (scale.get("metadata") or {}).get("resourceVersion")
        if rv and rv != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rt.plural, rt.group, name)
        replicas = (scale.get("spec") or {}).get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise errors.invalid_object(
                "Scale",
                "autoscaling",
                name,
                [errors.invalid("spec.replicas", replicas, "must be an integer")],
            )
        new = patch.clone(old)
        _set_path(new, rt.scale.spec_replicas_path, replicas)
        new["metadata"].pop("resourceVersion", None)
        self._replace(rt, old, new, "", dry_run, "Ignore")
        return (
            self.get_scale(rt, namespace, name)
            if not dry_run
            else {**self.get_scale(rt, namespace, name), "spec": {"replicas": replicas}}
        )

    def patch_scale(
        self, rt: ResourceType, namespace: str, name: str, content_type: str, body: Any, dry_run: bool = False
    ) -> Obj:
        current = self.get_scale(rt, namespace, name)
        if content_type == JSON_PATCH:
            new = patch.json_patch(current, body)
        elif content_type in (MERGE, STRATEGIC, APPLY):
            new = patch.merge_patch(current, body)
        else:
            raise errors.unsupported_media_type(content_type, [JSON_PATCH, MERGE, APPLY, STRATEGIC])
        return self.update_scale(rt, namespace, name, new, dry_run)

    # --- delete ------------------------------------------------------------------------------------

    def delete(
        self, rt: ResourceType, namespace: str, name: str, options: Obj, dry_run: bool = False
    ) -> Result:
        old = self.get(rt, namespace, name)
        pre = options.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != old["metadata"].get("uid"):
            raise errors.conflict(
                rt.kind,
                rt.group,
                name,
                f"the UID in the precondition ({pre['uid']}) does not match the UID in record ({old['metadata'].get('uid')}). The object might have been deleted and then recreated",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise errors.conflict(
                rt.kind,
                rt.group,
                name,
                f"the ResourceVersion in the precondition ({pre['resourceVersion']}) does not match the ResourceVersion in record ({old['metadata']['resourceVersion']}). The object might have been modified",
            )
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        policy = policy or "Background"
        if policy not in ("Background", "Foreground", "Orphan"):
            raise errors.invalid_object(
                "DeleteOptions",
                "",
                "",
                [errors.not_supported("propagationPolicy", policy, ["Foreground", "Background", "Orphan"])],
            )
        grace = options.get("gracePeriodSeconds")
        m = old["metadata"]
        finalizers = list(m.get("finalizers") or ())
        if policy == "Foreground" and FOREGROUND not in finalizers:
            finalizers.append(FOREGROUND)
        if policy == "Orphan" and ORPHAN not in finalizers:
            finalizers.append(ORPHAN)
        if rt.kind == "Namespace" and rt.builtin and not m.get("deletionTimestamp"):
            return self._mark_deleting(
                rt,
                old,
                finalizers,
                0,
                dry_run,
                {"status": {**(old.get("status") or {}), "phase": "Terminating"}},
            )
        if rt.kind == "CustomResourceDefinition" and rt.builtin and crds.CLEANUP_FINALIZER not in finalizers:
            finalizers.append(crds.CLEANUP_FINALIZER)
            return self._mark_deleting(
                rt, old, finalizers, 0, dry_run, {"status": crds.terminating_status(old)}
            )
        pod_grace = self._pod_grace(rt, old, grace)
        if m.get("deletionTimestamp"):
            if rt.kind == "Pod" and rt.builtin and pod_grace == 0 and m.get("deletionGracePeriodSeconds"):
                if not finalizers:
                    return self._remove(rt, old, dry_run)
                return self._mark_deleting(rt, old, finalizers, 0, dry_run, {}, force_grace=True)
            if finalizers != list(m.get("finalizers") or ()):
                return self._mark_deleting(
                    rt, old, finalizers, int(m.get("deletionGracePeriodSeconds") or 0), dry_run, {}
                )
            return Result(self.present(rt, old), 200)
        if pod_grace or finalizers:
            return self._mark_deleting(rt, old, finalizers, pod_grace, dry_run, {})
        return self._remove(rt, old, dry_run)

    def _pod_grace(self, rt: ResourceType, pod: Obj, grace: Any) -> int:
        if rt.kind != "Pod" or not rt.builtin:
            return 0
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        if not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return 0
        if grace is None:
            grace = spec.get("terminationGracePeriodSeconds", 30)
        current = pod["metadata"].get("deletionGracePeriodSeconds")
        if current is not None and int(current) < int(grace):
            return int(current)
        return max(int(grace), 0)

    def _mark_deleting(
        self,
        rt: ResourceType,
        old: Obj,
        finalizers: list[str],
        grace: int,
        dry_run: bool,
        extra: Obj,
        force_grace: bool = False,
    ) -> Result:
        new = {**old, **extra}
        m = dict(old["metadata"])
        if (
            not m.get("deletionTimestamp")
            or force_grace
            or grace < int(m.get("deletionGracePeriodSeconds") or 0)
        ):
            m["deletionTimestamp"] = (datetime.now(UTC) + timedelta(seconds=grace)).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            m["deletionGracePeriodSeconds"] = grace
            if rt.generation and not old["metadata"].get("deletionTimestamp"):
                m["generation"] = int(m.get("generation") or 0) + 1
        m["finalizers"] = finalizers
        if not finalizers:
            m.pop("finalizers")
        m.pop("resourceVersion", None)
        new["metadata"] = m
        if dry_run:
            return Result(
                self.present(
                    rt, {**new, "metadata": {**m, "resourceVersion": old["metadata"]["resourceVersion"]}}
                ),
                200,
            )
        stored = self._commit(rt, new, old)
        return Result(self.present(rt, stored), 200)

    def _remove(self, rt: ResourceType, old: Obj, dry_run: bool) -> Result:
        final = old if dry_run else self.store.remove(rt.storage, old)
        if not dry_run:
            self._after_remove(rt, final)
        if rt.return_deleted:
            return Result(self.present(rt, final), 200)
        details: Obj = {"name": old["metadata"]["name"], "kind": rt.plural, "uid": old["metadata"].get("uid")}
        if rt.group:
            details["group"] = rt.group
        return Result(
            {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details},
            200,
        )

    # --- writes done by the server's own controllers --------------------------------------------------

    def system_update(self, storage: tuple[str, str], obj: Obj, changes: Obj) -> Obj | None:
        """A controller's write (GC, namespace and CRD cleanup), never conflicting."""
        rt = self.registry.by_storage(storage)
        current = self.store.get(storage, obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
        if rt is None or current is None or current["metadata"].get("uid") != obj["metadata"].get("uid"):
            return None
        new = {**current, **{k: v for k, v in changes.items() if k != "metadata"}}
        new["metadata"] = {**current["metadata"], **(changes.get("metadata") or {})}
        for key in [k for k, v in new["metadata"].items() if v is None]:
            del new["metadata"][key]
        new["metadata"].pop("resourceVersion", None)
        return self._commit(rt, new, current)

    def system_delete(
        self,
        storage: tuple[str, str],
        obj: Obj,
        policy: str = "Background",
        user: str = audit.GARBAGE_COLLECTOR,
    ) -> None:
        """A controller's delete (`user` is who a real cluster's audit log would name)."""
        rt = self.registry.by_storage(storage)
        m = obj["metadata"]
        current = self.store.get(storage, m.get("namespace") or "", m["name"])
        if rt is None or current is None:
            return
        pod = rt.builtin and rt.kind == "Pod" and self.audit is not None
        try:
            self.delete(
                rt,
                m.get("namespace") or "",
                m["name"],
                {"propagationPolicy": policy, "preconditions": {"uid": m.get("uid")}},
            )
        except errors.ApiError as exc:
            log.debug("collector could not delete %s: %s", m["name"], exc.message)
            if pod and self.audit is not None:
                self.audit.record("delete", m.get("namespace") or "", m["name"], current, exc.code,
                                  reason=exc.reason, message=exc.message, user=user)  # fmt: skip
            return
        if pod and self.audit is not None:
            self.audit.record("delete", m.get("namespace") or "", m["name"], current, 200, user=user)

    def _after_remove(self, rt: ResourceType, final: Obj) -> None:
        if rt.kind == "CustomResourceDefinition" and rt.builtin:
            spec = final.get("spec") or {}
            storage = (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
            self.registry.remove_storage(*storage)
            for leftover in self.store.items(storage):
                self.store.remove(storage, leftover)
            self.store.end(storage)

    def _after_write(self, rt: ResourceType, stored: Obj, old: Obj | None) -> None:
        if (
            rt.kind == "CustomResourceDefinition"
            and rt.builtin
            and not stored["metadata"].get("deletionTimestamp")
        ):
            self.registry.remove_storage(stored["spec"]["group"], stored["spec"]["names"]["plural"])
            for served in crds.resource_types(stored):
                self.registry.add(served)
                self.store.begin(served.storage)
            status = crds.established_status(stored)
            if (
                stored.get("status", {}).get("conditions")
                and stored["status"].get("acceptedNames") == status["acceptedNames"]
            ):
                return
            new = {
                **stored,
                "status": status,
                "metadata": {k: v for k, v in stored["metadata"].items() if k != "resourceVersion"},
            }
            self.store.put(rt.storage, new)
