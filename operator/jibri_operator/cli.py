"""`jibri-operator`: the operator's command line.

``jibri-operator run`` connects with ``--kubeconfig``, ``$KUBECONFIG``,
``~/.kube/config`` or the in-cluster service account, in that order, and
watches one namespace (``-n``, repeatable) or all of them (``-A``, the default).
``jibri-operator render-config POOL`` prints what that pool's pods would get: the
rendered jibri.conf, the Jibri container's environment (secret values redacted
unless ``--show-secrets``) and the pod.

``--leader-elect`` makes a replica act only while it holds a Lease (see
:mod:`jibri_operator.kube.lease`); the others wait as standbys, answering /readyz
with 503. A leader that loses its Lease exits with status 3.

``--log-format json`` writes one JSON object per log line (see :mod:`jibri_operator.logs`).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from jibri_operator import __version__, logs
from jibri_operator.api.durations import parse_duration
from jibri_operator.kube.election import LeaseTiming


def _seconds(text: str) -> float:
    """A duration (``6s``, ``500ms``) or a number of seconds."""
    try:
        return float(text)
    except ValueError:
        return parse_duration(text)


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
    coordination = run.add_mutually_exclusive_group()
    coordination.add_argument(
        "--leader-elect",
        action="store_true",
        help="act only while holding a coordination.k8s.io Lease; other replicas wait as standbys",
    )
    coordination.add_argument(
        "--peering",
        metavar="NAME",
        help="coordinate replicas through this kopf peering object (default: standalone)",
    )
    run.add_argument(
        "--leader-elect-namespace",
        metavar="NS",
        help="the Lease's namespace (default: $POD_NAMESPACE, the pod's service account's, the kubeconfig's)",
    )
    run.add_argument("--leader-elect-name", metavar="NAME", default="jibri-operator", help="the Lease's name")
    defaults = LeaseTiming()
    run.add_argument(
        "--leader-elect-lease-duration",
        type=_seconds,
        default=defaults.lease_duration,
        metavar="DURATION",
        help=f"how long a standby waits after the leader's last renewal (default {defaults.lease_duration:g}s)",
    )
    run.add_argument(
        "--leader-elect-renew-deadline",
        type=_seconds,
        default=defaults.renew_deadline,
        metavar="DURATION",
        help=f"the leader exits if it cannot renew for this long (default {defaults.renew_deadline:g}s)",
    )
    run.add_argument(
        "--leader-elect-retry-period",
        type=_seconds,
        default=defaults.retry_period,
        metavar="DURATION",
        help=f"how often to renew, or to try to take over (default {defaults.retry_period:g}s)",
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
    from jibri_operator.controllers.operator import LeaderElection, OperatorOptions, run_operator

    election = None
    if args.leader_elect:
        try:
            timing = LeaseTiming(
                args.leader_elect_lease_duration,
                args.leader_elect_renew_deadline,
                args.leader_elect_retry_period,
            )
        except ValueError as error:
            print(f"jibri-operator run: --leader-elect-*: {error}", file=sys.stderr)
            return 2
        election = LeaderElection(args.leader_elect_name, args.leader_elect_namespace, timing=timing)
    logs.configure(args.log_format, logging.DEBUG if args.verbose else logging.INFO)
    options = OperatorOptions(
        kubeconfig=args.kubeconfig,
        namespaces=list(args.namespace),
        nickname=args.nickname,
        metrics_host=args.metrics_host,
        metrics_port=args.metrics_port or None,
        standalone=args.peering is None,
        peering_name=args.peering,
        leader_election=election,
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
