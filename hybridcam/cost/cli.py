"""Price a camera scenario on each architecture side by side: cloud-only frame analysis (Kinesis Data
Streams > Lambda > Rekognition), cloud-only video streaming (Kinesis Video Streams + a SageMaker endpoint,
or + a GPU EC2 instance), hybrid (this product: edge box + sampled cloud path) and edge-only.

Prints a table per line item, monthly totals, cost per camera-hour, the break-even between Rekognition
per-image pricing and an always-on SageMaker endpoint, and writes a chart (cost.png and a self-contained
cost.html) of monthly cost against sampling rate. Scenario flags override the same keys of --scenario FILE.
"""

from __future__ import annotations

import argparse
import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from rich.console import Console

from cost_model.breakeven import rekognition_vs_endpoint
from cost_model.estimate import REKOGNITION_STREAMING_CLOSED, ArchitectureEstimate, CloudLoad, estimate_all
from cost_model.price_sets import PriceSet, PriceSetError, available_price_sets, load_price_set
from cost_model.run_counters import RunCountersError, load_run_counters, project_to_month
from cost_model.scenario import Scenario
from hybridcam.cost.report import comparison_table, detail_table, unpriced_lines, what_this_means

EXIT_USAGE = 2
DESCRIPTION = (
    "Price a camera scenario on each architecture side by side: cloud-only frame analysis "
    "(Kinesis Data Streams > Lambda > Rekognition), cloud-only video streaming (Kinesis Video Streams + a "
    "SageMaker endpoint, or + a GPU EC2 instance), hybrid (this product: edge box + sampled cloud path) and "
    "edge-only. Prints a table per line item, monthly totals, cost per camera-hour, the break-even between "
    "Rekognition per-image pricing and an always-on SageMaker endpoint, and writes a chart (PNG and a "
    "self-contained HTML page) of monthly cost against sampling rate."
)


class ScenarioInputError(ValueError):
    """A user error in the scenario; the message is one sentence."""


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _is_bool(annotation: Any) -> bool:
    return annotation is bool


