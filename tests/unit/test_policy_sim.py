"""benchmarks/policy_sim.py, shortened: our policy kills no recording and beats reacting alone on bursts.

The full simulation (``make bench``) checks the issue's targets; this keeps it from rotting.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path
from types import ModuleType

import pytest

HOUR = 3600.0


@pytest.fixture(scope="module")
def sim() -> ModuleType:
    path = Path(__file__).parents[2] / "benchmarks" / "policy_sim.py"
    spec = importlib.util.spec_from_file_location("policy_sim", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["policy_sim"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_learned_morning_of_bursts(sim: ModuleType) -> None:
    rng = random.Random(3)
    days = sim.history(rng, 8)  # a week to learn from, then a Monday
    monday = sim.midnight(7)
    start, end = monday + 7.5 * HOUR, monday + 12 * HOUR
    trace = sim.Trace(
        "morning",
        sim.sessions(rng, [at for at in days if start <= at < end]),
        start,
        end,
        history=tuple(at for at in days if at < monday),
    )
    ours = sim.Pool(trace, sim.Decide("ours", 2, sim.learned(trace.history))).run()
    reactive = sim.Pool(trace, sim.Decide("keep-2-idle", 2)).run()
    assert ours.killed == 0 and reactive.killed == 0
    assert reactive.long_waits >= 10, "the trace is bursty enough to tell"
    assert ours.long_waits < reactive.long_waits / 2
    assert ours.percentile(0.95) < reactive.percentile(0.95)


def test_a_flash_crowd(sim: ModuleType) -> None:
    rng = random.Random(4)
    start = sim.midnight(2) + 13 * HOUR
    crowd = [start + HOUR + rng.uniform(0, 60) for _ in range(sim.FLASH)]
    arrivals = sorted(sim.quiet(rng, start, start + 2 * HOUR) + crowd)
    trace = sim.Trace("flash", sim.sessions(rng, arrivals), start, start + 2 * HOUR, crowd=min(crowd))
    ours = sim.Pool(trace, sim.Decide("ours", 2, sim.learned(()))).run()
    reactive = sim.Pool(trace, sim.Decide("keep-2-idle", 2)).run()
    hpa = sim.Pool(trace, sim.Hpa()).run()
    assert ours.killed == 0
    assert ours.long_waits < reactive.long_waits
    assert hpa.killed > 0, "the HPA baseline removes busy pods, as the issue says"
