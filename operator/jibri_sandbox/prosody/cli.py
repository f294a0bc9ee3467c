"""`jibri-sandbox prosody --dir DIR`: run a sandbox Prosody until interrupted.

Writes DIR/xmpp.json (host, port, domain, muc_domain, ca_file, domains) once
the server accepts connections, so scripts can wait for that file.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from pathlib import Path

from jibri_sandbox.prosody.server import Prosody


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="jibri-sandbox prosody", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", required=True, type=Path, help="directory for config, certificates and data")
    parser.add_argument("--domain", default="localhost")
    parser.add_argument(
        "--extra-domain", action="append", default=[], help="another VirtualHost (repeatable)"
    )
    parser.add_argument("--port", type=int, default=None, help="c2s port (default: a free one)")
    parser.add_argument(
        "--account",
        action="append",
        default=[],
        metavar="USER:PASSWORD",
        help="create an account (repeatable)",
    )
    args = parser.parse_args(argv)

    directory: Path = args.dir.resolve()
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    server = Prosody(
        directory / "prosody", domain=args.domain, extra_domains=args.extra_domain, port=args.port
    )
    server.start()
    try:
        for account in args.account:
            user, _, password = account.partition(":")
            server.register(user, password)
        info = directory / "xmpp.json"
        staging = info.with_suffix(".tmp")
        staging.write_text(json.dumps(server.describe(), indent=2) + "\n")
        staging.replace(info)
        print(f"prosody listening on {server.host}:{server.port}; details in {info}", flush=True)
        while not stop.wait(1.0):
            if not server.running:
                print("prosody exited unexpectedly; see", server.log_file, flush=True)
                return 1
        return 0
    finally:
        server.stop()
