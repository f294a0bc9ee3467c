"""`jibri-sandbox focus`: a Jicofo-like controller that starts recordings of its own.

A brewery shared with Jicofo is the normal case in the field: the conference
focus starts recordings when a moderator presses the button, with no
Kubernetes object anywhere. This controller plays that part in tests and
benchmarks. It is written on raw slixmpp and the shared stanza codecs, not on
the operator's brewery client, so it races the operator as a stranger would.

Its choices follow Jicofo's (``JibriDetector``, ``JibriSession``):

* select only idle and healthy Jibris; skip one selected in the last 200 ms
  (its busy presence may still be in flight); avoid one that failed in the last
  minute, until a new idle presence clears the mark; prefer the oldest failure;
* a busy answer (``off/busy`` or 503) or a failure with ``should_retry`` means
  another Jibri, up to ``max_attempts`` attempts in all (busy answers count, as
  in Jicofo); no ``should_retry`` means the recording fails;
* a start not recording within ``pending_timeout`` is stopped and retried; a
  Jibri leaving the brewery mid-recording is a retry.

It speaks each Jibri's own dialect, as learnt from its presence, and treats a
legacy Jibri's busy presence after an accepted start as ``on``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import slixmpp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from jibri_operator.api.constants import JIBRI_NS
from jibri_operator.api.types import BusyStatus, Dialect, RecordingMode, RecordingStatus
from jibri_operator.xmpp import stanzas

log = logging.getLogger(__name__)

_CLIENT: Final = "{jabber:client}"
_MUC_NS: Final = "http://jabber.org/protocol/muc"
REPORT_WAIT: Final = 30.0  # how long a stop waits for the idle presence before giving up


@dataclass
class _Known:
    presence: stanzas.JibriPresence
    selected_at: float = float("-inf")
    failed_at: float | None = None


@dataclass
class FocusRecording:
    """One recording the focus asked for, and how it went."""

    room: str
    session_id: str
    outcome: str = "pending"  # recorded | failed | no-jibri
    jibri: str | None = None  # nickname of the Jibri that recorded it
    attempts: int = 0
    busy_answers: int = 0
    started_at: float | None = None  # wall clock
    ended_at: float | None = None


@dataclass
class _Active:
    recording: FocusRecording
    occupant: str
    dialect: Dialect
    events: asyncio.Queue[str] = field(default_factory=asyncio.Queue)  # on | off | retry | failed | left


class Focus(slixmpp.ClientXMPP):
    def __init__(
        self,
        jid: str,
        password: str,
        brewery: str,
        *,
        nickname: str = "focus",
        ca_file: str | Path | None = None,
        reselect_guard: float = 0.2,
        failure_backoff: float = 60.0,
        pending_timeout: float = 90.0,
        max_attempts: int = 5,
        wait_for_jibri: float = 0.0,
    ) -> None:
        super().__init__(jid, password)
        self.brewery = brewery
        self.occupant = f"{brewery}/{nickname}"
        if ca_file is not None:
            self.ca_certs = Path(ca_file)
        self.enable_direct_tls = False  # Prosody's c2s port speaks STARTTLS
        self.reselect_guard = reselect_guard
        self.failure_backoff = failure_backoff
        self.pending_timeout = pending_timeout
        self.max_attempts = max_attempts
        self.wait_for_jibri = wait_for_jibri  # Jicofo answers "no recorder" at once; a test may wait
        self.jibris: dict[str, _Known] = {}
        self.recordings: list[FocusRecording] = []
        self._active: dict[str, _Active] = {}  # occupant -> the recording it runs for us
        self._joined: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._changed = asyncio.Event()
        self.add_event_handler("session_start", self._on_session_start)
        self.add_event_handler("failed_all_auth", lambda _e: self._fail("authentication failed"))
        self.add_event_handler("connection_failed", lambda e: self._fail(f"connection failed: {e}"))
        self.register_handler(Callback("presence", MatchXPath(f"{_CLIENT}presence"), self._on_presence))
        self.register_handler(
            Callback("report", MatchXPath(f"{_CLIENT}iq/{{{JIBRI_NS}}}jibri"), self._on_report)
        )

    # -- connection and presence ----------------------------------------------------------

    def _fail(self, reason: str) -> None:
        if not self._joined.done():
            self._joined.set_exception(ConnectionError(reason))
            self._joined.exception()

    async def join(self, host: str, port: int, timeout: float = 15.0) -> None:
        self.connect(host, port)
        await asyncio.wait_for(asyncio.shield(self._joined), timeout)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.disconnect(wait=1), 3)

    def _on_session_start(self, _event: Any) -> None:
        presence = ET.Element(f"{_CLIENT}presence", {"to": self.occupant})
        ET.SubElement(
            ET.SubElement(presence, f"{{{_MUC_NS}}}x"), f"{{{_MUC_NS}}}history", {"maxstanzas": "0"}
        )
        self.send(slixmpp.stanza.Presence(self, xml=presence))

    def _on_presence(self, presence: slixmpp.Presence) -> None:
        element = presence.xml
        sender = element.get("from", "")
        if sender == self.occupant:
            if not self._joined.done():
                self._joined.set_result(None)
            return
        if not sender.startswith(f"{self.brewery}/"):
            return
        try:
            parsed = stanzas.parse_presence(element)
        except stanzas.MalformedStanza as error:
            log.info("focus: ignoring a malformed presence from %s: %s", sender, error)
            return
        if parsed is None:
            return
        known = self.jibris.get(sender)
        active = self._active.get(sender)
        if parsed.unavailable:
            self.jibris.pop(sender, None)
            if active is not None:
                active.events.put_nowait("left")
        else:
            if known is None:
                known = self.jibris[sender] = _Known(parsed)
            known.presence = parsed
            if parsed.selectable:
                known.failed_at = None  # a new idle presence clears the failure mark, as in Jicofo
            if active is not None:
                active.events.put_nowait("busy" if parsed.busy is BusyStatus.BUSY else "idle")
        self._changed.set()
        self._changed = asyncio.Event()

    def _on_report(self, iq: slixmpp.Iq) -> None:
        if iq["type"] != "set":
            return
        element = iq.xml
        try:
            update = stanzas.parse_report(element)
        except stanzas.MalformedStanza:
            self.send(
                slixmpp.stanza.Iq(self, xml=stanzas.build_error(element, stanzas.ErrorCondition.BAD_REQUEST))
            )
            return
        self.send(slixmpp.stanza.Iq(self, xml=stanzas.build_result(element)))
        active = self._active.get(element.get("from", ""))
        if active is None:
            return
        if update.status is RecordingStatus.ON:
            active.events.put_nowait("on")
        elif update.status is RecordingStatus.OFF:
            active.events.put_nowait("retry" if update.failure_reason and update.should_retry else "off")

    # -- selection -------------------------------------------------------------------------

    def select(self, now: float) -> str | None:
        """Jicofo's choice: idle and healthy, not just selected, not recently failed, oldest failure first."""
        candidates = [
            (known.failed_at if known.failed_at is not None else float("-inf"), occupant)
            for occupant, known in self.jibris.items()
            if known.presence.selectable
            and occupant not in self._active
            and now - known.selected_at >= self.reselect_guard
            and (known.failed_at is None or now - known.failed_at >= self.failure_backoff)
        ]
        if not candidates:
            return None
        occupant = min(candidates)[1]
        self.jibris[occupant].selected_at = now
        return occupant

    async def _select_or_wait(self) -> str | None:
        deadline = time.monotonic() + self.wait_for_jibri
        while True:
            occupant = self.select(time.monotonic())
            remaining = deadline - time.monotonic()
            if occupant is not None or remaining <= 0:
                return occupant
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(remaining, self.reselect_guard)):
                    await changed.wait()

    # -- one recording ----------------------------------------------------------------------

    async def record(
        self, room: str, duration: float, mode: RecordingMode = RecordingMode.FILE
    ) -> FocusRecording:
        """Start a recording of ``room`` on some Jibri, keep it ``duration`` seconds, stop it."""
        recording = FocusRecording(room, uuid.uuid4().hex[:12])
        self.recordings.append(recording)
        while recording.attempts < self.max_attempts:
            occupant = await self._select_or_wait()
            if occupant is None:
                recording.outcome = "no-jibri"
                return recording
            recording.attempts += 1
            result = await self._attempt(recording, occupant, mode, duration)
            if result in ("recorded", "failed"):
                recording.outcome = result
                recording.ended_at = time.time()
                return recording
            if result == "busy":
                recording.busy_answers += 1
            else:  # a failure worth retrying elsewhere
                known = self.jibris.get(occupant)
                if known is not None:
                    known.failed_at = time.monotonic()
        recording.outcome = "failed"
        return recording

    async def _attempt(
        self, recording: FocusRecording, occupant: str, mode: RecordingMode, duration: float
    ) -> str:
        known = self.jibris.get(occupant)
        if known is None:
            return "retry"
        dialect = known.presence.dialect
        request = stanzas.StartRequest(recording.room, mode, recording.session_id)
        active = self._active[occupant] = _Active(recording, occupant, dialect)
        try:
            try:
                answer = await self._send(stanzas.build_start(occupant, request, dialect, self.new_id()))
            except IqTimeout:
                answer = None
            if answer is not None:
                outcome = stanzas.classify_start_reply(answer)
                if outcome is stanzas.StartOutcome.BUSY:
                    return "busy"
                if outcome is stanzas.StartOutcome.RETRY:
                    return "retry"
                if outcome is stanzas.StartOutcome.FAILED:
                    return "failed"
            return await self._follow(active, duration)
        finally:
            self._active.pop(occupant, None)

    async def _follow(self, active: _Active, duration: float) -> str:
        recording = active.recording
        deadline = time.monotonic() + self.pending_timeout
        while recording.started_at is None:
            event = await self._next(active, deadline - time.monotonic())
            if event == "on" or (event == "busy" and active.dialect is Dialect.LEGACY):
                recording.started_at = time.time()
                recording.jibri = active.occupant.rpartition("/")[2]
            elif event in ("left", "retry", "timeout"):
                if event == "timeout":
                    await self._stop(active)
                return "retry"
            elif event == "off":
                return "failed"
        deadline = time.monotonic() + duration
        while True:
            event = await self._next(active, deadline - time.monotonic())
            if event == "timeout":
                await self._stop(active)
                return "recorded"
            if event in ("off", "left") or (event == "idle" and active.dialect is Dialect.LEGACY):
                return "recorded"  # it ended on its own, or its Jibri went away mid-way

    async def _next(self, active: _Active, timeout: float) -> str:
        try:
            async with asyncio.timeout(max(0.0, timeout)):
                return await active.events.get()
        except TimeoutError:
            return "timeout"

    async def _stop(self, active: _Active) -> None:
        session_id = active.recording.session_id if active.dialect is Dialect.CURRENT else None
        with contextlib.suppress(IqTimeout, stanzas.MalformedStanza):
            await self._send(stanzas.build_stop(active.occupant, active.dialect, self.new_id(), session_id))

    async def _send(self, element: ET.Element) -> stanzas.Reply:
        try:
            answer = await slixmpp.stanza.Iq(self, xml=element).send(timeout=10)
        except IqError as error:
            answer = error.iq
        return stanzas.parse_reply(answer.xml)


