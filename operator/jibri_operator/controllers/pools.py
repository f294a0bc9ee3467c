"""JibriPool: the pods of a pool, scaled on idle headroom, never by killing a recording.

A kopf daemon per pool renders the pool's jibri.conf into a Secret it owns
(``jibriconf.render``; it names the passwords as variables, never holds them),
delivers it to each pod the way ``spec.configDelivery`` says (``jibriconf.delivery``),
reads its pods and what the breweries say of each (the pod's name is its
Jibri's nickname), asks ``fleet.policy.decide`` what to do, and does it:
creates pods from ``spec.template``, or removes idle ones. Before removing a
pod it claims that Jibri in the registry, so no session of this operator can
pick it in the meantime. It wakes on every presence change in the pool's
environments and on every event of its pods, so it scales up the moment idle
headroom runs out.

A call RBAC refuses (reading an environment or a Secret, writing the jibri.conf
Secret, listing, creating or deleting pods, writing status) ends the pass: it is
logged, posted as an Event and shown as Ready False, reason Forbidden, naming the
verb and resource, and the next pass waits longer each time (refusals.py).
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import kopf

from jibri_operator.api.conditions import now_rfc3339, set_condition
from jibri_operator.api.constants import API_VERSION, KIND_POOL, PLURAL_ENVIRONMENT, PLURAL_POOL
from jibri_operator.api.durations import parse_duration
from jibri_operator.api.types import BreweryKind, BusyStatus, Health, RecordingMode
from jibri_operator.controllers.hub import EnvKey, Hub, env_label
from jibri_operator.controllers.refusals import REASON as FORBIDDEN
from jibri_operator.controllers.refusals import Refusals
from jibri_operator.fleet.policy import Decision, PodState, PodView, PoolSpec, decide
from jibri_operator.jibriconf.delivery import (
    CONF_KEY,
    DeliveryProblem,
    check_rendered,
    delivery_mode,
    jibri_pod_spec,
)
from jibri_operator.jibriconf.render import JibriEnvironment, Login, Muc, SecretKeyRef, render_jibri_conf
from jibri_operator.kube.client import Forbidden, Kube, SecretMissing

log = logging.getLogger(__name__)

POOL_LABEL: Final = "jibri.dev/pool"
RECHECK: Final = 10.0
STARTUP_GRACE: Final = 300.0  # a pod whose Jibri has not joined by then will not: replace it


class PoolProblem(Exception):
    """The pool cannot be reconciled as specified; the message says why (never a secret)."""


# -- pure builders -------------------------------------------------------------------------


def owner_reference(pool: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": KIND_POOL,
        "name": pool["metadata"]["name"],
        "uid": pool["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def pool_labels(pool_name: str) -> dict[str, str]:
    return {
        POOL_LABEL: pool_name,
        "app.kubernetes.io/name": "jibri",
        "app.kubernetes.io/instance": pool_name,
        "app.kubernetes.io/managed-by": "jibri-operator",
    }


def conf_secret_name(pool_name: str) -> str:
    return f"{pool_name}-jibri-conf"


def build_pod(pool: Mapping[str, Any], environments: Sequence[JibriEnvironment]) -> dict[str, Any]:
    """A pod from ``spec.template``, its Jibri container given its jibri.conf the way
    ``spec.configDelivery`` says (see ``jibriconf.delivery``), owned and labelled by the pool."""
    name = pool["metadata"]["name"]
    spec = pool["spec"]
    template = copy.deepcopy(dict(spec.get("template") or {}))
    metadata = dict(template.get("metadata") or {})
    try:
        pod_spec = jibri_pod_spec(
            dict(template.get("spec") or {}),
            environments,
            delivery_mode(spec),
            conf_secret_name(name),
            mount_path=(spec.get("configDelivery") or {}).get("path"),
            single_use=bool(spec.get("singleUse")),
        )
    except DeliveryProblem as problem:
        raise PoolProblem(str(problem)) from None
    metadata["generateName"] = f"{name}-"
    metadata.pop("name", None)
    metadata["labels"] = {**(metadata.get("labels") or {}), **pool_labels(name)}
    metadata["ownerReferences"] = [owner_reference(pool)]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": pod_spec}


# -- what the environments ask of a pool's Jibris ---------------------------------------------


def pool_modes(spec: Mapping[str, Any]) -> list[RecordingMode]:
    """What a pool's Jibris offer (spec.recordingModes)."""
    return [RecordingMode(mode) for mode in spec.get("recordingModes") or ("file", "stream")]


