"""SCRAM's salted password through hashlib's PBKDF2, instead of slixmpp's loop in Python.

SCRAM's ``Hi(password, salt, i)`` (RFC 5802, section 2.2) is PBKDF2 with HMAC over the
mechanism's hash and a key as long as that hash's digest, which is exactly what
``hashlib.pbkdf2_hmac`` computes, in C. slixmpp 1.17 computes it as a Python loop of
``i`` HMACs and XORs: with Prosody's default of 10,000 iterations that is about 70 ms of
CPU per login on a 2-core machine (5 ms through hashlib), during which the event loop
stands still. An operator logging in to ten environments after a server restart would
otherwise stop answering its Jibris and kopf for most of a second.
"""

from __future__ import annotations

import hashlib
from typing import Any

from slixmpp.util.sasl import mechanisms

_original_hi = mechanisms.SCRAM.Hi


def _hi(self: Any, text: str | bytes, salt: bytes, iterations: int) -> bytes:
    password = text if isinstance(text, bytes) else text.encode("utf-8")
    try:
        return hashlib.pbkdf2_hmac(self.hash().name, password, salt, iterations)
    except ValueError:  # a hash OpenSSL's PBKDF2 does not offer: slixmpp's own loop
        result: bytes = _original_hi(self, text, salt, iterations)  # type: ignore[arg-type]
        return result


def install() -> None:
    """Make every slixmpp client in this process compute SCRAM's Hi through hashlib. Idempotent."""
    mechanisms.SCRAM.Hi = _hi  # type: ignore[method-assign]
