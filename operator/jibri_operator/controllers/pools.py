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
import contextlib
import copy
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import kopf

from jibri_operator import metrics
from jibri_operator.api.conditions import get_condition, now_rfc3339, set_condition
from jibri_operator.api.constants import API_VERSION, KIND_POOL, PLURAL_ENVIRONMENT, PLURAL_POOL
from jibri_operator.api.durations import parse_duration
from jibri_operator.api.types import BreweryKind, BusyStatus, Health, RecordingMode
from jibri_operator.controllers.hub import ARRIVALS_KEPT, Arrival, EnvKey, Hub, PoolClaim, env_label
from jibri_operator.controllers.refusals import REASON as FORBIDDEN
from jibri_operator.controllers.refusals import Refusals
from jibri_operator.fleet.policy import Decision, PodState, PodView, PoolSpec, anticipate, decide
from jibri_operator.fleet.profile import ArrivalProfile
from jibri_operator.fleet.schedule import Schedule, ScheduleError
from jibri_operator.jibriconf.delivery import (
    CONF_KEY,
    DeliveryProblem,
    check_rendered,
    delivery_mode,
    jibri_pod_spec,
)
from jibri_operator.jibriconf.render import JibriEnvironment, Login, Muc, SecretKeyRef, render_jibri_conf
from jibri_operator.kube.client import ApiException, Forbidden, Kube, SecretMissing

log = logging.getLogger(__name__)

POOL_LABEL: Final = "jibri.dev/pool"
STATE_LABEL: Final = "jibri.dev/state"  # starting | idle | busy | unhealthy | draining, from presence
SAFE_TO_EVICT: Final = "cluster-autoscaler.kubernetes.io/safe-to-evict"
DELETION_COST: Final = "controller.kubernetes.io/pod-deletion-cost"
RECHECK: Final = 10.0
PROFILE_KEY: Final = "profile.json"
# A pod chosen for removal is claimed and labelled draining, then removed only if its Jibri is
# still idle this long after: a recording another controller started meanwhile keeps it.
DRAIN_RECHECK: Final = 1.0
STUCK_MARGIN: Final = 300.0  # seconds busy past the longest usage-timeout before a Jibri is stuck
CONFIG_HASH: Final = "jibri.dev/config-hash"  # of the jibri.conf and template a pod was made from


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


def profile_config_map_name(pool_name: str) -> str:
    return f"{pool_name}-arrivals"


def state_label(state: PodState, draining: bool = False) -> str:
    """The ``jibri.dev/state`` a pod carries, so Kubernetes itself can tell recording pods apart."""
    if draining or state in (PodState.TERMINATING, PodState.SPENT):
        return "draining"  # on its way out (a spent single-use pod records nothing any more)
    if state is PodState.BUSY:
        return "busy"
    if state in (PodState.UNHEALTHY, PodState.BROKEN):
        return "unhealthy"
    return state.value  # starting, idle


def shield_annotations(label: str) -> dict[str, str | None]:
    """A recording pod is not safe to evict (the cluster autoscaler honours this); an idle one
    is the cheapest to delete (a ReplicaSet owner would take it first). None removes one."""
    return {
        SAFE_TO_EVICT: "false" if label == "busy" else None,
        DELETION_COST: "-100" if label == "idle" else ("1000" if label == "busy" else None),
    }


def disruption_budget(pool: Mapping[str, Any]) -> dict[str, Any]:
    """A PodDisruptionBudget owned by the pool: none of its recording pods may be evicted (a
    drain, the cluster autoscaler, a rollout), while its idle ones may.

    Not ``maxUnavailable: 0``: with it, the disruption controller counts the pods it expects
    from their owner's scale subresource (a JibriPool's is ``replicas.min``), so with more
    recording pods than ``min`` it would allow evicting the surplus (the fault matrix found
    this). An integer ``minAvailable`` expects exactly the pods selected, and one above the
    most the pool can ever run (``max`` and a rollout's surge) leaves no disruption allowed.
    (kubernetes pkg/controller/disruption/disruption.go, getExpectedPodCount.)"""
    name = pool["metadata"]["name"]
    most = int((pool["spec"].get("replicas") or {}).get("max", 10)) + 1
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": f"{name}-recording",
            "labels": pool_labels(name),
            "ownerReferences": [owner_reference(pool)],
        },
        "spec": {
            "minAvailable": most + 1,
            "selector": {"matchLabels": {POOL_LABEL: name, STATE_LABEL: "busy"}},
        },
    }


def config_hash(pool: Mapping[str, Any], conf: str) -> str:
    """What a pod is made from (its jibri.conf, the template, the delivery): a changed one rolls out."""
    spec = pool["spec"]
    made_of = {"conf": conf, "template": spec.get("template"), "delivery": spec.get("configDelivery")}
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]


