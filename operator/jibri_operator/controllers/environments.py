"""XmppEnvironment: one brewery connection per environment, and its status.

A kopf daemon per environment builds the connection settings from the spec
and its Secrets, keeps one :class:`BreweryClient` running, reconnects it when
the spec or a Secret it reads changes, and writes what it sees to status
(connected, Jibri counts, Connected and Ready conditions). Presence itself
flows from the client straight into the hub, not through here.

A Secret the operator may not read (RBAC) shows as Connected False, reason
Forbidden, naming the verb and resource; a refused status write is logged and
posted as an Event. Either is retried with a growing delay (refusals.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Final

import kopf

from jibri_operator import metrics
from jibri_operator.api.conditions import ConditionStatus, set_condition
from jibri_operator.api.constants import PLURAL_ENVIRONMENT
from jibri_operator.api.secret import Secret
from jibri_operator.api.types import BreweryKind
from jibri_operator.controllers.hub import EnvironmentLink, EnvKey, Hub, env_label
from jibri_operator.controllers.refusals import REASON as FORBIDDEN
from jibri_operator.controllers.refusals import Refusals
from jibri_operator.kube.client import Forbidden, SecretMissing
from jibri_operator.xmpp.brewery import BreweryClient, BreweryConfig

log = logging.getLogger(__name__)

STATUS_COALESCE: Final = 0.2  # many presences in a burst become one status write
# ...and under steady churn at most one write per this many seconds: the counts are for people
# and dashboards, and each write is an API call and a watch event for every watcher.
STATUS_INTERVAL: Final = 1.0
RECHECK: Final = 30.0  # re-read Secrets and refresh status at least this often
SECRET_RETRY: Final = 5.0
MAX_LISTED: Final = 50  # unable Jibris listed in status; the counts cover the rest


class EnvironmentRunner:
    def __init__(
        self, hub: Hub, body: kopf.Body, logger: logging.Logger | logging.LoggerAdapter[Any]
    ) -> None:
        self.hub = hub
        self.body = body
        self.logger = logger
        self.key: EnvKey = (body.metadata.namespace or "default", body.metadata.name or "")
        self.link: EnvironmentLink = hub.link(self.key)
        self.poked = asyncio.Event()
        self.generation: Any = None
        self._ca_dir: tempfile.TemporaryDirectory[str] | None = None
        self._problem: tuple[str, str] | None = None
        self._last_status: dict[str, Any] | None = None
        self._announced: tuple[str, str, str] | None = None  # the Connected condition last told in an Event
        self._written_at = float("-inf")  # loop time of the last status write
        self.conditions: list[dict[str, Any]] = list((body.get("status") or {}).get("conditions") or [])
        self.refusals = Refusals(body, logger, hub.clock)

    async def run(self, stopped: kopf.DaemonStopped) -> None:
        loop = asyncio.get_running_loop()
        try:
            reconciled = float("-inf")  # never: the first pass connects
            poked = False
            while not stopped:
                # The Secrets are read and the connection settings compared on a spec change
                # and on the timer, not on every presence: a busy brewery wakes this loop for
                # its status many times a second, and each pass would cost two Secret reads.
                try:
                    if poked or loop.time() >= self._reconcile_due(reconciled):
                        await self._reconcile_connection()
                        reconciled = loop.time()
                    await self._write_status()
                except Forbidden as error:  # the status write itself: only a log line and an Event can say it
                    self.refusals.refused(error)
                else:
                    if self._problem is None or self._problem[0] != FORBIDDEN:
                        self.refusals.cleared()
                poked = await self._wait(stopped, self._reconcile_due(reconciled) - loop.time())
        finally:
            await self.hub.drop_link(self.key)
            if self._ca_dir is not None:
                self._ca_dir.cleanup()
            self._clear_metrics()

    def _reconcile_due(self, reconciled: float) -> float:
        client = self.link.client
        # While something is wrong, look again soon: a fixed Secret should take effect in seconds.
        # What RBAC refuses is retried less and less often, so as not to hammer the API server.
        healthy = self._problem is None and client is not None and client.joined
        if self.refusals.active:
            return reconciled + self.refusals.delay
        return reconciled + (RECHECK if healthy else SECRET_RETRY)

    async def _wait(self, stopped: kopf.DaemonStopped, timeout: float) -> bool:
        """Wait for a status change, a poke or ``timeout``; True when poked (the spec changed)."""
        waiters: list[asyncio.Future[Any]] = [
            asyncio.create_task(self.poked.wait()),
            asyncio.ensure_future(stopped.wait()),
        ]
        if not self.refusals.active:  # while refused, presence changes do not hasten the retry
            waiters.append(asyncio.create_task(self.link.status_dirty.wait()))
        await asyncio.wait(waiters, timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        if self.link.status_dirty.is_set() and not stopped:
            since = asyncio.get_running_loop().time() - self._written_at
            await asyncio.sleep(max(STATUS_COALESCE, STATUS_INTERVAL - since))
        self.link.status_dirty.clear()
        poked = self.poked.is_set()
        self.poked.clear()
        return poked

    # -- the connection ---------------------------------------------------------------------

    async def _reconcile_connection(self) -> None:
        self.generation = self.body.metadata.get("generation")  # the spec this pass acts on
        spec = self.body.spec
        try:
            config = await self._config(spec)
        except SecretMissing as error:
            await self._problem_found("SecretNotFound", str(error))
            return
        except Forbidden as error:
            # Said in the Connected condition (with its Event, see _write_status) and logged.
            self.refusals.refused(error, event=False)
            self._problem = (FORBIDDEN, str(error))
            return
        except ValueError as error:
            await self._problem_found("InvalidSpec", str(error))
            return
        self._problem = None
        methods = frozenset(spec.get("recordingMethods") or ("file", "stream"))
        self.link.recording_methods = methods
        # The SIP gateway Jibris' brewery (Jicofo's sip-jibri-brewery), when the deployment has one.
        sip_brewery = spec.get("sipBrewery")
        sip_config = (
            dataclasses.replace(config, name=f"{config.name} (SIP)", room=sip_brewery)
            if sip_brewery
            else None
        )
        fingerprint = self._fingerprint(config) + (sip_brewery or "")
        if fingerprint == self.link.fingerprint and self.link.client is not None:
            return
        for old in (self.link.client, self.link.sip_client):
            if old is not None:
                await old.stop()
                self.logger.info("configuration changed; reconnecting")
        self.link.fingerprint = fingerprint
        self.link.client = BreweryClient(config, self.link.listener(BreweryKind.RECORDING))
        self.link.sip_client = (
            BreweryClient(sip_config, self.link.listener(BreweryKind.SIP)) if sip_config is not None else None
        )
        await self.link.client.start()
        if self.link.sip_client is not None:
            await self.link.sip_client.start()
        kopf.info(
            self.body,
            reason="Connecting",
            message=f"connecting to {config.host}:{config.port} as {config.jid}",
        )

    async def _problem_found(self, reason: str, message: str) -> None:
        if self._problem != (reason, message):
            self.logger.warning(f"{reason}: {message}")  # the Event comes with the status that says so
        self._problem = (reason, message)

    async def _config(self, spec: Any) -> BreweryConfig:
        namespace = self.key[0]
        login = spec.get("controlLogin") or {}
        ref = login.get("secretRef") or {}
        username_key = ref.get("usernameKey", "username")
        password_key = ref.get("passwordKey", "password")
        values = await self.hub.kube.read_secret_keys(
            namespace, ref.get("name", ""), [username_key, password_key]
        )
        username = values[username_key].reveal()
        jid = username if "@" in username else f"{username}@{login.get('domain') or spec['domain']}"
        tls = spec.get("tls") or {}
        ca_file = None
        if tls.get("caSecretRef"):
            ca_ref = tls["caSecretRef"]
            ca = await self.hub.kube.read_secret(namespace, ca_ref["name"], ca_ref.get("key", "ca.crt"))
            ca_file = self._write_ca(ca)
        server = spec.get("server") or {}
        return BreweryConfig(
            name=env_label(self.key),
            jid=jid,
            password=values[password_key],
            room=spec["brewery"],
            nickname=spec.get("nickname") or self.hub.nickname,
            host=server.get("host"),
            port=int(server.get("port", 5222)),
            ca_file=ca_file,
            allow_plaintext=not tls.get("required", True),
        )

    def _write_ca(self, ca: Secret) -> str:
        """slixmpp verifies against a file, so the CA from the Secret is written to a private one."""
        if self._ca_dir is None:
            self._ca_dir = tempfile.TemporaryDirectory(prefix="jibri-operator-ca-")
        path = os.path.join(self._ca_dir.name, "ca.crt")
        with open(path, "w", encoding="ascii") as handle:
            handle.write(ca.reveal())
        return path

    @staticmethod
    def _fingerprint(config: BreweryConfig) -> str:
        ca = Path(config.ca_file).read_bytes() if config.ca_file else b""
        parts = [
            config.jid,
            config.password.reveal(),
            config.room,
            config.nickname,
            str(config.host),
            str(config.port),
        ]
        parts += [str(config.allow_plaintext), hashlib.sha256(ca).hexdigest()]
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    # -- status ------------------------------------------------------------------------------------

    async def _write_status(self) -> None:
        client, sip = self.link.client, self.link.sip_client
        joined = client is not None and client.joined and (sip is None or sip.joined)
        counts = self.hub.registry.counts(env_label(self.key))
        generation = self.body.metadata.get("generation")
        connected: tuple[ConditionStatus, str, str]
        ready: tuple[ConditionStatus, str, str]
        if self._problem is not None:
            connected = ("False", self._problem[0], self._problem[1])
        elif joined and client is not None:
            rooms = client.config.room + (f" and SIP brewery {sip.config.room}" if sip is not None else "")
            connected = ("True", "Joined", f"in brewery {rooms} as {client.config.nickname}")
        elif client is not None and client.last_error:
            connected = ("False", "Disconnected", client.last_error)
        elif sip is not None and sip.last_error:
            connected = ("False", "Disconnected", f"SIP brewery: {sip.last_error}")
        else:
            connected = ("False", "Connecting", "connecting to the XMPP server")
        # Ready is kstatus' summary: the environment works (its breweries are joined). Every
        # Jibri busy is demand, not a fault: the reason says so, the status stays True.
        if not joined:
            ready = ("False", "NotConnected", "the brewery is not joined")
        elif counts.idle:
            ready = ("True", "JibrisAvailable", f"{counts.idle} idle Jibri(s)")
        else:
            ready = ("True", "NoIdleJibri", f"{counts.total} Jibri(s), none idle")
        conditions = set_condition(
            self.conditions, "Connected", connected[0], connected[1], connected[2], generation
        )
        conditions = set_condition(conditions, "Ready", ready[0], ready[1], ready[2], generation)
        label = env_label(self.key)
        offered = self.link.recording_methods
        status = {
            "connected": joined,
            "nickname": client.occupant_jid.partition("/")[2] if client is not None else None,
            "jibris": {
                "idle": counts.idle,
                "busy": counts.busy,
                "unhealthy": counts.unhealthy,
                "total": counts.total,
            },
            "methods": {
                mode.value: {"idle": c.idle, "busy": c.busy, "unable": c.unable}
                for mode, c in self.hub.registry.mode_counts(label).items()
                if mode.value in offered
            },
            "unableJibris": [
                {"nickname": nickname, "modes": sorted(mode.value for mode in modes)}
                for nickname, modes in sorted(self.hub.registry.refusals(label).items())
            ][:MAX_LISTED],
            "observedGeneration": generation,
            "conditions": conditions,
        }
        labels = self.key
        metrics.JIBRIS.labels(*labels, "idle").set(counts.idle)
        metrics.JIBRIS.labels(*labels, "busy").set(counts.busy)
        metrics.JIBRIS.labels(*labels, "unhealthy").set(counts.unhealthy)
        if status == self._last_status:
            return
        # Announced once per change, even while the status write itself is refused and retried.
        before, self._announced = self._announced, connected
        if joined and (before is None or before[0] != "True"):
            kopf.info(self.body, reason="Connected", message=connected[2])
        elif not joined and connected[1] != "Connecting" and (before or ("", "", ""))[2] != connected[2]:
            kopf.warn(self.body, reason=connected[1], message=connected[2])
        await self.hub.kube.patch_status(PLURAL_ENVIRONMENT, *self.key, status)
        self.conditions = conditions
        self._last_status = status
        self._written_at = asyncio.get_running_loop().time()

    def _clear_metrics(self) -> None:
        for state in ("idle", "busy", "unhealthy"):
            with contextlib.suppress(KeyError):
                metrics.JIBRIS.remove(*self.key, state)
