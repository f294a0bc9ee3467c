"""The operator's jibri.conf is what a Jibri (here: the sandbox's reader) understands."""

from __future__ import annotations

import os
from unittest import mock

from jibri_operator.api.secret import Secret
from jibri_operator.jibriconf.render import JibriEnvironment, Login, render_jibri_conf
from jibri_sandbox.jibri import parse_jibri_conf


def test_round_trip_through_the_jibri_reader() -> None:
    env = JibriEnvironment(
        name="meet",
        server_hosts=("xmpp.example.com:5222",),
        xmpp_domain="meet.example.com",
        control_muc_domain="internal.auth.meet.example.com",
        control_muc_room="jibribrewery",
        control_login=Login("auth.meet.example.com", "jibri", Secret('pa"ss{word}')),
        call_login=Login("recorder.meet.example.com", "recorder", Secret("r")),
        usage_timeout_minutes=90,
        trust_all_certs=True,
    )
    text = render_jibri_conf([env], single_use=True)
    with mock.patch.dict(os.environ, {"POD_NAME": "pool-abc12"}):
        parsed = parse_jibri_conf(text)
    assert parsed.single_use_mode
    (read,) = parsed.environments
    assert read.control_muc.occupant == "jibribrewery@internal.auth.meet.example.com/pool-abc12"
    assert read.control_login.jid == "jibri@auth.meet.example.com"
    assert read.control_login.password.reveal() == 'pa"ss{word}'
    assert read.servers() == [("xmpp.example.com", 5222)]
    assert read.usage_timeout == 90 * 60
    assert read.trust_all_xmpp_certs
    assert read.call_login is not None and read.call_login.username == "recorder"