def _metavar(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Literal:
        return "{" + ",".join(str(a) for a in typing.get_args(annotation)) + "}"
    if annotation in (int, float) or any(a in (int, float) for a in args):
        return "N"
    if typing.get_origin(annotation) in (list, typing.Union, types.UnionType) and any(
        typing.get_origin(a) is list for a in [annotation, *args]
    ):
        return "A,B,..."
    return "TEXT"


def add_scenario_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scenario (each flag overrides the same key of --scenario FILE)")
    for name, info in Scenario.model_fields.items():
        default = info.get_default(call_default_factory=True)
        shown = ",".join(map(str, default)) if isinstance(default, list) else default
        help_text = f"{info.description} (default: {'estimated' if shown is None else shown})"
        if _is_bool(info.annotation):
            group.add_argument(_flag(name), dest=name, action=argparse.BooleanOptionalAction, default=None,
                               help=help_text)
        else:
            group.add_argument(_flag(name), dest=name, default=None, metavar=_metavar(info.annotation),
                               help=help_text.replace("%", "%%"))


def add_cost_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "cost", help="estimate monthly cost of each architecture", description=DESCRIPTION,
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Every `hybridcam cost` option (the console command's per-module hook)."""
    parser.add_argument("--scenario", type=Path, metavar="FILE",
                        help="YAML file whose keys are the scenario flags' names with underscores (e.g. hours_per_day)")
    parser.add_argument("--from-run", type=Path, metavar="FILE",
                        help="JSON counters of a real pipeline run (format in docs/cost.md); the hybrid cloud path "
                        "is that run projected to a month")
    parser.add_argument("--refresh-prices", action="store_true",
                        help="refresh figures from the AWS Price List API (needs AWS credentials; without them the "
                        "price file is used)")
    parser.add_argument("--list-price-sets", action="store_true", help="list the bundled price sets and exit")
    parser.add_argument("--out", type=Path, default=Path("cost-report"), metavar="DIR",
                        help="folder for the chart: cost.png and cost.html (default: cost-report)")
    parser.add_argument("--no-chart", action="store_true", help="do not draw the chart")
    parser.add_argument("--detail", action="store_true",
                        help="also print each architecture's quantities, units and price sources")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the estimates as JSON to FILE")
    parser.add_argument("--event-hours", type=float, metavar="H",
                        help="also price one event of H hours live (DetectLabels) against analysing its recordings "
                        "afterwards (Rekognition Video per minute)")
    parser.add_argument("--send-fraction", type=float, metavar="F",
                        help="a sampling policy's measured share of master frames sent (0-1): also price the 2019 "
                        "study's 2-hour event with it")
    parser.add_argument("--send-fraction-from", type=Path, metavar="FILE",
                        help="read that share from `hybridcam sampling-eval --json` output (adaptive policy, largest "
                        "over the clips) or from a run counters file")
    add_scenario_flags(parser)
    parser.set_defaults(handler=run_cost)


def _validation_sentence(exc: ValidationError) -> str:
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else None  # the scenario is flat: the top key names the field
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    if field is None:
        return f"invalid scenario: {message}."
    shown = "" if isinstance(got, dict) or got is None else f" (got {got!r})"
    return f"invalid scenario: {field}: {message}{shown}."


def _scenario_values(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {}
    if args.scenario is not None:
        try:
            loaded = yaml.safe_load(args.scenario.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ScenarioInputError(f"scenario file {args.scenario} does not exist.") from None
        except yaml.YAMLError as exc:
            raise ScenarioInputError(f"scenario file {args.scenario} is not valid YAML: {exc}.") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ScenarioInputError(f"scenario file {args.scenario} must hold a mapping of scenario keys.")
        values.update(loaded or {})
    for name in Scenario.model_fields:
        value = getattr(args, name, None)
        if value is not None:
            values[name] = value
    return values


def build_scenario(args: argparse.Namespace, run_cameras: int | None = None,
                   run_sampled_fps: float | None = None) -> Scenario:
    values = _scenario_values(args)
    if run_cameras is not None:
        # A run's cameras are its masters: unless told otherwise, price exactly that site.
        values.setdefault("cameras", run_cameras)
        values.setdefault("masters", "all")
        if "sample_every_n" not in values and run_sampled_fps:
            values.setdefault("sample_fps", run_sampled_fps)
    try:
        return Scenario.model_validate(values)
    except ValidationError as exc:
        raise ScenarioInputError(_validation_sentence(exc)) from None


def _load_prices(scenario: Scenario, refresh: bool, console: Console) -> PriceSet:
    prices = load_price_set(scenario.price_set)
    oldest, newest = prices.taken_range
    if not refresh:
        console.print(f"{prices.provenance_line()}; from the price file (not refreshed).")
        return prices
    from hybridcam.cost.aws_price_list import aws_credentials_available, refresh_prices

    if not aws_credentials_available():
        console.print(f"{prices.provenance_line()}; no AWS credentials found, so the price file is used: "
                      f"it reflects prices taken {newest.isoformat()}.")
        return prices
    prices, result = refresh_prices(prices)
    console.print(f"{prices.provenance_line()}; refreshed {len(result.updated)} figure(s) from the AWS Price List "
                  f"API, {len(result.failed)} kept from the file (taken {oldest.isoformat()}).")
    for key, reason in result.failed.items():
        console.print(f"  kept file figure for {key}: {reason}")
    return prices


def _estimates_json(estimates: list[ArchitectureEstimate], scenario: Scenario, prices: PriceSet) -> dict[str, Any]:
    return {
        "price_set": prices.name,
        "scenario": scenario.model_dump(),
        "architectures": [
            {
                "key": e.key, "title": e.title, "monthly_usd": round(e.total, 6),
                "usd_per_camera_hour": round(e.per_camera_hour, 8),
                "items": [{"name": i.name, "price_key": i.price_key, "quantity": i.quantity, "unit": i.unit,
                           "usd": round(i.usd, 6)} for i in e.items],
                "unpriced": e.unpriced, "notes": e.notes,
            }
            for e in estimates
        ],
    }


def _describe(scenario: Scenario, measured: bool) -> str:
    masters = "all cameras" if scenario.masters == "all" else f"master camera(s) {','.join(map(str, scenario.masters))}"
    source = "a measured run" if measured else "the scenario"
    return (
        f"hybridcam cost: pricing {len(scenario.architectures)} architecture(s) for {scenario.cameras} camera(s) "
        f"at {scenario.resolution} {scenario.fps:g} fps, sampling {scenario.sampled_fps:.3g} frame(s)/s per camera, "
        f"{scenario.hours_per_day:g} h/day x {scenario.days_per_month:g} days; hybrid sends {masters} "
        f"(cloud path from {source})."
    )


def run_cost(args: argparse.Namespace) -> int:
    console = Console(width=200 if not sys.stdout.isatty() else None)
    if args.list_price_sets:
        for name in available_price_sets():
            console.print(load_price_set(name).provenance_line())
        return 0
    try:
        measured: CloudLoad | None = None
        if args.from_run is not None:
            run = load_run_counters(args.from_run)
            scenario = build_scenario(args, run.cameras, run.sampled_fps_per_camera)
            measured = project_to_month(run, scenario)
        else:
            scenario = build_scenario(args)
        prices = _load_prices(scenario, args.refresh_prices, console)
    except (ScenarioInputError, RunCountersError, PriceSetError) as exc:
        print(f"error: {str(exc).rstrip('.')}.", file=sys.stderr)
        return EXIT_USAGE

    console.print(_describe(scenario, measured is not None))
    estimates = estimate_all(scenario, prices, measured)
    console.print(comparison_table(estimates))
    if args.detail:
        for estimate in estimates:
            console.print(detail_table(estimate, prices))
    for line in unpriced_lines(estimates, prices):
        console.print(line, markup=False)
    for estimate in estimates:
        for note in estimate.notes:
            console.print(f"note ({estimate.key}): {note}", markup=False)
    closing = _closing_lines(scenario, prices, estimates)
    if not args.no_chart:
        _write_chart(args.out, scenario, prices, estimates, closing, console)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(_estimates_json(estimates, scenario, prices), indent=2, default=str))
        console.print(f"estimates written to {args.json}")
    for line in closing:
        console.print(line, markup=False)
    if args.event_hours:
        _print_event_options(console, scenario, prices, args.event_hours)
    return _print_event_study(args, console)


def _print_event_study(args: argparse.Namespace, console: Console) -> int:
    """The 2019 study's event with a measured send fraction, when one was given (flag, file or run)."""
    from cost_model.event_study import STUDY_PRICE_SET, MeasuredFraction, SendFractionError, event_cost, fraction_from_file, rate_sentence

    try:
        if args.send_fraction is not None:
            measured = MeasuredFraction(args.send_fraction, "given with --send-fraction")
        elif args.send_fraction_from is not None:
            measured = fraction_from_file(args.send_fraction_from)
        elif args.from_run is not None:
            measured = fraction_from_file(args.from_run)
        else:
            return 0
        cost = event_cost(measured.fraction, load_price_set(STUDY_PRICE_SET))
    except SendFractionError as exc:
        if args.send_fraction is None and args.send_fraction_from is None:
            return 0  # a run file from a sampler without a send fraction: nothing more to say
        print(f"error: {str(exc).rstrip('.')}.", file=sys.stderr)
        return EXIT_USAGE
    console.print(cost.sentence(measured.source), markup=False)
    if measured.sent_per_s is not None:
        console.print(rate_sentence(measured.sent_per_s, load_price_set(STUDY_PRICE_SET)), markup=False)
    return 0


def _print_event_options(console: Console, scenario: Scenario, prices: PriceSet, event_hours: float) -> None:
    from rich.table import Table

    from cost_model.after_event import event_options

    table = Table(title=f"One {event_hours:g}-hour event: live frames against its recordings afterwards")
    for column in ("how", "billed", "USD"):
        table.add_column(column, justify="right" if column == "USD" else "left")
    for option in event_options(scenario, prices, event_hours):
        table.add_row(option.name, option.quantity, f"{option.usd:,.2f}" + (" (unsure)" if option.unsure else ""))
    console.print(table)


def run(args: argparse.Namespace) -> int:
    """The console command's per-module hook."""
    return run_cost(args)


def _closing_lines(scenario: Scenario, prices: PriceSet, estimates: list[ArchitectureEstimate]) -> list[str]:
    lines = []
    breakeven = rekognition_vs_endpoint(scenario, prices)
    if breakeven is None:
        lines.append(f"Break-even: set '{prices.name}' lacks the Rekognition or the "
                     f"sagemaker.{scenario.sagemaker_instance} price.")
    else:
        lines.append(breakeven.sentence())
    if "cloud-video-rekognition" in scenario.architectures and not any(REKOGNITION_STREAMING_CLOSED in e.notes
                                                                       for e in estimates):
        lines.append(REKOGNITION_STREAMING_CLOSED)
    lines.append(what_this_means(estimates))
    return lines


def _write_chart(out: Path, scenario: Scenario, prices: PriceSet, estimates: list[ArchitectureEstimate],
                 closing: list[str], console: Console) -> None:
    from hybridcam.cost.chart import render_html, render_png, sampling_curve

    curve = sampling_curve(scenario, prices)
    png = render_png(curve, scenario, out / "cost.png")
    page = render_html(png, estimates, [prices.provenance_line(), *closing], out / "cost.html")
    console.print(f"chart: {png} and {page} (self-contained)")
