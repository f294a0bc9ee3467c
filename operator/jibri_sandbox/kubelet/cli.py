"""`jibri-sandbox kubelet --kubeconfig PATH [--node-name N] [--startup-delay S]`: run until SIGTERM/SIGINT.

On the way out every pod process is stopped (SIGTERM, then SIGKILL), so the
sandbox never leaves orphans behind; `--ready-file` is written once the node is
registered and the pod informer has synced, for whoever starts this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path

from jibri_operator.api.durations import parse_duration

from .kubelet import Kubelet


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return parse_duration(text)


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jibri-sandbox kubelet", description="Run the sandbox node's pods.")
    parser.add_argument("--kubeconfig", required=True, type=Path)
    parser.add_argument("--node-name", default="sandbox-node")
    parser.add_argument(
        "--startup-delay", type=_seconds, default=0.0, help="container start latency, e.g. 2s"
    )
    parser.add_argument("--restart-backoff", type=_seconds, default=10.0, help="first CrashLoopBackOff delay")
    parser.add_argument("--max-pods", type=int, default=110)
    parser.add_argument(
        "--state-dir", type=Path, default=None, help="pod volumes and logs (default: a temp dir)"
    )
    parser.add_argument("--ready-file", type=Path, default=None, help="touched once the node is up")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    kubelet = Kubelet(
        args.kubeconfig,
        node_name=args.node_name,
        startup_delay=args.startup_delay,
        state_dir=args.state_dir,
        restart_backoff=args.restart_backoff,
        max_pods=args.max_pods,
    )
    async with kubelet:
        if args.ready_file is not None:
            args.ready_file.write_text(args.node_name + "\n")
        print(f"kubelet: node {args.node_name} ready", flush=True)
        await stop.wait()
        print("kubelet: stopping pods", flush=True)


def main(argv: list[str]) -> int:
    args = parse(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))
    return 0
