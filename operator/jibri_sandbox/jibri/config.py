"""Read (and, for the sandbox, write) a real Jibri's ``jibri.conf``.

The simulated Jibri reads the same HOCON file a real Jibri reads, and by a real
Jibri's rules (:class:`JibriRules`), so a config rendered for a pool that a real
Jibri would refuse or misread fails here too. Only the parts the control
protocol needs are modelled: ``jibri.id``, ``jibri.single-use-mode`` and
``jibri.api.xmpp.environments``. Sandbox-only behaviour (dialect, health,
faults) lives under ``jibri.sandbox``, which a real Jibri ignores.

Passwords are held as :class:`Secret`, so no repr or log line can show them.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pyhocon.config_parser
from pyhocon import ConfigFactory, ConfigTree
from pyhocon.exceptions import ConfigSubstitutionException
from pyparsing import NoMatch

from jibri_operator.api.secret import Secret
from jibri_operator.api.types import Dialect, RecordingMode

DEFAULT_XMPP_PORT: Final = 5222
LEGACY_WITH_REPORTS: Final = "legacy-with-reports"


class JibriConfigError(ValueError):
    """jibri.conf is missing something the Jibri needs, or has a value of the wrong kind."""


# ---------------------------------------------------------------------------
# Jibri's reading rules


class JibriRules:
    """How a real Jibri reads jibri.conf, in one place; every reading below goes through it.

    Sources (read, not guessed):

    - jitsi/jibri ``src/main/kotlin/org/jitsi/jibri/config/JibriConfig.kt`` and
      ``src/main/kotlin/org/jitsi/jibri/api/xmpp/XmppEnvironment.kt``:
      ``Config.toXmppEnvironment()`` reads every key of an environment with
      ``getString``/``getStringList``/``getConfig``/``getBoolean``/``getDuration`` and no
      ``hasPath`` check, except ``sip-control-muc``. A missing key therefore fails the
      start (Typesafe's ``ConfigException.Missing``); ``call-login`` is as required as
      ``control-login``. ``usage-timeout`` is ``getDuration(...).toMinutes().toInt()``.
    - jitsi/jibri ``src/main/resources/reference.conf``: the only defaults. ``jibri.id = ""``,
      ``single-use-mode = false``, ``environments = []``; nothing inside an environment.
    - jitsi/jibri ``src/main/kotlin/org/jitsi/jibri/config/Config.kt``: the file is loaded
      with ``ConfigFactory.load()``, whose ``resolve()`` falls back to environment
      variables for ``${VAR}`` not set in the file; ``${?VAR}`` leaves the key unset.
    - Typesafe Config (lightbend/config ``HOCON.md``, "Duration format", and
      ``SimpleConfig.parseDuration``): a number, or a string without a unit, is
      **milliseconds**; units are case-sensitive ``ns us ms s m h d`` and their long
      forms; a string ``"yes"``/``"on"``... converts to a boolean; numbers and booleans
      convert to strings.

    pyhocon, the parser used here, would turn an unquoted ``30 seconds`` into a
    timedelta itself (and accept weeks and months, which ``getDuration`` refuses): that
    grammar is switched off while parsing, so durations reach :meth:`duration` as text.
    """

    MISSING: Final = object()
    _UNITS: Final = {
        "": 1_000_000, "ms": 1_000_000, "millis": 1_000_000, "milliseconds": 1_000_000,
        "us": 1_000, "micros": 1_000, "microseconds": 1_000,
        "ns": 1, "nanos": 1, "nanoseconds": 1,
        "d": 86_400 * 10**9, "days": 86_400 * 10**9,
        "h": 3_600 * 10**9, "hours": 3_600 * 10**9,
        "s": 10**9, "seconds": 10**9,
        "m": 60 * 10**9, "minutes": 60 * 10**9,
    }  # fmt: skip
    _BOOLEANS: Final = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}
    _parse_lock = threading.Lock()

    @classmethod
    def parse(cls, text: str) -> ConfigTree:
        """HOCON to a tree, substitutions resolved from the file, then the environment."""
        try:
            with cls._durations_as_text():
                root = ConfigFactory.parse_string(text)
        except ConfigSubstitutionException as error:
            variable = re.search(r"\$\{[^}]*\}", str(error))
            name = variable.group(0) if variable else "a substitution"
            raise JibriConfigError(
                f"jibri.conf: {name} is set neither in the file nor in the environment"
            ) from None
        except Exception as error:
            raise JibriConfigError(f"jibri.conf is not valid HOCON: {type(error).__name__}") from None
        if not isinstance(root, ConfigTree):
            raise JibriConfigError("jibri.conf: expected an object at the top")
        return root

    @classmethod
    @contextmanager
    def _durations_as_text(cls) -> Iterator[None]:
        with cls._parse_lock:
            original = pyhocon.config_parser.get_period_expr
            pyhocon.config_parser.get_period_expr = NoMatch
            try:
                yield
            finally:
                pyhocon.config_parser.get_period_expr = original

    @classmethod
    def value(cls, tree: ConfigTree, key: str, what: str) -> Any:
        """The value at ``key``; Jibri's start fails on a missing or null one."""
        value = tree.get(key, cls.MISSING)
        if value is cls.MISSING:
            raise JibriConfigError(
                f"{what}.{key}: No configuration setting found (a real Jibri would not start)"
            )
        if value is None:
            raise JibriConfigError(f"{what}.{key}: is set to null")
        return value

    @classmethod
    def has_path(cls, tree: ConfigTree, key: str) -> bool:
        return tree.get(key, None) is not None

    @classmethod
    def string(cls, tree: ConfigTree, key: str, what: str) -> str:
        """``getString``: numbers and booleans convert; objects and lists do not. "" is a value."""
        return cls._as_string(cls.value(tree, key, what), f"{what}.{key}")

    @classmethod
    def _as_string(cls, value: Any, what: str) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str | int | float):
            return str(value)
        raise JibriConfigError(f"{what}: has type {type(value).__name__} rather than STRING")

    @classmethod
    def string_list(cls, tree: ConfigTree, key: str, what: str) -> list[str]:
        """``getStringList``: a list (a lone string is not one) of strings."""
        value = cls.value(tree, key, what)
        if not isinstance(value, list):
            raise JibriConfigError(f"{what}.{key}: has type {type(value).__name__} rather than LIST")
        return [cls._as_string(item, f"{what}.{key}[{i}]") for i, item in enumerate(value)]

    @classmethod
    def config(cls, tree: ConfigTree, key: str, what: str) -> ConfigTree:
        """``getConfig``: an object."""
        value = cls.value(tree, key, what)
        if not isinstance(value, ConfigTree):
            raise JibriConfigError(f"{what}.{key}: has type {type(value).__name__} rather than OBJECT")
        return value

    @classmethod
    def boolean(cls, tree: ConfigTree, key: str, what: str) -> bool:
        """``getBoolean``: true/false, or the strings true yes on false no off."""
        return cls.as_boolean(cls.value(tree, key, what), f"{what}.{key}")

    @classmethod
    def as_boolean(cls, value: Any, what: str) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value in cls._BOOLEANS:
            return cls._BOOLEANS[value]
        raise JibriConfigError(f"{what}: expected true or false")

    @classmethod
    def duration_nanos(cls, value: Any, what: str) -> int:
        """``getDuration`` in nanoseconds: a bare number is milliseconds."""
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise JibriConfigError(f"{what}: not a duration (e.g. '240 minutes', '30 seconds')")
        text = str(value).strip()
        unit = re.search(r"[^\W\d_]*$", text)
        unit_text = unit.group(0) if unit else ""
        number = text[: len(text) - len(unit_text)].strip()
        normalized = unit_text + "s" if len(unit_text) > 2 and not unit_text.endswith("s") else unit_text
        if normalized not in cls._UNITS:
            raise JibriConfigError(
                f"{what}: could not parse time unit {unit_text!r} (try ns, us, ms, s, m, h, d)"
            )
        if not number:
            raise JibriConfigError(f"{what}: no number in duration value")
        try:
            if re.fullmatch(r"[+-]?[0-9]+", number):
                return int(number) * cls._UNITS[normalized]
            return int(float(number) * cls._UNITS[normalized])
        except ValueError:
            raise JibriConfigError(f"{what}: could not parse duration number") from None

    @classmethod
    def minutes(cls, tree: ConfigTree, key: str, what: str) -> int:
        """``getDuration(key).toMinutes().toInt()``: whole minutes, truncated."""
        nanos = cls.duration_nanos(cls.value(tree, key, what), f"{what}.{key}")
        minutes = abs(nanos) // 60_000_000_000  # Duration.toMinutes() truncates toward zero
        return minutes if nanos >= 0 else -minutes


