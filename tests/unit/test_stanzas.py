"""The Jibri protocol codecs: examples from PROTOCOL.md, round trips, malformed input."""

from __future__ import annotations

import contextlib
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jibri_operator.api.constants import JIBRI_NS
from jibri_operator.api.secret import Secret
from jibri_operator.api.types import (
    Action,
    BusyStatus,
    Dialect,
    FailureReason,
    Health,
    RecordingMode,
    RecordingStatus,
)
from jibri_operator.xmpp import stanzas
from jibri_operator.xmpp.stanzas import (
    BadRequest,
    ErrorCondition,
    ErrorReply,
    MalformedStanza,
    StartOutcome,
    StartRequest,
    StatusUpdate,
)

BREWERY = "brewery@conference.example.com"


def wire(element: ET.Element) -> ET.Element:
    """Serialize and parse again, as the element would cross the network."""
    return ET.fromstring(stanzas.to_string(element))


# --- examples straight from PROTOCOL.md ------------------------------------

LEGACY_PRESENCE = f"""
<presence xmlns='jabber:client' from='{BREWERY}/jibri-1'>
  <jibri-status xmlns='http://jitsi.org/protocol/jibri' status='idle'/>
  <x xmlns='http://jabber.org/protocol/muc#user'><item jid='jibri@auth.example.com/r1'/></x>
</presence>"""

CURRENT_PRESENCE = f"""
<presence xmlns='jabber:client' from='{BREWERY}/jibri-2'>
  <jibri-status xmlns='http://jitsi.org/protocol/jibri'>
    <busy-status xmlns='http://jitsi.org/protocol/jibri' status='busy'/>
    <health-status xmlns='http://jitsi.org/protocol/health' status='unhealthy'/>
  </jibri-status>
</presence>"""


def test_legacy_presence_from_the_spec() -> None:
    parsed = stanzas.parse_presence(ET.fromstring(LEGACY_PRESENCE))
    assert parsed is not None
    assert parsed.occupant == f"{BREWERY}/jibri-1"
    assert parsed.nickname == "jibri-1"
    assert parsed.real_jid == "jibri@auth.example.com/r1"
    assert parsed.dialect is Dialect.LEGACY
    assert parsed.busy is BusyStatus.IDLE
    assert parsed.health is Health.UNKNOWN
    assert parsed.selectable


def test_current_presence_from_the_spec() -> None:
    parsed = stanzas.parse_presence(ET.fromstring(CURRENT_PRESENCE))
    assert parsed is not None
    assert parsed.dialect is Dialect.CURRENT
    assert parsed.busy is BusyStatus.BUSY
    assert parsed.health is Health.UNHEALTHY
    assert parsed.real_jid is None
    assert not parsed.selectable


def test_idle_but_unhealthy_is_not_selectable() -> None:
    presence = stanzas.build_presence(f"{BREWERY}/j", Dialect.CURRENT, BusyStatus.IDLE, Health.UNHEALTHY)
    parsed = stanzas.parse_presence(wire(presence))
    assert parsed is not None and not parsed.selectable


def test_presence_without_jibri_status_is_not_a_jibri() -> None:
    jicofo = ET.fromstring(f"<presence xmlns='jabber:client' from='{BREWERY}/focus'/>")
    assert stanzas.parse_presence(jicofo) is None


def test_unavailable_presence_without_status_means_gone() -> None:
    left = ET.fromstring(f"<presence xmlns='jabber:client' type='unavailable' from='{BREWERY}/jibri-1'/>")
    parsed = stanzas.parse_presence(left)
    assert parsed is not None
    assert parsed.unavailable and not parsed.selectable


def test_legacy_start_puts_room_on_the_iq() -> None:
    request = StartRequest("meeting@conference.example.com", RecordingMode.STREAM, stream_key=Secret("xxxx"))
    iq = stanzas.build_start(f"{BREWERY}/jibri-1", request, Dialect.LEGACY, "id1")
    assert iq.get("room") == "meeting@conference.example.com"
    jibri = iq.find("{http://jitsi.org/protocol/jibri}jibri")
    assert jibri is not None
    assert jibri.attrib == {"action": "start", "streamid": "xxxx"}


def test_current_start_spells_every_attribute_as_jibri_does() -> None:
    request = StartRequest(
        room="meeting@conference.example.com",
        mode=RecordingMode.STREAM,
        session_id="s-1",
        stream_key=Secret("key"),
        youtube_broadcast_id="yt",
        app_data='{"file_recording_metadata":{}}',
    )
    iq = stanzas.build_start(f"{BREWERY}/jibri-1", request, Dialect.CURRENT, "id1")
    assert iq.get("room") is None
    jibri = iq.find("{http://jitsi.org/protocol/jibri}jibri")
    assert jibri is not None
    assert len(jibri) == 0
    assert jibri.attrib == {
        "action": "start",
        "recording_mode": "stream",
        "room": "meeting@conference.example.com",
        "session_id": "s-1",
        "streamid": "key",
        "you_tube_broadcast_id": "yt",
        "app_data": '{"file_recording_metadata":{}}',
    }


