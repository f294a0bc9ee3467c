"""`--log-format json`: one parseable JSON object per line, never a secret."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator

import pytest

from jibri_operator import logs
from jibri_operator.api.secret import Secret
from jibri_operator.cli import build_parser
from jibri_operator.xmpp.redact import WIRE_LOGGERS

PASSWORD = "hunter2-very-secret"
STREAM_KEY = "abcd-efgh-ijkl-mnop"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger configured as `jibri-operator run --log-format json` does, into a buffer."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    handler = logs.configure("json", logging.DEBUG)
    buffer = io.StringIO()
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_the_flag_is_accepted_and_text_is_the_default() -> None:
    parser = build_parser()
    assert parser.parse_args(["run"]).log_format == "text"
    assert parser.parse_args(["run", "--log-format", "json"]).log_format == "json"
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--log-format", "xml"])


def test_a_line_parses_and_names_level_logger_and_object(captured: io.StringIO) -> None:
    ref = {"apiVersion": "jibri.dev/v1alpha1", "kind": "RecordingSession", "namespace": "ns", "name": "s1"}
    logging.getLogger("jibri_operator.controllers.sessions").info(
        "Recording: %s on %s", "started", "jibri-1", extra={"k8s_ref": ref, "password": PASSWORD}
    )
    (entry,) = lines(captured)
    assert entry["level"] == "info"
    assert entry["logger"] == "jibri_operator.controllers.sessions"
    assert entry["message"] == "Recording: started on jibri-1"
    assert entry["object"] == ref
    assert isinstance(entry["time"], str) and entry["time"].endswith("+00:00")
    assert PASSWORD not in captured.getvalue(), "arbitrary extra fields are never written"


def test_wire_logs_carry_no_password_nor_stream_key(captured: io.StringIO) -> None:
    sasl = base64.b64encode(f"\0operator\0{PASSWORD}".encode()).decode()
    wire = logging.getLogger(WIRE_LOGGERS[0])
    wire.debug("SEND: %s", f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{sasl}</auth>")
    wire.debug("SEND: %s", f"<iq type='set'><jibri action='start' streamid='{STREAM_KEY}'/></iq>")
    # Logged some other way than the wire loggers: still masked by the formatter.
    logging.getLogger("elsewhere").warning(f"<query><password>{PASSWORD}</password></query>")
    logging.getLogger("elsewhere").info("login %s", Secret(PASSWORD))
    output = captured.getvalue()
    entries = lines(captured)
    assert len(entries) == 4
    for secret in (PASSWORD, sasl, STREAM_KEY):
        assert secret not in output
    assert all("***" in str(entry["message"]) for entry in entries)


def test_a_traceback_is_one_field_and_masked(captured: io.StringIO) -> None:
    try:
        raise RuntimeError(f"<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{PASSWORD}</response>")
    except RuntimeError:
        logging.getLogger("jibri_operator").exception("the brewery connection failed")
    (entry,) = lines(captured)
    assert entry["level"] == "error"
    assert "RuntimeError" in str(entry["exception"])
    assert PASSWORD not in captured.getvalue()


def test_text_stays_the_default_format() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    try:
        handler = logs.configure("text")
        assert not isinstance(handler.formatter, logs.JsonFormatter)
        assert root.level == logging.INFO
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
