"""The fault matrix (jibri_sandbox.fault_matrix), one round of every fault, as a slow test:
nothing recorded twice, nothing lost, no recording cut short by the operator."""

from __future__ import annotations

from pathlib import Path

import pytest

from jibri_sandbox.fault_matrix import MatrixConfig, run_matrix, table

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(1800)]


async def test_every_fault_row_holds(tmp_path: Path) -> None:
    rows = await run_matrix(tmp_path, MatrixConfig(rounds=1))
    assert all(row.holds for row in rows), "\n" + table(rows)
    assert {row.fault for row in rows} and all(row.times == 1 for row in rows)
