"""The HTTP layer: aiohttp over TLS, bearer-token auth, URL routing, content negotiation, watch streams.

Requests are parsed here and handed to `rest.Api`; answers are JSON (or a
`meta.k8s.io/v1` Table / PartialObjectMetadata when the Accept header asks).
Watches are newline-delimited JSON over a chunked response.

Also here: the fault switches (`/sandbox/faults`, see faults.py) are applied to requests
before they reach the registry, pod deletions and evictions are written to the audit log
(audit.py), and `ApiServer` saves its objects at shutdown and loads them with `restore`
(a restart keeps the objects and the resourceVersion counter; see store.py).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import secrets
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from . import builtins, discovery, errors, faults, kubeconfig, openapi, openapiv2, protobuf, tables, tls
from . import options as write_options
from .audit import AuditLog
from .disruption import DisruptionController
from .eviction import Evictions
from .gc import Collector
from .kinds import Registry, ResourceType
from .rest import APPLY, Api, Result
from .selectors import both, field_matcher, label_matcher, lookup
from .store import Event, Obj, Store, Watcher, key_of

log = logging.getLogger(__name__)
JSON = "application/json"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
PUBLIC_PATHS = {"/healthz", "/livez", "/readyz"}
FAULTS_PATH = "/sandbox/faults"


def encode(obj: Any) -> bytes:
    return _dumps(obj).encode()


def respond(
    obj: Any, status: int = 200, warnings: list[str] | None = None, content_type: str = JSON
) -> web.Response:
    headers = {"Content-Type": content_type}
    if warnings:
        headers["Warning"] = ", ".join("299 - " + json.dumps(w) for w in warnings)
    return web.Response(body=encode(obj), status=status, headers=headers)


def error_response(exc: errors.ApiError) -> web.Response:
    if exc.plain:
        return web.Response(text=exc.message, status=exc.code)
    response = web.Response(body=encode(exc.status()), status=exc.code, content_type=JSON)
    retry_after = (exc.details or {}).get("retryAfterSeconds")
    if retry_after:  # responsewriters.ErrorNegotiated: a suggested delay is also a header
        response.headers["Retry-After"] = str(retry_after)
    return response


def fault_response(fault: faults.Fault) -> web.Response:
    """What an injected error fault answers."""
    if fault.code == 429:  # the max-in-flight / APF filters' http.Error, plain text
        return web.Response(
            text=faults.TOO_MANY_REQUESTS,
            status=429,
            content_type="text/plain",
            charset="utf-8",
            headers={"Retry-After": str(fault.retry_after), "X-Content-Type-Options": "nosniff"},
        )
    return error_response(fault.error())


@dataclass
class Target:
    rt: ResourceType
    namespace: str | None
    name: str | None
    sub: str
    watch: bool


def _accept_as(request: web.Request) -> str:
    accept = request.headers.get("Accept", "")
    for part in accept.split(","):
        compact = part.replace(" ", "")
        if "as=Table" in compact:
            return "Table"
        if "as=PartialObjectMetadataList" in compact or "as=PartialObjectMetadata" in compact:
            return "Partial"
        if compact.startswith(("application/json", "*/*", "application/yaml")) and "as=" not in compact:
            return ""
    return ""


def _bool(value: str | None) -> bool:
    return value is not None and value.lower() in ("true", "1")


def _verb(request: web.Request, t: Target) -> str:
    """The request's verb, as RBAC and the audit log name it."""
    if request.method == "GET":
        if t.watch or _bool(request.query.get("watch")):
            return "watch"
        return "list" if t.name is None else "get"
    if request.method == "DELETE":
        return "deletecollection" if t.name is None else "delete"
    return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(request.method, request.method.lower())


