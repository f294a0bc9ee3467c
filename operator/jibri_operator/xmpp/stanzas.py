"""Codecs for the Jibri control protocol, both dialects, as pure functions.

Everything here turns ElementTree elements into typed values and back; there
is no I/O, so the brewery client, the simulated Jibri and the tests share one
definition of the wire format (see shared/design/PROTOCOL.md).

Stanzas are built as complete ``{jabber:client}`` elements so either side can
wrap them in its XMPP library's stanza type unchanged. Parsers raise
:class:`MalformedStanza` (or its subclass :class:`BadRequest` for requests)
with a message naming the element and attribute at fault; the message never
quotes attribute values, because a stream key may be among them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final, TypeVar

from jibri_operator.api.constants import HEALTH_NS, JIBRI_NS, MUC_USER_NS, STANZAS_NS
from jibri_operator.api.secret import Secret
from jibri_operator.api.types import (
    Action,
    BusyStatus,
    Dialect,
    FailureReason,
    Health,
    RecordingMode,
    RecordingStatus,
    dialect_supports,
)

CLIENT_NS: Final = "jabber:client"
_E = TypeVar("_E", bound=StrEnum)

_IQ: Final = f"{{{CLIENT_NS}}}iq"
_PRESENCE: Final = f"{{{CLIENT_NS}}}presence"
_ERROR: Final = f"{{{CLIENT_NS}}}error"
_JIBRI: Final = f"{{{JIBRI_NS}}}jibri"
_JIBRI_STATUS: Final = f"{{{JIBRI_NS}}}jibri-status"
_BUSY_STATUS: Final = f"{{{JIBRI_NS}}}busy-status"
_HEALTH_STATUS: Final = f"{{{HEALTH_NS}}}health-status"
_MUC_X: Final = f"{{{MUC_USER_NS}}}x"
_MUC_ITEM: Final = f"{{{MUC_USER_NS}}}item"

# A bare JID: node@domain with no resource. Good enough to refuse obvious junk;
# the XMPP server is the final judge of what exists.
_BARE_JID = re.compile(r"^[^@/\s\"'<>&]+@[^@/\s\"'<>&]+$")


class MalformedStanza(ValueError):
    """A stanza that does not follow the Jibri protocol. Log it and ignore it."""


class BadRequest(MalformedStanza):
    """A request a Jibri must answer with the ``bad-request`` stanza error."""


class ErrorCondition(StrEnum):
    SERVICE_UNAVAILABLE = "service-unavailable"
    BAD_REQUEST = "bad-request"
    OTHER = "other"


# ---------------------------------------------------------------------------
# Typed values


@dataclass(frozen=True)
class JibriPresence:
    """What one brewery presence says about one Jibri.

    A presence of type ``unavailable`` means the Jibri left; it is never
    selectable, whatever the rest of the stanza says.
    """

    occupant: str  # room@muc/nick, the Jibri's identity in the brewery
    nickname: str
    real_jid: str | None
    busy: BusyStatus
    health: Health
    dialect: Dialect
    unavailable: bool = False

    @property
    def selectable(self) -> bool:
        return not self.unavailable and self.busy is BusyStatus.IDLE and self.health is not Health.UNHEALTHY


@dataclass(frozen=True)
class StartRequest:
    """The fields of a start command. The stream key is a :class:`Secret`."""

    room: str
    mode: RecordingMode
    session_id: str | None = None
    stream_key: Secret | None = None
    youtube_broadcast_id: str | None = None
    app_data: str | None = None
    display_name: str | None = None
    sip_address: str | None = None


@dataclass(frozen=True)
class JibriCommand:
    """A parsed start or stop IQ, as a Jibri receives it."""

    action: Action
    dialect: Dialect
    iq_id: str
    sender: str
    start: StartRequest | None = None  # set for action=start
    session_id: str | None = None


@dataclass(frozen=True)
class StatusUpdate:
    """A ``<jibri status=.../>`` in a reply or in a Jibri's own report.

    ``should_retry`` is None when absent, which the protocol reads as "no retry".
    """

    status: RecordingStatus
    failure_reason: FailureReason | None = None
    should_retry: bool | None = None
    session_id: str | None = None

    @property
    def busy(self) -> bool:
        return self.status is RecordingStatus.OFF and self.failure_reason is FailureReason.BUSY


@dataclass(frozen=True)
class ErrorReply:
    """A stanza error in answer to a command (legacy busy is a 503)."""

    condition: ErrorCondition
    code: int | None = None
    text: str | None = field(default=None, compare=False)

    @property
    def busy(self) -> bool:
        return self.condition is ErrorCondition.SERVICE_UNAVAILABLE


@dataclass(frozen=True)
class EmptyResult:
    """An IQ ``result`` with no ``jibri`` payload.

    This is how a Jibri of the 2016 spec (``jibri-spec.xml``) accepts a start or
    confirms a stop: the spec defines no status in replies and no reports at all.
    """

    @property
    def busy(self) -> bool:
        return False


Reply = StatusUpdate | ErrorReply | EmptyResult


class StartOutcome(StrEnum):
    """How a controller should read the answer to its start IQ."""

    ACCEPTED = "accepted"  # pending, on, or a plain result (2016 spec): follow the Jibri
    BUSY = "busy"  # another controller won the race: pick another Jibri, no penalty
    RETRY = "retry"  # failed, should_retry=true: try elsewhere, counts as an attempt
    FAILED = "failed"  # failed for good (should_retry false or absent, bad-request)


def classify_start_reply(reply: Reply) -> StartOutcome:
    if reply.busy:
        return StartOutcome.BUSY
    if isinstance(reply, ErrorReply):
        return StartOutcome.FAILED
    if isinstance(reply, EmptyResult):
        return StartOutcome.ACCEPTED
    if reply.status in (RecordingStatus.PENDING, RecordingStatus.ON):
        return StartOutcome.ACCEPTED
    return StartOutcome.RETRY if reply.should_retry else StartOutcome.FAILED


# ---------------------------------------------------------------------------
# Helpers


def _attr(element: ET.Element, name: str, what: str) -> str:
    value = element.get(name)
    if value is None or value == "":
        raise MalformedStanza(f"{what}: missing attribute '{name}'")
    return value


def _enum(kind: type[_E], value: str | None, what: str, name: str) -> _E:
    if value is None:
        raise MalformedStanza(f"{what}: missing attribute '{name}'")
    try:
        return kind(value)
    except ValueError:
        allowed = "|".join(member.value for member in kind)
        # The value itself is not quoted: a garbled stanza may carry a secret anywhere.
        raise MalformedStanza(f"{what}: attribute '{name}' must be one of {allowed}") from None


def _bool(value: str | None, what: str, name: str) -> bool | None:
    if value is None:
        return None
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise MalformedStanza(f"{what}: attribute '{name}' must be true or false")


def _check_room(room: str, what: str) -> str:
    if not _BARE_JID.match(room):
        raise MalformedStanza(f"{what}: 'room' must be a bare JID (name@conference.domain)")
    return room


def resource_of(jid: str) -> str:
    """The resource part of a full JID (the MUC nickname of an occupant)."""
    _, sep, resource = jid.partition("/")
    if not sep or not resource:
        raise MalformedStanza("expected a full JID with a resource")
    return resource


def _jibri_child(iq: ET.Element, what: str) -> ET.Element:
    if iq.tag != _IQ:
        raise MalformedStanza(f"{what}: not an iq stanza")
    child = iq.find(_JIBRI)
    if child is None:
        raise MalformedStanza(f"{what}: no <jibri xmlns='{JIBRI_NS}'> element")
    return child


def _set_optional(element: ET.Element, name: str, value: str | None) -> None:
    if value is not None:
        element.set(name, value)


def _iq(iq_type: str, to: str | None, iq_id: str, sender: str | None = None) -> ET.Element:
    iq = ET.Element(_IQ, {"type": iq_type, "id": iq_id})
    if to is not None:
        iq.set("to", to)
    if sender is not None:
        iq.set("from", sender)
    return iq


def to_string(element: ET.Element) -> str:
    return ET.tostring(element, encoding="unicode")


# ---------------------------------------------------------------------------
# Presence


def build_jibri_status(dialect: Dialect, busy: BusyStatus, health: Health = Health.HEALTHY) -> ET.Element:
    """The ``jibri-status`` element a Jibri puts in its brewery presence."""
    status = ET.Element(_JIBRI_STATUS)
    if dialect is Dialect.LEGACY:
        status.set("status", busy.value)
    else:
        ET.SubElement(status, _BUSY_STATUS, {"status": busy.value})
        if health is not Health.UNKNOWN:
            ET.SubElement(status, _HEALTH_STATUS, {"status": health.value})
    return status


def build_presence(
    occupant: str,
    dialect: Dialect,
    busy: BusyStatus,
    health: Health = Health.HEALTHY,
    real_jid: str | None = None,
    unavailable: bool = False,
) -> ET.Element:
    """A whole brewery presence, as the MUC service relays it (for tests and benchmarks)."""
    presence = ET.Element(_PRESENCE, {"from": occupant})
    if unavailable:
        presence.set("type", "unavailable")
    presence.append(build_jibri_status(dialect, busy, health))
    muc = ET.SubElement(presence, _MUC_X)
    item = ET.SubElement(muc, _MUC_ITEM, {"affiliation": "none", "role": "participant"})
    if real_jid is not None:
        item.set("jid", real_jid)
    return presence


def parse_presence(presence: ET.Element) -> JibriPresence | None:
    """Read a brewery presence. None when the occupant is not a Jibri (Jicofo, us).

    An ``unavailable`` presence is reported even without ``jibri-status``:
    whoever left must be forgotten.
    """
    what = "brewery presence"
    if presence.tag != _PRESENCE:
        raise MalformedStanza(f"{what}: not a presence stanza")
    occupant = _attr(presence, "from", what)
    nickname = resource_of(occupant)
    unavailable = presence.get("type") == "unavailable"
    item = presence.find(f"{_MUC_X}/{_MUC_ITEM}")
    real_jid = item.get("jid") if item is not None else None

    status = presence.find(_JIBRI_STATUS)
    if status is None:
        if not unavailable:
            return None
        return JibriPresence(
            occupant, nickname, real_jid, BusyStatus.BUSY, Health.UNKNOWN, Dialect.CURRENT, unavailable=True
        )
    busy_child = status.find(_BUSY_STATUS)
    if busy_child is not None:
        busy = _enum(BusyStatus, busy_child.get("status"), f"{what} busy-status", "status")
        health_child = status.find(_HEALTH_STATUS)
        health = (
            _enum(Health, health_child.get("status"), f"{what} health-status", "status")
            if health_child is not None
            else Health.UNKNOWN
        )
        if health is Health.UNKNOWN and health_child is not None:
            raise MalformedStanza(f"{what} health-status: attribute 'status' must be healthy|unhealthy")
        return JibriPresence(occupant, nickname, real_jid, busy, health, Dialect.CURRENT, unavailable)
    if status.get("status") is not None:
        busy = _enum(BusyStatus, status.get("status"), f"{what} jibri-status", "status")
        return JibriPresence(occupant, nickname, real_jid, busy, Health.UNKNOWN, Dialect.LEGACY, unavailable)
    if unavailable:
        return JibriPresence(
            occupant, nickname, real_jid, BusyStatus.BUSY, Health.UNKNOWN, Dialect.CURRENT, unavailable=True
        )
    raise MalformedStanza(f"{what}: jibri-status has neither a 'status' attribute nor a busy-status child")


# ---------------------------------------------------------------------------
# Commands: start and stop


def build_start(to: str, request: StartRequest, dialect: Dialect, iq_id: str) -> ET.Element:
    """A start IQ addressed to a Jibri's occupant JID, in that Jibri's dialect."""
    _check_room(request.room, "start")
    if request.mode is RecordingMode.STREAM and not request.stream_key:
        raise ValueError("stream mode needs a stream key")
    if request.mode is RecordingMode.SIP and not request.sip_address:
        raise ValueError("sip mode needs a SIP address")
    if not dialect_supports(dialect, request.mode):
        raise ValueError(f"the {dialect} dialect cannot do {request.mode} sessions")
    iq = _iq("set", to, iq_id)
    jibri = ET.SubElement(iq, _JIBRI, {"action": Action.START.value})
    stream_key = request.stream_key.reveal() if request.stream_key else None
    if dialect is Dialect.LEGACY:
        iq.set("room", request.room)
        _set_optional(jibri, "streamid", stream_key if request.mode is RecordingMode.STREAM else None)
        return iq
    jibri.set("recording_mode", request.mode.value)
    jibri.set("room", request.room)
    _set_optional(jibri, "session_id", request.session_id)
    if request.mode is RecordingMode.STREAM:
        _set_optional(jibri, "streamid", stream_key)
        _set_optional(jibri, "you_tube_broadcast_id", request.youtube_broadcast_id)
    _set_optional(jibri, "app_data", request.app_data)
    _set_optional(jibri, "displayname", request.display_name)
    _set_optional(jibri, "sipaddress", request.sip_address)
    return iq


def build_stop(to: str, dialect: Dialect, iq_id: str, session_id: str | None = None) -> ET.Element:
    iq = _iq("set", to, iq_id)
    jibri = ET.SubElement(iq, _JIBRI, {"action": Action.STOP.value})
    if dialect is Dialect.CURRENT:
        _set_optional(jibri, "session_id", session_id)
    return iq


def parse_command(iq: ET.Element) -> JibriCommand:
    """Read a start or stop IQ as a Jibri does. Raises :class:`BadRequest`."""
    try:
        return _parse_command(iq)
    except BadRequest:
        raise
    except MalformedStanza as error:
        raise BadRequest(str(error)) from None


def _parse_command(iq: ET.Element) -> JibriCommand:
    what = "jibri command"
    jibri = _jibri_child(iq, what)
    if iq.get("type") != "set":
        raise MalformedStanza(f"{what}: must be an iq of type 'set'")
    iq_id = _attr(iq, "id", what)
    sender = iq.get("from", "")
    action = _enum(Action, jibri.get("action"), what, "action")
    # The dialect shows in where the room is: on the iq (legacy) or on <jibri> (current).
    dialect = Dialect.LEGACY if iq.get("room") is not None else Dialect.CURRENT
    session_id = jibri.get("session_id") or None
    if action is Action.STOP:
        return JibriCommand(action, dialect, iq_id, sender, session_id=session_id)

    if dialect is Dialect.LEGACY:
        room = _check_room(_attr(iq, "room", what), what)
        streamid = jibri.get("streamid") or None
        mode = RecordingMode.STREAM if streamid else RecordingMode.FILE
        start = StartRequest(room, mode, stream_key=Secret(streamid) if streamid else None)
        return JibriCommand(action, dialect, iq_id, sender, start=start)

    mode = _enum(RecordingMode, jibri.get("recording_mode"), what, "recording_mode")
    room = _check_room(_attr(jibri, "room", what), what)
    streamid = jibri.get("streamid") or None
    if mode is RecordingMode.STREAM and streamid is None:
        raise MalformedStanza(f"{what}: stream mode needs attribute 'streamid'")
    if mode is RecordingMode.SIP and not jibri.get("sipaddress"):
        raise MalformedStanza(f"{what}: sip mode needs attribute 'sipaddress'")
    start = StartRequest(
        room=room,
        mode=mode,
        session_id=session_id,
        stream_key=Secret(streamid) if streamid else None,
        youtube_broadcast_id=jibri.get("you_tube_broadcast_id"),
        app_data=jibri.get("app_data"),
        display_name=jibri.get("displayname"),
        sip_address=jibri.get("sipaddress"),
    )
    return JibriCommand(action, dialect, iq_id, sender, start=start, session_id=session_id)


# ---------------------------------------------------------------------------
# Replies and reports


def _status_element(update: StatusUpdate) -> ET.Element:
    jibri = ET.Element(_JIBRI, {"status": update.status.value})
    if update.failure_reason is not None:
        jibri.set("failure_reason", update.failure_reason.value)
    if update.should_retry is not None:
        jibri.set("should_retry", "true" if update.should_retry else "false")
    _set_optional(jibri, "session_id", update.session_id)
    return jibri


def build_result(request: ET.Element, update: StatusUpdate | None = None) -> ET.Element:
    """The ``result`` answering ``request``; empty (an acknowledgement) without an update."""
    iq = _iq("result", request.get("from"), _attr(request, "id", "iq"), request.get("to"))
    if update is not None:
        iq.append(_status_element(update))
    return iq


def build_error(request: ET.Element, condition: ErrorCondition, text: str | None = None) -> ET.Element:
    """A stanza error answering ``request``: 503 service-unavailable or 400 bad-request."""
    iq = _iq("error", request.get("from"), _attr(request, "id", "iq"), request.get("to"))
    error_type, code = {
        ErrorCondition.SERVICE_UNAVAILABLE: ("cancel", "503"),
        ErrorCondition.BAD_REQUEST: ("modify", "400"),
        ErrorCondition.OTHER: ("cancel", "500"),
    }[condition]
    error = ET.SubElement(iq, _ERROR, {"type": error_type, "code": code})
    name = "internal-server-error" if condition is ErrorCondition.OTHER else condition.value
    ET.SubElement(error, f"{{{STANZAS_NS}}}{name}")
    if text:
        ET.SubElement(error, f"{{{STANZAS_NS}}}text").text = text
    return iq


def build_report(to: str, update: StatusUpdate, iq_id: str) -> ET.Element:
    """A Jibri's own status report (``on``/``off``), an IQ ``set`` to the controller."""
    iq = _iq("set", to, iq_id)
    iq.append(_status_element(update))
    return iq


