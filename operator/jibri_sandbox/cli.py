"""`jibri-sandbox`: one entry point for every sandbox part.

Each subcommand lives in its own package's ``cli`` module, exposing
``main(argv) -> int``, and is imported only when asked for, so starting a
simulated Jibri does not pay for the API server's imports.
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "apiserver": ("jibri_sandbox.apiserver.cli", "a Kubernetes API server emulation over HTTPS"),
    "controlplane": (
        "jibri_sandbox.controlplane.cli",
        "etcd, kube-apiserver and kube-controller-manager (make control-plane builds them)",
    ),
    "kubelet": (
        "jibri_sandbox.kubelet.cli",
        "run the sandbox node's pods (Jibri pods become simulated Jibris)",
    ),
    "prosody": ("jibri_sandbox.prosody.cli", "a real Prosody with TLS, MUC and accounts"),
    "jibri": ("jibri_sandbox.jibri.cli", "a simulated Jibri that reads jibri.conf"),
    "focus": ("jibri_sandbox.focus", "a Jicofo-like controller starting recordings of its own"),
    "up": ("jibri_sandbox.up", "API server + kubelet + Prosody together"),
    "demo": ("jibri_sandbox.demo", "the whole system, end to end"),
}


def usage() -> str:
    lines = ["usage: jibri-sandbox COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {summary}" for name, (_, summary) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        print(usage(), file=sys.stderr if args and args[0] not in ("-h", "--help") else sys.stdout)
        return 0 if args and args[0] in ("-h", "--help") else 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    result: int = module.main(args[1:])
    return result


if __name__ == "__main__":
    raise SystemExit(main())