def test_busy_answers_of_both_dialects_read_as_busy() -> None:
    start = stanzas.build_start(
        f"{BREWERY}/j", StartRequest("m@conference.x", RecordingMode.FILE), Dialect.CURRENT, "id"
    )
    start.set("from", f"{BREWERY}/controller")
    legacy = stanzas.parse_reply(wire(stanzas.build_error(start, ErrorCondition.SERVICE_UNAVAILABLE)))
    current = stanzas.parse_reply(
        wire(stanzas.build_result(start, StatusUpdate(RecordingStatus.OFF, FailureReason.BUSY, True)))
    )
    assert isinstance(legacy, ErrorReply) and legacy.code == 503
    assert stanzas.classify_start_reply(legacy) is StartOutcome.BUSY
    assert stanzas.classify_start_reply(current) is StartOutcome.BUSY


@pytest.mark.parametrize(
    ("update", "outcome"),
    [
        (StatusUpdate(RecordingStatus.PENDING), StartOutcome.ACCEPTED),
        (StatusUpdate(RecordingStatus.ON), StartOutcome.ACCEPTED),
        (StatusUpdate(RecordingStatus.OFF, FailureReason.ERROR, True), StartOutcome.RETRY),
        (StatusUpdate(RecordingStatus.OFF, FailureReason.ERROR, False), StartOutcome.FAILED),
        (StatusUpdate(RecordingStatus.OFF, FailureReason.ERROR, None), StartOutcome.FAILED),
        (ErrorReply(ErrorCondition.BAD_REQUEST, 400), StartOutcome.FAILED),
    ],
)
def test_start_outcomes(update: stanzas.Reply, outcome: StartOutcome) -> None:
    assert stanzas.classify_start_reply(update) is outcome


@pytest.mark.parametrize("dialect", list(Dialect))
def test_a_plain_result_accepts_as_the_2016_spec_says(dialect: Dialect) -> None:
    """jibri-spec.xml: a Jibri accepts with an IQ result and defines no status in it."""
    start = stanzas.build_start(
        f"{BREWERY}/j", StartRequest("m@conference.x", RecordingMode.FILE), dialect, "id"
    )
    start.set("from", f"{BREWERY}/controller")
    reply = stanzas.parse_reply(wire(stanzas.build_result(start)))
    assert reply == stanzas.EmptyResult()
    assert not reply.busy
    assert stanzas.classify_start_reply(reply) is StartOutcome.ACCEPTED


def test_a_result_with_a_broken_jibri_payload_is_still_malformed() -> None:
    reply = ET.fromstring(
        f"<iq xmlns='jabber:client' type='result' id='1'><jibri xmlns='{JIBRI_NS}' status='maybe'/></iq>"
    )
    with pytest.raises(MalformedStanza, match="status"):
        stanzas.parse_reply(reply)


def test_legacy_sip_is_refused_when_building() -> None:
    request = StartRequest("m@conference.x", RecordingMode.SIP, sip_address="sip:a@b")
    with pytest.raises(ValueError, match="legacy"):
        stanzas.build_start("b@c/j", request, Dialect.LEGACY, "id")


# --- malformed input: typed errors, clear messages, never a crash ------------


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            "<presence xmlns='jabber:client' from='b@c/j'>"
            "<jibri-status xmlns='http://jitsi.org/protocol/jibri' status='sleepy'/></presence>",
            "'status' must be one of idle|busy",
        ),
        (
            "<presence xmlns='jabber:client' from='b@c/j'><jibri-status xmlns='http://jitsi.org/protocol/jibri'>"
            "<busy-status xmlns='http://jitsi.org/protocol/jibri'/></jibri-status></presence>",
            "missing attribute 'status'",
        ),
        (
            "<presence xmlns='jabber:client' from='b@c/j'>"
            "<jibri-status xmlns='http://jitsi.org/protocol/jibri'/></presence>",
            "neither",
        ),
        (
            "<presence xmlns='jabber:client'><jibri-status xmlns='http://jitsi.org/protocol/jibri' "
            "status='idle'/></presence>",
            "missing attribute 'from'",
        ),
        (
            "<presence xmlns='jabber:client' from='b@c'><jibri-status xmlns='http://jitsi.org/protocol/jibri' "
            "status='idle'/></presence>",
            "full JID",
        ),
        ("<message xmlns='jabber:client' from='b@c/j'/>", "not a presence"),
    ],
)
def test_malformed_presence(xml: str, message: str) -> None:
    with pytest.raises(MalformedStanza, match=message):
        stanzas.parse_presence(ET.fromstring(xml))


