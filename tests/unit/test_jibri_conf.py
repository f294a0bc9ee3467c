"""jibri.conf parsing by a real Jibri's rules (jibri_sandbox.jibri.config.JibriRules): its layout,
required keys, Typesafe durations, environment substitution, the sandbox block, and the round trip."""

from __future__ import annotations

import os
from unittest import mock

import pytest

from jibri_operator.api.secret import Secret
from jibri_operator.api.types import Dialect, RecordingMode
from jibri_sandbox.jibri import (
    Faults,
    JibriConfigError,
    SandboxSettings,
    parse_jibri_conf,
    render_sandbox_jibri_conf,
    sandbox_environment,
)
from jibri_sandbox.jibri.config import parse_duration

REAL_JIBRI_CONF = """
jibri {
  id = "jibri-7"
  single-use-mode = true
  api {
    xmpp {
      environments = [
        {
          name = "prod environment"
          xmpp-server-hosts = ["prod-xmpp-1.jitsi.net", "prod-xmpp-2.jitsi.net:5333"]
          xmpp-domain = "xmpp.domain.name"
          control-muc {
            domain = "internal.auth.domain"
            room-name = "JibriBrewery"
            nickname = "jibri-nickname"
          }
          control-login {
            domain = "auth.xmpp.domain"
            username = "jibri"
            password = "jibri-pass"
            port = 6222
          }
          call-login {
            domain = "recorder.xmpp.domain"
            username = "recorder"
            password = "recorder-pass"
          }
          strip-from-room-domain = "conference."
          usage-timeout = "30 minutes"
          trust-all-xmpp-certs = true
        }
      ]
    }
  }
}
"""


def test_reads_a_real_jibri_conf() -> None:
    config = parse_jibri_conf(REAL_JIBRI_CONF)
    assert config.single_use_mode and config.id == "jibri-7"
    [env] = config.environments
    assert env.name == "prod environment" and env.xmpp_domain == "xmpp.domain.name"
    assert env.servers() == [("prod-xmpp-1.jitsi.net", 6222), ("prod-xmpp-2.jitsi.net", 5333)]
    assert env.control_muc.room == "JibriBrewery@internal.auth.domain"
    assert env.control_muc.occupant == "JibriBrewery@internal.auth.domain/jibri-nickname"
    assert env.control_login.jid == "jibri@auth.xmpp.domain"
    assert env.control_login.password == Secret("jibri-pass")
    assert env.call_login is not None and env.call_login.username == "recorder"
    assert env.strip_from_room_domain == "conference."
    assert env.usage_timeout == 30 * 60
    assert env.trust_all_xmpp_certs
    assert config.sandbox == SandboxSettings()  # a real file has no sandbox block


def test_passwords_never_show_in_reprs() -> None:
    config = parse_jibri_conf(REAL_JIBRI_CONF)
    assert "jibri-pass" not in repr(config) and "recorder-pass" not in repr(config)


def test_default_port_is_5222() -> None:
    text = REAL_JIBRI_CONF.replace("port = 6222", "")
    [env] = parse_jibri_conf(text).environments
    assert env.servers()[0] == ("prod-xmpp-1.jitsi.net", 5222)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", None),
        ("240", None),  # a bare number is milliseconds: 240 ms is 0 minutes, no limit at all
        ('"240"', None),  # so is a string without a unit
        ("1500 ms", None),
        ("30 seconds", None),  # toMinutes() truncates
        ("90 seconds", 60.0),
        ('"2 minutes"', 120.0),
        ("240 minutes", 240 * 60.0),
        ("1.5 h", 90 * 60.0),
        ("1h", 3600.0),
        ("2 days", 2 * 86400.0),
        ("5 minute", 300.0),  # a long unit without its s is allowed
        ("300000", 300.0),  # 300 000 ms
    ],
)
def test_usage_timeout_is_a_typesafe_duration_read_in_whole_minutes(
    value: str, seconds: float | None
) -> None:
    [env] = parse_jibri_conf(
        REAL_JIBRI_CONF.replace('usage-timeout = "30 minutes"', f"usage-timeout = {value}")
    ).environments
    assert env.usage_timeout == seconds


@pytest.mark.parametrize("value", ["2 weeks", "1 mo", "5 Minutes", "soon", "true", "minutes", "{}"])
def test_usage_timeout_refuses_what_get_duration_refuses(value: str) -> None:
    with pytest.raises(JibriConfigError, match="usage-timeout"):
        parse_jibri_conf(REAL_JIBRI_CONF.replace('usage-timeout = "30 minutes"', f"usage-timeout = {value}"))


def test_substitutions_fall_back_to_the_environment() -> None:
    text = REAL_JIBRI_CONF.replace('nickname = "jibri-nickname"', "nickname = ${POD_NAME}").replace(
        'id = "jibri-7"', "id = ${POD_NAME}"
    )
    with mock.patch.dict(os.environ, {"POD_NAME": "pool-x1"}):
        config = parse_jibri_conf(text)
    assert config.id == "pool-x1" and config.environments[0].control_muc.nickname == "pool-x1"
    with mock.patch.dict(os.environ, {"POD_NAME": "from-env"}):
        in_file = parse_jibri_conf('POD_NAME = "from-file"\n' + text)
    assert in_file.id == "from-file", "the file wins over the environment"