def parse_duration(value: Any, bare_unit: str, what: str) -> float:
    """A duration in seconds, by Typesafe's rules (:class:`JibriRules`), for the sandbox block.

    ``bare_unit`` must be "ms": a bare number is milliseconds, for Jibri and for us.
    """
    if bare_unit != "ms":
        raise ValueError("Typesafe durations: a bare number is milliseconds")
    return JibriRules.duration_nanos(value, what) / 1e9


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
    call_login: Login | None = None  # required in a file; None only in hand-made configs
    strip_from_room_domain: str = ""
    usage_timeout: float | None = None  # seconds, whole minutes as Jibri reads it; None: no limit
    trust_all_xmpp_certs: bool = False
    sip_control_muc: ControlMuc | None = None  # the SIP gateway brewery, the one optional block

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
    # Seconds between a stop command and its answer (and the recording's end): a Jibri slow to
    # finalize, so that a controller can be caught in the middle of stopping.
    stop_reply_delay: float = 0.0


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
    """The parts of jibri.conf a Jibri's control side reads, by :class:`JibriRules`."""
    rules = JibriRules
    root = rules.parse(text)
    jibri = rules.config(root, "jibri", "jibri.conf")
    environments = jibri.get("api.xmpp.environments", [])  # reference.conf: []
    if not isinstance(environments, list):
        raise JibriConfigError("jibri.api.xmpp.environments: expected a list")
    if not environments:  # a real Jibri starts and serves nothing; the simulator has no use for that
        raise JibriConfigError("jibri.api.xmpp.environments: needs at least one environment")
    return JibriConfig(
        environments=tuple(
            _environment(env, f"jibri.api.xmpp.environments[{i}]") for i, env in enumerate(environments)
        ),
        single_use_mode=rules.boolean(jibri, "single-use-mode", "jibri")
        if rules.has_path(jibri, "single-use-mode")
        else False,  # reference.conf default
        sandbox=_sandbox(jibri.get("sandbox", None)),
        id=rules.string(jibri, "id", "jibri") if rules.has_path(jibri, "id") else "",
    )


