"""Monthly cost of each architecture for one scenario and one price set.

Each architecture is a list of line items (quantity x tiered price). A line item whose price
is missing from the price set is listed as unpriced rather than silently counted as zero.
GB means 10^9 bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cost_model.price_sets import PriceSet
from cost_model.scenario import ARCHITECTURES, MIB, Scenario

GB = 1e9
KIB = 1024
SHARD_WRITE_BYTES_PER_S = 1 * MIB
SHARD_WRITE_RECORDS_PER_S = 1000
DYNAMODB_WRITE_UNIT_BYTES = 1000
DYNAMODB_READ_UNIT_BYTES = 4000
RESULT_ITEM_BYTES = 600  # detections JSON for one frame, one DynamoDB item
DAYS_PER_STORAGE_MONTH = 30.0
FRAME_ITEM_WRITES = 2
"""the detector writes each frame item, then marks its result sent (detector_lambda/pipeline.py)"""
FRAME_TABLE_INDEXES = 2
"""camera-latest and site-latest project every attribute: each write of a frame item lands in both"""
ALERT_ITEM_WRITES = 2
"""an alerted frame's item is marked with its claims and then alerts_done, each write also in site-alerts"""
ALERT_CLAIM_WRITES = 2
"""the cooldown claim item: the conditional put, then its publishing mark"""
REKOGNITION_STREAMING_CLOSED = (
    "Rekognition streaming video stream processors closed to new customers on 2026-04-30: only accounts "
    "that used them in the 12 months before can still create them."
)


@dataclass(frozen=True)
class CloudLoad:
    """What one month sends through the sampled cloud frame path."""

    frames: float
    records: float
    bytes_sent: float
    invocations: float
    alerts: float
    peak_records_per_s: float
    peak_bytes_per_s: float

    @property
    def record_bytes(self) -> float:
        return self.bytes_sent / self.records if self.records else 0.0

    @property
    def peak_frames_per_s(self) -> float:
        return self.peak_records_per_s * (self.frames / self.records) if self.records else 0.0


@dataclass(frozen=True)
class LineItem:
    name: str
    price_key: str
    quantity: float
    unit: str
    usd: float


@dataclass
class ArchitectureEstimate:
    key: str
    title: str
    camera_hours: float
    items: list[LineItem] = field(default_factory=list)
    unpriced: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> float:
        return sum(item.usd for item in self.items)

    @property
    def per_camera_hour(self) -> float:
        return self.total / self.camera_hours if self.camera_hours else 0.0

    def item(self, name: str) -> LineItem | None:
        return next((i for i in self.items if i.name == name), None)


class _Bill:
    """Collects line items for one architecture against one price set."""

    def __init__(self, estimate: ArchitectureEstimate, prices: PriceSet) -> None:
        self.estimate = estimate
        self.prices = prices

    def charge(self, name: str, price_key: str, quantity: float) -> None:
        item = self.prices.get(price_key)
        if item is None:
            if price_key not in self.estimate.unpriced:
                self.estimate.unpriced.append(price_key)
            return
        self.estimate.items.append(LineItem(name, price_key, quantity, item.unit, item.cost(quantity)))

    def add(self, name: str, quantity: float, unit: str, usd: float) -> None:
        """A line item priced by the scenario itself (edge hardware, electricity)."""
        self.estimate.items.append(LineItem(name, "scenario", quantity, unit, usd))


def scenario_load(scenario: Scenario, sending_cameras: int) -> CloudLoad:
    """The cloud frame path load when `sending_cameras` send `sampled_fps` each during active hours."""
    frames_per_s = sending_cameras * scenario.sampled_fps
    active_seconds = scenario.active_hours * 3600
    frames = frames_per_s * active_seconds
    jpeg_bytes = scenario.uplink_jpeg_bytes(sending_cameras)
    return CloudLoad(
        frames=frames,
        records=frames,
        bytes_sent=frames * jpeg_bytes,
        invocations=math.ceil(frames / scenario.lambda_batch_size),
        alerts=scenario.alerts_per_camera_hour * sending_cameras * scenario.active_hours,
        peak_records_per_s=frames_per_s,
        peak_bytes_per_s=frames_per_s * jpeg_bytes,
    )


