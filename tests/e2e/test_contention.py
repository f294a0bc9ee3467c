"""Two operators (two clusters) and a Jicofo-like focus race over one brewery of 30 Jibris of
every dialect variant, with 100 recordings of random short length. Counted from the Jibris'
own records: nothing is recorded twice, nothing is lost, every session ends Completed."""

from __future__ import annotations

from pathlib import Path

import pytest

from jibri_sandbox.prosody import Prosody
from jibri_sandbox.race import RaceConfig, run_race

pytestmark = pytest.mark.e2e


async def test_three_controllers_share_one_brewery_safely(prosody: Prosody, tmp_path: Path) -> None:
    result = await run_race(prosody, tmp_path, RaceConfig(jibris=30, sessions=100, arrival_window=12))
    logs = "\n".join(f"{log.name}:\n{log.read_text()[-3000:]}" for log in tmp_path.glob("operator-*.log"))
    assert len(result.sessions) + len(result.focus) == 100
    assert result.jibri_overlaps == 0, "a Jibri recorded two sessions at once"
    assert result.concurrent_doubles == 0, "a session was recorded by two Jibris at once"
    assert result.recorded_twice == [], f"recorded more than once: {result.recorded_twice}"
    assert result.lost == [], f"not recorded, or not Completed: {result.lost}\n{logs}"
    assert all(f.outcome == "recorded" for f in result.focus), [
        f for f in result.focus if f.outcome != "recorded"
    ]
    assert all(s.attempts == 1 for s in result.sessions), "busy answers never count as attempts"
