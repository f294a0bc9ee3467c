"""`make demo` keeps working: the whole story runs to the end on a fresh directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

PHASE_LINE = re.compile(r"^\s+\[\s*[\d.]+s\] (\S+)\s+(\S+)", re.MULTILINE)


@pytest.mark.parametrize("control_plane", ["emulated", "real"])
def test_demo_tells_the_whole_story(tmp_path: Path, control_plane: str) -> None:
    """On the real control plane the operator runs as manifests/rbac.yaml's ServiceAccount."""
    demo = [sys.executable, "-m", "jibri_sandbox.cli", "demo", "--dir", str(tmp_path / "demo"), "--no-hold"]
    result = subprocess.run(
        [*demo, "--control-plane", control_plane],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    changes = PHASE_LINE.findall(result.stdout)
    for session in ("weekly-standup", "town-hall", "sprint-retro"):
        phases = [phase for name, phase in changes if name == session]
        assert phases[-3:] == ["Recording", "Stopping", "Completed"], (session, phases)
    # Two Jibris are idle for three sessions: one waits while the pool scales up.
    assert any(phase == "Pending" for _, phase in changes), changes
    assert re.search(r"jibripool.jibri.dev/recorders\s+1\s+4\s+3\s", result.stdout), "scaled up to three pods"
    assert "abcd-efgh-ijkl-mnop" not in result.stdout + result.stderr  # the example's stream key
    operator_log = (tmp_path / "demo" / "operator.log").read_text()
    assert "Forbidden" not in operator_log, "the shipped RBAC is enough"
    if control_plane == "real":
        assert "logged in as system:serviceaccount:jibri-operator:jibri-operator" in result.stdout
