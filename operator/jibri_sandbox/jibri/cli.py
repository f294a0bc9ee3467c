"""`jibri-sandbox jibri --config jibri.conf`: one simulated Jibri, until SIGTERM or SIGINT.

On either signal it leaves its breweries with an unavailable presence and exits 0;
a SIGKILL simply drops its connections, as a crashed Jibri would.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from jibri_sandbox.jibri.config import JibriConfigError, load_jibri_conf
from jibri_sandbox.jibri.simulator import JibriError, SimulatedJibri


async def _run(config_path: Path) -> int:
    config = load_jibri_conf(config_path)
    jibri = SimulatedJibri(config)
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