# -- command line -------------------------------------------------------------------------


async def _run(args: argparse.Namespace, xmpp: dict[str, Any]) -> int:
    account = xmpp[args.account]
    focus = Focus(
        account["jid"],
        account["password"],
        args.brewery or xmpp["brewery"],
        nickname=args.nickname,
        ca_file=xmpp.get("ca_file"),
        wait_for_jibri=args.wait_for_jibri,
    )
    await focus.join(xmpp["host"], int(xmpp["port"]))
    rng = random.Random(args.seed)
    tasks = []
    for index in range(args.sessions):
        room = f"focus-{index}@{xmpp.get('muc_domain', 'conference.localhost')}"
        duration = rng.uniform(args.min_duration, args.max_duration)
        tasks.append(asyncio.create_task(focus.record(room, duration)))
        await asyncio.sleep(rng.expovariate(args.rate) if args.rate > 0 else 0)
    results = await asyncio.gather(*tasks)
    await focus.close()
    for result in results:
        print(json.dumps(asdict(result)), flush=True)
    return 0 if all(result.outcome == "recorded" for result in results) else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="jibri-sandbox focus", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path, help="a sandbox directory (its xmpp.json)")
    parser.add_argument("--account", default="focus", help="which xmpp.json account to log in with")
    parser.add_argument("--brewery", help="the brewery room JID (default: the sandbox's)")
    parser.add_argument("--nickname", default="focus")
    parser.add_argument("--sessions", type=int, default=10, help="recordings to start")
    parser.add_argument("--rate", type=float, default=2.0, help="mean recordings started per second")
    parser.add_argument("--min-duration", type=float, default=1.0)
    parser.add_argument("--max-duration", type=float, default=5.0)
    parser.add_argument(
        "--wait-for-jibri", type=float, default=30.0, help="seconds to wait for an idle Jibri"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    return asyncio.run(_run(args, json.loads(Path(args.dir, "xmpp.json").read_text())))
