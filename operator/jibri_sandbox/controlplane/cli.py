"""`jibri-sandbox controlplane --dir DIR`: etcd, kube-apiserver and kube-controller-manager until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from .binaries import BinaryMissing
from .launcher import ControlPlane


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="jibri-sandbox controlplane", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path, help="where kubeconfigs, logs and state go")
    parser.add_argument("--timeout", type=float, default=90.0, help="seconds each part may take to start")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        control_plane = ControlPlane(args.dir, timeout=args.timeout).start()
    except BinaryMissing as error:
        print(f"jibri-sandbox controlplane: {error}", file=sys.stderr)
        return 1
    try:
        print(f"control plane up in {control_plane.startup_seconds:.1f}s at {control_plane.url}", flush=True)
        print(f"  admin:    KUBECONFIG={control_plane.kubeconfig}", flush=True)
        print(f"  operator: KUBECONFIG={control_plane.operator_kubeconfig}", flush=True)
        while not stop.wait(0.5):
            broken = control_plane.failed()
            if broken:
                print(f"controlplane: {broken} exited unexpectedly; stopping", file=sys.stderr, flush=True)
                return 1
    finally:
        control_plane.stop()
    return 0
