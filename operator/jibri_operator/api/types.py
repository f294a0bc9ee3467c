"""Enumerations shared by the protocol codecs, the fleet logic and the sandbox."""

from enum import StrEnum


class Dialect(StrEnum):
    """Which Jibri control dialect a Jibri speaks, learnt from its presence."""

    LEGACY = "legacy"  # 2016 ProtoXEP: status on jibri-status, room on the iq
    CURRENT = "current"  # today's Jibri: busy-status/health-status children


class BusyStatus(StrEnum):
    IDLE = "idle"
    BUSY = "busy"


class Health(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"  # legacy presences carry no health


class RecordingMode(StrEnum):
    FILE = "file"
    STREAM = "stream"
    SIP = "sip"


class Action(StrEnum):
    START = "start"
    STOP = "stop"


class RecordingStatus(StrEnum):
    PENDING = "pending"
    ON = "on"
    OFF = "off"


class FailureReason(StrEnum):
    BUSY = "busy"
    ERROR = "error"


class Phase(StrEnum):
    """RecordingSession.status.phase: a printer-column summary; conditions are the truth."""

    PENDING = "Pending"
    STARTING = "Starting"
    RECORDING = "Recording"
    STOPPING = "Stopping"
    COMPLETED = "Completed"
    FAILED = "Failed"


class BreweryKind(StrEnum):
    """Which brewery of an environment a Jibri sits in (Jicofo: jibri-brewery, sip-jibri-brewery)."""

    RECORDING = "recording"  # file and stream
    SIP = "sip"  # SIP gateway Jibris only


def brewery_serves(kind: BreweryKind, mode: RecordingMode) -> bool:
    """SIP sessions go only to the SIP brewery's Jibris; file and stream only to the recording one's."""
    return (kind is BreweryKind.SIP) == (mode is RecordingMode.SIP)


def dialect_supports(dialect: Dialect, mode: RecordingMode) -> bool:
    """The legacy dialect has no recording_mode: it records to file, or streams when given a key."""
    return dialect is Dialect.CURRENT or mode is not RecordingMode.SIP
