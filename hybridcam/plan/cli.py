"""Plan the edge servers and the cloud side for a site (or a fleet of equal sites).

Input: the cameras (--cameras COUNTxWIDTHxHEIGHT@FPS[:master|slave], repeatable, or --site FILE),
a server class (a capacity file in config/capacity/, written by `make bench` for the machine it
runs on) and a target (--analyse-fps per camera, default every frame; --headroom of each server).
Output: how many edge servers and which cameras go on each (written as the site file's
`placement` with --write-site), /dev/shm and Redis memory per server, uplink to the cloud at the
measured sampling fraction, Kinesis shards, Lambda concurrency and the monthly cost (cost model).
Every figure says whether it was measured or assumed.

  hybridcam plan --cameras 2x3840x2160@60:master --cameras 4x3840x2160@60:slave
  hybridcam plan --cameras 1x1920x1080@15:master --cameras 7x1920x1080@15 --sites 100
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import yaml
from pydantic import ValidationError

from cost_model.estimate import estimate_architecture
from cost_model.event_study import SendFractionError, fraction_from_file
from cost_model.price_sets import PriceSet, PriceSetError, load_price_set
from cost_model.scenario import Scenario
from hybridcam.plan.capacity_file import CapacityFile, available_classes, default_class, load_capacity
from hybridcam.plan.planner import SITE_STREAMS, CameraSpec, Plan, PlanInput, PlanRefused, Server, expand_cameras, plan_site
from services.capture.camera_worker import FRAME_STREAM_MAXLEN
from shared.errors import ConfigError, describe_validation_error
from shared.site_config import load_site

MEASURED_SEND_FRACTION = 0.0448
MEASURED_SEND_SOURCE = ("measured: the adaptive policy's largest send fraction over the real clips, store-aisle "
                        "(docs/sampling.md)")
DEFAULT_CLASS = "cpu-amd-epyc-2c"
LAMBDA_MS = 695.0
LAMBDA_MS_SOURCE = "445 ms of the handler's own work measured by bench/cloud_load.py + 250 ms of DetectLabels assumed"
MIB = 1024 * 1024
SPEC = re.compile(r"^(\d+)x(\d+)x(\d+)@([\d.]+)(?::(master|slave))?$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cameras", action="append", default=[], metavar="COUNTxWxH@FPS[:ROLE]",
                        help="cameras alike, e.g. 2x3840x2160@60:master (role slave when not given); repeatable")
    parser.add_argument("--site", type=Path, help="plan the cameras of this site file instead of --cameras")
    parser.add_argument("--server-class", default=default_class(),
                        help=f"capacity file name in config/capacity/ or a path (default: this machine's class when "
                        f"`make bench` measured it, else {DEFAULT_CLASS}; known: {', '.join(available_classes())})")
    parser.add_argument("--backend", default="auto", help="edge back-end of the capacity file: auto or fp32 (default auto)")
    parser.add_argument("--analyse-fps", type=float, help="target analysed frames/s per camera (default: every frame)")
    parser.add_argument("--headroom", type=float, default=0.8, help="share of each server's measured budget to use (default 0.8)")
    parser.add_argument("--servers", type=int, help="use exactly this many servers and say what they analyse "
                        "(default: as many as the target needs)")
    parser.add_argument("--sites", type=int, default=1, help="equal sites sharing one cloud stack (default 1)")
    parser.add_argument("--send-fraction", type=float, help=f"share of master frames sent to the cloud (default "
                        f"{MEASURED_SEND_FRACTION:g}, {MEASURED_SEND_SOURCE})")
    parser.add_argument("--send-fraction-from", type=Path, help="the send fraction from a sampling-eval --json file or a run counters file")
    parser.add_argument("--hours-per-day", type=float, default=24.0, help="hours a day the site runs, for the cost (default 24)")
    parser.add_argument("--lambda-ms", type=float, default=LAMBDA_MS,
                        help=f"Lambda time per frame in ms (default {LAMBDA_MS:g}: {LAMBDA_MS_SOURCE})")
    parser.add_argument("--price-set", default="us-east-1-2026", help="price set of the cost model (default us-east-1-2026)")
    parser.add_argument("--write-site", type=Path, help="write a site file with the cameras and their placement here")
    parser.add_argument("--node-prefix", default="edge", help="node label value prefix for the placement (default edge)")


def parse_spec(text: str) -> CameraSpec:
    match = SPEC.match(text.strip())
    if not match:
        raise ConfigError(f"--cameras {text!r} is not COUNTxWIDTHxHEIGHT@FPS[:master|slave], e.g. 2x3840x2160@60:master")
    count, width, height, fps, role = match.groups()
    try:
        return CameraSpec(count=int(count), width=int(width), height=int(height), fps=float(fps), role=role or "slave")
    except ValidationError as error:
        raise ConfigError(f"--cameras {text!r}: {describe_validation_error(error)}") from None


def specs_from_site(path: Path) -> tuple[list[CameraSpec], dict]:
    site = load_site(path)
    specs = [CameraSpec(count=1, width=c.width, height=c.height, fps=c.fps, role=c.role) for c in site.resolved()]
    return specs, yaml.safe_load(path.read_text(encoding="utf-8"))


def send_fraction(args: argparse.Namespace) -> tuple[float, str]:
    if args.send_fraction is not None and args.send_fraction_from is not None:
        raise ConfigError("give --send-fraction or --send-fraction-from, not both")
    if args.send_fraction_from is not None:
        try:
            measured = fraction_from_file(args.send_fraction_from)
        except SendFractionError as error:
            raise ConfigError(str(error)) from None
        return measured.fraction, f"measured: {measured.source}"
    if args.send_fraction is not None:
        if not 0 < args.send_fraction <= 1:
            raise ConfigError(f"--send-fraction is a share of frames above 0 and at most 1, not {args.send_fraction:g}")
        return args.send_fraction, "given"
    return MEASURED_SEND_FRACTION, MEASURED_SEND_SOURCE


def build_input(args: argparse.Namespace, specs: list[CameraSpec], fraction: float) -> PlanInput:
    values = {"cameras": specs, "backend": args.backend, "analyse_fps": args.analyse_fps, "headroom": args.headroom,
              "sites": args.sites, "servers": args.servers, "send_fraction": fraction, "lambda_s_per_frame": args.lambda_ms / 1000}
    try:
        return PlanInput.model_validate(values)
    except ValidationError as error:
        message = describe_validation_error(error)
        for flag in ("analyse_fps", "headroom", "servers", "sites", "lambda_s_per_frame"):
            message = message.replace(flag, "--" + flag.replace("_", "-").replace("lambda-s-per-frame", "lambda-ms"))
        raise ConfigError(message) from None


def run(args: argparse.Namespace) -> int:
    if bool(args.cameras) == bool(args.site):
        raise ConfigError("give the cameras with --cameras (repeatable) or --site FILE, one of the two")
    site_document: dict | None = None
    if args.site:
        specs, site_document = specs_from_site(args.site)
    else:
        specs = [parse_spec(text) for text in args.cameras]
    if not any(spec.role == "master" for spec in specs):
        raise ConfigError("a site needs at least one master camera (the wide shot the cloud sees): add :master to a --cameras")
    capacity = load_capacity(args.server_class)
    if args.backend not in capacity.backends():
        raise ConfigError(f"server class {capacity.server_class} has no figures for back-end {args.backend!r} "
                          f"(it has {', '.join(capacity.backends())})")
    fraction, fraction_source = send_fraction(args)
    request = build_input(args, specs, fraction)
    try:
        plan = plan_site(request, capacity)
        prices = load_price_set(args.price_set)
    except PlanRefused as error:
        raise ConfigError(str(error)) from None
    except PriceSetError as error:
        raise ConfigError(str(error)) from None
    print_plan(plan, request, fraction_source)
    if not 0 < args.hours_per_day <= 24:
        raise ConfigError(f"--hours-per-day is above 0 and at most 24, not {args.hours_per_day:g}")
    print_cost(plan, request, prices, args.hours_per_day)
    if args.write_site:
        write_site(args.write_site, plan, args.node_prefix, site_document, specs)
        print(f"\nwrote {args.write_site}: the cameras with their placement (node label hybridcam.io/edge-server)")
    return 0


def print_plan(plan: Plan, request: PlanInput, fraction_source: str) -> None:
    capacity = plan.capacity
    kind = "measured" if capacity.measured else f"ASSUMED, not measured ({capacity.source})"
    print(f"server class {capacity.server_class}: {capacity.description} [{kind}"
          f"{', ' + capacity.measured_on if capacity.measured_on else ''}]")
    print(f"back-end {request.backend}, target: {'every frame' if request.analyse_fps is None else f'{request.analyse_fps:g} frames/s'} "
          f"per camera, servers used up to {request.headroom:.0%} of their budget")
    for note in plan.notes:
        print(f"  note: {note}")
    errors = fit_errors(capacity)
    figure = "measured" if capacity.measured else "assumed"
    if errors and capacity.measured:
        others = len(capacity.reproduction()) - len(errors)
        print(f"  its per-frame CPU costs reproduce the bench's {len(errors)} measured analysed rates within {max(errors):.1%} "
              f"(given the CPU edge-infer got; {others} points left out: capture fell behind or under 1 frame/s analysed)")
    sites = f" per site ({request.sites} sites)" if request.sites > 1 else ""
    print(f"\n{len(plan.servers)} edge server(s){sites}:")
    for server in plan.servers:
        ids = ", ".join(camera.id for camera in server.cameras)
        print(f"  {server.name}: {len(server.cameras)} cameras ({ids})")
        print(f"    offered {server.offered_fps:g} frames/s, analysed {server.analysed_fps:.1f} frames/s, "
              f"{server.load:.0%} of the server's budget")
        print(f"    /dev/shm {server.shm_bytes(request.ring_slots) / MIB:,.0f} MiB (rings "
              f"{server.ring_bytes(request.ring_slots) / MIB:,.0f} MiB, one second of frames per camera, twice for "
              f"restart headroom); Redis {server.frame_ref_bytes(capacity.redis_bytes_per_frame_ref) / MIB:.1f} MiB of frame "
              f"references ({FRAME_STREAM_MAXLEN} per camera at {capacity.redis_bytes_per_frame_ref} B, {figure}), "
              f"{server.frame_ref_bytes(inline_bytes(plan, server)) / MIB:,.0f} MiB with inline JPEGs for other nodes")
    site_redis = SITE_STREAMS * request.stream_maxlen * capacity.redis_bytes_per_detection_set
    print(f"  site Redis (metadata, one per site): {site_redis / MIB:.1f} MiB ({SITE_STREAMS} streams x {request.stream_maxlen} "
          f"entries at {capacity.redis_bytes_per_detection_set} B per detection set, {figure})")
    cloud = plan.cloud
    print(f"\nuplink per site: {cloud.frames_per_s_per_site:.2f} frames/s, {cloud.bytes_per_s_per_site * 8 / 1e6:.2f} Mbit/s "
          f"at the send fraction {request.send_fraction:.2%} ({fraction_source}); JPEG sizes {figure}{' on a real frame' if capacity.measured else ''}")
    print(f"cloud stack for {request.sites} site(s): {cloud.records_per_s:,.1f} records/s, {cloud.bytes_per_s / 1e6:,.2f} MB/s "
          f"-> {cloud.shards} Kinesis shard(s) ({'set by ' if cloud.shards > 1 else ''}{cloud.shards_by}); Lambda concurrency {cloud.lambda_concurrency} "
          f"(ParallelizationFactor {cloud.parallelization}) "
          f"at {request.lambda_s_per_frame * 1000:g} ms per frame ({LAMBDA_MS_SOURCE if request.lambda_s_per_frame * 1000 == LAMBDA_MS else 'given'}); "
          f"one shard carries {cloud.sites_per_shard} such sites")


def fit_errors(capacity: CapacityFile) -> list[float]:
    """Relative errors at the bench's representative points (see MeasuredPoint.representative)."""
    return [abs(predicted - point.analysed_fps) / point.analysed_fps
            for _, point, predicted in capacity.reproduction() if point.representative]