def _bool(value: Any, what: str) -> bool:
    return JibriRules.as_boolean(value, what)


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


def _login(tree: ConfigTree, what: str) -> Login:
    """``toXmppCredentials``: domain, username, password; ``port`` is optional (newer Jibris)."""
    rules = JibriRules
    return Login(
        domain=rules.string(tree, "domain", what),
        username=rules.string(tree, "username", what),
        password=Secret(rules.string(tree, "password", what)),
        port=_port(tree.get("port", None), f"{what}.port"),
    )


def _muc(tree: ConfigTree, what: str) -> ControlMuc:
    """``toXmppMuc``: domain, room-name, nickname."""
    rules = JibriRules
    return ControlMuc(
        domain=rules.string(tree, "domain", what),
        room_name=rules.string(tree, "room-name", what),
        nickname=rules.string(tree, "nickname", what),
    )


def _environment(env: Any, what: str) -> XmppEnvironment:
    """``toXmppEnvironment``, key by key: all required but ``sip-control-muc``."""
    rules = JibriRules
    if not isinstance(env, ConfigTree):
        raise JibriConfigError(f"{what}: expected an object")
    hosts = rules.string_list(env, "xmpp-server-hosts", what)
    if not hosts:  # Jibri would start and never connect
        raise JibriConfigError(f"{what}.xmpp-server-hosts: needs at least one host")
    minutes = rules.minutes(env, "usage-timeout", what)
    return XmppEnvironment(
        name=rules.string(env, "name", what),
        xmpp_server_hosts=tuple(hosts),
        xmpp_domain=rules.string(env, "xmpp-domain", what),
        control_login=_login(rules.config(env, "control-login", what), f"{what}.control-login"),
        control_muc=_muc(rules.config(env, "control-muc", what), f"{what}.control-muc"),
        sip_control_muc=(
            _muc(rules.config(env, "sip-control-muc", what), f"{what}.sip-control-muc")
            if rules.has_path(env, "sip-control-muc")
            else None
        ),
        call_login=_login(rules.config(env, "call-login", what), f"{what}.call-login"),
        strip_from_room_domain=rules.string(env, "strip-from-room-domain", what),
        usage_timeout=minutes * 60.0 if minutes > 0 else None,
        trust_all_xmpp_certs=rules.boolean(env, "trust-all-xmpp-certs", what),
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
    sip_brewery: str | None = None,
) -> XmppEnvironment:
    """An environment for a Jibri logging in as ``jid`` and joining ``brewery`` (``room@muc``),
    and ``sip_brewery`` too when given (a SIP gateway Jibri's sip-control-muc).

    Its call-login (required by a real Jibri, never used by the simulated one, which
    records nothing) is ``recorder@recorder.<domain>``, as in Jitsi's own setups.
    """
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
        call_login=Login(f"recorder.{domain}", "recorder", Secret(password)),
        usage_timeout=usage_timeout,
        sip_control_muc=(
            ControlMuc(sip_brewery.partition("@")[2], sip_brewery.partition("@")[0], nickname)
            if sip_brewery
            else None
        ),
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
        if env.sip_control_muc is not None:
            muc = env.sip_control_muc
            lines += [
                "        sip-control-muc {",
                f"          domain = {q(muc.domain)}",
                f"          room-name = {q(muc.room_name)}",
                f"          nickname = {q(muc.nickname)}",
                "        }",
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
    """With a unit: a bare number would be milliseconds to a real Jibri."""
    if not seconds:
        return json.dumps("0 minutes")
    if seconds % 60 == 0:
        return json.dumps(f"{int(seconds // 60)} minutes")
    return json.dumps(f"{seconds:g} seconds")  # read back as whole minutes, truncated
