"""Keep secrets out of slixmpp's wire log.

At DEBUG level slixmpp logs every stanza it sends and receives, which would
put a stream key (``streamid``) or a SASL payload (the password, base64) in
the logs. A filter on the loggers that print the wire rewrites those values
before any handler sees them.
"""

from __future__ import annotations

import logging
import re
from typing import Final

MASK: Final = "***"

_PATTERNS: Final = (
    # the stream key, whichever quotes the serializer chose
    re.compile(r"""(\bstreamid\s*=\s*)(['"])(.*?)\2""", re.DOTALL),
    # SASL: <auth>, <response>, <challenge>, <success> carry credentials or proofs
    re.compile(r"""(<(?:\w+:)?(?:auth|response|challenge|success)\b[^>]*>)([^<]+)(<)""", re.DOTALL),
    # in-band registration and legacy auth carry a <password> element
    re.compile(r"""(<(?:\w+:)?password\b[^>]*>)([^<]+)(<)""", re.DOTALL),
)

# slixmpp logs raw XML from these modules only.
WIRE_LOGGERS: Final = ("slixmpp.xmlstream.xmlstream", "slixmpp.features.feature_mechanisms.mechanisms")


def redact(text: str) -> str:
    """Mask stream keys and SASL/registration secrets in serialized XML."""
    text = _PATTERNS[0].sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}{m.group(2)}", text)
    for pattern in _PATTERNS[1:]:
        text = pattern.sub(lambda m: f"{m.group(1)}{MASK}{m.group(3)}", text)
    return text


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        return True


_FILTER: Final = RedactingFilter()


def install() -> None:
    """Attach the filter to slixmpp's wire loggers. Idempotent."""
    for name in WIRE_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
