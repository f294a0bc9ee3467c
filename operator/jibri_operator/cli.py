"""`jibri-operator`: the operator's command line.

``jibri-operator run`` connects with ``--kubeconfig``, ``$KUBECONFIG``,
``~/.kube/config`` or the in-cluster service account, in that order, and
watches one namespace (``-n``, repeatable) or all of them (``-A``, the default).
``jibri-operator render-config POOL`` prints what that pool's pods would get: the
rendered jibri.conf, the Jibri container's environment (secret values redacted
unless ``--show-secrets``) and the pod.

``--log-format json`` writes one JSON object per log line (see :mod:`jibri_operator.logs`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from jibri_operator import __version__, logs


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jibri-operator", description="Run Jitsi Jibri fleets on Kubernetes."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("version", help="print the version")
    run = commands.add_parser("run", help="run the operator")
    run.add_argument(
        "--kubeconfig", help="path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config, in-cluster)"
    )
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable)"
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (the default)"
    )
    run.add_argument(
        "--nickname", help="brewery nickname (default: jibri-operator-$POD_NAME or the host name)"
    )
    run.add_argument(
        "--metrics-port", type=int, default=8080, help="port for /metrics, /healthz, /readyz (0: off)"
    )
    run.add_argument("--metrics-host", default="0.0.0.0", help="address for the probes and metrics")  # noqa: S104
    run.add_argument(
        "--peering",
        metavar="NAME",
        help="coordinate replicas through this kopf peering object (default: standalone)",
    )
    run.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    run.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="text",
        help="text lines, or one JSON object per line for log pipelines (default: text)",
    )
    render = commands.add_parser(
        "render-config", help="print the jibri.conf, environment and pod a JibriPool's pods would get"
    )
    render.add_argument("pool", help="the JibriPool's name")
    render.add_argument("-n", "--namespace", help="its namespace (default: the kubeconfig context's)")
    render.add_argument("--kubeconfig", help="path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config)")
    render.add_argument(
        "--show-secrets", action="store_true", help="print the passwords instead of *** (careful)"
    )
    return parser


def render_config(args: argparse.Namespace) -> int:
    from jibri_operator.controllers.pools import PoolProblem
    from jibri_operator.controllers.preview import render_pool
    from jibri_operator.kube.client import Forbidden, Kube, SecretMissing, context_namespace, load_config

    namespace = args.namespace or context_namespace(args.kubeconfig)
    kube = Kube(load_config(args.kubeconfig, connections=4))
    try:
        text = asyncio.run(render_pool(kube, namespace, args.pool, show_secrets=args.show_secrets))
    except (PoolProblem, SecretMissing, Forbidden) as problem:
        print(f"jibri-operator render-config: {problem}", file=sys.stderr)
        return 1
    finally:
        kube.close()
    sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "version":
        print(__version__)
        return 0
    if args.command == "render-config":
        return render_config(args)
    from jibri_operator.controllers.operator import OperatorOptions, run_operator

    logs.configure(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    options = OperatorOptions(
        kubeconfig=args.kubeconfig,
        namespaces=list(args.namespace),
        nickname=args.nickname,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port or None,
        standalone=args.peering is None,
        peering_name=args.peering,
    )

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await run_operator(options, stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
