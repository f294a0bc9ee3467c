"""Wiring: kopf handlers, settings, probes and metrics for one operator process.

Handlers live in an explicit :class:`kopf.OperatorRegistry` built here, not in
kopf's global one, so tests can run several operators in one process and
every handler reaches the shared :class:`Hub` through a closure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import kopf
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from jibri_operator import metrics
from jibri_operator.api.constants import (
    FINALIZER,
    GROUP,
    PLURAL_ENVIRONMENT,
    PLURAL_POOL,
    PLURAL_SESSION,
    VERSION,
)
from jibri_operator.api.types import Phase
from jibri_operator.controllers.environments import EnvironmentRunner
from jibri_operator.controllers.hub import Hub
from jibri_operator.controllers.pools import POOL_LABEL, PoolRunner
from jibri_operator.controllers.sessions import STOP_TIMEOUT, Poke, SessionRunner
from jibri_operator.kube.client import Kube, context_namespace, load_config
from jibri_operator.kube.election import LeaseTiming
from jibri_operator.kube.lease import KubernetesLeaseApi, LeaseElector, default_identity, default_namespace
from jibri_operator.xmpp.brewery import BreweryConfig

log = logging.getLogger(__name__)
EXIT_LEADERSHIP_LOST = 3  # the exit code of a replica that lost its Lease (the kubelet restarts it)


@dataclass
class LeaderElection:
    """``--leader-elect``: act only while holding the Lease ``namespace/name``."""

    name: str = "jibri-operator"
    namespace: str | None = None  # default: $POD_NAMESPACE, the service account's, the kubeconfig's
    identity: str | None = None  # default: $POD_NAME (or the host name) and a random suffix
    timing: LeaseTiming = field(default_factory=LeaseTiming)


@dataclass
class OperatorOptions:
    kubeconfig: str | None = None
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces
    nickname: str | None = None
    metrics_host: str = "0.0.0.0"  # noqa: S104 - probes and scrapes come from outside the pod
    metrics_port: int | None = 8080
    standalone: bool = True
    peering_name: str | None = None
    executor_threads: int = 32
    leader_election: LeaderElection | None = None  # None: act at once, alone


def default_nickname() -> str:
    """Stable across restarts of the same pod, so Jibris' reports reach the restarted operator."""
    return "jibri-operator-" + (os.environ.get("POD_NAME") or socket.gethostname())


class NoDiffBase(kopf.DiffBaseStorage):
    """No last-handled state at all: every object is taken as handled as it is now.

    kopf keeps an object's "essence" (a deep copy of its spec, labels and annotations) to
    tell a creation or an update from a mere status change, and stores it in an annotation
    after the first event: one more API write for every RecordingSession, before it can
    start, and a deep copy of every object on every watch event. This operator has no
    create, update or resume handlers (its daemons and event handlers compare what they care
    about themselves); its only change handler is on-delete, and kopf detects deletion from
    ``deletionTimestamp``, not from a diff. :func:`build_registry` refuses any other kind.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return kopf.BodyEssence()

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


def build_settings(options: OperatorOptions) -> kopf.OperatorSettings:
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    # Keep kopf's bookkeeping out of status: the CRD schema owns status and would prune it.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = "jibri-operator"  # the "From" of every Event
    settings.posting.reporting_instance = options.nickname or default_nickname()
    settings.posting.event_name_prefix = "jibri-operator-"
    # Sessions should start within milliseconds of their creation: kopf must not hold
    # events back, and watches must be re-established promptly after a server timeout.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.batching.worker_limit = None
    if options.standalone:
        settings.peering.standalone = True
    else:
        settings.peering.name = options.peering_name or "jibri-operator"
        settings.peering.mandatory = True
    return settings


def connection_info(config: Any) -> kopf.ConnectionInfo:
    """kopf's credentials from the same client configuration the operator's own calls use,
    so both always talk to one cluster as one identity."""
    header = config.get_api_key_with_prefix("BearerToken") or config.get_api_key_with_prefix("authorization")
    scheme, _, token = (header or "").partition(" ")
    if not token:
        scheme, token = "", scheme
    return kopf.ConnectionInfo(
        server=config.host,
        ca_path=config.ssl_ca_cert,
        insecure=not config.verify_ssl,
        username=config.username or None,
        password=config.password or None,
        scheme=scheme or None,
        token=token or None,
        certificate_path=config.cert_file,
        private_key_path=config.key_file,
    )


COMMAND_TIMEOUT = BreweryConfig.command_timeout
_K = TypeVar("_K")


class _Runner(Protocol):
    async def run(self, stopped: kopf.DaemonStopped) -> None: ...


async def run_registered(table: dict[_K, Any], key: _K, runner: _Runner, stopped: kopf.DaemonStopped) -> None:
    """Run a daemon's runner, findable in ``table`` (by the event handlers) while it runs."""
    table[key] = runner
    try:
        await runner.run(stopped)
    finally:
        if table.get(key) is runner:
            del table[key]