def kinesis_shards(load: CloudLoad) -> int:
    """Shards needed for the write load: 1 MiB/s and 1,000 records/s per shard."""
    by_bytes = math.ceil(load.peak_bytes_per_s / SHARD_WRITE_BYTES_PER_S)
    by_records = math.ceil(load.peak_records_per_s / SHARD_WRITE_RECORDS_PER_S)
    return max(1, by_bytes, by_records)


def _kinesis(bill: _Bill, scenario: Scenario, load: CloudLoad) -> None:
    hours = scenario.provisioned_hours_per_month
    if scenario.kinesis_mode == "provisioned":
        shards = kinesis_shards(load)
        bill.charge("Kinesis shard-hours", "kinesis.shard_hour", shards * hours)
        bill.estimate.notes.append(
            f"Kinesis: {shards} shard(s) for {load.peak_records_per_s:,.3g} records/s and "
            f"{load.peak_bytes_per_s / MIB:,.3g} MiB/s (1,000 records/s and 1 MiB/s per shard)."
        )
        unit = bill.prices.get("kinesis.put_payload_unit")
        unit_bytes = unit.unit_bytes if unit and unit.unit_bytes else 25 * KIB
        units_per_record = max(1, math.ceil(load.record_bytes / unit_bytes))
        bill.charge("Kinesis PUT payload units", "kinesis.put_payload_unit", load.records * units_per_record)
        return
    billed_bytes = load.records * math.ceil(load.record_bytes / KIB) * KIB
    bill.charge("Kinesis on-demand stream-hours", "kinesis.on_demand_stream_hour", hours)
    bill.charge("Kinesis on-demand data in", "kinesis.on_demand_ingest_gb", billed_bytes / GB)
    bill.charge("Kinesis on-demand data out", "kinesis.on_demand_retrieval_gb", billed_bytes / GB)


def _sagemaker_endpoint(bill: _Bill, scenario: Scenario, frames_per_s: float, bytes_in: float) -> int:
    instances = max(1, math.ceil(frames_per_s / scenario.sagemaker_fps_capacity))
    bill.estimate.notes.append(f"SageMaker: {instances} x {scenario.sagemaker_instance} for {frames_per_s:,.3g} frames/s.")
    bill.charge(
        "SageMaker endpoint instance-hours",
        f"sagemaker.{scenario.sagemaker_instance}",
        instances * scenario.provisioned_hours_per_month,
    )
    bill.charge("SageMaker data processed", "sagemaker.data_processed_gb", bytes_in / GB)
    return instances


def frame_path(bill: _Bill, scenario: Scenario, load: CloudLoad) -> None:
    """Kinesis Data Streams -> Lambda -> detector, frames to S3, results to DynamoDB."""
    _kinesis(bill, scenario, load)
    bill.charge("Lambda requests", "lambda.requests", load.invocations)
    gb_seconds = load.frames * scenario.lambda_ms_per_frame / 1000 * scenario.lambda_memory_mb / 1024
    bill.charge("Lambda GB-seconds", "lambda.gb_seconds", gb_seconds)
    if scenario.detector == "rekognition":
        bill.charge("Rekognition DetectLabels", "rekognition.detect_labels", load.frames)
    else:
        _sagemaker_endpoint(bill, scenario, load.peak_frames_per_s, load.bytes_sent)
    stored = {"all": load.frames, "alerts": min(load.alerts, load.frames), "none": 0.0}[scenario.store_frames]
    if stored:
        bill.charge("S3 PUT requests", "s3.put_request", stored)
        stored_gb = stored * (load.bytes_sent / load.frames if load.frames else 0) / GB
        bill.charge("S3 storage", "s3.storage_gb_month", stored_gb * scenario.s3_retention_days / DAYS_PER_STORAGE_MONTH)
    write_units = math.ceil(RESULT_ITEM_BYTES / DYNAMODB_WRITE_UNIT_BYTES)
    alerted = min(load.alerts, load.frames)
    frame_writes = load.frames * FRAME_ITEM_WRITES * (1 + FRAME_TABLE_INDEXES) * write_units
    alert_writes = alerted * (ALERT_ITEM_WRITES * (2 + FRAME_TABLE_INDEXES) * write_units + ALERT_CLAIM_WRITES)
    bill.charge("DynamoDB writes", "dynamodb.write_request_unit", frame_writes + alert_writes)
    bill.estimate.notes.append(
        f"DynamoDB: each frame item is written {FRAME_ITEM_WRITES} times (stored, result sent), each write also into "
        f"the frames table's {FRAME_TABLE_INDEXES} indexes; an alerted frame {ALERT_ITEM_WRITES} times more (also into "
        f"the site-alerts index) and its cooldown claim {ALERT_CLAIM_WRITES} times.")
    if scenario.face_search and scenario.detector == "rekognition":
        face_watch_list(bill, scenario, load)


