"""Read (and, for the sandbox, write) a real Jibri's ``jibri.conf``.

The simulated Jibri reads the same HOCON file a real Jibri reads, so a config
rendered for a pool is exercised end to end. Only the parts the control
protocol needs are modelled: ``jibri.api.xmpp.environments`` and
``jibri.single-use-mode``. Sandbox-only behaviour (dialect, health, faults)
lives under ``jibri.sandbox``, which a real Jibri ignores.

Passwords are held as :class:`Secret`, so no repr or log line can show them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pyhocon import ConfigFactory, ConfigTree

from jibri_operator.api.secret import Secret
from jibri_operator.api.types import Dialect, RecordingMode

DEFAULT_XMPP_PORT: Final = 5222
LEGACY_WITH_REPORTS: Final = "legacy-with-reports"


class JibriConfigError(ValueError):
    """jibri.conf is missing something the Jibri needs, or has a value of the wrong kind."""


# ---------------------------------------------------------------------------
# Durations

_UNITS: Final = {
    "ns": 1e-9, "nano": 1e-9, "nanos": 1e-9, "nanosecond": 1e-9, "nanoseconds": 1e-9,
    "us": 1e-6, "micro": 1e-6, "micros": 1e-6, "microsecond": 1e-6, "microseconds": 1e-6,
    "ms": 1e-3, "milli": 1e-3, "millis": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3,
    "s": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}  # fmt: skip
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(value: Any, bare_unit: str, what: str) -> float:
    """A HOCON duration in seconds.

    A bare number takes ``bare_unit`` (HOCON says milliseconds; Jibri's usage-timeout
    says minutes). pyhocon itself turns unquoted durations into timedelta or
    relativedelta objects, so those are accepted too.
    """
    if isinstance(value, bool):
        raise JibriConfigError(f"{what}: expected a duration, not a boolean")
    if isinstance(value, int | float):
        return float(value) * _UNITS[bare_unit]
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if hasattr(value, "normalized"):  # dateutil.relativedelta, from pyhocon's period parser
        base = dt.datetime(2000, 1, 1)  # only a difference is taken
        return float((base + value - base).total_seconds())
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match:
            unit = match.group(2).lower() or bare_unit
            if unit in _UNITS:
                return float(match.group(1)) * _UNITS[unit]
    raise JibriConfigError(f"{what}: not a duration (e.g. '30 seconds', '100 ms')")


def _render_duration(seconds: float) -> str:
    return json.dumps(f"{round(seconds * 1000)} milliseconds")


# ---------------------------------------------------------------------------
# Model


@dataclass(frozen=True)
class Login:
    """An XMPP account: ``username@domain`` with its password."""

    domain: str
    username: str
    password: Secret
    port: int | None = None

    @property
    def jid(self) -> str:
        return f"{self.username}@{self.domain}"


@dataclass(frozen=True)
class ControlMuc:
    """The brewery: the MUC room Jibri joins to be found and commanded."""

    domain: str
    room_name: str
    nickname: str

    @property
    def room(self) -> str:
        return f"{self.room_name}@{self.domain}"

    @property
    def occupant(self) -> str:
        return f"{self.room}/{self.nickname}"


@dataclass(frozen=True)
class XmppEnvironment:
    """One Jitsi deployment a Jibri serves (an element of ``jibri.api.xmpp.environments``)."""

    name: str
    xmpp_server_hosts: tuple[str, ...]
    xmpp_domain: str
    control_muc: ControlMuc
    control_login: Login
    call_login: Login | None = None
    strip_from_room_domain: str = ""
    usage_timeout: float | None = None  # seconds; None means no limit
    trust_all_xmpp_certs: bool = False

    def servers(self) -> list[tuple[str, int]]:
        """(host, port) pairs: ``host:port`` in the list wins over ``control-login.port``."""
        default = self.control_login.port or DEFAULT_XMPP_PORT
        result = []
        for entry in self.xmpp_server_hosts:
            host, sep, port = entry.rpartition(":")
            # "host:port" or "[v6]:port"; a bare IPv6 address has colons but no brackets.
            if sep and host and port.isdigit() and (":" not in host or host.endswith("]")):
                result.append((host.strip("[]"), int(port)))
            else:
                result.append((entry, default))
        return result


@dataclass
class Faults:
    """Failures to inject. Mutable: tests flip them at runtime through the simulator."""

    start_fails: bool = False  # after pending: an off report with failure_reason=error
    start_fails_should_retry: bool = True
    never_on: bool = False  # stays pending forever: no on report
    disconnect_after_on: bool = False  # drops every XMPP connection right after the on report
    lose_start_reply: bool = False  # accepts and records, but its answer to start never arrives
    # Seconds the busy presence after an accepted start lags behind: how a second controller
    # still sees the Jibri idle and loses the race with a busy answer.
    busy_presence_delay: float = 0.0


@dataclass(frozen=True)
class SandboxSettings:
    """``jibri.sandbox``: how the simulated Jibri behaves. A real Jibri ignores this block."""

    dialect: Dialect = Dialect.CURRENT
    # Legacy only. False: the 2016 spec to the letter (a plain result, then presence; no
    # reports at all). True ("legacy-with-reports"): a 2017-era Jibri that answers
    # pending and sends on/off reports while still announcing its status the 2016 way.
    legacy_reports: bool = False
    healthy: bool = True
    recording_modes: tuple[RecordingMode, ...] = (RecordingMode.FILE, RecordingMode.STREAM)
    start_delay: float = 0.05  # seconds from pending to the on report
    recording_duration: float | None = None  # ends by itself with an off report; None: until stopped
    ca_file: str | None = None
    report_timeout: float = 5.0  # how long to wait for the controller to acknowledge a report
    faults: Faults = field(default_factory=Faults)

    @property
    def variant(self) -> str:
        """What ``jibri.sandbox.dialect`` says: current, legacy or legacy-with-reports."""
        return (
            LEGACY_WITH_REPORTS
            if self.dialect is Dialect.LEGACY and self.legacy_reports
            else self.dialect.value
        )


@dataclass(frozen=True)
class JibriConfig:
    environments: tuple[XmppEnvironment, ...]
    single_use_mode: bool = False
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    id: str = ""


# ---------------------------------------------------------------------------
# Reading


def load_jibri_conf(path: str | Path) -> JibriConfig:
    try:
        text = Path(path).read_text()
    except OSError as error:
        raise JibriConfigError(f"cannot read {path}: {error.strerror}") from None
    return parse_jibri_conf(text)


def parse_jibri_conf(text: str) -> JibriConfig:
    try:
        root = ConfigFactory.parse_string(text)
    except Exception as error:
        raise JibriConfigError(f"jibri.conf is not valid HOCON: {type(error).__name__}") from None
    jibri = _tree(root, "jibri", "jibri.conf")
    environments = jibri.get("api.xmpp.environments", None)
    if not isinstance(environments, list) or not environments:
        raise JibriConfigError("jibri.api.xmpp.environments: needs at least one environment")
    return JibriConfig(
        environments=tuple(
            _environment(env, f"jibri.api.xmpp.environments[{i}]") for i, env in enumerate(environments)
        ),
        single_use_mode=_bool(jibri.get("single-use-mode", False), "jibri.single-use-mode"),
        sandbox=_sandbox(jibri.get("sandbox", None)),
        id=str(jibri.get("id", "")),
    )


def _tree(parent: ConfigTree, key: str, what: str) -> ConfigTree:
    value = parent.get(key, None)
    if not isinstance(value, ConfigTree):
        raise JibriConfigError(f"{what}: missing section '{key}'")
    return value


def _str(tree: ConfigTree, key: str, what: str, default: str | None = None) -> str:
    value = tree.get(key, default)
    if value is None or isinstance(value, ConfigTree | list) or str(value) == "":
        raise JibriConfigError(f"{what}.{key}: required")
    return str(value)


def _bool(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "yes", "on", "false", "no", "off"):
        return value.lower() in ("true", "yes", "on")
    raise JibriConfigError(f"{what}: expected true or false")


def _port(value: Any, what: str) -> int | None:
    if value is None:
        return None
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise JibriConfigError(f"{what}: expected a port number") from None
    if not 0 < port < 65536:
        raise JibriConfigError(f"{what}: port out of range")
    return port


def _login(tree: Any, what: str) -> Login:
    if not isinstance(tree, ConfigTree):
        raise JibriConfigError(f"{what}: missing section")
    return Login(
        domain=_str(tree, "domain", what),
        username=_str(tree, "username", what),
        password=Secret(str(tree.get("password", ""))),
        port=_port(tree.get("port", None), f"{what}.port"),
    )


def _environment(env: Any, what: str) -> XmppEnvironment:
    if not isinstance(env, ConfigTree):
        raise JibriConfigError(f"{what}: expected an object")
    hosts = env.get("xmpp-server-hosts", None)
    if isinstance(hosts, str):
        hosts = [hosts]
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) and h for h in hosts):
        raise JibriConfigError(f"{what}.xmpp-server-hosts: needs a list of host names")
    muc = env.get("control-muc", None)
    if not isinstance(muc, ConfigTree):
        raise JibriConfigError(f"{what}.control-muc: missing section")
    call_login = env.get("call-login", None)
    timeout_value = env.get("usage-timeout", 0)
    usage_timeout = parse_duration(timeout_value, "minutes", f"{what}.usage-timeout")
    return XmppEnvironment(
        name=_str(env, "name", what),
        xmpp_server_hosts=tuple(hosts),
        xmpp_domain=_str(env, "xmpp-domain", what),
        control_muc=ControlMuc(
            domain=_str(muc, "domain", f"{what}.control-muc"),
            room_name=_str(muc, "room-name", f"{what}.control-muc"),
            nickname=_str(muc, "nickname", f"{what}.control-muc"),
        ),
        control_login=_login(env.get("control-login", None), f"{what}.control-login"),
        call_login=_login(call_login, f"{what}.call-login") if isinstance(call_login, ConfigTree) else None,
        strip_from_room_domain=str(env.get("strip-from-room-domain", "")),
        usage_timeout=usage_timeout or None,
        trust_all_xmpp_certs=_bool(env.get("trust-all-xmpp-certs", False), f"{what}.trust-all-xmpp-certs"),
    )


def _sandbox(tree: Any) -> SandboxSettings:
    if tree is None:
        return SandboxSettings()
    what = "jibri.sandbox"
    if not isinstance(tree, ConfigTree):
        raise JibriConfigError(f"{what}: expected an object")
    defaults = SandboxSettings()
    dialect_value = str(tree.get("dialect", defaults.dialect.value))
    legacy_reports = dialect_value == LEGACY_WITH_REPORTS
    try:
        dialect = Dialect.LEGACY if legacy_reports else Dialect(dialect_value)
    except ValueError:
        raise JibriConfigError(f"{what}.dialect: must be current, legacy or {LEGACY_WITH_REPORTS}") from None
    modes_value = tree.get("recording-modes", [m.value for m in defaults.recording_modes])
    try:
        modes = tuple(RecordingMode(str(m)) for m in modes_value)
    except (ValueError, TypeError):
        raise JibriConfigError(f"{what}.recording-modes: a list of file|stream|sip") from None
    duration = tree.get("recording-duration", None)
    faults_tree = tree.get("faults", None)
    faults = Faults()
    if isinstance(faults_tree, ConfigTree):
        faults = Faults(
            start_fails=_bool(faults_tree.get("start-fails", False), f"{what}.faults.start-fails"),
            start_fails_should_retry=_bool(
                faults_tree.get("start-fails-should-retry", True), f"{what}.faults.start-fails-should-retry"
            ),
            never_on=_bool(faults_tree.get("never-on", False), f"{what}.faults.never-on"),
            disconnect_after_on=_bool(
                faults_tree.get("disconnect-after-on", False), f"{what}.faults.disconnect-after-on"
            ),
            lose_start_reply=_bool(
                faults_tree.get("lose-start-reply", False), f"{what}.faults.lose-start-reply"
            ),
            busy_presence_delay=parse_duration(
                faults_tree.get("busy-presence-delay", 0), "ms", f"{what}.faults.busy-presence-delay"
            ),
        )
    ca_file = tree.get("ca-file", None)
    return SandboxSettings(
        dialect=dialect,
        legacy_reports=legacy_reports,
        healthy=_bool(tree.get("healthy", True), f"{what}.healthy"),
        recording_modes=modes,
        start_delay=parse_duration(
            tree.get("start-delay", defaults.start_delay * 1000), "ms", f"{what}.start-delay"
        ),
        recording_duration=(
            parse_duration(duration, "ms", f"{what}.recording-duration") or None
            if duration is not None
            else None
        ),
        ca_file=str(ca_file) if ca_file else None,
        report_timeout=parse_duration(
            tree.get("report-timeout", defaults.report_timeout * 1000), "ms", f"{what}.report-timeout"
        ),
        faults=faults,
    )


# ---------------------------------------------------------------------------
# Writing


def sandbox_environment(
    *,
    server: tuple[str, int],
    brewery: str,
    nickname: str,
    jid: str,
    password: str,
    xmpp_domain: str | None = None,
    name: str | None = None,
    usage_timeout: float | None = None,
) -> XmppEnvironment:
    """An environment for a Jibri logging in as ``jid`` and joining ``brewery`` (``room@muc``)."""
    room, _, muc_domain = brewery.partition("@")
    username, _, login_domain = jid.partition("@")
    if not room or not muc_domain or not username or not login_domain:
        raise JibriConfigError("brewery and jid must both be bare JIDs (name@domain)")
    domain = xmpp_domain or login_domain
    return XmppEnvironment(
        name=name or domain,
        xmpp_server_hosts=(f"{server[0]}:{server[1]}",),
        xmpp_domain=domain,
        control_muc=ControlMuc(muc_domain, room, nickname),
        control_login=Login(login_domain, username, Secret(password)),
        usage_timeout=usage_timeout,
    )


def render_sandbox_jibri_conf(
    environments: Sequence[XmppEnvironment],
    sandbox: SandboxSettings | None = None,
    *,
    single_use_mode: bool = False,
) -> str:
    """A jibri.conf for the given environments, in the layout a real Jibri reads.

    It holds passwords in clear, as a real jibri.conf does: write it with care
    (mode 0600) and never log it.
    """
    q = json.dumps
    sandbox = sandbox or SandboxSettings()
    envs = []
    for env in environments:
        login = env.control_login
        lines = [
            "      {",
            f"        name = {q(env.name)}",
            f"        xmpp-server-hosts = {q(list(env.xmpp_server_hosts))}",
            f"        xmpp-domain = {q(env.xmpp_domain)}",
            "        control-muc {",
            f"          domain = {q(env.control_muc.domain)}",
            f"          room-name = {q(env.control_muc.room_name)}",
            f"          nickname = {q(env.control_muc.nickname)}",
            "        }",
            *_render_login("control-login", login),
        ]
        if env.call_login is not None:
            lines += _render_login("call-login", env.call_login)
        lines += [
            f"        strip-from-room-domain = {q(env.strip_from_room_domain)}",
            f"        usage-timeout = {_render_usage_timeout(env.usage_timeout)}",
            f"        trust-all-xmpp-certs = {q(env.trust_all_xmpp_certs)}",
            "      }",
        ]
        envs.append("\n".join(lines))
    faults = sandbox.faults
    body = [
        "jibri {",
        f"  single-use-mode = {q(single_use_mode)}",
        "  api {",
        "    xmpp {",
        "      environments = [",
        ",\n".join(envs),
        "      ]",
        "    }",
        "  }",
        "  sandbox {",
        f"    dialect = {q(sandbox.variant)}",
        f"    healthy = {q(sandbox.healthy)}",
        f"    recording-modes = {q([m.value for m in sandbox.recording_modes])}",
        f"    start-delay = {_render_duration(sandbox.start_delay)}",
    ]
    if sandbox.recording_duration is not None:
        body.append(f"    recording-duration = {_render_duration(sandbox.recording_duration)}")
    if sandbox.ca_file is not None:
        body.append(f"    ca-file = {q(sandbox.ca_file)}")
    body += [
        f"    report-timeout = {_render_duration(sandbox.report_timeout)}",
        "    faults {",
        f"      start-fails = {q(faults.start_fails)}",
        f"      start-fails-should-retry = {q(faults.start_fails_should_retry)}",
        f"      never-on = {q(faults.never_on)}",
        f"      disconnect-after-on = {q(faults.disconnect_after_on)}",
        f"      lose-start-reply = {q(faults.lose_start_reply)}",
        f"      busy-presence-delay = {_render_duration(faults.busy_presence_delay)}",
        "    }",
        "  }",
        "}",
        "",
    ]
    return "\n".join(body)


def _render_login(key: str, login: Login) -> Iterable[str]:
    q = json.dumps
    yield f"        {key} {{"
    yield f"          domain = {q(login.domain)}"
    yield f"          username = {q(login.username)}"
    yield f"          password = {q(login.password.reveal())}"
    if login.port is not None:
        yield f"          port = {login.port}"
    yield "        }"


def _render_usage_timeout(seconds: float | None) -> str:
    if not seconds:
        return "0"
    if seconds % 60 == 0:
        return str(int(seconds // 60))  # minutes, as a real Jibri reads it
    return _render_duration(seconds)
