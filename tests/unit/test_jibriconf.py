"""The operator's jibri.conf is what a Jibri understands: read back by the sandbox's reader,
which follows a real Jibri's rules (jibri_sandbox.jibri.config.JibriRules)."""

from __future__ import annotations

import os
from unittest import mock

import pytest

from jibri_operator.jibriconf.render import (
    JibriEnvironment,
    Login,
    Muc,
    SecretKeyRef,
    password_env,
    render_jibri_conf,
)
from jibri_sandbox.jibri import JibriConfigError, parse_jibri_conf


def environment(**changes: object) -> JibriEnvironment:
    base = JibriEnvironment(
        name="team/meet",
        server_hosts=("xmpp.example.com:5222",),
        xmpp_domain="meet.example.com",
        control_muc=Muc("internal.auth.meet.example.com", "jibribrewery"),
        control_login=Login("auth.meet.example.com", "jibri", SecretKeyRef("jibri-login", "password")),
        call_login=Login("recorder.meet.example.com", "recorder", SecretKeyRef("recorder-login", "pw")),
        usage_timeout_minutes=90,
        trust_all_certs=True,
    )
    return JibriEnvironment(**{**base.__dict__, **changes})  # type: ignore[arg-type]


POD_ENV = {"POD_NAME": "pool-abc12", "JIBRI_XMPP_PASSWORD": 'pa"ss{{word}}', "JIBRI_RECORDER_PASSWORD": "r"}


def test_round_trip_through_the_jibri_reader() -> None:
    text = render_jibri_conf([environment()], single_use=True)
    with mock.patch.dict(os.environ, POD_ENV):
        parsed = parse_jibri_conf(text)
    assert parsed.single_use_mode
    assert parsed.id == "pool-abc12"
    (read,) = parsed.environments
    assert read.name == "team/meet"
    assert read.control_muc.occupant == "jibribrewery@internal.auth.meet.example.com/pool-abc12"
    assert read.control_login.jid == "jibri@auth.meet.example.com"
    assert read.control_login.password.reveal() == 'pa"ss{{word}}'
    assert read.call_login is not None and read.call_login.jid == "recorder@recorder.meet.example.com"
    assert read.call_login.password.reveal() == "r"
    assert read.servers() == [("xmpp.example.com", 5222)]
    assert read.usage_timeout == 90 * 60, "minutes with their unit, not milliseconds"
    assert read.trust_all_xmpp_certs
    assert read.strip_from_room_domain == "conference."
    assert read.sip_control_muc is None


def test_the_file_holds_no_password_and_no_template_action() -> None:
    text = render_jibri_conf([environment()])
    assert "password = ${JIBRI_XMPP_PASSWORD}" in text
    assert "password = ${JIBRI_RECORDER_PASSWORD}" in text
    assert "{{" not in text


def test_usage_timeout_has_a_unit_even_when_zero() -> None:
    text = render_jibri_conf([environment(usage_timeout_minutes=0)])
    assert 'usage-timeout = "0 minutes"' in text
    with mock.patch.dict(os.environ, POD_ENV):
        (read,) = parse_jibri_conf(text).environments
    assert read.usage_timeout is None


def test_sip_brewery_renders_sip_control_muc_with_the_pod_as_nickname() -> None:
    text = render_jibri_conf(
        [environment(sip_control_muc=Muc("internal.auth.meet.example.com", "sipbrewery"))]
    )
    with mock.patch.dict(os.environ, POD_ENV):
        (read,) = parse_jibri_conf(text).environments
    assert read.sip_control_muc is not None
    assert read.sip_control_muc.occupant == "sipbrewery@internal.auth.meet.example.com/pool-abc12"


def test_every_environment_has_its_own_password_variables() -> None:
    envs = [
        environment(
            name=f"team/e{i}", control_login=Login("auth.x", f"j{i}", SecretKeyRef(f"s{i}", "password"))
        )
        for i in range(3)
    ]
    names = [name for name, _ in password_env(envs)]
    assert names == [
        "JIBRI_XMPP_PASSWORD",
        "JIBRI_RECORDER_PASSWORD",
        "JIBRI_XMPP_PASSWORD_1",
        "JIBRI_RECORDER_PASSWORD_1",
        "JIBRI_XMPP_PASSWORD_2",
        "JIBRI_RECORDER_PASSWORD_2",
    ]
    text = render_jibri_conf(envs)
    values = {"POD_NAME": "p", **{name: f"secret-{name}" for name in names}}
    with mock.patch.dict(os.environ, values):
        parsed = parse_jibri_conf(text)
    for index, read in enumerate(parsed.environments):
        suffix = f"_{index}" if index else ""
        assert read.control_login.password.reveal() == f"secret-JIBRI_XMPP_PASSWORD{suffix}"
        assert read.call_login is not None
        assert read.call_login.password.reveal() == f"secret-JIBRI_RECORDER_PASSWORD{suffix}"


def test_a_pod_without_its_password_variable_does_not_start() -> None:
    text = render_jibri_conf([environment()])
    with mock.patch.dict(os.environ, {"POD_NAME": "p"}, clear=True), pytest.raises(JibriConfigError) as error:
        parse_jibri_conf(text)
    assert "JIBRI_XMPP_PASSWORD" in str(error.value) or "JIBRI_RECORDER_PASSWORD" in str(error.value)
