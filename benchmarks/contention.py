"""Three controllers racing for one brewery, against one operator alone.

Contended: two operators (two sandbox clusters) and the Jicofo-like focus share a
brewery of 30 Jibris of every dialect variant, with 100 recordings of 1-4 s arriving
within 12 s (jibri_sandbox.race). Uncontended: the same arrivals and lengths, one
operator, no focus. Printed: the busy-retry rate (busy answers per start sent), busy
retries per session, and creation -> Recording p50/p99 for the operators' sessions.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from _common import percentile
from jibri_sandbox.prosody import Prosody
from jibri_sandbox.race import RaceConfig, RaceResult, run_race

JIBRIS = 30
SESSIONS = 100


def summarise(name: str, result: RaceResult, wall: float) -> None:
    waits = [s.recording - s.created for s in result.sessions if s.recording is not None]
    starts = sum(result.starts_by_room.values())
    sent = starts + result.busy_answers
    retries = [s.busy_retries for s in result.sessions]
    print(f"{name}_sessions: {len(result.sessions)} operator, {len(result.focus)} focus")
    print(
        f"{name}_busy_answers: {result.busy_answers} of {sent} starts sent ({result.busy_answers / max(1, sent):.1%})"
    )
    print(f"{name}_busy_retries_per_operator_session: {statistics.mean(retries) if retries else 0:.2f}")
    print(f"{name}_focus_busy_answers: {sum(f.busy_answers for f in result.focus)}")
    if waits:
        print(f"{name}_create_to_recording_p50_ms: {statistics.median(waits) * 1000:.0f}")
        print(f"{name}_create_to_recording_p99_ms: {percentile(waits, 99) * 1000:.0f}")
    print(f"{name}_recorded_twice: {len(result.recorded_twice)}")
    print(f"{name}_lost: {len(result.lost)}")
    print(f"{name}_jibri_overlaps: {result.jibri_overlaps}")
    print(f"{name}_wall_s: {wall:.1f}")


async def main() -> int:
    prosody = Prosody()
    prosody.start()
    failures = 0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, config in (
                ("uncontended", RaceConfig(jibris=JIBRIS, sessions=SESSIONS, focus_share=0.0, clusters=1, arrival_window=12)),
                ("contended", RaceConfig(jibris=JIBRIS, sessions=SESSIONS, focus_share=0.3, clusters=2, arrival_window=12)),
            ):  # fmt: skip
                began = time.perf_counter()
                result = await run_race(prosody, Path(tmp) / name, config)
                summarise(name, result, time.perf_counter() - began)
                failures += len(result.recorded_twice) + len(result.lost) + result.jibri_overlaps
    finally:
        prosody.close()
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
