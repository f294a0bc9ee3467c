"""jibri.conf for a pool's pods: one ``jibri.api.xmpp.environments`` entry per
XmppEnvironment the pool serves, in the layout a real Jibri reads.

Written for a real Jibri's reader (jitsi/jibri ``src/main/kotlin/org/jitsi/jibri/config/
JibriConfig.kt``, ``toXmppEnvironment``): every key it requires is always present,
``call-login`` included; ``usage-timeout`` carries its unit, since Typesafe Config reads
a bare number as milliseconds; ``sip-control-muc`` appears only for an environment with
a SIP brewery.

One rendered file serves every pod of the pool: what differs per pod or is secret is
a HOCON substitution that Jibri resolves from the container's environment
(``ConfigFactory.load()`` falls back to environment variables). ``jibri.id`` and each
nickname are ``${POD_NAME}``; each password is ``${JIBRI_XMPP_PASSWORD}``-like, a
variable the pod sets from the login's Secret by ``secretKeyRef``. The file thus
holds no password, and no template action either (``{{``), which matters where the
official image passes it through its template step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

POD_NAME_VAR: Final = "POD_NAME"
FROM_POD_NAME: Final = "${" + POD_NAME_VAR + "}"


@dataclass(frozen=True)
class SecretKeyRef:
    """One key of a Secret in the pool's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class Login:
    """An XMPP account; the password stays in its Secret and reaches Jibri as a variable."""

    domain: str
    username: str
    password: SecretKeyRef


@dataclass(frozen=True)
class Muc:
    domain: str
    room: str


@dataclass(frozen=True)
class JibriEnvironment:
    name: str
    server_hosts: tuple[str, ...]  # host:port
    xmpp_domain: str
    control_muc: Muc
    control_login: Login
    call_login: Login
    sip_control_muc: Muc | None = None
    strip_from_room_domain: str = "conference."
    usage_timeout_minutes: int = 0  # 0 means no limit
    trust_all_certs: bool = False


def password_variables(index: int) -> tuple[str, str]:
    """The variables holding environment ``index``'s control and call passwords.

    The first environment's are the official image's own names, which its start-up
    step requires to be set; the others are numbered.
    """
    if index == 0:
        return "JIBRI_XMPP_PASSWORD", "JIBRI_RECORDER_PASSWORD"
    return f"JIBRI_XMPP_PASSWORD_{index}", f"JIBRI_RECORDER_PASSWORD_{index}"


def password_env(environments: Sequence[JibriEnvironment]) -> list[tuple[str, SecretKeyRef]]:
    """(variable, Secret key) for every password the rendered file refers to."""
    pairs = []
    for index, env in enumerate(environments):
        control, call = password_variables(index)
        pairs += [(control, env.control_login.password), (call, env.call_login.password)]
    return pairs


def _substitution(variable: str) -> str:
    return "${" + variable + "}"


def _login(key: str, login: Login, variable: str) -> list[str]:
    q = json.dumps
    return [
        f"        {key} {{",
        f"          domain = {q(login.domain)}",
        f"          username = {q(login.username)}",
        f"          password = {_substitution(variable)}",
        "        }",
    ]


def _muc(key: str, muc: Muc) -> list[str]:
    q = json.dumps
    return [
        f"        {key} {{",
        f"          domain = {q(muc.domain)}",
        f"          room-name = {q(muc.room)}",
        f"          nickname = {FROM_POD_NAME}",
        "        }",
    ]


def render_jibri_conf(environments: Sequence[JibriEnvironment], *, single_use: bool = False) -> str:
    q = json.dumps
    entries = []
    for index, env in enumerate(environments):
        control_password, call_password = password_variables(index)
        lines = [
            "      {",
            f"        name = {q(env.name)}",
            f"        xmpp-server-hosts = {q(list(env.server_hosts))}",
            f"        xmpp-domain = {q(env.xmpp_domain)}",
            *_muc("control-muc", env.control_muc),
            *_login("control-login", env.control_login, control_password),
            *(_muc("sip-control-muc", env.sip_control_muc) if env.sip_control_muc else []),
            *_login("call-login", env.call_login, call_password),
            f"        strip-from-room-domain = {q(env.strip_from_room_domain)}",
            f"        usage-timeout = {q(f'{env.usage_timeout_minutes} minutes')}",
            f"        trust-all-xmpp-certs = {q(env.trust_all_certs)}",
            "      }",
        ]
        entries.append("\n".join(lines))
    return "\n".join(
        [
            "# Rendered by jibri-operator; edit the JibriPool or its XmppEnvironments instead.",
            "# ${...} are read from the container's environment: the pod's name and the passwords.",
            "jibri {",
            f"  id = {FROM_POD_NAME}",
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
