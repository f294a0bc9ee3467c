"""`jibri-sandbox apiserver --kubeconfig PATH [--port N]`: serve until SIGTERM or SIGINT.

The objects are saved to WORKDIR/state.json at every shutdown; `--restore` loads them at start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

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
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, one line per request")
    return parser.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    workdir = args.workdir or args.kubeconfig.parent / f"{args.kubeconfig.name}.d"
    server = ApiServer(
        args.kubeconfig, args.host, args.port, args.token, args.history, args.bookmark_interval, workdir,
        restore=args.restore, audit_log=args.audit_log,
    )  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        print(f"apiserver listening on {server.url}, kubeconfig {server.kubeconfig}", flush=True)
        await stop.wait()


def main(argv: list[str]) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    try:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(args))
    except OSError as exc:  # e.g. the port is taken
        print(f"jibri-sandbox apiserver: {exc}", file=sys.stderr)
        return 1
    return 0
