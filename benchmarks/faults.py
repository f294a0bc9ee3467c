"""The fault matrix (jibri_sandbox.fault_matrix): every fault, several times, under load.

    .venv/bin/python benchmarks/faults.py [--rounds 2] [--fault NAME ...]

Prints the table of sessions started, recorded twice, lost, cut short by the operator and by
the fault itself, and the time to recover; exits non-zero when a row does not hold.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from jibri_sandbox.fault_matrix import FAULTS, MatrixConfig, run_matrix, table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--fault", action="append", choices=sorted(FAULTS), help="only these (repeatable)")
    parser.add_argument("--keep", type=Path, help="keep the world's directory (logs, records) here")
    args = parser.parse_args()
    config = MatrixConfig(rounds=args.rounds, faults=tuple(args.fault or ()))
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(run_matrix(args.keep or Path(tmp), config))
    print(table(rows))
    broken = [row.fault for row in rows if not row.holds]
    if broken:
        print(f"rows that do not hold: {broken}")
    return 1 if broken else 0


if __name__ == "__main__":
    raise SystemExit(main())