def test_wrong_namespace_is_not_a_jibri_status() -> None:
    xml = "<presence xmlns='jabber:client' from='b@c/j'><jibri-status xmlns='urn:other' status='idle'/></presence>"
    assert stanzas.parse_presence(ET.fromstring(xml)) is None


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ("action='dance' recording_mode='file' room='m@c'", "'action' must be one of start|stop"),
        ("action='start' recording_mode='tape' room='m@c'", "'recording_mode' must be one of"),
        ("action='start' recording_mode='file'", "missing attribute 'room'"),
        ("action='start' recording_mode='file' room='not a jid'", "bare JID"),
        ("action='start' recording_mode='stream' room='m@c'", "needs attribute 'streamid'"),
        ("recording_mode='file' room='m@c'", "missing attribute 'action'"),
    ],
)
def test_bad_commands_are_bad_requests(attrs: str, message: str) -> None:
    xml = f"<iq xmlns='jabber:client' type='set' id='1'><jibri xmlns='http://jitsi.org/protocol/jibri' {attrs}/></iq>"
    with pytest.raises(BadRequest, match=message):
        stanzas.parse_command(ET.fromstring(xml))


def test_command_in_the_wrong_namespace_is_a_bad_request() -> None:
    xml = "<iq xmlns='jabber:client' type='set' id='1'><jibri xmlns='urn:x' action='start'/></iq>"
    with pytest.raises(BadRequest, match="no <jibri"):
        stanzas.parse_command(ET.fromstring(xml))


def test_malformed_report_values() -> None:
    xml = (
        "<iq xmlns='jabber:client' type='set' id='1'>"
        "<jibri xmlns='http://jitsi.org/protocol/jibri' status='on' should_retry='maybe'/></iq>"
    )
    with pytest.raises(MalformedStanza, match="should_retry"):
        stanzas.parse_report(ET.fromstring(xml))


def test_error_messages_never_quote_values() -> None:
    """A garbled stanza may carry a stream key anywhere; the error must not repeat it."""
    secret = "super-secret-stream-key"
    for attrs in (f"action='{secret}'", f"action='start' recording_mode='{secret}' room='m@c'"):
        xml = f"<iq xmlns='jabber:client' type='set' id='1'><jibri xmlns='http://jitsi.org/protocol/jibri' {attrs}/></iq>"
        with pytest.raises(BadRequest) as caught:
            stanzas.parse_command(ET.fromstring(xml))
        assert secret not in str(caught.value)


def test_secret_is_masked_everywhere() -> None:
    request = StartRequest("m@c.x", RecordingMode.STREAM, stream_key=Secret("hunter2"))
    for text in (repr(request), str(request), f"{request}", f"{request.stream_key}", str(request.stream_key)):
        assert "hunter2" not in text


# --- hypothesis round trips ---------------------------------------------------

xml_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")),
    min_size=1,
    max_size=30,
)
jid_part = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,15}", fullmatch=True)
bare_jids = st.builds(lambda node, domain: f"{node}@{domain}", jid_part, jid_part)
occupants = st.builds(lambda room, nick: f"{room}/{nick}", bare_jids, xml_text.filter(lambda s: "/" not in s))


@given(
    occupant=occupants,
    dialect=st.sampled_from(Dialect),
    busy=st.sampled_from(BusyStatus),
    health=st.sampled_from([Health.HEALTHY, Health.UNHEALTHY]),
    real_jid=st.none() | bare_jids,
    unavailable=st.booleans(),
)
def test_presence_round_trip(
    occupant: str, dialect: Dialect, busy: BusyStatus, health: Health, real_jid: str | None, unavailable: bool
) -> None:
    element = stanzas.build_presence(occupant, dialect, busy, health, real_jid, unavailable)
    parsed = stanzas.parse_presence(wire(element))
    assert parsed is not None
    assert parsed.occupant == occupant
    assert parsed.real_jid == real_jid
    assert parsed.busy is busy
    assert parsed.dialect is dialect
    assert parsed.unavailable is unavailable
    assert parsed.health is (health if dialect is Dialect.CURRENT else Health.UNKNOWN)


