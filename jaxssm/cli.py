"""Command line for jaxssm (the Poisson dynamic factor model).

Its commands arrive with the jaxssm issues.
"""

from __future__ import annotations

import argparse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxssm",
        description="Poisson dynamic factor state-space model fitted by Laplace-EM (JAX).",
    )
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return 0
