"""`jibri-sandbox jibri --config jibri.conf`: one simulated Jibri, until SIGTERM or SIGINT.

On either signal it leaves its breweries with an unavailable presence and exits 0;
a SIGKILL simply drops its connections, as a crashed Jibri would.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

from jibri_sandbox.jibri.config import JibriConfigError, load_jibri_conf
from jibri_sandbox.jibri.simulator import JibriError, Recorded, SimulatedJibri

HISTORY_DIR = "JIBRI_SANDBOX_HISTORY_DIR"


def _keep_history(jibri: SimulatedJibri, directory: Path) -> None:
    """Append each recording's start and end to DIR/<host name>.jsonl: the Jibri's own record,
    readable after the process is gone (a pod's host name is the pod's name)."""
    path = directory / f"{os.environ.get('HOSTNAME') or socket.gethostname()}.jsonl"

    def write(event: str, recorded: Recorded) -> None:
        line = {"event": event, "nickname": path.stem, **dataclasses.asdict(recorded)}
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps(line) + "\n")

    jibri.record_hook = write


async def _run(config_path: Path) -> int:
    config = load_jibri_conf(config_path)
    jibri = SimulatedJibri(config)
    if os.environ.get(HISTORY_DIR):
        _keep_history(jibri, Path(os.environ[HISTORY_DIR]))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await jibri.start()
    print(f"jibri joined {', '.join(jibri.occupants)}", flush=True)
    try:
        await stop.wait()
    finally:
        await jibri.stop()
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="jibri-sandbox jibri", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config", required=True, type=Path, help="jibri.conf (HOCON), as a real Jibri reads it"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log protocol events")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # slixmpp's DEBUG log prints every stanza, stream keys and SASL exchanges included: never enable it.
    logging.getLogger("slixmpp").setLevel(logging.WARNING)
    try:
        return asyncio.run(_run(args.config))
    except (JibriConfigError, JibriError) as error:
        print(f"jibri-sandbox jibri: {error}", file=sys.stderr)
        return 1