def inline_bytes(plan: Plan, server: Server) -> int:
    """Bytes per frame reference carrying its JPEG (the cross-node pixel path), the server's mean."""
    sizes = [plan.capacity.jpeg_bytes(c.width, c.height) for c in server.cameras]
    return round(plan.capacity.redis_bytes_per_frame_ref + sum(sizes) / len(sizes))


def print_cost(plan: Plan, request: PlanInput, prices: PriceSet, hours_per_day: float) -> None:
    cameras = [camera for server in plan.servers for camera in server.cameras]
    masters = [index + 1 for index, camera in enumerate(cameras) if camera.role == "master"]
    master = cameras[masters[0] - 1]
    per_box = math.ceil(len(cameras) / len(plan.servers))
    scenario = Scenario.model_validate({
        "cameras": len(cameras), "resolution": f"{master.width}x{master.height}", "fps": master.fps, "masters": masters,
        "sample_fps": master.fps * request.send_fraction, "architectures": ["hybrid"],
        "jpeg_kb": plan.capacity.jpeg_bytes(master.width, master.height) / 1000 if plan.cloud.bytes_per_s else None,
        "cameras_per_edge_box": per_box, "lambda_ms_per_frame": request.lambda_s_per_frame * 1000,
        "kinesis_large_records": plan.capacity.jpeg_bytes(master.width, master.height) > MIB,
        "hours_per_day": hours_per_day, "provisioned_hours": "24x7" if hours_per_day >= 24 else "active"})
    estimate = estimate_architecture("hybrid", scenario, prices)
    fleet = estimate.total * request.sites
    when = "24x7" if hours_per_day >= 24 else f"{hours_per_day:g} h a day"
    print(f"\nmonthly cost (cost model, {prices.name}, hybrid, {when}): {estimate.total:,.0f} USD per site"
          + (f", {fleet:,.0f} USD for {request.sites} sites" if request.sites > 1 else "")
          + f"; edge boxes priced at the cost model's {scenario.edge_box_usd:,.0f} USD each (assumed)")


def write_site(path: Path, plan: Plan, prefix: str, document: dict | None, specs: list[CameraSpec]) -> None:
    placement = [{"group": server.name, "node": f"{prefix}-{index + 1}", "cameras": [c.id for c in server.cameras]}
                 for index, server in enumerate(plan.servers)]
    if document is not None:
        planned_ids = [camera_id for camera_id, _ in expand_cameras(specs)]
        rename = dict(zip(planned_ids, [camera["id"] for camera in document["cameras"]], strict=True))
        for group in placement:
            group["cameras"] = [rename[c] for c in group["cameras"]]
        out = {**document, "placement": placement}
    else:
        cameras = [{"id": c.id, "source": "synthetic", "role": c.role, "width": c.width, "height": c.height, "fps": c.fps}
                   for server in plan.servers for c in server.cameras]
        out = {"site": "planned-site", "cameras": cameras, "placement": placement}
    path.write_text("# written by hybridcam plan: replace the synthetic sources with the cameras' addresses\n"
                    + yaml.safe_dump(out, sort_keys=False), encoding="utf-8")

