"""`jibri-sandbox apiserver --kubeconfig PATH [--port N]`: serve until SIGTERM or SIGINT.

The objects are saved to WORKDIR/state.json at every shutdown; `--restore` loads them at start.
A restart asked through the fault switches (`{"fault": "restart"}`) stops the server (saving),
waits the downtime, and re-executes this command in the same process, on the same port, with
the same token and `--restore`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .server import ApiServer


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="jibri-sandbox apiserver", description="A Kubernetes API server emulation over HTTPS."
    )
    parser.add_argument(
        "--kubeconfig", required=True, type=Path, help="where to write the kubeconfig for clients"
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--token", default=None, help="bearer token clients must send (default: random)")
    parser.add_argument(
        "--workdir", type=Path, default=None, help="where certificates go (default: beside the kubeconfig)"
    )
    parser.add_argument(
        "--history",
        type=int,
        default=10_000,
        help="watch history size, in events (older versions get 410 Gone)",
    )
    parser.add_argument(
        "--bookmark-interval", type=float, default=10.0, help="seconds between watch bookmarks"
    )
    parser.add_argument(
        "--restore",
        action="store_true",
        help="load the objects WORKDIR/state.json holds (saved at every shutdown) and keep the certificates",
    )
    parser.add_argument(
        "--audit-log", type=Path, default=None, help="append one JSON line per pod deletion and eviction"
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        type=_fault,
        metavar="JSON",
        help='a fault switch set from the start, e.g. \'{"fault": "error", "code": 429, "fraction": 0.1}\'',
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, one line per request")
    return parser.parse_args(argv)


def _fault(text: str) -> dict[str, Any]:
    try:
        spec = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise argparse.ArgumentTypeError("a fault is a JSON object")
    return spec


@dataclass
class Restart:
    downtime: float
    port: int
    token: str


async def serve(args: argparse.Namespace) -> Restart | None:
    workdir = args.workdir or args.kubeconfig.parent / f"{args.kubeconfig.name}.d"
    server = ApiServer(
        args.kubeconfig, args.host, args.port, args.token, args.history, args.bookmark_interval, workdir,
        restore=args.restore, audit_log=args.audit_log, fault_specs=args.fault,
    )  # fmt: skip
    stop = asyncio.Event()
    restart: list[float] = []
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def on_restart(downtime: float) -> None:
        restart.append(downtime)
        stop.set()

    server.on_restart = on_restart
    async with server:
        print(f"apiserver listening on {server.url}, kubeconfig {server.kubeconfig}", flush=True)
        await stop.wait()
    return Restart(restart[0], server.port, server.token) if restart else None


def _without(argv: list[str], options: tuple[str, ...], flags: tuple[str, ...]) -> list[str]:
    """`argv` without the given options (`--port 1`, `--port=1`) and flags."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in options:
            skip = True
        elif arg in flags or any(arg.startswith(f"{o}=") for o in options):
            continue
        else:
            out.append(arg)
    return out


def reexec(argv: list[str], restart: Restart) -> None:
    """Become a new server process: same port, same token, the saved objects."""
    time.sleep(restart.downtime)
    again = [*_without(argv, ("--port", "--token"), ("--restore",)), "--port", str(restart.port),
             "--token", restart.token, "--restore"]  # fmt: skip
    print(f"apiserver restarting on port {restart.port}", flush=True)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "jibri_sandbox.cli", "apiserver", *again])  # noqa: S606


def main(argv: list[str]) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            restart = asyncio.run(serve(args))
            if restart is not None:
                reexec(argv, restart)
    except OSError as exc:  # e.g. the port is taken
        print(f"jibri-sandbox apiserver: {exc}", file=sys.stderr)
        return 1
    return 0