def build_registry(hub: Hub) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    sessions: dict[str, SessionRunner] = {}

    def in_phase(phase: str) -> Callable[[], float]:
        return lambda: sum(1 for runner in sessions.values() if runner.status.get("phase") == phase)

    for phase in Phase:  # read at scrape time, so the gauge can never drift from the runners
        metrics.SESSIONS.labels(phase.value).set_function(in_phase(phase.value))
    environments: dict[tuple[str, str], EnvironmentRunner] = {}
    pools: dict[tuple[str, str], PoolRunner] = {}

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(hub.kube.api_client.configuration)

    # kopf cancels a stopping daemon once `cancellation_backoff` has passed: give each the
    # time it needs to end gracefully (leave the brewery; stop a recording and see it off).
    @kopf.daemon(
        GROUP,
        VERSION,
        PLURAL_ENVIRONMENT,
        registry=registry,
        cancellation_backoff=5,
        cancellation_timeout=5,
        backoff=2,
    )
    async def environment_daemon(
        body: kopf.Body,
        stopped: kopf.DaemonStopped,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        **_: Any,
    ) -> None:
        runner = EnvironmentRunner(hub, body, logger)
        await run_registered(environments, runner.key, runner, stopped)

    # Watch events, not kopf's change handlers: those would store a diff-base annotation on
    # every object, one more API write per session before it can start. The runners compare
    # what they care about themselves (the connection fingerprint, spec.stop).
    # Every event handler is a coroutine: kopf runs a plain function in a worker thread, a
    # thread hop per watch event, and asyncio's Event and Queue must not be touched from there.
    @kopf.on.event(GROUP, VERSION, PLURAL_ENVIRONMENT, registry=registry)
    async def environment_event(*, namespace: str | None, name: str, meta: kopf.Meta, **_: Any) -> None:
        runner = environments.get((namespace or "default", name))
        if runner is not None and meta.get("generation") != runner.generation:
            runner.poked.set()  # the spec changed: reconnect if the connection settings did

    @kopf.daemon(
        GROUP,
        VERSION,
        PLURAL_SESSION,
        registry=registry,
        cancellation_backoff=STOP_TIMEOUT + COMMAND_TIMEOUT + 5,
        cancellation_timeout=5,
        backoff=1,  # a failed daemon (e.g. the API briefly unreachable) resumes from status quickly
    )
    async def session_daemon(
        body: kopf.Body,
        stopped: kopf.DaemonStopped,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        **_: Any,
    ) -> None:
        runner = SessionRunner(hub, body, logger)
        await run_registered(sessions, runner.uid, runner, stopped)

    @kopf.daemon(
        GROUP,
        VERSION,
        PLURAL_POOL,
        registry=registry,
        cancellation_backoff=5,
        cancellation_timeout=5,
        backoff=2,
    )
    async def pool_daemon(
        *,
        body: kopf.Body,
        stopped: kopf.DaemonStopped,
        logger: logging.Logger | logging.LoggerAdapter[Any],
        **_: Any,
    ) -> None:
        runner = PoolRunner(hub, body, logger)
        await run_registered(pools, (runner.namespace, runner.name), runner, stopped)

    @kopf.on.event(GROUP, VERSION, PLURAL_POOL, registry=registry)
    async def pool_event(*, namespace: str | None, name: str, meta: kopf.Meta, **_: Any) -> None:
        runner = pools.get((namespace or "default", name))
        if runner is not None and meta.get("generation") != runner.generation:
            runner.poked.set()  # the spec changed (kubectl scale included)

    @kopf.on.event("v1", "pods", labels={POOL_LABEL: kopf.PRESENT}, registry=registry)
    async def pool_pod_event(*, namespace: str | None, labels: kopf.Labels, **_: Any) -> None:
        runner = pools.get((namespace or "default", labels[POOL_LABEL]))
        if runner is not None:
            runner.poked.set()

    @kopf.on.delete(GROUP, VERSION, PLURAL_SESSION, registry=registry)
    async def session_deleted(
        *, body: kopf.Body, uid: str, logger: logging.Logger | logging.LoggerAdapter[Any], **_: Any
    ) -> None:
        """Hold the finalizer until the recording is stopped, daemon or not."""
        runner = sessions.get(uid)
        if runner is not None:
            await runner.finished.wait()  # its daemon was told of the deletion and stops the recording
            return
        await SessionRunner(hub, body, logger).stop_for_deletion()

    def session_event_matters(*, uid: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> bool:
        runner = sessions.get(uid)
        return runner is not None and (
            (bool(spec.get("stop")) and not runner.stop_seen)
            or (not runner.finalized.is_set() and FINALIZER in (meta.get("finalizers") or []))
        )

    # Only the events a running session acts on (kopf checks `when` before it invokes and logs
    # the handler, so the status writes of running sessions are not handled one by one): its
    # finalizer has landed (its first status write waits for it), or spec.stop, the one spec
    # change a running session acts on.
    @kopf.on.event(GROUP, VERSION, PLURAL_SESSION, registry=registry, when=session_event_matters)
    async def session_event(*, uid: str, spec: kopf.Spec, meta: kopf.Meta, **_: Any) -> None:
        runner = sessions.get(uid)
        if runner is None:
            return
        if FINALIZER in (meta.get("finalizers") or []):
            runner.finalized.set()
        if spec.get("stop") and not runner.stop_seen:
            runner.stop_seen = True
            runner.post(Poke())

    # NoDiffBase keeps no last-handled state, so change handlers other than on-delete would
    # never fire (kopf's registry has no public way to list them).
    changing = [h for h in registry._changing.get_all_handlers() if h.reason is not kopf.Reason.DELETE]
    if changing:
        raise RuntimeError(f"only on-delete change handlers work with NoDiffBase, not {changing}")
    return registry


async def serve_probes(
    options: OperatorOptions, ready: asyncio.Event, elector: LeaseElector | None = None
) -> web.AppRunner | None:
    """/metrics, /healthz (the loop answers) and /readyz (leading, and kopf is up) on one port.

    A standby answers /readyz with 503 ``standby``: only the leader is Ready, so
    ``kubectl get pods`` shows which replica acts."""
    if options.metrics_port is None:
        return None

    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        if elector is not None and not elector.leading:
            return web.Response(status=503, text="standby")
        return web.Response(text="ready") if ready.is_set() else web.Response(status=503, text="starting")

    app = web.Application()
    app.add_routes(
        [web.get("/metrics", metrics_view), web.get("/healthz", healthz), web.get("/readyz", readyz)]
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, options.metrics_host, options.metrics_port).start()
    return runner


def fence(reason: str) -> None:
    """Leadership is lost: stop acting at once. Nothing else may run, not even a graceful
    shutdown (it could still send a command), so the process exits where it stands; the
    kubelet restarts it, and it comes back as a standby."""
    log.critical("leadership lost (%s): exiting now so that only one replica acts", reason)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(EXIT_LEADERSHIP_LOST)


def build_elector(
    options: OperatorOptions, kube: Kube, on_lost: Callable[[str], None] = fence
) -> LeaseElector | None:
    election = options.leader_election
    if election is None:
        return None
    namespace = election.namespace or default_namespace(lambda: context_namespace(options.kubeconfig))
    api = KubernetesLeaseApi(
        kube.api_client, namespace, election.name, timeout=election.timing.renew_deadline
    )
    return LeaseElector(
        api,
        election.identity or default_identity(),
        on_lost,
        election.timing,
        description=f"Lease {namespace}/{election.name}",
    )


async def run_operator(
    options: OperatorOptions, stop: asyncio.Event | None = None, on_lost: Callable[[str], None] = fence
) -> None:
    """Run until ``stop`` is set (or forever). Works on a real cluster unchanged.

    With leader election the process first waits as a standby (no handler runs, nothing
    is watched) until it holds the Lease; it renews it while kopf runs, and releases it
    once kopf has stopped, so a standby takes over within a second on a rollout."""
    loop = asyncio.get_running_loop()
    loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(options.executor_threads, "kube"))
    kube = Kube(
        load_config(options.kubeconfig, connections=options.executor_threads),
        on_error=lambda verb, code: metrics.API_ERRORS.labels(verb, str(code)).inc(),
    )
    hub = Hub(kube, options.nickname or default_nickname())
    ready_flag = asyncio.Event()
    stop = stop or asyncio.Event()
    elector = build_elector(options, kube, on_lost)
    probes = await serve_probes(options, ready_flag, elector)
    renewing: asyncio.Task[None] | None = None
    try:
        if elector is not None:
            metrics.LEADER.set(0)
            log.info("standby as %s: waiting for %s", elector.identity, elector.description)
            if not await elector.acquire(stop) or stop.is_set():
                return  # told to stop while waiting (or at the very moment it won): act not at all
            renewing = asyncio.create_task(elector.renew(), name="lease renewal")
        metrics.LEADER.set(1)
        registry = build_registry(hub)

        @kopf.on.cleanup(registry=registry)
        def kopf_stopped(**_: Any) -> None:
            # kopf stops on SIGTERM by its own handler, which leaves the stop flag unset: set it,
            # or kopf waits 5 s for its own stop-flag waiter before it returns (a slower handover).
            stop.set()

        await kopf.operator(
            registry=registry,
            settings=build_settings(options),
            clusterwide=not options.namespaces,
            namespaces=options.namespaces,
            standalone=options.standalone,
            stop_flag=stop,
            ready_flag=ready_flag,
        )
    finally:
        for key in list(hub.links):
            await hub.drop_link(key)
        metrics.LEADER.set(0)
        if elector is not None:
            # Only now that nothing acts any more does the Lease go back.
            if renewing is not None:
                renewing.cancel()
                await asyncio.gather(renewing, return_exceptions=True)
            await elector.release()
            elector.close()
        if probes is not None:
            await probes.cleanup()
