"""Shared fixtures: one real Prosody per test session, fresh accounts and brewery rooms per test."""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from jibri_sandbox.controlplane.binaries import pinned_bin
from jibri_sandbox.jibri import JibriConfig, SandboxSettings, SimulatedJibri, sandbox_environment
from jibri_sandbox.prosody import Prosody

# The pinned kubectl and helm (`make control-plane`) come before whatever the machine has,
# as under `make test`, also when pytest is run by hand.
if (PINNED_BIN := pinned_bin()) is not None:
    os.environ["PATH"] = f"{PINNED_BIN}{os.pathsep}{os.environ.get('PATH', '')}"

AccountFactory = Callable[..., tuple[str, str]]


@pytest.fixture(scope="session")
def prosody() -> Iterator[Prosody]:
    """A real Prosody (TLS required, MUC ``conference.localhost``), started once per session.

    A second deployment is available as domain ``meet.example`` with MUC
    ``conference.meet.example`` (see ``prosody.domains``). Connect to
    ``prosody.host``/``prosody.port`` and verify with ``prosody.ca_file``.
    Tests that restart it must leave it running.
    """
    server = Prosody(extra_domains=["meet.example"])
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def xmpp_account(prosody: Prosody) -> AccountFactory:
    """Factory for fresh accounts: ``xmpp_account(prefix="user", domain=None) -> (bare_jid, password)``.

    Usernames are unique per call, so tests never share a login.
    """

    def create(prefix: str = "user", domain: str | None = None) -> tuple[str, str]:
        password = secrets.token_urlsafe(12)
        jid = prosody.register(f"{prefix}-{uuid.uuid4().hex[:8]}", password, domain)
        return jid, password

    return create


@pytest.fixture
def brewery(prosody: Prosody) -> str:
    """A brewery room JID no other test uses: ``brewery-<uuid8>@conference.localhost``."""
    return f"brewery-{uuid.uuid4().hex[:8]}@{prosody.muc_domain}"


JibriFactory = Callable[..., Awaitable[SimulatedJibri]]


@pytest.fixture
async def simulated_jibri(prosody: Prosody, xmpp_account: AccountFactory) -> AsyncIterator[JibriFactory]:
    """Factory for started simulated Jibris, stopped at teardown.

    ``await simulated_jibri(*breweries, nickname=None, single_use=False, **sandbox)`` logs a fresh
    account in to each brewery (a room JID on any of ``prosody.domains``), one environment per
    brewery; ``sandbox`` overrides :class:`SandboxSettings` fields (dialect, healthy, faults, ...).
    """
    started: list[SimulatedJibri] = []

    async def create(
        *breweries: str, nickname: str | None = None, single_use: bool = False, **sandbox: Any
    ) -> SimulatedJibri:
        nick = nickname or f"jibri-{uuid.uuid4().hex[:6]}"
        environments = []
        for i, room in enumerate(breweries):
            jid, password = xmpp_account("jibri", _domain_of(prosody, room))
            server = (prosody.host, prosody.port)
            environments.append(
                sandbox_environment(
                    server=server, brewery=room, nickname=nick, jid=jid, password=password, name=f"env{i}"
                )
            )
        settings = replace(SandboxSettings(ca_file=str(prosody.ca_file)), **sandbox)
        jibri = SimulatedJibri(JibriConfig(tuple(environments), single_use_mode=single_use, sandbox=settings))
        await jibri.start()
        started.append(jibri)
        return jibri

    yield create
    for jibri in started:
        await jibri.stop()


def _domain_of(prosody: Prosody, room: str) -> str:
    muc_domain = room.partition("@")[2]
    return next((d.domain for d in prosody.domains if d.muc_domain == muc_domain), prosody.domain)