def _int(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.bad_request(f"invalid {name}: {value!r}") from None


class Handler:
    """Routes one server's requests to its Api; holds the watch machinery."""

    def __init__(
        self,
        api: Api,
        address: str,
        bookmark_interval: float,
        fault_switches: faults.Faults | None = None,
        audit: AuditLog | None = None,
        restart: Callable[[float], None] | None = None,
        boot: str = "",
    ):
        self.api = api
        self.store = api.store
        self.registry = api.registry
        self.address = address
        self.bookmark_interval = bookmark_interval
        self.watches: dict[Watcher, web.Request] = {}
        self.evictions = Evictions(api)
        self.faults = fault_switches or faults.Faults()
        self.audit = audit
        self.restart = restart
        self.boot = boot

    # --- routing ---------------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._dispatch(request)
        except errors.ApiError as exc:
            return error_response(exc)
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:
            log.exception("internal error on %s %s", request.method, request.path)
            return error_response(errors.internal(str(exc)))

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path.rstrip("/") or "/"
        parts = [p for p in path.split("/") if p]
        if path in PUBLIC_PATHS:
            return web.Response(text="ok")
        if path == FAULTS_PATH or path.startswith(FAULTS_PATH + "/"):
            return await self._faults(request, path[len(FAULTS_PATH) + 1 :])
        if not parts or parts[0] not in ("api", "apis") or len(parts) <= (2 if parts[0] == "api" else 3):
            fault = self.faults.error_for("get")  # discovery, OpenAPI, /version: gets of no resource
            if fault is not None:
                return fault_response(fault)
        if path == "/version":
            return respond(discovery.VERSION)
        if path == "/":
            return respond(
                {"paths": ["/api", "/api/v1", "/apis", "/openapi/v2", "/openapi/v3", "/version", "/healthz"]}
            )
        if parts == ["openapi", "v2"]:
            return self._openapi_v2(request)
        if parts[0] == "openapi":
            return self._openapi(parts)
        if parts[0] == "api" and len(parts) <= 2:
            return self._discovery_core(request, parts)
        if parts[0] == "apis" and len(parts) <= 3:
            return self._discovery_groups(request, parts)
        if parts[0] not in ("api", "apis"):
            raise errors.page_not_found()
        target = self._route(parts)
        try:
            return await self._resource(request, target)
        except errors.Undecodable as exc:
            raise exc.as_kind(target.rt.kind) from None

    def _route(self, parts: list[str]) -> Target:
        if parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        else:
            group, version, rest = parts[1], parts[2], parts[3:]
        if version not in self.registry.groups().get(group, []):
            raise errors.page_not_found()  # no handler for that group version at all
        watch = False
        if rest and rest[0] == "watch":
            watch, rest = True, rest[1:]
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            candidate = self.registry.get(group, version, rest[2])
            if candidate is not None and candidate.namespaced:
                namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise errors.path_not_found()
        rt = self.registry.get(group, version, rest[0])
        if rt is None:
            raise errors.path_not_found()
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        pod_sub = sub in ("binding", "eviction") and rt.builtin and rt.kind == "Pod"
        if sub and not ((sub == "status" and rt.status) or (sub == "scale" and rt.scale) or pod_sub):
            raise errors.path_not_found()
        return Target(rt, namespace, name, sub, watch)

    # --- discovery and openapi ---------------------------------------------------------------------

    def _aggregated(self, request: web.Request, core: bool) -> web.Response | None:
        media = discovery.wants_aggregated(request.headers.get("Accept", ""))
        if media is None:
            return None
        return respond(discovery.aggregated(self.registry, core, media), content_type=media)

    def _discovery_core(self, request: web.Request, parts: list[str]) -> web.Response:
        if len(parts) == 1:
            return self._aggregated(request, True) or respond(discovery.core_versions(self.address))
        if parts[1] != "v1":
            raise errors.path_not_found()
        return respond(discovery.resource_list(self.registry, "", "v1"))

    def _discovery_groups(self, request: web.Request, parts: list[str]) -> web.Response:
        if len(parts) == 1:
            return self._aggregated(request, False) or respond(discovery.group_list(self.registry))
        if len(parts) == 2:
            found = discovery.group(self.registry, parts[1])
            if found is None:
                raise errors.path_not_found()
            return respond(found)
        if parts[2] not in self.registry.groups().get(parts[1], []):
            raise errors.path_not_found()
        return respond(discovery.resource_list(self.registry, parts[1], parts[2]))

    def _openapi(self, parts: list[str]) -> web.Response:
        """/openapi/v3 (the index) and /openapi/v3/api/v1, /openapi/v3/apis/<group>/<version>."""
        doc: Obj | None = None
        if parts == ["openapi", "v3"]:
            doc = openapi.index(self.registry)
        elif parts[:3] == ["openapi", "v3", "api"] and len(parts) == 4:
            doc = openapi.gv_document(self.registry, "", parts[3])
        elif parts[:3] == ["openapi", "v3", "apis"] and len(parts) == 5:
            doc = openapi.gv_document(self.registry, parts[3], parts[4])
        if doc is None:
            raise errors.path_not_found()
        return respond(doc)

    def _openapi_v2(self, request: web.Request) -> web.Response:
        """/openapi/v2: gnostic protobuf for kubectl (it asks for nothing else), JSON otherwise."""
        doc = openapiv2.document(self.registry)
        if openapiv2.PROTOBUF in request.headers.get("Accept", ""):
            return web.Response(body=openapiv2.to_protobuf(doc), content_type=openapiv2.PROTOBUF_RESPONSE)
        return respond(doc)

    # --- resources --------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        ctype = request.content_type
        if ctype == protobuf.PROTOBUF:
            return protobuf.decode(raw)
        try:
            if ctype in ("application/yaml", APPLY) or (raw[:1] not in (b"{", b"[", b"") and ctype != JSON):
                return yaml.safe_load(raw) if raw else None
            if request.method in ("POST", "PUT") and ctype == JSON:
                return errors.decode_object(raw)  # an object, or Undecodable (worded once the kind is known)
            return json.loads(raw) if raw else None
        except ValueError as exc:
            raise errors.bad_request(f"error decoding request body: {exc}") from None

    async def _resource(self, request: web.Request, t: Target) -> web.StreamResponse:
        verb = _verb(request, t)
        removal = (verb == "delete" and not t.sub) or (verb == "create" and t.sub == "eviction")
        if removal and self.audit is not None and t.rt.builtin and t.rt.kind == "Pod":
            return await self._audited(request, t, verb)
        return await self._faulted(request, t, verb)

    async def _faulted(self, request: web.Request, t: Target, verb: str) -> web.StreamResponse:
        """The request, unless a fault switch answers it first."""
        fault = self.faults.error_for(verb, t.rt.plural, t.rt.group, t.sub)
        if fault is not None:
            return fault_response(fault)
        status_write = t.sub == "status" and verb in ("update", "patch")
        if status_write and self.faults.conflict_for(verb, t.rt.plural, t.rt.group) is not None:
            raise errors.conflict(t.rt.plural, t.rt.group, t.name or "")
        delay = self.faults.delay_for(verb, t.rt.plural, t.rt.group, t.sub) if verb != "watch" else 0.0
        response = await self._serve(request, t)
        if delay:
            await asyncio.sleep(delay)  # served and stored; only the answer is late
        return response

    async def _audited(self, request: web.Request, t: Target, verb: str) -> web.StreamResponse:
        """A pod deletion or eviction, written to the audit log with its answer."""
        assert self.audit is not None and t.name is not None
        ns = t.namespace or ""
        pod = self.store.get(t.rt.storage, ns, t.name)  # as it is when the request arrives
        options: Obj = {}
        with contextlib.suppress(errors.ApiError):  # a bad body is the request's answer, below
            if t.sub == "eviction":
                body = await self._body(request)
                options = dict(body.get("deleteOptions") or {}) if isinstance(body, dict) else {}
                options.setdefault("dryRun", request.query.getall("dryRun", []))
            else:
                options = await self._delete_options(request)
                options.setdefault("dryRun", request.query.getall("dryRun", []))
        code, reason, message = 500, "", ""
        try:
            response = await self._faulted(request, t, verb)
            code = response.status
            return response
        except errors.ApiError as exc:
            code, reason, message = exc.code, exc.reason, exc.message
            raise
        finally:
            self.audit.record(
                "evict" if t.sub == "eviction" else "delete", ns, t.name, pod, code, reason=reason,
                message=message, user_agent=request.headers.get("User-Agent", ""),
                dry_run="All" in (options.get("dryRun") or []), grace=options.get("gracePeriodSeconds"),
            )  # fmt: skip

    async def _serve(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        method = request.method
        rt = t.rt
        if rt.namespaced and t.namespace is None and method != "GET":
            raise errors.path_not_found()
        ns = t.namespace or ""
        write_options.check(method, q, q.getall("dryRun", []), request.content_type)
        dry_run = q.get("dryRun") == "All"
        validation = q.get("fieldValidation") or "Warn"
        if method == "GET":
            if t.watch or _bool(q.get("watch")):
                return await self._watch(request, rt, t.namespace, t.name)
            if t.name is None:
                return self._list(request, rt, t.namespace)
            if t.sub == "scale":
                scale = self.api.get_scale(rt, ns, t.name)
                return respond(builtins.scale_table(scale) if _accept_as(request) == "Table" else scale)
            return self._one(request, rt, self.api.get(rt, ns, t.name))
        if method == "POST":
            if t.name is not None and t.sub == "binding":
                return self._result(self.api.bind(rt, ns, t.name, await self._body(request)))
            if t.name is not None and t.sub == "eviction":
                body = await self._body(request)
                return self._result(self.evictions.create(ns, t.name, body, q.getall("dryRun", [])))
            if t.name is not None:
                raise errors.method_not_allowed()
            return self._result(
                self.api.create(rt, t.namespace, await self._body(request), dry_run, validation)
            )
        if t.name is None and method == "DELETE":
            return self._delete_collection(request, rt, t.namespace, await self._delete_options(request))
        if t.name is None:
            raise errors.method_not_allowed()
        if method == "PUT":
            body = await self._body(request)
            if t.sub == "scale":
                return respond(self.api.update_scale(rt, ns, t.name, body, dry_run))
            return self._result(self.api.update(rt, ns, t.name, body, t.sub, dry_run, validation))
        if method == "PATCH":
            body = await self._body(request)
            ctype = request.content_type
            if t.sub == "scale":
                return respond(self.api.patch_scale(rt, ns, t.name, ctype, body, dry_run))
            return self._result(
                self.api.patch(rt, ns, t.name, ctype, body, t.sub, dry_run, validation, _bool(q.get("force")))
            )
        if method == "DELETE":
            if t.sub:
                raise errors.method_not_allowed()
            options = await self._delete_options(request)
            return self._result(
                self.api.delete(rt, ns, t.name, options, dry_run or "All" in (options.get("dryRun") or []))
            )
        raise errors.method_not_allowed()

    async def _delete_options(self, request: web.Request) -> Obj:
        options: Obj = {}
        if request.can_read_body:
            body = await self._body(request)
            if isinstance(body, dict):
                options = body
        q = request.query
        if "gracePeriodSeconds" in q:
            options["gracePeriodSeconds"] = _int(q["gracePeriodSeconds"], "gracePeriodSeconds")
        if "propagationPolicy" in q:
            options["propagationPolicy"] = q["propagationPolicy"]
        if "orphanDependents" in q:
            options["orphanDependents"] = _bool(q["orphanDependents"])
        return options

    def _result(self, result: Result) -> web.Response:
        return respond(result.obj, result.code, result.warnings)

    def _one(self, request: web.Request, rt: ResourceType, obj: Obj) -> web.Response:
        served = self.api.present(rt, obj)
        fmt = _accept_as(request)
        if fmt == "Table":
            include = request.query.get("includeObject", "Metadata")
            return respond(
                tables.table(rt, [served], {"resourceVersion": obj["metadata"]["resourceVersion"]}, include)
            )
        if fmt == "Partial":
            return respond(
                {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
            )
        return respond(served)

    # --- list -------------------------------------------------------------------------------------

    def _matcher(
        self, request: web.Request, rt: ResourceType, name: str | None = None
    ) -> Callable[[Obj], bool]:
        q = request.query
        allowed = set(rt.field_labels) | set(rt.selectable_fields)
        extract = builtins.event_field if rt.storage == ("", "events") else lookup
        labels = label_matcher(q.get("labelSelector"))
        fields = field_matcher(q.get("fieldSelector"), allowed, extract, rt.builtin)
        by_name = (lambda obj: obj["metadata"]["name"] == name) if name else None  # legacy /watch/.../<name>
        return both(labels, fields, by_name)

    def _list(self, request: web.Request, rt: ResourceType, namespace: str | None) -> web.Response:
        q = request.query
        match = self._matcher(request, rt)
        limit = _int(q.get("limit"), "limit") or 0
        start: tuple[str, str] | None = None
        rv_param = q.get("resourceVersion") or ""
        rv_match = q.get("resourceVersionMatch") or ""
        if q.get("continue"):
            try:
                token = json.loads(base64.urlsafe_b64decode(q["continue"]))
                list_rv, start = int(token["rv"]), (token["start"][0], token["start"][1])
            except (ValueError, KeyError, TypeError, IndexError):
                raise errors.bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion"
                ) from None
            if list_rv < self.store.compacted:
                raise errors.gone("The provided continue parameter is too old to display a consistent list result. "
                                  "You can start a new list without the continue parameter.")  # fmt: skip
            state = self.store.snapshot(rt.storage, list_rv)
            objs = [state[k] for k in sorted(state)]
        elif rv_param and rv_match == "Exact":
            list_rv = _int(rv_param, "resourceVersion") or 0
            state = self.store.snapshot(rt.storage, list_rv)
            objs = [state[k] for k in sorted(state)]
        else:
            if rv_param:
                wanted = _int(rv_param, "resourceVersion") or 0
                if wanted > self.store.rv:
                    raise errors.timeout(f"Too large resource version: {wanted}, current: {self.store.rv}")
            list_rv = self.store.rv
            objs = self.store.items(rt.storage, namespace if rt.namespaced else None)
        items: list[Obj] = []
        remaining = 0
        for obj in objs:
            key = key_of(obj)
            if start is not None and key <= start:
                continue
            if namespace is not None and rt.namespaced and key[0] != namespace:
                continue
            if not match(obj):
                continue
            if limit and len(items) >= limit:
                remaining += 1
                continue
            items.append(obj)
        list_meta: Obj = {"resourceVersion": str(list_rv)}
        if remaining:
            last = key_of(items[-1])
            list_meta["continue"] = base64.urlsafe_b64encode(
                encode({"rv": list_rv, "start": list(last)})
            ).decode()
            list_meta["remainingItemCount"] = remaining
        fmt = _accept_as(request)
        served = [self.api.present(rt, o) for o in items]
        if rt.builtin and fmt not in ("Table", "Partial"):  # a typed list's items carry no kind or apiVersion
            served = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in served]
        if fmt == "Table":
            return respond(tables.table(rt, served, list_meta, q.get("includeObject", "Metadata")))
        if fmt == "Partial":
            return respond({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
                            "items": [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}
                                      for o in served]})  # fmt: skip
        return respond(
            {"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": list_meta, "items": served}
        )

    def _delete_collection(
        self, request: web.Request, rt: ResourceType, namespace: str | None, options: Obj
    ) -> web.Response:
        match = self._matcher(request, rt)
        dry_run = request.query.get("dryRun") == "All"
        deleted = []
        audited = self.audit is not None and rt.builtin and rt.kind == "Pod"
        dry_run = dry_run or "All" in (options.get("dryRun") or [])
        for obj in self.store.items(rt.storage, namespace if rt.namespaced else None):
            if match(obj):
                m = obj["metadata"]
                try:
                    result = self.api.delete(rt, m.get("namespace") or "", m["name"], options, dry_run)
                except errors.ApiError as exc:
                    if audited and self.audit is not None:
                        self._audit_collection(request, obj, exc.code, exc, options, dry_run)
                    raise
                if audited and self.audit is not None:
                    self._audit_collection(request, obj, 200, None, options, dry_run)
                deleted.append(
                    result.obj if result.obj.get("kind") != "Status" else self.api.present(rt, obj)
                )
        return respond({"kind": rt.list_kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": str(self.store.rv)},
                        "items": deleted})  # fmt: skip

    def _audit_collection(
        self,
        request: web.Request,
        pod: Obj,
        code: int,
        exc: errors.ApiError | None,
        options: Obj,
        dry_run: bool,
    ) -> None:
        assert self.audit is not None
        m = pod["metadata"]
        self.audit.record(
            "deletecollection", m.get("namespace") or "", m["name"], pod, code,
            reason=exc.reason if exc else "", message=exc.message if exc else "",
            user_agent=request.headers.get("User-Agent", ""), dry_run=dry_run,
            grace=options.get("gracePeriodSeconds"),
        )  # fmt: skip

    # --- fault switches ---------------------------------------------------------------------------

    async def _faults(self, request: web.Request, fault_id: str) -> web.Response:
        """GET lists the active faults, POST sets one, DELETE clears all (or the one named)."""
        if request.method == "GET" and not fault_id:
            return respond(
                {"boot": self.boot, "faults": self.faults.describe(), "openWatches": len(self.watches)}
            )
        if request.method == "DELETE":
            cleared = self.faults.clear(fault_id or None)
            if fault_id and not cleared:
                raise errors.ApiError(404, "NotFound", f'fault "{fault_id}" not found')
            return respond({"cleared": cleared})
        if request.method != "POST" or fault_id:
            raise errors.method_not_allowed()
        try:
            spec = json.loads(await request.read() or b"null")
        except ValueError as exc:
            raise errors.bad_request(f"error decoding request body: {exc}") from None
        kind = spec.get("fault") if isinstance(spec, dict) else None
        if kind == "dropWatches":
            return respond({"dropped": self.drop_watches(bool(spec.get("abort")))})
        if kind == "restart":
            downtime = faults.parse_downtime(spec)
            if self.restart is None:
                raise errors.bad_request(
                    "restart needs the server to run as its own process (jibri-sandbox apiserver)"
                )
            asyncio.get_running_loop().call_later(0.05, self.restart, downtime)  # after this answer
            return respond({"restarting": True, "downtime": downtime, "boot": self.boot}, 202)
        fault = self.faults.add(faults.parse(spec))
        log.info("fault set: %s", fault.describe(time.monotonic()))
        return respond(fault.describe(time.monotonic()), 201)

    def drop_watches(self, abort: bool = False) -> int:
        """End every open watch now: cleanly (as a watch timeout does), or resetting the connection."""
        dropped = list(self.watches.items())
        for watcher, request in dropped:
            if abort and request.transport is not None:
                request.transport.abort()
            self.store.unwatch(watcher)
        log.info("dropped %d watches%s", len(dropped), " (connections reset)" if abort else "")
        return len(dropped)

    # --- watch ------------------------------------------------------------------------------------

    def _encode_event(
        self, rt: ResourceType, kind: str, event: Event, fmt: str, include: str, first: list[bool]
    ) -> bytes:
        source = event.obj
        if kind == "DELETED" and event.type != "DELETED" and event.old is not None:
            # It no longer matches the watch's selector: the last state that did, at this version.
            source = {**event.old, "metadata": {**event.old["metadata"], "resourceVersion": str(event.rv)}}
        if fmt == "Table":
            obj = tables.table(
                rt,
                [self.api.present(rt, source)],
                {"resourceVersion": str(event.rv)},
                include,
                headers=first[0],
            )
            first[0] = False
            return encode({"type": kind, "object": obj}) + b"\n"
        cache_key = f"{kind}|{rt.api_version}|{fmt}"
        data = event.encoded.get(cache_key)
        if data is None:
            obj = self.api.present(rt, source)
            if fmt == "Partial":
                obj = {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": obj["metadata"],
                }
            data = event.encoded[cache_key] = encode({"type": kind, "object": obj}) + b"\n"
        return data

    def _bookmark(self, rt: ResourceType, rv: int, initial_end: bool = False) -> bytes:
        meta: Obj = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return (
            encode(
                {
                    "type": "BOOKMARK",
                    "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta},
                }
            )
            + b"\n"
        )

    async def _watch(
        self, request: web.Request, rt: ResourceType, namespace: str | None, name: str | None = None
    ) -> web.StreamResponse:
        q = request.query
        match = self._matcher(request, rt, name)
        rv_param = q.get("resourceVersion") or ""
        bookmarks = _bool(q.get("allowWatchBookmarks"))
        send_initial = q.get("sendInitialEvents")
        timeout = _int(q.get("timeoutSeconds"), "timeoutSeconds")
        timeout = 1800 if timeout is None or timeout <= 0 else timeout
        if (
            send_initial is not None
            and _bool(send_initial)
            and (q.get("resourceVersionMatch") != "NotOlderThan" or not bookmarks)
        ):
            raise errors.invalid_object("ListOptions", "meta.k8s.io", "", [errors.forbidden_field(
                "resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan")])  # fmt: skip
        watcher = Watcher(rt.storage, namespace if rt.namespaced else None, match)
        backlog: list[tuple[str, Event]] = []
        error: errors.ApiError | None = None
        initial = _bool(send_initial) if send_initial is not None else rv_param in ("", "0")
        try:
            if initial:
                for obj in self.store.items(rt.storage, watcher.namespace):
                    if match(obj):
                        backlog.append(
                            (
                                "ADDED",
                                Event(
                                    int(obj["metadata"]["resourceVersion"]), rt.storage, "ADDED", obj, None
                                ),
                            )
                        )
            elif rv_param not in ("", "0"):
                since = _int(rv_param, "resourceVersion") or 0
                for event in self.store.events_since(rt.storage, since):
                    kind = watcher.classify(event)
                    if kind is not None:
                        backlog.append((kind, event))
        except errors.ApiError as exc:
            error = exc
        start_rv = self.store.rv
        if error is None:
            self.store.watch(watcher)
            self.watches[watcher] = request
        response = web.StreamResponse(
            status=200, headers={"Content-Type": JSON, "Cache-Control": "no-cache, private"}
        )
        response.enable_chunked_encoding()
        fmt = _accept_as(request)
        include = q.get("includeObject", "Metadata")
        first = [True]
        try:
            await response.prepare(request)
            if error is not None:
                await response.write(encode({"type": "ERROR", "object": error.status()}) + b"\n")
                return response
            chunk = b"".join(self._encode_event(rt, k, e, fmt, include, first) for k, e in backlog)
            if initial and bookmarks:  # whenever initial events are sent, as kube-apiserver 1.34 does
                chunk += self._bookmark(rt, start_rv, initial_end=True)
            if chunk:
                await response.write(chunk)
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + self.bookmark_interval
            while True:
                now = time.monotonic()
                if now >= deadline:
                    break
                wait = min(deadline, next_bookmark) - now if bookmarks else deadline - now
                try:
                    async with asyncio.timeout(max(wait, 0.001)):  # not wait_for: see the kubelet's scheduler
                        item = await watcher.queue.get()
                except TimeoutError:
                    if bookmarks and time.monotonic() >= next_bookmark and watcher.queue.empty():
                        await response.write(self._bookmark(rt, self.store.rv))
                        next_bookmark = time.monotonic() + self.bookmark_interval
                    continue
                if item is None:
                    if watcher.overflowed:
                        await response.write(
                            encode(
                                {"type": "ERROR", "object": errors.gone("watch fell too far behind").status()}
                            )
                            + b"\n"
                        )
                    break
                parts = [self._encode_event(rt, item[0], item[1], fmt, include, first)]
                while not watcher.queue.empty():
                    more = watcher.queue.get_nowait()
                    if more is None:
                        break
                    parts.append(self._encode_event(rt, more[0], more[1], fmt, include, first))
                await response.write(b"".join(parts))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.watches.pop(watcher, None)
            self.store.unwatch(watcher)
        return response


