"""`jibri-operator`: the operator's command line."""

from __future__ import annotations

import argparse
import sys

from jibri_operator import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jibri-operator", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("version", help="print the version")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "version":
        print(__version__)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