def face_watch_list(bill: _Bill, scenario: Scenario, load: CloudLoad) -> None:
    """DetectFaces on each marked frame, SearchFacesByImage per searchable face, the collection's stored faces."""
    marked = load.frames * scenario.face_frame_share
    bill.charge("Rekognition DetectFaces", "rekognition.detect_faces", marked)
    bill.charge("Rekognition SearchFacesByImage", "rekognition.search_faces_by_image", marked * scenario.faces_per_face_frame)
    bill.charge("Rekognition face storage", "rekognition.face_storage_month", scenario.enrolled_faces)
    bill.estimate.notes.append(
        f"Face watch-list: {scenario.face_frame_share:.0%} of sampled frames searched, "
        f"{scenario.faces_per_face_frame:g} face(s) each, {scenario.enrolled_faces} enrolled face(s); match items not counted.")


def results_and_alerts(bill: _Bill, scenario: Scenario, alerts: float, result_writes: float = 0.0) -> None:
    """SNS alerts and result reads through the HTTP API (DynamoDB reads); optional result writes."""
    if result_writes:
        bill.charge("DynamoDB writes", "dynamodb.write_request_unit", result_writes)
    if scenario.alert_channel != "none" and alerts:
        bill.charge("SNS publishes", "sns.publish_request", alerts)
        if scenario.alert_channel in {"email", "both"}:
            bill.charge("SNS email", "sns.email", alerts)
        if scenario.alert_channel in {"sms", "both"}:
            bill.charge("SNS SMS", "sns.sms_us", alerts)
    reads = scenario.api_reads_per_day * scenario.days_per_month
    if reads:
        bill.charge("API reads (HTTP API)", "apigateway.http_request", reads)
        read_units = math.ceil(RESULT_ITEM_BYTES / DYNAMODB_READ_UNIT_BYTES)
        bill.charge("DynamoDB reads", "dynamodb.read_request_unit", reads * read_units)


def super_resolution(bill: _Bill, scenario: Scenario, load: CloudLoad) -> None:
    """The thin uplink's cloud side: the endpoint before the detector, the trainer, the patch sets in S3."""
    hours = scenario.provisioned_hours_per_month
    bill.charge("Super-resolution endpoint instance-hours", f"sagemaker.{scenario.sr_instance}", hours)
    bill.charge("SageMaker data processed (super-resolution)", "sagemaker.data_processed_gb", load.bytes_sent / GB)
    bill.charge("Super-resolution trainer vCPU-hours", "fargate.vcpu_hour", scenario.sr_trainer_vcpu * hours)
    bill.charge("Super-resolution trainer GB-hours", "fargate.gb_hour", scenario.sr_trainer_gb * hours)
    bill.charge("S3 PUT requests (patch sets)", "s3.put_request",
                scenario.master_count * scenario.sr_patch_sets_per_hour * scenario.active_hours)
    bill.estimate.notes.append(
        f"Super-resolution: 1 x {scenario.sr_instance} endpoint and a {scenario.sr_trainer_vcpu:g} vCPU / "
        f"{scenario.sr_trainer_gb:g} GB Fargate trainer, {hours:,.0f} h a month; priced, not measured on AWS.")


CONSOLE_ROUTES_PER_SITE = 3
"""a refresh reads /sites once and each site's frames, alerts and events"""
CONSOLE_PICTURES_PER_SITE = 8
"""frames the page shows per site, each a presigned S3 picture; a refresh fetches those of new frames only"""
CONSOLE_LAMBDA_MS = 150.0
CONSOLE_LAMBDA_MB = 256
CONSOLE_READ_UNITS = 3.0
"""read units per console request: a Query of a dozen 1-2 KB items, strongly consistent"""


