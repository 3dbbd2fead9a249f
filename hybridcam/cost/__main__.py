"""`python -m hybridcam.cost ...` runs `hybridcam cost ...` without the top-level console command."""

from __future__ import annotations

import argparse
import sys

from hybridcam.cost.cli import add_cost_parser, run_cost


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hybridcam")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_cost_parser(subparsers)
    args = parser.parse_args(["cost", *(sys.argv[1:] if argv is None else argv)])
    return run_cost(args)


if __name__ == "__main__":
    sys.exit(main())