def _auth_middleware(token: str) -> Callable[..., Awaitable[web.StreamResponse]]:
    expected = f"Bearer {token}"

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path not in PUBLIC_PATHS and not secrets.compare_digest(
            request.headers.get("Authorization", ""), expected
        ):
            return error_response(errors.unauthorized())
        return await handler(request)

    return middleware


class ApiServer:
    """A Kubernetes API server emulation on 127.0.0.1 over TLS.

    Use it in-process as ``async with ApiServer(kubeconfig=path) as server:`` (then
    ``server.url`` / ``server.kubeconfig``), or run ``jibri-sandbox apiserver``.
    """

    def __init__(
        self,
        kubeconfig: str | Path | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        history_size: int = 10_000,
        bookmark_interval: float = 10.0,
        workdir: str | Path | None = None,
        log_requests: bool = False,
        restore: bool = False,
        audit_log: str | Path | None = None,
        fault_specs: list[Obj] | None = None,
    ):
        self.log_requests = log_requests
        self.restore = restore
        self.audit_path = Path(audit_log) if audit_log else None
        self.audit: AuditLog | None = None
        self.faults = faults.Faults()
        for spec in fault_specs or ():
            self.faults.add(faults.parse(spec))
        self.boot = uuid.uuid4().hex  # tells a restarted server from the one before
        self.on_restart: Callable[[float], None] | None = None  # set by the CLI, which can re-exec
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(24)
        self.bookmark_interval = bookmark_interval
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="jibri-apiserver-")
            workdir = self._tmp.name
        self.workdir = Path(workdir)
        self.kubeconfig = Path(kubeconfig) if kubeconfig else self.workdir / "kubeconfig"
        self.state_file = self.workdir / "state.json"
        self.store = Store(history_size)
        self.registry = Registry()
        self.api = Api(self.store, self.registry)
        self.url = ""
        self.handler: Handler | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def _seed(self) -> None:
        for name in ("default", "kube-system", "kube-public", "kube-node-lease"):
            self.api.create(self.registry.get("", "v1", "namespaces"), None, {"metadata": {"name": name}})  # type: ignore[arg-type]
        services = self.registry.get("", "v1", "services")
        assert services is not None
        self.api.create(services, "default", {"metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
                                               "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]}})  # fmt: skip

    async def start(self) -> ApiServer:
        restoring = self.restore and self.state_file.exists()
        certs = tls.generate(self.workdir / "pki", reuse=self.restore)
        if restoring:
            self.store.load(json.loads(self.state_file.read_text()))
            self.api.restored()
            log.info("restored %d objects at resourceVersion %d from %s",
                     sum(len(o) for o in self.store.objects.values()), self.store.rv, self.state_file)  # fmt: skip
        else:
            self._seed()
        if self.audit_path is not None:
            self.audit = self.api.audit = AuditLog(self.audit_path)
        collector, disruption = Collector(self.api), DisruptionController(self.api)
        if restoring:
            collector.resync()
            disruption.resync_all()
        self._tasks = [asyncio.create_task(collector.run()), asyncio.create_task(disruption.run())]
        app = web.Application(middlewares=[_auth_middleware(self.token)], client_max_size=16 * 1024 * 1024)
        restart = self._restart if self.on_restart is not None else None  # in process: no restart
        handler = self.handler = Handler(
            self.api, "", self.bookmark_interval, self.faults, self.audit, restart, self.boot
        )
        app.router.add_route("*", "/{tail:.*}", handler.handle)
        access_log = logging.getLogger("jibri_sandbox.apiserver.access") if self.log_requests else None
        self._runner = web.AppRunner(app, access_log=access_log, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.port, ssl_context=certs.server_context(), backlog=512
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]
        self.url = f"https://{self.host}:{self.port}"
        handler.address = f"{self.host}:{self.port}"
        kubeconfig.write(self.kubeconfig, self.url, certs.ca_cert.read_bytes(), self.token)
        log.info("API server listening on %s; kubeconfig %s", self.url, self.kubeconfig)
        return self

    def _restart(self, downtime: float) -> None:
        if self.on_restart is not None:
            log.info("restart requested (downtime %ss)", downtime)
            self.on_restart(downtime)  # the CLI stops the server, then re-executes itself

    def save(self) -> None:
        """Write the objects and the resourceVersion counter to `state_file` (atomically)."""
        staging = self.state_file.with_name(f".{self.state_file.name}.tmp")
        staging.write_text(json.dumps(self.store.dump(), separators=(",", ":"), ensure_ascii=False))
        os.replace(staging, self.state_file)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for watchers in self.store.watchers.values():
            for watcher in list(watchers):
                watcher.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            if self._tmp is None:
                self.save()
                log.info("saved %d objects at resourceVersion %d to %s",
                         sum(len(o) for o in self.store.objects.values()), self.store.rv, self.state_file)  # fmt: skip
        if self.audit is not None:
            self.audit.close()
            self.audit = self.api.audit = None
        if self._tmp is not None:
            self._tmp.cleanup()

    async def __aenter__(self) -> ApiServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
