"""The sandbox Prosody: TLS required and verified, accounts, MUC, restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from xmpp_helpers import LoginFailed, TestClient

from jibri_sandbox.prosody import Prosody

pytestmark = pytest.mark.e2e


async def test_login_over_tls_verifying_the_ca(prosody: Prosody, xmpp_account) -> None:
    jid, password = xmpp_account()
    client = TestClient(jid, password, prosody.ca_file)
    await client.login(prosody.host, prosody.port)
    assert client.is_connected()
    await client.close()


async def test_wrong_password_is_refused(prosody: Prosody, xmpp_account) -> None:
    jid, _ = xmpp_account()
    client = TestClient(jid, "not-the-password", prosody.ca_file)
    with pytest.raises(LoginFailed):
        await client.login(prosody.host, prosody.port)


async def test_plaintext_login_is_refused(prosody: Prosody, xmpp_account) -> None:
    jid, password = xmpp_account()
    client = TestClient(jid, password, prosody.ca_file, tls=False)
    with pytest.raises(LoginFailed):
        await client.login(prosody.host, prosody.port)


async def test_muc_is_non_anonymous_and_unlocked(prosody: Prosody, xmpp_account, brewery: str) -> None:
    (jid_a, pw_a), (jid_b, pw_b) = xmpp_account("a"), xmpp_account("b")
    a, b = TestClient(jid_a, pw_a, prosody.ca_file), TestClient(jid_b, pw_b, prosody.ca_file)
    await a.login(prosody.host, prosody.port)
    await b.login(prosody.host, prosody.port)
    await a.join(brewery, "alice")
    await b.join(brewery, "bob")

    def bob_real_jid() -> str | None:
        for element in a.presences:
            if element.get("from") == f"{brewery}/bob":
                item = element.find(
                    "{http://jabber.org/protocol/muc#user}x/{http://jabber.org/protocol/muc#user}item"
                )
                if item is not None and item.get("jid"):
                    return item.get("jid")
        return None

    real = await a.wait_for(bob_real_jid)
    assert real.partition("/")[0] == jid_b
    await a.close()
    await b.close()


async def test_second_domain_has_its_own_muc(prosody: Prosody, xmpp_account) -> None:
    second = prosody.domains[1]
    jid, password = xmpp_account("other", domain=second.domain)
    assert jid.endswith("@meet.example")
    client = TestClient(jid, password, prosody.ca_file)
    await client.login(prosody.host, prosody.port)
    await client.join(f"brewery@{second.muc_domain}", "me")
    await client.close()


def test_registering_a_hundred_accounts_is_fast(prosody: Prosody) -> None:
    started = time.monotonic()
    for i in range(100):
        prosody.register(f"bulk-{i}", "secret")
    assert time.monotonic() - started < 5


async def test_restart_keeps_port_and_accounts(tmp_path: Path) -> None:
    server = Prosody(tmp_path / "p")
    with server:
        jid = server.register("keeper", "pw")
        port = server.port
        server.restart()
        assert server.port == port and server.running
        client = TestClient(jid, "pw", server.ca_file)
        await client.login(server.host, server.port)
        await client.close()
    assert not server.running


def test_cli_writes_xmpp_json_and_stops_on_sigterm(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "jibri_sandbox.cli", "prosody", "--dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert process.stdout is not None
        lines = iter(process.stdout.readline, b"")
        assert any(b"listening" in line for line in lines)  # printed once xmpp.json is written
        info = json.loads((tmp_path / "xmpp.json").read_text())
        assert info["domain"] == "localhost" and info["muc_domain"] == "conference.localhost"
        assert Path(info["ca_file"]).is_file() and isinstance(info["port"], int)
        os.kill(process.pid, signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
