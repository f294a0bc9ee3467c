"""jibri.conf for a pool's pods: one ``jibri.api.xmpp.environments`` entry per
XmppEnvironment the pool serves, in the layout a real Jibri reads.

Each pod joins every brewery under its own name: the nickname is the HOCON
substitution ``${POD_NAME}``, which the pod's environment provides, so one
rendered file (one Secret) serves every pod of the pool. The file holds
passwords, as a real jibri.conf does: it only ever goes into a Secret.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from jibri_operator.api.secret import Secret

NICKNAME_FROM_ENV = "${POD_NAME}"


@dataclass(frozen=True)
class Login:
    domain: str
    username: str
    password: Secret


@dataclass(frozen=True)
class JibriEnvironment:
    name: str
    server_hosts: tuple[str, ...]  # host:port
    xmpp_domain: str
    control_muc_domain: str
    control_muc_room: str
    control_login: Login
    call_login: Login | None = None
    strip_from_room_domain: str = "conference."
    usage_timeout_minutes: float = 0  # Jibri's unit; 0 means no limit
    trust_all_certs: bool = False


def _login(key: str, login: Login) -> list[str]:
    q = json.dumps
    return [
        f"        {key} {{",
        f"          domain = {q(login.domain)}",
        f"          username = {q(login.username)}",
        f"          password = {q(login.password.reveal())}",
        "        }",
    ]


def render_jibri_conf(environments: Sequence[JibriEnvironment], *, single_use: bool = False) -> str:
    q = json.dumps
    entries = []
    for env in environments:
        lines = [
            "      {",
            f"        name = {q(env.name)}",
            f"        xmpp-server-hosts = {q(list(env.server_hosts))}",
            f"        xmpp-domain = {q(env.xmpp_domain)}",
            "        control-muc {",
            f"          domain = {q(env.control_muc_domain)}",
            f"          room-name = {q(env.control_muc_room)}",
            f"          nickname = {NICKNAME_FROM_ENV}",
            "        }",
            *_login("control-login", env.control_login),
            *(_login("call-login", env.call_login) if env.call_login else []),
            f"        strip-from-room-domain = {q(env.strip_from_room_domain)}",
            f"        usage-timeout = {env.usage_timeout_minutes:g}",
            f"        trust-all-xmpp-certs = {q(env.trust_all_certs)}",
            "      }",
        ]
        entries.append("\n".join(lines))
    return "\n".join(
        [
            "# Rendered by jibri-operator; edit the JibriPool or its XmppEnvironments instead.",
            "jibri {",
            f"  single-use-mode = {q(single_use)}",
            "  api {",
            "    xmpp {",
            "      environments = [",
            ",\n".join(entries),
            "      ]",
            "    }",
            "  }",
            "}",
            "",
        ]
    )