def fleet_console(bill: _Bill, scenario: Scenario, load: CloudLoad) -> None:
    """The fleet console while someone has it open: HTTP API -> console Lambda -> DynamoDB Queries, pictures from S3."""
    refreshes = scenario.console_viewer_hours * 3600 / scenario.console_refresh_s
    requests = refreshes * (1 + CONSOLE_ROUTES_PER_SITE * scenario.console_sites)
    bill.charge("Console API requests (HTTP API)", "apigateway.http_request", requests)
    bill.charge("Console Lambda requests", "lambda.requests", requests)
    bill.charge("Console Lambda GB-seconds", "lambda.gb_seconds",
                requests * CONSOLE_LAMBDA_MS / 1000 * CONSOLE_LAMBDA_MB / 1024)
    bill.charge("Console DynamoDB reads", "dynamodb.read_request_unit", requests * CONSOLE_READ_UNITS)
    frames_per_s = load.frames / (scenario.active_hours * 3600) if scenario.active_hours else 0.0
    new_per_refresh = min(float(CONSOLE_PICTURES_PER_SITE), frames_per_s * scenario.console_refresh_s)
    pictures = refreshes * scenario.console_sites * new_per_refresh
    jpeg_bytes = load.bytes_sent / load.frames if load.frames else 0.0
    bill.charge("Console picture GETs (S3)", "s3.get_request", pictures)
    bill.charge("Console pictures out (data transfer)", "datatransfer.out_gb", pictures * jpeg_bytes / GB)
    bill.estimate.notes.append(
        f"Fleet console: {scenario.console_viewer_hours:,.0f} viewer-hours a month, {scenario.console_sites} site(s), "
        f"a refresh every {scenario.console_refresh_s:g} s fetching the pictures of {new_per_refresh:.1f} new frame(s) "
        f"per site (of the {CONSOLE_PICTURES_PER_SITE} shown), as many sites as the scenario's; Lambda {CONSOLE_LAMBDA_MS:g} ms per request assumed, "
        f"not measured on AWS. Cognito (a few administrators, inside its free monthly active users) and CloudFront "
        f"(the page, a few KB a load) not priced.")


def live_channel(bill: _Bill, scenario: Scenario) -> None:
    """The program to many viewers: MediaLive input and output hours, MediaPackage ingest and egress."""
    hours = scenario.active_hours
    bill.charge("MediaLive input hours (RTMP, HD)", "medialive.input_hd_hour", hours)
    bill.charge("MediaLive output hours (HD AVC)", "medialive.output_hd_hour", hours)
    gb_per_hour = scenario.live_bitrate_mbps * 1e6 / 8 * 3600 / GB
    bill.charge("MediaPackage ingest", "mediapackage.ingest_gb", gb_per_hour * hours)
    if scenario.live_viewer_hours:
        bill.charge("MediaPackage egress to viewers", "mediapackage.egress_gb", gb_per_hour * scenario.live_viewer_hours)
        bill.charge("Data transfer out to viewers", "datatransfer.out_gb", gb_per_hour * scenario.live_viewer_hours)
    bill.estimate.notes.append(
        f"Live channel: {scenario.live_bitrate_mbps:g} Mbps for {hours:,.0f} h a month, "
        f"{scenario.live_viewer_hours:,.0f} viewer-hours.")


def _video_stream_ingest(bill: _Bill, scenario: Scenario, consumed: bool = True) -> float:
    video_gb = scenario.cameras * scenario.bitrate_bits_per_s / 8 * scenario.active_hours * 3600 / GB
    bill.charge("KVS ingest", "kvs.ingest_gb", video_gb)
    bill.estimate.notes.append(
        f"KVS: {scenario.cameras} stream(s) at {scenario.bitrate_bits_per_s / 1e6:,.3g} Mbps, {video_gb:,.1f} GB a month."
    )
    if consumed:
        bill.charge("KVS consumed (GetMedia)", "kvs.consumed_gb", video_gb)
    return video_gb


def _edge_box(bill: _Bill, scenario: Scenario, label: str, usd: float, months: float, watts: float, per_box: int) -> None:
    boxes = scenario.boxes(per_box)
    bill.add(f"{label} amortised", boxes, "box-month", boxes * usd / months)
    kwh = boxes * watts / 1000 * scenario.provisioned_hours_per_month
    bill.add(f"{label} electricity", kwh, "kWh", kwh * scenario.electricity_usd_per_kwh)
    bill.estimate.notes.append(
        f"{label}: {boxes} x {usd:,.0f} USD over {months:g} months, {watts:g} W at "
        f"{scenario.electricity_usd_per_kwh:g} USD/kWh."
    )