async def pool_environments(
    kube: Kube, namespace: str, pool_spec: Mapping[str, Any]
) -> list[JibriEnvironment]:
    """The XmppEnvironments a pool serves, as its jibri.conf renders them (usernames read
    from their Secrets; passwords only checked to exist, never read into the file). The SIP
    brewery is rendered only for a pool that offers sip."""
    environments = []
    sip = RecordingMode.SIP in pool_modes(pool_spec)
    for name in [str(name) for name in pool_spec.get("environments") or []]:
        environment = await kube.get_custom(PLURAL_ENVIRONMENT, namespace, name)
        if environment is None:
            raise PoolProblem(f"XmppEnvironment {name} not found")
        environments.append(await jibri_environment(kube, (namespace, name), environment["spec"], sip=sip))
    if not environments:
        raise PoolProblem("spec.environments is empty")
    return environments


async def jibri_environment(
    kube: Kube, key: EnvKey, spec: Mapping[str, Any], *, sip: bool = True
) -> JibriEnvironment:
    jibri = spec.get("jibri") or {}
    control_ref, call_ref = jibri.get("controlLoginSecretRef"), jibri.get("callLoginSecretRef")
    if not control_ref or not call_ref:  # the CRD's rules require both where spec.jibri is set
        raise PoolProblem(
            f"XmppEnvironment {key[1]} needs spec.jibri.controlLoginSecretRef and "
            "spec.jibri.callLoginSecretRef for a pool's Jibris"
        )
    control_domain = (spec.get("controlLogin") or {}).get("domain") or spec["domain"]
    control = await _login(kube, key[0], control_ref, control_domain)
    call = await _login(kube, key[0], call_ref, jibri.get("callLoginDomain") or f"recorder.{spec['domain']}")
    room, _, muc_domain = str(spec["brewery"]).partition("@")
    sip_brewery = spec.get("sipBrewery") if sip else None
    sip_room, _, sip_domain = str(sip_brewery or "").partition("@")
    server = spec.get("server") or {}
    timeout = parse_duration(jibri.get("usageTimeout") or "0s")
    return JibriEnvironment(
        name=env_label(key),
        server_hosts=(f"{server.get('host')}:{server.get('port', 5222)}",),
        xmpp_domain=spec["domain"],
        control_muc=Muc(jibri.get("controlMucDomain") or muc_domain, room),
        control_login=control,
        call_login=call,
        sip_control_muc=Muc(sip_domain, sip_room) if sip_brewery else None,
        strip_from_room_domain=jibri.get("stripFromRoomDomain", "conference."),
        usage_timeout_minutes=int(timeout // 60),  # the CRD allows whole minutes only
        trust_all_certs=bool(jibri.get("trustAllCerts", False)),
    )


async def _login(kube: Kube, namespace: str, ref: Mapping[str, Any], default_domain: str) -> Login:
    """The username from the Secret (a local part or a bare JID); the password stays there."""
    user_key, password_key = ref.get("usernameKey", "username"), ref.get("passwordKey", "password")
    values = await kube.read_secret_keys(namespace, ref["name"], [user_key, password_key])
    user, _, domain = values[user_key].reveal().partition("@")
    return Login(domain or default_domain, user, SecretKeyRef(ref["name"], password_key))


# -- the runner -----------------------------------------------------------------------------


class PoolRunner:
    def __init__(
        self, hub: Hub, body: kopf.Body, logger: logging.Logger | logging.LoggerAdapter[Any]
    ) -> None:
        self.hub = hub
        self.body = body
        self.logger = logger
        self.namespace: str = body.metadata.namespace or "default"
        self.name: str = body.metadata.name or ""
        self.poked = asyncio.Event()
        self.surplus_since: float | None = None
        self.states: dict[str, tuple[PodState, float]] = {}
        self.conditions: list[dict[str, Any]] = list((body.get("status") or {}).get("conditions") or [])
        self.last_scale: str | None = (body.get("status") or {}).get("lastScaleTime")
        self._unwatch: list[Any] = []
        self._problem: str | None = None
        self._last_status: dict[str, Any] | None = None
        self.generation: Any = None
        self._rendered: Any = None  # the generation whose jibri.conf is in the Secret
        self._environments: list[JibriEnvironment] = []  # as last rendered: what new pods get
        self._rendered_at = float("-inf")
        self.refusals = Refusals(body, logger, hub.clock)

    @property
    def env_keys(self) -> list[EnvKey]:
        return [(self.namespace, str(name)) for name in self.body.spec.get("environments") or []]

    async def run(self, stopped: kopf.DaemonStopped) -> None:
        watched: list[EnvKey] = []
        try:
            while not stopped:
                if watched != self.env_keys:
                    for unwatch in self._unwatch:
                        unwatch()
                    watched = self.env_keys
                    self._unwatch = [self.hub.watch(key, self.poked.set) for key in watched]
                try:
                    timeout = await self.reconcile()
                except Forbidden as error:
                    timeout = await self._refused(error)
                else:
                    self.refusals.cleared()
                waiters: list[asyncio.Future[Any]] = [asyncio.ensure_future(stopped.wait())]
                if not self.refusals.active:  # while refused, pod and presence events do not hasten the retry
                    waiters.append(asyncio.create_task(self.poked.wait()))
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waiters:
                    waiter.cancel()
                self.poked.clear()
        finally:
            for unwatch in self._unwatch:
                unwatch()
            for name in self.states:
                self.hub.registry.forget_pod(self._identity(name))

    async def reconcile(self) -> float:
        """One pass; returns how long the next one may wait without a poke."""
        self.generation = self.body.metadata.get("generation")  # the spec this pass acts on
        spec = self.body.spec
        # Presence changes poke the pool often; the config only needs a look when the pool
        # changed, after a problem, or every RECHECK (its environments and Secrets may have).
        now = self.hub.clock()
        stale = self._rendered != self.generation or now - self._rendered_at >= RECHECK or self._problem
        if stale:
            try:
                await self._render_conf(spec)
            except (PoolProblem, SecretMissing) as problem:
                await self._report_problem(str(problem))
                return RECHECK
            self._problem = None
            self._rendered, self._rendered_at = self.generation, now
        pods = await self.hub.kube.list_pods(self.namespace, f"{POOL_LABEL}={self.name}")
        views = self._views(pods, bool(spec.get("singleUse")))
        replicas = spec.get("replicas") or {}
        policy = PoolSpec(
            minimum=int(replicas.get("min", 1)),
            maximum=int(replicas.get("max", 10)),
            idle_target=int(spec.get("idleTarget", 1)),
            scale_down_delay=parse_duration(spec.get("scaleDownDelay") or "5m"),
        )
        waiting = sum(self.hub.waiting(key, pool_modes(spec)) for key in self.env_keys)
        decision = decide(policy, views, waiting, self.hub.clock(), self.surplus_since)
        self.surplus_since = decision.surplus_since
        removed = await self._act(decision, pods)
        await self._write_status(views, decision, removed)
        if decision.surplus_since is not None:
            return max(0.05, decision.surplus_since + policy.scale_down_delay - self.hub.clock())
        return RECHECK

    # -- pieces ----------------------------------------------------------------------------

    async def _render_conf(self, spec: Any) -> None:
        environments = await pool_environments(self.hub.kube, self.namespace, spec)
        text = render_jibri_conf(environments, single_use=bool(spec.get("singleUse")))
        try:
            check_rendered(delivery_mode(spec), text)
        except DeliveryProblem as problem:
            raise PoolProblem(str(problem)) from None
        build_pod(self.body, environments)  # a pod that cannot be built is a problem to report now
        owner = owner_reference(self.body)
        changed = await self.hub.kube.ensure_secret(
            self.namespace, conf_secret_name(self.name), {CONF_KEY: text}, owner, pool_labels(self.name)
        )
        self._environments = environments
        if changed:
            self.logger.info("rendered jibri.conf for %d environment(s)", len(environments))

    def _breweries(self) -> list[tuple[str, BreweryKind]]:
        """Every brewery a pod of this pool joins: each environment's, and its SIP brewery
        where the rendered jibri.conf names one."""
        rendered = {environment.name: environment for environment in self._environments}
        result = []
        for key in self.env_keys:
            label = env_label(key)
            result.append((label, BreweryKind.RECORDING))
            environment = rendered.get(label)
            if environment is not None and environment.sip_control_muc is not None:
                result.append((label, BreweryKind.SIP))
        return result

    def _identity(self, pod_name: str) -> str:
        return f"{self.namespace}/{pod_name}"

    def _views(self, pods: list[dict[str, Any]], single_use: bool) -> list[PodView]:
        now = self.hub.clock()
        views = []
        seen = set()
        environments = [env_label(key) for key in self.env_keys]
        modes = pool_modes(self.body.spec)
        for pod in pods:
            name = pod["metadata"]["name"]
            seen.add(name)
            # One pod, one Jibri in every brewery it joins, doing only what the pool offers.
            self.hub.registry.declare_pod(self._identity(name), name, environments, modes)
            state = self._state(pod, single_use)
            previous = self.states.get(name)
            if previous is not None and previous[0] is PodState.BROKEN and state is PodState.STARTING:
                state = PodState.BROKEN  # it stays broken until it is gone
            since = previous[1] if previous is not None and previous[0] is state else now
            if state is PodState.STARTING and now - since > STARTUP_GRACE:
                state, since = PodState.BROKEN, now
            self.states[name] = (state, since)
            views.append(PodView(name, state, since))
        for gone in set(self.states) - seen:
            del self.states[gone]
            self.hub.ended.discard(gone)
            self.hub.registry.forget_pod(self._identity(gone))
        return views

    def _state(self, pod: Mapping[str, Any], single_use: bool) -> PodState:
        name = pod["metadata"]["name"]
        if pod["metadata"].get("deletionTimestamp"):
            return PodState.TERMINATING
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return PodState.BROKEN
        seen = [
            self.hub.registry.get_by_nickname(label, name, brewery) for label, brewery in self._breweries()
        ]
        if single_use and name in self.hub.ended:
            return PodState.SPENT
        if any(observation is None for observation in seen):
            return PodState.STARTING
        present = [observation for observation in seen if observation is not None]
        if any(observation.busy is BusyStatus.BUSY for observation in present):
            return PodState.BUSY
        if any(observation.health is Health.UNHEALTHY for observation in present):
            return PodState.UNHEALTHY
        return PodState.IDLE

    async def _act(self, decision: Decision, pods: list[dict[str, Any]]) -> list[str]:
        for _ in range(decision.create):
            created = await self.hub.kube.create_pod(self.namespace, build_pod(self.body, self._environments))
            kopf.info(self.body, reason="ScaledUp", message=f"created {created}: {decision.reason}")
        by_name = {pod["metadata"]["name"]: pod for pod in pods}
        removed = []
        for name in decision.delete:
            if not self._claim(name):
                continue  # it was picked for a session meanwhile: keep it
            await self.hub.kube.delete_pod(self.namespace, name, by_name[name]["metadata"]["uid"])
            removed.append(name)
            kopf.info(self.body, reason="ScaledDown", message=f"removed {name}: {decision.reason}")
        if decision.create or removed:
            self.last_scale = now_rfc3339()
        return removed

    def _claim(self, name: str) -> bool:
        """Reserve a pod's Jibri in every environment so no session picks it while it goes.

        Spent and broken pods are not selectable anyway; they are removed as they are.
        """
        if self.states.get(name, (None,))[0] in (PodState.SPENT, PodState.BROKEN):
            return True
        now = self.hub.clock()
        holder = f"pool:{self.namespace}/{self.name}"
        claimed: list[tuple[str, str]] = []
        for key in self.env_keys:
            observation = self.hub.registry.get_by_nickname(env_label(key), name)
            if observation is None or not self.hub.registry.claim(
                env_label(key), observation.occupant, holder, now
            ):
                for env, occupant in claimed:
                    self.hub.registry.release(env, occupant, holder)
                return False
            claimed.append((env_label(key), observation.occupant))
        return True

    async def _refused(self, error: Forbidden) -> float:
        """Say what RBAC refused (log, Event, and the Ready condition unless the status write
        is what was refused); return how long to wait before the next pass."""
        delay = self.refusals.refused(error)
        if error.resource != f"{PLURAL_POOL}/status":
            generation = self.body.metadata.get("generation")
            conditions = set_condition(self.conditions, "Ready", "False", FORBIDDEN, str(error), generation)
            if conditions != self.conditions:
                try:
                    await self.hub.kube.patch_status(
                        PLURAL_POOL, self.namespace, self.name, {"conditions": conditions}
                    )
                except Forbidden as again:
                    self.refusals.refused(again)
                else:
                    self.conditions = conditions
                    self._last_status = None  # the next full status is written whatever it holds
        return delay

    async def _report_problem(self, message: str) -> None:
        if message != self._problem:
            kopf.warn(self.body, reason="ReconcileFailed", message=message)
            self.logger.warning(message)
        self._problem = message
        generation = self.body.metadata.get("generation")
        self.conditions = set_condition(
            self.conditions, "Ready", "False", "ReconcileFailed", message, generation
        )
        await self.hub.kube.patch_status(
            PLURAL_POOL, self.namespace, self.name, {"conditions": self.conditions}
        )

    async def _write_status(self, views: list[PodView], decision: Decision, removed: list[str]) -> None:
        count = {state: 0 for state in PodState}
        for view in views:
            count[view.state] += 1
        staying = len(views) - count[PodState.TERMINATING] - count[PodState.SPENT] - count[PodState.BROKEN]
        idle_target = int(self.body.spec.get("idleTarget", 1))
        generation = self.body.metadata.get("generation")
        headroom = f"{count[PodState.IDLE]} idle Jibri(s), {idle_target} wanted"
        met = count[PodState.IDLE] >= idle_target
        conditions = set_condition(
            self.conditions,
            "Ready",
            "True" if met else "False",
            "HeadroomMet" if met else "ScalingUp",
            headroom,
            generation,
        )
        if decision.limited:
            conditions = set_condition(
                conditions,
                "ScalingLimited",
                "True",
                "AtMaximum",
                "more Jibris are wanted than replicas.max allows",
                generation,
            )
        else:
            conditions = set_condition(
                conditions, "ScalingLimited", "False", "WithinBounds", decision.reason, generation
            )
        self.conditions = conditions
        idle_removed = sum(1 for name in removed if self.states.get(name, (None,))[0] is PodState.IDLE)
        status: dict[str, Any] = {
            "replicas": staying,
            "desired": staying + decision.create - idle_removed,
            "idle": count[PodState.IDLE],
            "busy": count[PodState.BUSY] + count[PodState.SPENT],
            "unhealthy": count[PodState.UNHEALTHY] + count[PodState.BROKEN],
            "starting": count[PodState.STARTING],
            "selector": f"{POOL_LABEL}={self.name}",
            "observedGeneration": generation,
            "conditions": conditions,
        }
        if self.last_scale:
            status["lastScaleTime"] = self.last_scale
        if status != self._last_status:  # an unchanged status is not written (nor its watch event)
            await self.hub.kube.patch_status(PLURAL_POOL, self.namespace, self.name, status)
            self._last_status = status