@st.composite
def start_requests(draw: st.DrawFn, dialect: Dialect) -> StartRequest:
    modes = [RecordingMode.FILE, RecordingMode.STREAM]
    if dialect is Dialect.CURRENT:
        modes.append(RecordingMode.SIP)
    mode = draw(st.sampled_from(modes))
    if dialect is Dialect.LEGACY:
        key = draw(xml_text) if mode is RecordingMode.STREAM else None
        return StartRequest(draw(bare_jids), mode, stream_key=Secret(key) if key else None)
    optional = st.none() | xml_text
    return StartRequest(
        room=draw(bare_jids),
        mode=mode,
        session_id=draw(optional),
        stream_key=Secret(draw(xml_text)) if mode is RecordingMode.STREAM else None,
        youtube_broadcast_id=draw(optional) if mode is RecordingMode.STREAM else None,
        app_data=draw(optional),
        display_name=draw(optional),
        sip_address=draw(xml_text) if mode is RecordingMode.SIP else draw(st.none()),
    )


@given(data=st.data(), dialect=st.sampled_from(Dialect), iq_id=xml_text)
def test_start_round_trip(data: st.DataObject, dialect: Dialect, iq_id: str) -> None:
    request = data.draw(start_requests(dialect))
    element = stanzas.build_start(f"{BREWERY}/jibri-1", request, dialect, iq_id)
    command = stanzas.parse_command(wire(element))
    assert command.action is Action.START
    assert command.dialect is dialect
    assert command.iq_id == iq_id
    assert command.start == request


@given(dialect=st.sampled_from(Dialect), session_id=st.none() | xml_text)
def test_stop_round_trip(dialect: Dialect, session_id: str | None) -> None:
    element = stanzas.build_stop(f"{BREWERY}/jibri-1", dialect, "id", session_id)
    command = stanzas.parse_command(wire(element))
    assert command.action is Action.STOP
    assert command.session_id == (session_id if dialect is Dialect.CURRENT else None)


status_updates = st.builds(
    StatusUpdate,
    status=st.sampled_from(RecordingStatus),
    failure_reason=st.none() | st.sampled_from(FailureReason),
    should_retry=st.none() | st.booleans(),
    session_id=st.none() | xml_text,
)


@given(update=status_updates)
def test_reply_round_trip(update: StatusUpdate) -> None:
    request = stanzas.build_stop(f"{BREWERY}/jibri-1", Dialect.CURRENT, "id-7")
    request.set("from", f"{BREWERY}/controller")
    reply = stanzas.build_result(request, update)
    assert reply.get("to") == f"{BREWERY}/controller"
    assert stanzas.parse_reply(wire(reply)) == update


@given(update=status_updates, iq_id=xml_text)
def test_report_round_trip(update: StatusUpdate, iq_id: str) -> None:
    report = stanzas.build_report(f"{BREWERY}/controller", update, iq_id)
    assert stanzas.parse_report(wire(report)) == update


@given(condition=st.sampled_from(ErrorCondition), text=st.none() | xml_text)
def test_error_round_trip(condition: ErrorCondition, text: str | None) -> None:
    request = stanzas.build_stop(f"{BREWERY}/jibri-1", Dialect.LEGACY, "id-9")
    request.set("from", f"{BREWERY}/controller")
    reply = stanzas.parse_reply(wire(stanzas.build_error(request, condition, text)))
    assert isinstance(reply, ErrorReply)
    assert reply.condition is condition
    assert reply.text == text


@given(
    junk=st.recursive(
        st.builds(
            lambda tag, attrs: ET.Element(tag, attrs),
            st.sampled_from(
                [
                    "{jabber:client}iq",
                    "{jabber:client}presence",
                    "{http://jitsi.org/protocol/jibri}jibri",
                    "{http://jitsi.org/protocol/jibri}jibri-status",
                    "{http://jitsi.org/protocol/jibri}busy-status",
                    "{http://jitsi.org/protocol/health}health-status",
                    "{urn:x}y",
                ]
            ),
            st.dictionaries(
                st.sampled_from(
                    [
                        "status",
                        "action",
                        "room",
                        "from",
                        "type",
                        "id",
                        "recording_mode",
                        "should_retry",
                        "failure_reason",
                        "streamid",
                        "session_id",
                    ]
                ),
                xml_text,
                max_size=5,
            ),
        ),
        lambda children: st.builds(
            lambda parent, kids: (parent.extend(kids), parent)[1],
            st.builds(
                lambda t: ET.Element(t, {"from": "b@c/j", "type": "set", "id": "1"}),
                st.sampled_from(["{jabber:client}iq", "{jabber:client}presence"]),
            ),
            st.lists(children, max_size=3),
        ),
        max_leaves=6,
    )
)
def test_any_junk_gives_a_typed_error_or_a_value(junk: ET.Element) -> None:
    """Whatever arrives, the parsers answer with a value or MalformedStanza, never another exception."""
    for parse in (stanzas.parse_presence, stanzas.parse_command, stanzas.parse_reply, stanzas.parse_report):
        with contextlib.suppress(MalformedStanza):
            parse(junk)