def test_an_unset_substitution_is_named() -> None:
    text = REAL_JIBRI_CONF.replace('password = "jibri-pass"', "password = ${JIBRI_PASS_UNSET}")
    with (
        mock.patch.dict(os.environ, {}, clear=True),
        pytest.raises(JibriConfigError, match="JIBRI_PASS_UNSET"),
    ):
        parse_jibri_conf(text)
    optional = text.replace("${JIBRI_PASS_UNSET}", "${?JIBRI_PASS_UNSET}")
    with (
        mock.patch.dict(os.environ, {}, clear=True),
        pytest.raises(JibriConfigError, match=r"control-login\.password"),
    ):
        parse_jibri_conf(optional)  # ${?X} unset leaves the key unset: a required key missing
    with mock.patch.dict(os.environ, {"JIBRI_PASS_UNSET": "from-env"}):
        [env] = parse_jibri_conf(optional).environments
    assert env.control_login.password.reveal() == "from-env"


def test_sip_control_muc_is_the_one_optional_block() -> None:
    [plain] = parse_jibri_conf(REAL_JIBRI_CONF).environments
    assert plain.sip_control_muc is None
    text = REAL_JIBRI_CONF.replace(
        "call-login {",
        'sip-control-muc { domain = "internal.auth.domain", room-name = "JibriSipBrewery", nickname = "n" }\n'
        "call-login {",
    )
    [env] = parse_jibri_conf(text).environments
    assert (
        env.sip_control_muc is not None and env.sip_control_muc.room == "JibriSipBrewery@internal.auth.domain"
    )
    with pytest.raises(JibriConfigError, match=r"sip-control-muc\.nickname"):
        parse_jibri_conf(text.replace(', nickname = "n"', ""))


def test_sandbox_block() -> None:
    text = REAL_JIBRI_CONF.replace(
        'id = "jibri-7"',
        """sandbox {
          dialect = legacy
          healthy = false
          recording-modes = [file]
          start-delay = 250 ms
          recording-duration = 3 seconds
          ca-file = "/tmp/ca.crt"
          faults { start-fails = true, start-fails-should-retry = false, never-on = true }
        }""",
    )
    sandbox = parse_jibri_conf(text).sandbox
    assert sandbox.dialect is Dialect.LEGACY and not sandbox.healthy
    assert sandbox.recording_modes == (RecordingMode.FILE,)
    assert sandbox.start_delay == pytest.approx(0.25) and sandbox.recording_duration == 3.0
    assert sandbox.ca_file == "/tmp/ca.crt"
    assert sandbox.faults == Faults(start_fails=True, start_fails_should_retry=False, never_on=True)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("environments = [", "environments = []\n x = ["), "at least one environment"),
        (('room-name = "JibriBrewery"', ""), "room-name"),
        (
            ('xmpp-server-hosts = ["prod-xmpp-1.jitsi.net", "prod-xmpp-2.jitsi.net:5333"]', ""),
            "xmpp-server-hosts",
        ),
        (('usage-timeout = "30 minutes"', ""), "usage-timeout: No configuration setting found"),
        (("call-login {", "call-login-typo {"), "call-login: No configuration setting found"),
        (('password = "recorder-pass"', ""), "call-login.password: No configuration setting found"),
        (('strip-from-room-domain = "conference."', ""), "strip-from-room-domain"),
        (("trust-all-xmpp-certs = true", ""), "trust-all-xmpp-certs: No configuration setting found"),
        (('name = "prod environment"', ""), r"environments\[0\]\.name"),
        (
            (
                'xmpp-server-hosts = ["prod-xmpp-1.jitsi.net", "prod-xmpp-2.jitsi.net:5333"]',
                'xmpp-server-hosts = "x"',
            ),
            "xmpp-server-hosts: has type str rather than LIST",
        ),
        (('xmpp-domain = "xmpp.domain.name"', "xmpp-domain = null"), "xmpp-domain: is set to null"),
        (("trust-all-xmpp-certs = true", "trust-all-xmpp-certs = 3"), "trust-all-xmpp-certs"),
        (("port = 6222", "port = 99999"), "port"),
    ],
)
def test_errors_name_the_setting(change: tuple[str, str], message: str) -> None:
    with pytest.raises(JibriConfigError, match=message) as error:
        parse_jibri_conf(REAL_JIBRI_CONF.replace(*change))
    assert "jibri-pass" not in str(error.value)


def test_invalid_hocon_is_refused_without_quoting_it() -> None:
    with pytest.raises(JibriConfigError, match="not valid HOCON") as error:
        parse_jibri_conf('jibri { password = "hunter2" ')
    assert "hunter2" not in str(error.value)


def test_render_round_trips() -> None:
    envs = [
        sandbox_environment(
            server=("127.0.0.1", 40000),
            brewery="JibriBrewery@conference.localhost",
            nickname="jibri-0",
            jid="jibri@localhost",
            password='p"w\\d',
            usage_timeout=120,
        ),
        sandbox_environment(
            server=("127.0.0.1", 40000),
            brewery="brewery@conference.meet.example",
            nickname="jibri-0",
            jid="jibri@meet.example",
            password="x",
            name="second",
            usage_timeout=600,
        ),
    ]
    sandbox = SandboxSettings(
        dialect=Dialect.LEGACY,
        healthy=False,
        recording_modes=(RecordingMode.STREAM,),
        start_delay=0.2,
        recording_duration=5,
        ca_file="/x/ca.crt",
        faults=Faults(disconnect_after_on=True),
    )
    config = parse_jibri_conf(render_sandbox_jibri_conf(envs, sandbox, single_use_mode=True))
    assert config.environments == tuple(envs)
    assert config.sandbox == sandbox
    assert config.single_use_mode


def test_parse_duration_units() -> None:
    assert parse_duration(100, "ms", "x") == pytest.approx(0.1)
    assert parse_duration("2 days", "ms", "x") == 172800
    assert parse_duration("250 milliseconds", "ms", "x") == pytest.approx(0.25)
    with pytest.raises(JibriConfigError):
        parse_duration(True, "ms", "x")
