"""Shared fixtures: one real Prosody per test session, fresh accounts and brewery rooms per test."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterator

import pytest

from jibri_sandbox.prosody import Prosody

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
