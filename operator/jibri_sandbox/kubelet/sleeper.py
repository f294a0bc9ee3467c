"""The process behind a non-Jibri container: sleeps until told to stop, like `sleep infinity`.

A real child process (not an asyncio task) so SIGTERM, SIGKILL, exit codes and
restarts behave exactly as they do for a container's PID 1. Test switches:
`--ignore-term` traps SIGTERM (a container that will not stop, to show SIGKILL
escalation); `--exit-after S --exit-code N` ends on its own (a job, or a crash).

    python -m jibri_sandbox.kubelet.sleeper [--ignore-term] [--exit-after S] [--exit-code N] [--message M]
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from types import FrameType


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sleeper")
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--exit-after", type=float, default=None)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--message", default="")
    args = parser.parse_args(argv)

    def on_term(signum: int, frame: FrameType | None) -> None:
        if args.ignore_term:
            print("sleeper: ignoring SIGTERM", flush=True)
            return
        print("sleeper: SIGTERM, exiting", flush=True)
        sys.exit(0)

    signal.signal(signal.SIGTERM, on_term)
    print("sleeper: started", flush=True)
    if args.exit_after is not None:
        time.sleep(args.exit_after)
        if args.message:
            print(args.message, file=sys.stderr, flush=True)
        return int(args.exit_code)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