def parse_status(jibri: ET.Element, what: str) -> StatusUpdate:
    status = _enum(RecordingStatus, jibri.get("status"), what, "status")
    reason_value = jibri.get("failure_reason")
    reason = _enum(FailureReason, reason_value, what, "failure_reason") if reason_value else None
    retry = _bool(jibri.get("should_retry"), what, "should_retry")
    return StatusUpdate(status, reason, retry, jibri.get("session_id") or None)


def parse_reply(iq: ET.Element) -> Reply:
    """Read the answer to a start or stop command.

    A ``result`` without a ``jibri`` child is an :class:`EmptyResult` (the 2016
    spec's acceptance); any other child of a result must be a valid status."""
    what = "jibri reply"
    if iq.tag != _IQ:
        raise MalformedStanza(f"{what}: not an iq stanza")
    iq_type = iq.get("type")
    if iq_type == "error":
        error = iq.find(_ERROR)
        if error is None:
            raise MalformedStanza(f"{what}: error iq without an <error> element")
        condition = ErrorCondition.OTHER
        for child in error:
            if child.tag == f"{{{STANZAS_NS}}}service-unavailable":
                condition = ErrorCondition.SERVICE_UNAVAILABLE
            elif child.tag == f"{{{STANZAS_NS}}}bad-request":
                condition = ErrorCondition.BAD_REQUEST
        code_text = error.get("code")
        code = int(code_text) if code_text and code_text.isascii() and code_text.isdigit() else None
        if code == 503 and condition is ErrorCondition.OTHER:
            condition = ErrorCondition.SERVICE_UNAVAILABLE
        text_element = error.find(f"{{{STANZAS_NS}}}text")
        return ErrorReply(condition, code, text_element.text if text_element is not None else None)
    if iq_type != "result":
        raise MalformedStanza(f"{what}: must be an iq of type 'result' or 'error'")
    if iq.find(_JIBRI) is None:
        return EmptyResult()
    return parse_status(_jibri_child(iq, what), what)


def parse_report(iq: ET.Element) -> StatusUpdate:
    """Read a status report a Jibri sends to its controller."""
    what = "jibri report"
    jibri = _jibri_child(iq, what)
    if iq.get("type") != "set":
        raise MalformedStanza(f"{what}: must be an iq of type 'set'")
    if jibri.get("action") is not None:
        raise MalformedStanza(f"{what}: a report carries 'status', not 'action'")
    return parse_status(jibri, what)