def _analysed_frames(scenario: Scenario) -> tuple[float, float]:
    """All cameras' sampled frames per month and per second (what a cloud video analyser looks at)."""
    per_s = scenario.cameras * scenario.sampled_fps
    return per_s * scenario.active_hours * 3600, per_s


def _alerts_all_cameras(scenario: Scenario) -> float:
    return scenario.alerts_per_camera_hour * scenario.camera_hours


def estimate_architecture(
    key: str, scenario: Scenario, prices: PriceSet, measured_load: CloudLoad | None = None
) -> ArchitectureEstimate:
    estimate = ArchitectureEstimate(key, ARCHITECTURES[key], scenario.camera_hours)
    bill = _Bill(estimate, prices)
    if key == "cloud-frames":
        load = scenario_load(scenario, scenario.cameras)
        frame_path(bill, scenario, load)
        results_and_alerts(bill, scenario, load.alerts)
        estimate.notes.append("Capture boxes that push frames to Kinesis and internet egress are not counted.")
    elif key == "cloud-video-sagemaker":
        _video_stream_ingest(bill, scenario)
        frames, per_s = _analysed_frames(scenario)
        _sagemaker_endpoint(bill, scenario, per_s, frames * scenario.jpeg_bytes)
        results_and_alerts(bill, scenario, _alerts_all_cameras(scenario), result_writes=frames)
        estimate.notes.append("The consumer that decodes KVS fragments and calls the endpoint is not counted.")
    elif key == "cloud-video-ec2":
        _video_stream_ingest(bill, scenario)
        frames, per_s = _analysed_frames(scenario)
        instances = max(1, math.ceil(per_s / scenario.gpu_fps_capacity))
        estimate.notes.append(f"EC2: {instances} x {scenario.gpu_instance} for {per_s:,.3g} frames/s.")
        bill.charge(
            "EC2 GPU instance-hours",
            f"ec2.{scenario.gpu_instance}",
            instances * scenario.provisioned_hours_per_month,
        )
        results_and_alerts(bill, scenario, _alerts_all_cameras(scenario), result_writes=frames)
    elif key == "cloud-video-rekognition":
        _video_stream_ingest(bill, scenario, consumed=False)
        minutes = scenario.camera_hours * 60
        bill.charge("Rekognition stream processor minutes", "rekognition.streaming_video_minute", minutes)
        results_and_alerts(bill, scenario, _alerts_all_cameras(scenario))
        estimate.notes.append(REKOGNITION_STREAMING_CLOSED)
    elif key == "hybrid":
        _edge_box(bill, scenario, "Edge box", scenario.edge_box_usd, scenario.edge_box_life_months,
                  scenario.edge_box_watts, scenario.cameras_per_edge_box)
        load = measured_load if measured_load is not None else scenario_load(scenario, scenario.master_count)
        frame_path(bill, scenario, load)
        alerts = load.alerts if measured_load is not None else _alerts_all_cameras(scenario)
        results_and_alerts(bill, scenario, alerts)
        if scenario.uplink_kbps is not None and measured_load is None:
            estimate.notes.append(f"Uplink: {scenario.uplink_kbps:g} kbit/s; each sampled frame about "
                                  f"{scenario.uplink_jpeg_bytes(scenario.master_count) / 1000:,.1f} KB.")
        if scenario.super_resolution:
            super_resolution(bill, scenario, load)
        if scenario.live_channel:
            live_channel(bill, scenario)
        if scenario.console_viewer_hours:
            fleet_console(bill, scenario, load)
        if measured_load is not None:
            estimate.notes.append("Cloud path projected from a measured pipeline run.")
    elif key == "edge-only":
        _edge_box(bill, scenario, "Edge GPU box", scenario.edge_gpu_box_usd, scenario.edge_gpu_box_life_months,
                  scenario.edge_gpu_box_watts, scenario.cameras_per_edge_gpu_box)
        estimate.notes.append("No cloud: alerts and result reads stay on site.")
    else:  # pragma: no cover - Scenario validates architecture names
        raise KeyError(key)
    return estimate


def estimate_all(
    scenario: Scenario, prices: PriceSet, measured_load: CloudLoad | None = None
) -> list[ArchitectureEstimate]:
    return [estimate_architecture(key, scenario, prices, measured_load) for key in scenario.architectures]
