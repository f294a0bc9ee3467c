"""Simulated Jibris for the operator's e2e tests, each with its own Prosody account."""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from operator_fixture import Environment

from jibri_operator.api.secret import Secret
from jibri_operator.api.types import Action, Dialect, RecordingMode
from jibri_operator.xmpp.brewery import BreweryClient, BreweryConfig
from jibri_operator.xmpp.stanzas import StartRequest
from jibri_sandbox.jibri.config import JibriConfig, SandboxSettings, sandbox_environment
from jibri_sandbox.jibri.simulator import SimulatedJibri
from jibri_sandbox.prosody import Prosody

JibriFactory = Callable[..., Awaitable[list[SimulatedJibri]]]


def nickname(jibri: SimulatedJibri) -> str:
    return jibri.config.environments[0].control_muc.nickname


def stops(jibri: SimulatedJibri) -> int:
    return sum(1 for command in jibri.commands if command.action is Action.STOP)


def jibri_config(
    prosody: Prosody,
    brewery: str,
    jid: str,
    password: str,
    nick: str,
    sip_brewery: str | None = None,
    **sandbox: Any,
) -> JibriConfig:
    environment = sandbox_environment(
        server=(prosody.host, prosody.port),
        brewery=brewery,
        nickname=nick,
        jid=jid,
        password=password,
        name="meet",
        sip_brewery=sip_brewery,
    )
    return JibriConfig((environment,), sandbox=SandboxSettings(ca_file=str(prosody.ca_file), **sandbox))


@contextlib.asynccontextmanager
async def jibri_factory(
    prosody: Prosody, brewery: str, xmpp_account: Callable[..., tuple[str, str]]
) -> AsyncIterator[JibriFactory]:
    """``make(n, dialect=..., on_delay=..., **sandbox)`` starts n Jibris in ``brewery``; all stop at exit."""
    running: list[SimulatedJibri] = []

    async def make(
        count: int, dialect: Dialect = Dialect.CURRENT, on_delay: float = 0.05, **sandbox: Any
    ) -> list[SimulatedJibri]:
        made = []
        for _ in range(count):
            jid, password = xmpp_account("jibri")
            nick = f"jibri-{uuid.uuid4().hex[:6]}"
            config = jibri_config(
                prosody, brewery, jid, password, nick, dialect=dialect, start_delay=on_delay, **sandbox
            )
            jibri = SimulatedJibri(config)
            running.append(jibri)
            made.append(jibri)
        for jibri in made:
            await jibri.start()
        return made

    try:
        yield make
    finally:
        for jibri in running:
            await jibri.stop()


@pytest.fixture
async def jibris(
    env: Environment, xmpp_account: Callable[..., tuple[str, str]]
) -> AsyncIterator[JibriFactory]:
    """Simulated Jibris in the ``env`` fixture's brewery."""
    async with jibri_factory(env.prosody, env.brewery, xmpp_account) as factory:
        yield factory


@contextlib.asynccontextmanager
async def other_controller(
    prosody: Prosody, brewery: str, xmpp_account: Callable[..., tuple[str, str]]
) -> AsyncIterator[BreweryClient]:
    """Another controller in the same brewery (think Jicofo, or this operator in another cluster)."""
    jid, password = xmpp_account("jicofo")
    config = BreweryConfig(
        "other", jid, Secret(password), brewery, "focus", prosody.host, prosody.port, str(prosody.ca_file)
    )
    client = BreweryClient(config)
    await client.start()
    try:
        await client.wait_joined(10)
        yield client
    finally:
        await client.stop()


async def occupy(client: BreweryClient, jibri: SimulatedJibri, room: str) -> None:
    """Have ``client`` start a recording on ``jibri`` and see it busy."""
    occupant = jibri.config.environments[0].control_muc.occupant
    await client.wait_for(lambda c: occupant in c.jibris, 10)
    await client.start_recording(occupant, StartRequest(room, RecordingMode.FILE, "other"), jibri.dialect)
    await jibri.wait_until(lambda j: j.busy, 5)


def replace_faults(jibri: SimulatedJibri, **faults: Any) -> None:
    jibri.faults = dataclasses.replace(jibri.faults, **faults)
