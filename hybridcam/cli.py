"""The `hybridcam` command: one subcommand per service, plus the demo and tools.

Each subcommand lives in its own module, exposing ``add_arguments(parser)`` and
``run(args) -> int``. A module is imported only when its command runs, so
``hybridcam --help`` stays instant and one service never loads another's libraries.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass

from shared.errors import ConfigError


@dataclass(frozen=True)
class Command:
    name: str
    module: str
    summary: str


COMMANDS: tuple[Command, ...] = (
    Command("demo", "devstack.demo", "run the whole site locally (Redis, cameras, detection, cloud path, program) and show it live"),
    Command("capture", "services.capture.main", "read cameras and publish timestamped frames on Redis Streams"),
    Command("edge-infer", "services.edge_infer.main", "detect objects in the newest frame of each camera with ONNX Runtime"),
    Command("sampler", "services.sampler.main", "send the master frames that change what we know to the cloud path (Kinesis)"),
    Command("results-bridge", "services.results_bridge.main", "bring cloud detections back from SQS onto the detection stream"),
    Command("events", "services.events.main", "zones and rules on the edge's tracks: events with a clip, notifications, retention"),
    Command("compositor", "services.compositor.main", "cut one FullHD program from all cameras, directed by detections"),
    Command("director-eval", "devstack.director_eval", "run the director offline on recorded files or a synthetic scene and measure its cut"),
    Command("dashboard", "services.dashboard.main", "serve the operator web page: program, cameras, alerts, cloud frames, metrics"),
    Command("cloud", "cloud.commands", "deploy or destroy the AWS stack, run the local cloud stand-ins"),
    Command("fleet-console", "cloud.local.console_adapter", "serve the fleet console (sites, servers' health, cloud frames, alerts) locally, token required"),
    Command("analyze-video", "cloud.stored_video.cli", "after the event: label timeline, report and highlights of a stored video (Rekognition Video)"),
    Command("recordings", "hybridcam.recordings_cli", "upload the program recordings to the stack's bucket (recordings/<site>/), resumable"),
    Command("sampling-eval", "hybridcam.sampling_eval.cli", "replay cloud-sampling policies on recorded footage against a reference detector"),
    Command("faces", "cloud.faces_commands", "enrol, list or remove people on the face watch-list (Rekognition collection)"),
    Command("cost", "hybridcam.cost.cli", "compare monthly cost of cloud-only, hybrid and edge-only for a site"),
    Command("plan", "hybridcam.plan.cli", "size a site or fleet: edge servers and placement, memory, uplink, Kinesis, Lambda, cost"),
    Command("k8s", "hybridcam.k8s.cli", "render Kubernetes manifests from the site file (Pods per camera group) and validate them offline"),
    Command("healthcheck", "hybridcam.healthcheck", "probe a service's /health endpoint (for container health checks)"),
)


def _top_parser() -> argparse.ArgumentParser:
    width = max(len(c.name) for c in COMMANDS)
    listing = "\n".join(f"  {c.name:<{width}}  {c.summary}" for c in COMMANDS)
    parser = argparse.ArgumentParser(
        prog="hybridcam",
        description="Hybrid edge-cloud video analytics for multi-camera sites.",
        epilog=f"commands:\n{listing}\n\nRun 'hybridcam COMMAND --help' for a command's options. "
        "Settings come from HYBRIDCAM_* environment variables or a .env file (see config/example.env).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", choices=[c.name for c in COMMANDS], metavar="COMMAND")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] in ("-h", "--help"):
        top.print_help()
        return 0 if argv else 2
    command = next((c for c in COMMANDS if c.name == argv[0]), None)
    if command is None:
        top.parse_args(argv[:1])  # prints the usage error and exits 2
        return 2
    try:
        module = importlib.import_module(command.module)
    except ModuleNotFoundError as error:
        if error.name and command.module.startswith(error.name):
            print(f"hybridcam: the '{command.name}' command is not part of this build", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(
        prog=f"hybridcam {command.name}",
        description=(module.__doc__ or command.summary).strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except ConfigError as error:
        logging.getLogger("hybridcam").debug("configuration error", exc_info=True)
        print(f"hybridcam {command.name}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
