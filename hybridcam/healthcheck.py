"""Probe a service's /health endpoint and exit 0 when it is healthy (for Docker HEALTHCHECK)."""

from __future__ import annotations

import argparse

from shared.health import probe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:8080/health", help="the /health URL to probe")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for an answer")


def run(args: argparse.Namespace) -> int:
    healthy, reason = probe(args.url, args.timeout)
    print(("healthy: " if healthy else "unhealthy: ") + reason)
    return 0 if healthy else 1


if __name__ == "__main__":  # `python -m hybridcam.healthcheck URL`: without the CLI's imports, fast on a busy box
    import sys

    parser = argparse.ArgumentParser(prog="python -m hybridcam.healthcheck", description=__doc__)
    add_arguments(parser)
    sys.exit(run(parser.parse_args()))
