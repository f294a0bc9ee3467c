"""Warm windows (``spec.schedule``): cron-style times at which a pool wants more idle Jibris.

A window is a cron expression for its *start* (``"55 8-17 * * 1-5"``: at 8:55, 9:55 ...
17:55 on weekdays), a duration, and the idle headroom it wants while open. It is read
in the pool's IANA ``timeZone``, so "8:55" stays 8:55 local time across DST changes.

The window is honoured early by the pod-start horizon: pods take 20 to 60 s to become
idle Jibris, so a window that opens at 8:55 with idleTarget 8 starts adding pods at
8:54 (horizon 60 s) and has them idle when it opens. The window then holds until
``start + duration``; after it, surplus idle pods go the usual way (after
``scaleDownDelay``, idle ones only).

Cron parsing is not written by hand here: it is ``cronsim`` (the parser and evaluator
that healthchecks.io runs for millions of cron checks). It is small, has no
dependencies, ships type hints, is kept up to date, iterates backwards (which is the
question asked here: "the latest start at or before now + horizon"), and handles
time zones with Debian cron's DST rules for 5-field expressions. ``croniter`` was the
other candidate; its maintenance has changed hands and it is larger than needed.

Pure: no clock is read here, callers pass the wall time (epoch seconds).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from jibri_operator.api.durations import parse_duration


class ScheduleError(ValueError):
    """A warm window that cannot be read; the message names it."""


@dataclass(frozen=True)
class WarmWindow:
    start: str  # cron expression (5 fields) for when the window opens, in the pool's time zone
    duration: float  # seconds the window stays open
    idle_target: int  # idle headroom wanted while it is open (instead of the pool's, when larger)

    def __post_init__(self) -> None:
        if self.duration <= 0:
            raise ScheduleError(f"warm window {self.start!r}: duration must be positive")
        if self.idle_target < 0:
            raise ScheduleError(f"warm window {self.start!r}: idleTarget must not be negative")
        if len(self.start.split()) != 5:
            raise ScheduleError(f"warm window {self.start!r}: a cron expression has 5 fields")
        try:
            CronSim(self.start, datetime(2000, 1, 1, tzinfo=UTC))
        except CronSimError as error:
            raise ScheduleError(f"warm window {self.start!r}: {error}") from None

    def latest_start(self, at: datetime) -> datetime | None:
        """The latest start at or before ``at`` (a zone-aware local time), or None."""
        # cronsim's reverse iteration yields times strictly before a whole second.
        after = at.replace(microsecond=0) + timedelta(seconds=1)
        return next(CronSim(self.start, after, reverse=True), None)


@dataclass(frozen=True)
class WindowState:
    """What the schedule wants at one instant."""

    idle_target: int  # the largest idleTarget of the windows open (or about to open); 0 if none
    why: str  # which window, in words; empty when none
    valid_for: float  # seconds during which this answer cannot change (at most a minute)


@dataclass(frozen=True)
class Schedule:
    windows: tuple[WarmWindow, ...] = ()
    time_zone: str = "UTC"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "_zone", ZoneInfo(self.time_zone))
        except (KeyError, ValueError) as error:
            raise ScheduleError(f"unknown timeZone {self.time_zone!r}") from error

    @classmethod
    def from_spec(cls, items: Iterable[Mapping[str, Any]] | None, time_zone: str | None) -> Schedule:
        """From ``spec.schedule`` items (``start``, ``duration`` like ``10m``, ``idleTarget``)."""
        windows = []
        for item in items or ():
            try:
                duration = parse_duration(str(item.get("duration", "")))
            except ValueError as error:
                raise ScheduleError(f"warm window {item.get('start')!r}: {error}") from None
            windows.append(WarmWindow(str(item.get("start", "")), duration, int(item.get("idleTarget", 0))))
        return cls(tuple(windows), time_zone or "UTC")

    def state(self, wall: float, horizon: float) -> WindowState:
        """The idle headroom the schedule wants at ``wall`` (epoch seconds).

        A window counts from ``start - horizon`` (so its pods are idle by ``start``) until
        ``start + duration``. The answer holds for ``valid_for`` seconds: until an open
        window ends, or ``wall + horizon`` reaches the next whole minute (when a start may
        come into view), whichever is first.
        """
        best, why = 0, ""
        ahead = wall + horizon
        valid_for = max(0.001, 60.0 - ahead % 60.0)
        local = datetime.fromtimestamp(ahead, self._zone)
        for window in self.windows:
            start = window.latest_start(local)
            if start is None:
                continue
            end = start.timestamp() + window.duration
            if end <= wall:
                continue
            valid_for = min(valid_for, end - wall)
            if window.idle_target > best:
                best = window.idle_target
                opens = start.strftime("%a %H:%M %Z")
                why = f"warm window {window.start!r} (from {opens}, {_minutes(window.duration)}) wants {best} idle"
        return WindowState(best, why, valid_for)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min"
