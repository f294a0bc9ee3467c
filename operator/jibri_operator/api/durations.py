"""Durations as the CRDs spell them: Go-style strings such as ``90s``, ``1h30m``, ``250ms``."""

from __future__ import annotations

import re
from typing import Final

_PART: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_WHOLE: Final = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?(?:ms|s|m|h))+$")
_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ValueError naming the accepted form otherwise."""
    if not _WHOLE.match(text):
        raise ValueError(f"not a duration: {text!r} (use e.g. 90s, 5m, 1h30m)")
    return sum(float(number) * _SECONDS[unit] for number, unit in _PART.findall(text))
