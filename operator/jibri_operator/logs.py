"""Log output for ``jibri-operator run``: human text, or one JSON object per line.

JSON lines are for log pipelines (Loki, Elasticsearch, Cloud Logging): each
carries ``time``, ``level``, ``logger`` and ``message``, the Kubernetes object
a kopf handler was working on (``object``), and ``exception`` when there is one.

Secrets stay out either way. The Secret wrapper prints as ``***``; the filter
on slixmpp's wire loggers (:mod:`jibri_operator.xmpp.redact`) masks stream
keys and SASL payloads before any handler sees a record; and every message
and traceback is passed through :func:`~jibri_operator.xmpp.redact.redact`
once more here, so a stanza that reaches the log some other way is masked too.
Only the fields named above are written: arbitrary ``extra`` attributes of a
record never are.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any, Final, Literal

from jibri_operator.xmpp import redact

LogFormat = Literal["text", "json"]
FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# The object fields kopf's loggers attach (record.k8s_ref) that are worth a log line.
_REF_FIELDS: Final = ("apiVersion", "kind", "namespace", "name", "uid")


class JsonFormatter(logging.Formatter):
    """One JSON object per record, with redacted message and traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact.redact(record.getMessage()),
        }
        ref = getattr(record, "k8s_ref", None)
        if isinstance(ref, dict):
            entry["object"] = {key: ref[key] for key in _REF_FIELDS if ref.get(key)}
        if record.exc_info:
            entry["exception"] = redact.redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exception"] = redact.redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = redact.redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure(log_format: LogFormat = "text", level: int = logging.INFO) -> logging.Handler:
    """Send the root logger's output to stderr in ``log_format``; returns the handler."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    redact.install()  # before the first brewery client, so no wire line ever goes out unmasked
    return handler