def build_pod(
    pool: Mapping[str, Any], environments: Sequence[JibriEnvironment], made_from: str | None = None
) -> dict[str, Any]:
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
    if made_from is not None:
        metadata["annotations"] = {**(metadata.get("annotations") or {}), CONFIG_HASH: made_from}
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
        # Anticipation: the schedule (per spec generation) and the learned arrival profile,
        # loaded from its ConfigMap on the first pass; arrivals that come before are kept.
        self._schedule: Schedule | None = None
        self.profile: ArrivalProfile | None = None
        self._profile_loaded = False
        self._profile_saved: float | None = None
        self._early_arrivals: list[Arrival] = []
        self._arrivals_seen: set[str] = set()
        self._arrival_floor = time.time() - ARRIVALS_KEPT
        self._reason = str(((body.get("status") or {}).get("desiredBreakdown") or {}).get("reason") or "")
        self.draining: dict[str, float] = {}  # pod -> when to look again before removing it
        self._unshielded = False
        self._config_hash: str | None = None  # of what new pods are made from
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
                    self._unwatch += [self.hub.watch_arrivals(key, self._arrived) for key in watched]
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
            self.hub.pools.pop((self.namespace, self.name), None)
            for label in ("starting", "idle", "busy", "unhealthy", "draining"):
                with contextlib.suppress(KeyError):
                    metrics.POOL_PODS.remove(self.namespace, self.name, label)

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
                self._schedule = Schedule.from_spec(spec.get("schedule"), spec.get("timeZone"))
                await self._render_conf(spec)
                await self._shield()
            except (PoolProblem, SecretMissing, ScheduleError) as problem:
                await self._report_problem(str(problem))
                return RECHECK
            self._problem = None
            self._rendered, self._rendered_at = self.generation, now
        pods = await self.hub.kube.list_pods(self.namespace, f"{POOL_LABEL}={self.name}")
        views = self._views(pods, bool(spec.get("singleUse")))
        await self._label(pods)
        replicas = spec.get("replicas") or {}
        policy = PoolSpec(
            minimum=int(replicas.get("min", 1)),
            maximum=int(replicas.get("max", 10)),
            idle_target=int(spec.get("idleTarget", 1)),
            scale_down_delay=parse_duration(spec.get("scaleDownDelay") or "5m"),
        )
        staying = sum(
            1 for v in views if v.state not in (PodState.SPENT, PodState.BROKEN, PodState.TERMINATING)
        )
        self.hub.pools[(self.namespace, self.name)] = PoolClaim(
            tuple(self.env_keys), frozenset(pool_modes(spec)), max(0, policy.maximum - staying)
        )
        waiting = self.hub.waiting_for_pool((self.namespace, self.name))
        ahead = await self._anticipate(spec)
        decision = decide(policy, views, waiting, self.hub.clock(), self.surplus_since, ahead)
        self.surplus_since = decision.surplus_since
        removed = await self._act(decision, pods)
        await self._write_status(views, decision, removed)
        await self._save_profile()
        wait = RECHECK
        if decision.recheck_at is not None:
            wait = min(wait, decision.recheck_at - self.hub.clock())
        if self.draining:
            wait = min(wait, min(self.draining.values()) - self.hub.clock())
        return max(0.05, wait)

    # -- anticipation --------------------------------------------------------------------------

    def _arrived(self, arrival: Arrival) -> None:
        """A session was created in one of the pool's environments: learn from it."""
        if arrival.uid in self._arrivals_seen or arrival.mode not in pool_modes(self.body.spec):
            return
        self._arrivals_seen.add(arrival.uid)
        if len(self._arrivals_seen) > 100_000:  # uids of long-gone arrivals need not stay
            self._arrivals_seen.clear()
            self._arrivals_seen.add(arrival.uid)
        if not self._profile_loaded:
            self._early_arrivals.append(arrival)
            return
        if self.profile is not None and arrival.at >= self._arrival_floor:
            self.profile.record_arrival(arrival.at)
        self.poked.set()

    async def _anticipate(self, spec: Any) -> Any:
        """What the schedule and the learned profile want now (wall clock)."""
        if not self._profile_loaded:
            await self._load_profile(spec)
        wall = time.time()
        if self.profile is not None:
            self.profile.advance(wall)
        return anticipate(wall, schedule=self._schedule, profile=self.profile)

    async def _load_profile(self, spec: Any) -> None:
        """The learned profile from its ConfigMap (a new one if there is none, or it is unreadable,
        or it was learnt in another time zone: its slots are local times)."""
        self._profile_loaded = True
        if not spec.get("learn", True):
            self.profile = None
            return
        zone = str(spec.get("timeZone") or "UTC")
        data = await self.hub.kube.read_config_map(self.namespace, profile_config_map_name(self.name))
        profile = None
        if data and PROFILE_KEY in data:
            try:
                profile = ArrivalProfile.from_dict(json.loads(data[PROFILE_KEY]))
            except (ValueError, KeyError, TypeError) as error:
                kopf.warn(
                    self.body, reason="ProfileReset", message=f"learned arrival profile unreadable: {error}"
                )
            if profile is not None and profile.time_zone != zone:
                kopf.info(
                    self.body, reason="ProfileReset", message=f"timeZone is now {zone}: learning afresh"
                )
                profile = None
        if profile is not None:
            self._profile_saved = profile.closed_through
            self._arrival_floor = max(self._arrival_floor, profile.last_seen or 0.0)
        self.profile = profile or ArrivalProfile(time_zone=zone)
        for arrival in sorted(self._early_arrivals, key=lambda a: a.at):
            if arrival.at >= self._arrival_floor:
                self.profile.record_arrival(arrival.at)
        self._early_arrivals.clear()

    async def _save_profile(self) -> None:
        """Written when a slot closes (at most every 5 minutes), so it survives restarts."""
        profile = self.profile
        if profile is None or profile.closed_through == self._profile_saved:
            return
        text = json.dumps(profile.to_dict(), separators=(",", ":"))
        await self.hub.kube.ensure_config_map(
            self.namespace,
            profile_config_map_name(self.name),
            {PROFILE_KEY: text},
            owner_reference(self.body),
            pool_labels(self.name),
        )
        self._profile_saved = profile.closed_through

    # -- pieces ----------------------------------------------------------------------------

    async def _render_conf(self, spec: Any) -> None:
        environments = await pool_environments(self.hub.kube, self.namespace, spec)
        text = render_jibri_conf(environments, single_use=bool(spec.get("singleUse")))
        try:
            check_rendered(delivery_mode(spec), text)
        except DeliveryProblem as problem:
            raise PoolProblem(str(problem)) from None
        build_pod(self.body, environments)  # a pod that cannot be built is a problem to report now
        self._config_hash = config_hash(self.body, text)
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
        # A pod whose Jibri has not joined by then will not: it is replaced.
        startup_grace = parse_duration(self.body.spec.get("startupGrace") or "5m")
        limits = [env.usage_timeout_minutes for env in self._environments]
        stuck_after = max(limits) * 60 + STUCK_MARGIN if limits and 0 not in limits else None
        for pod in pods:
            name = pod["metadata"]["name"]
            seen.add(name)
            # One pod, one Jibri in every brewery it joins, doing only what the pool offers.
            self.hub.registry.declare_pod(self._identity(name), name, environments, modes)
            state = self._state(pod, single_use)
            previous = self.states.get(name)
            if previous is not None and previous[0] is PodState.BROKEN:
                state = PodState.BROKEN  # it stays broken until it is gone
            since = previous[1] if previous is not None and previous[0] is state else now
            if state is PodState.STARTING and now - since > startup_grace:
                state, since = PodState.BROKEN, now
            if state is PodState.BUSY and stuck_after is not None and now - since > stuck_after:
                # Jibri's own usage-timeout should have ended any recording by now: it is stuck.
                kopf.warn(
                    self.body,
                    reason="StuckJibri",
                    message=f"{name} has been busy for {(now - since) / 60:.0f} min, past every"
                    " environment's usage-timeout: replacing it",
                )
                state, since = PodState.BROKEN, now
            if state is PodState.TERMINATING and (
                previous is None or previous[0] is not PodState.TERMINATING
            ):
                self.hub.pod_gone(self.env_keys, name)  # a session waiting for its Jibri need not
            self.states[name] = (state, since)
            if name in self.draining:
                if state is PodState.IDLE:
                    state = PodState.TERMINATING  # on its way out: not headroom, not to be chosen again
                elif state is not PodState.TERMINATING:
                    self._cancel_drain(name, f"its Jibri turned {state.value} while it was being removed")
            made_from = (pod["metadata"].get("annotations") or {}).get(CONFIG_HASH)
            views.append(PodView(name, state, since, outdated=made_from != self._config_hash))
        for gone in set(self.states) - seen:
            self.hub.pod_gone(self.env_keys, gone)
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
            new_pod = build_pod(self.body, self._environments, self._config_hash)
            created = await self.hub.kube.create_pod(self.namespace, new_pod)
            kopf.info(self.body, reason="ScaledUp", message=f"created {created}: {decision.reason}")
            self._count_decision("rollout" if decision.reason.startswith("rolling out") else "scale-up")
        by_name = {pod["metadata"]["name"]: pod for pod in pods}
        removed = []
        now = self.hub.clock()
        for name in decision.delete:
            if self.states.get(name, (None,))[0] in (PodState.SPENT, PodState.BROKEN):
                await self.hub.kube.delete_pod(self.namespace, name, by_name[name]["metadata"]["uid"])
                removed.append(name)
                kopf.info(self.body, reason="Replaced", message=f"removed {name}: {decision.reason}")
                self._count_decision("replace")
            elif name not in self.draining and self._claim(name):
                # Cordon first: labelled draining now, removed on a later pass if still idle.
                self.draining[name] = now + DRAIN_RECHECK
                await self._label_one(by_name[name], "draining")
        for name, due in list(self.draining.items()):
            pod = by_name.get(name)
            if pod is None:
                del self.draining[name]
            elif now >= due:
                if not self._still_idle(name):
                    self._cancel_drain(name, "its Jibri was taken while it was being removed")
                    continue
                del self.draining[name]
                await self.hub.kube.delete_pod(self.namespace, name, pod["metadata"]["uid"])
                removed.append(name)
                kopf.info(self.body, reason="ScaledDown", message=f"removed idle {name}: {decision.reason}")
                self._count_decision("rollout" if decision.reason.startswith("rolling out") else "scale-down")
        if decision.create or removed:
            self.last_scale = now_rfc3339()
        return removed

    async def _shield(self) -> None:
        """The pool's PodDisruptionBudget; a server without policy/v1 is told of once, not fatal."""
        try:
            changed = await self.hub.kube.ensure_pod_disruption_budget(
                self.namespace, disruption_budget(self.body)
            )
        except ApiException as error:
            if error.status not in (404, 405):
                raise
            if not self._unshielded:
                self._unshielded = True
                message = "the API server has no policy/v1 PodDisruptionBudget: evictions of recording pods are not refused"
                kopf.warn(self.body, reason="ShieldUnavailable", message=message)
            return
        if changed:
            self.logger.info("recording pods are shielded by PodDisruptionBudget %s-recording", self.name)

    def _still_idle(self, name: str) -> bool:
        """Idle and healthy in every brewery the pod joins, right now."""
        for label, brewery in self._breweries():
            observation = self.hub.registry.get_by_nickname(label, name, brewery)
            if observation is None or not observation.idle_and_healthy:
                return False
        return True

    def _cancel_drain(self, name: str, why: str) -> None:
        self.draining.pop(name, None)
        holder = f"pool:{self.namespace}/{self.name}"
        for label, brewery in self._breweries():
            observation = self.hub.registry.get_by_nickname(label, name, brewery)
            if observation is not None:
                self.hub.registry.release(label, observation.occupant, holder)
        kopf.info(self.body, reason="RemovalCancelled", message=f"kept {name}: {why}")

    async def _label(self, pods: list[dict[str, Any]]) -> None:
        """Keep every pod's ``jibri.dev/state`` label and shield annotations current."""
        for pod in pods:
            name = pod["metadata"]["name"]
            state = self.states.get(name, (PodState.STARTING,))[0]
            await self._label_one(pod, state_label(state, name in self.draining))

    async def _label_one(self, pod: dict[str, Any], label: str) -> None:
        metadata = pod["metadata"]
        if metadata.get("deletionTimestamp") or (metadata.get("labels") or {}).get(STATE_LABEL) == label:
            return
        if await self.hub.kube.patch_pod_metadata(
            self.namespace, metadata["name"], {STATE_LABEL: label}, shield_annotations(label)
        ):
            metadata.setdefault("labels", {})[STATE_LABEL] = label

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

    def _count_decision(self, reason: str) -> None:
        metrics.SCALE_DECISIONS.labels(self.namespace, self.name, reason).inc()

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
        # kstatus: it will not get better by itself; the spec, an environment or a Secret must change.
        self.conditions = set_condition(
            self.conditions, "Stalled", "True", "ReconcileFailed", message, generation
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
        if get_condition(conditions, "Stalled") is not None:
            conditions = set_condition(
                conditions, "Stalled", "False", "Reconciled", "the pool is reconciled", generation
            )
        self.conditions = conditions
        by_label = {label: 0 for label in ("starting", "idle", "busy", "unhealthy", "draining")}
        for view in views:
            by_label[state_label(view.state, view.name in self.draining)] += 1
        for label, number in by_label.items():
            metrics.POOL_PODS.labels(self.namespace, self.name, label).set(number)
        breakdown = decision.breakdown
        if breakdown.reason != self._reason:
            self._reason = breakdown.reason
            if breakdown.reason:  # why the pool is larger than busy + idleTarget
                kopf.info(
                    self.body, reason="Anticipating", message=f"{breakdown.desired} pods: {breakdown.reason}"
                )
        status: dict[str, Any] = {
            "replicas": staying,
            "desired": breakdown.desired,
            "desiredBreakdown": breakdown.to_status(),
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
