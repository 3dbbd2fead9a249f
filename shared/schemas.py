"""Typed, versioned messages that travel on the streams, encoded with msgpack.

Every envelope is a msgpack map ``{"schema": <name>, "v": <version>, ...fields}``.
A reader that meets an unknown schema or version, or a malformed body, gets a
:class:`SchemaError`; the stream bus counts it and moves the entry to the dead-letter
stream. Never pickle: a message is data, not code.
"""

from __future__ import annotations

import base64
import re
import time
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args

import msgpack
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import describe_validation_error


class SchemaError(ValueError):
    """A message that cannot be decoded into a known schema."""


# Ranges every decoded message must respect. A value outside them (inf, NaN, a timestamp in
# the year 5000, a box a million pixels wide) would crash or mislead a consumer further on,
# so it is refused at decode and the entry is dead-lettered instead.
MAX_EPOCH_S = 4_102_444_800.0  # 2100-01-01
MAX_PIXELS_SIDE = 16_384
MAX_COORDINATE = 1_000_000.0
MAX_SEQ = 2**62
MAX_RING_SLOTS = 4096
MAX_NESTING = 16  # deeper msgpack is not a message of ours
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # a 4K JPEG fits many times over; bigger is not a message of ours

Timestamp = Annotated[float, Field(ge=0.0, le=MAX_EPOCH_S, allow_inf_nan=False)]
Side = Annotated[int, Field(gt=0, le=MAX_PIXELS_SIDE)]
SeqNumber = Annotated[int, Field(ge=0, le=MAX_SEQ)]
MAX_NAME_CHARS = 255  # Rekognition's ExternalImageId limit; also ids of sites, cameras and frames
BoundedName = Annotated[str, Field(max_length=MAX_NAME_CHARS)]
"""ids that become DynamoDB keys and S3 keys in the cloud: bounded, so a hostile message cannot make one too long"""
Score = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
Coordinate = Annotated[float, Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE, allow_inf_nan=False)]
Milliseconds = Annotated[float, Field(ge=0.0, le=MAX_EPOCH_S * 1000.0, allow_inf_nan=False)]


class Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_name: ClassVar[str]
    schema_version: ClassVar[int] = 1

    def encode(self) -> bytes:
        body = self.model_dump(mode="python")
        body["schema"] = self.schema_name
        body["v"] = self.schema_version
        return msgpack.packb(body, use_bin_type=True)


def utc_iso(ts: float) -> str:
    """UTC epoch seconds as ISO 8601 with milliseconds and a Z (how items and pages show capture times)."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def frame_id_of(camera_id: str, seq: int, capture_ts: float) -> str:
    """Globally unique id of one captured frame (sequence numbers restart with capture)."""
    return f"{camera_id}-{int(capture_ts * 1000)}-{seq}"


class FrameRef(Envelope):
    """A captured frame: where its pixels are, never the pixels themselves on the same host.

    ``shm_name``/``slot`` point into the camera's shared-memory ring; ``jpeg`` carries an
    encoded copy only for consumers on another host.
    """

    schema_name: ClassVar[str] = "frame_ref"

    camera_id: str
    seq: SeqNumber
    capture_ts: Timestamp = Field(description="UTC epoch seconds when the frame was captured")
    width: Side
    height: Side
    shm_name: str | None = None
    slot: int | None = Field(None, ge=0, lt=MAX_RING_SLOTS)
    jpeg: bytes | None = None

    @property
    def frame_id(self) -> str:
        return frame_id_of(self.camera_id, self.seq, self.capture_ts)


# What a tracked person does (edge pose stage, vision/actions.py). A rule condition such as
# ``action: fall`` matches a detection whose ``actions`` holds that name (docs/actions.md).
ActionName = Literal["fall", "lying", "running", "loitering", "hands_raised"]
ACTION_NAMES: tuple[str, ...] = get_args(ActionName)
POSE_KEYPOINTS = 17  # COCO order, as MoveNet gives them: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles


class PersonKeypoints(BaseModel):
    """One person's pose: 17 keypoints (x, y in frame pixels, score), estimated on the frame captured at ``ts``."""

    model_config = ConfigDict(frozen=True)

    keypoints: list[tuple[Coordinate, Coordinate, Score]] = Field(min_length=POSE_KEYPOINTS, max_length=POSE_KEYPOINTS)
    score: Score
    ts: Timestamp = Field(description="capture time of the frame the pose was estimated on (older on carried boxes)")


class Detection(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    class_id: int = -1
    score: Score
    box: tuple[Coordinate, Coordinate, Coordinate, Coordinate] = Field(description="x1, y1, x2, y2 in frame pixels")
    tracked: bool = Field(False, description="carried forward by the tracker onto a frame the detector skipped")
    track_id: int | None = None
    pose: PersonKeypoints | None = Field(None, description="the tracked person's latest keypoints (edge pose stage)")
    actions: list[ActionName] = Field(default_factory=list, max_length=len(ACTION_NAMES),
                                      description="what the tracked person does now (edge action classifier)")


DetectionSource = Literal["edge", "cloud"]


class DetectionSet(Envelope):
    """Everything one detector found in one frame, or (tracked=True) the tracker's boxes on a frame
    the detector skipped.

    v2 added ``tracked`` here and ``tracked``/``track_id`` on each Detection, all with defaults,
    so v1 messages still decode (as untracked). v3 added ``pose`` and ``actions`` on each Detection,
    with defaults, so v1 and v2 messages still decode (without poses or actions).
    """

    schema_name: ClassVar[str] = "detection_set"
    schema_version: ClassVar[int] = 3

    camera_id: str
    seq: SeqNumber
    frame_id: str
    capture_ts: Timestamp
    width: Side
    height: Side
    source: DetectionSource = "edge"
    model: str
    provider: str
    latency_ms: Milliseconds = Field(description="capture to detections published")
    inference_ms: Milliseconds = 0.0
    detections: list[Detection] = Field(default_factory=list)
    published_ts: Timestamp = Field(default_factory=time.time)
    tracked: bool = Field(False, description="every box carried forward by the tracker: the detector did not run")

    def count(self, label: str) -> int:
        return sum(1 for d in self.detections if d.label == label)


HealthState = Literal["starting", "ok", "degraded", "reconnecting", "failed", "stopped"]


class Health(Envelope):
    """A periodic report of a service's (or one camera's) state and counters."""

    schema_name: ClassVar[str] = "health"

    service: str
    instance: str
    state: HealthState
    ts: Timestamp = Field(default_factory=time.time)
    camera_id: str | None = None
    message: str = ""
    counters: dict[str, float] = Field(default_factory=dict)


MAX_FRAME_TRACKS = 256
Unit = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
TRACK_SAME_IOU = 0.3
"""a cloud box overlapping an edge track's box at least this much (IoU) is that object ..."""
TRACK_INSIDE = 0.6
"""... and so is one lying at least this much inside it (a part of it: a face, a hard hat, a bag)"""


class FrameTrack(BaseModel):
    """An object the edge tracks in a sampled frame: what the cloud finds over its box is about it."""

    model_config = ConfigDict(frozen=True)

    track_id: int = Field(ge=0, le=MAX_SEQ)
    label: str = Field(max_length=64)
    box: tuple[Unit, Unit, Unit, Unit] = Field(description="x1, y1, x2, y2 normalised to the frame (0..1)")


class CloudFrame(Envelope):
    """One sampled master frame on its way to the cloud (a Kinesis record).

    The JPEG travels inline when it fits the record limit; otherwise it was put in S3
    first and only ``s3_bucket``/``s3_key`` travel (claim-check).

    v2 added ``tracks`` (the edge's tracked objects in the frame, so the cloud's answer can name
    them: its detections carry their ``track_id``); v1 messages still decode, with no tracks.
    """

    schema_name: ClassVar[str] = "cloud_frame"
    schema_version: ClassVar[int] = 2

    site: BoundedName
    frame_id: BoundedName
    camera_id: BoundedName
    seq: SeqNumber
    capture_ts: Timestamp
    sampled_ts: Timestamp = Field(default_factory=time.time)
    width: Side
    height: Side
    jpeg: bytes | None = None
    s3_bucket: str | None = None
    s3_key: str | None = None
    face_candidate: bool = Field(False, description="the edge saw a person large enough to hold a searchable face")
    tracks: list[FrameTrack] = Field(default_factory=list, max_length=MAX_FRAME_TRACKS)
    shrink_factor: int = Field(1, ge=1, le=8, description="the uplink budget shrank the frame by this factor (v2)")
    jpeg_quality: int = Field(0, ge=0, le=100, description="JPEG quality it was sent at; 0 = not said (v2)")

    def track_of(self, box: tuple[float, float, float, float]) -> int | None:
        """The edge track a cloud box (frame pixels) is about: the best overlap, or the box it lies inside."""
        x0, y0, x1, y1 = box[0] / self.width, box[1] / self.height, box[2] / self.width, box[3] / self.height
        area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
        best, best_value = None, 0.0
        for track in self.tracks:
            tx0, ty0, tx1, ty1 = track.box
            inter = max(0.0, min(x1, tx1) - max(x0, tx0)) * max(0.0, min(y1, ty1) - max(y0, ty0))
            union = area + max(0.0, tx1 - tx0) * max(0.0, ty1 - ty0) - inter
            overlap = inter / union if union > 0 else 0.0
            inside = inter / area if area > 0 else 0.0
            value = 1.0 + overlap if overlap >= TRACK_SAME_IOU else (inside if inside >= TRACK_INSIDE else 0.0)
            if value > best_value:
                best, best_value = track.track_id, value
        return best


class CloudResult(Envelope):
    """What the cloud found in one sampled frame; goes back to the edge through SQS.

    A detection over an object the edge tracked in that frame (CloudFrame v2 ``tracks``) carries its
    ``track_id``, so the edge keeps the cloud's label on that object for as long as it tracks it.
    """

    schema_name: ClassVar[str] = "cloud_result"

    site: BoundedName
    frame_id: BoundedName
    camera_id: BoundedName
    seq: SeqNumber
    capture_ts: Timestamp
    processed_ts: Timestamp
    width: Side
    height: Side
    backend: Literal["rekognition", "sagemaker"]
    model: str
    detections: list[Detection] = Field(default_factory=list)
    s3_key: str = ""
    alerts: list[str] = Field(default_factory=list, description="labels that raised an alert")


class Alert(Envelope):
    """A watched label the cloud found in a frame (already sent by SNS); one per label and frame."""

    schema_name: ClassVar[str] = "alert"

    site: str
    camera_id: str
    frame_id: str
    label: str
    score: Score = Field(description="best confidence of the label in the frame")
    capture_ts: Timestamp
    raised_ts: Timestamp = Field(description="UTC epoch seconds when the cloud processed the frame")
    s3_key: str = ""


class CloudConfirmRequest(Envelope):
    """A rule's matching frame the edge wants the cloud to confirm at once, outside the sampling budget
    (the events service asks; the sampler sends it as a CloudFrame, counted as reason ``rule_confirm``)."""

    schema_name: ClassVar[str] = "cloud_confirm_request"

    site: str
    event_id: str = Field(min_length=1, max_length=64)
    rule: str = Field(min_length=1, max_length=48)
    camera_id: str
    frame_id: str
    seq: SeqNumber
    capture_ts: Timestamp
    width: Side
    height: Side
    jpeg: bytes = Field(min_length=1)
    labels: list[str] = Field(default_factory=list, max_length=32, description="labels that confirm the event")


FACE_MATCH_KIND = "face_match"  # DynamoDB "kind" of a watch-list match item (written by the Lambda, removed by `faces remove`)
_EXTERNAL_ID = re.compile(r"^[a-zA-Z0-9_.\-:]{1,255}$")


def face_external_id(person: str) -> str:
    """A person's name as Rekognition's ExternalImageId (spaces become underscores); ValueError if it cannot be one."""
    external_id = "_".join(person.strip().split())
    if not _EXTERNAL_ID.match(external_id):
        raise ValueError(f"the name {person!r} may use only letters, digits, spaces and . _ - : (at most 255 characters).")
    return external_id


def face_person(external_id: str) -> str:
    """The person's name back from an ExternalImageId."""
    return external_id.replace("_", " ")


# Bounds of a watch-list message: it crosses the cloud boundary and ends up drawn on the program and
# in the page's JSON, so every number must be finite and every list and string short.
MAX_FACE_MATCHES = 64  # faces matched in one frame
MAX_FACE_CROP_BYTES = 64 * 1024  # the Lambda's thumbnail is a 96 px JPEG of a few KB
Similarity = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]


class FaceMatch(BaseModel):
    """One face in a frame that matched a person on the watch list."""

    model_config = ConfigDict(frozen=True)

    person: BoundedName
    face_id: str = Field(max_length=128, description="the collection's id of the enrolled face it matched")
    similarity: Similarity
    box: tuple[Coordinate, Coordinate, Coordinate, Coordinate] = Field(description="x1, y1, x2, y2 of the face in frame pixels")
    crop_jpeg: bytes | None = Field(None, max_length=MAX_FACE_CROP_BYTES,
                                    description="small JPEG of the face, for the operator's watch-list panel")


class FaceMatches(Envelope):
    """Watch-list hits of one cloud frame; sent to the edge on the results queue beside its CloudResult."""

    schema_name: ClassVar[str] = "face_matches"

    site: BoundedName
    frame_id: BoundedName
    camera_id: BoundedName
    seq: SeqNumber
    capture_ts: Timestamp
    processed_ts: Timestamp
    width: Side
    height: Side
    matches: list[FaceMatch] = Field(default_factory=list, max_length=MAX_FACE_MATCHES)
    alerts: list[BoundedName] = Field(default_factory=list, max_length=MAX_FACE_MATCHES,
                                      description="people whose alert this frame raised")


MAX_PATCHES = 256
MAX_PATCH_BYTES = 256 * 1024


class UplinkPatch(BaseModel):
    """A piece of a frame at full quality, where the uplink's compression hurt most (shared/uplink.py)."""

    model_config = ConfigDict(frozen=True)

    capture_ts: Timestamp
    x: Annotated[int, Field(ge=0, le=MAX_PIXELS_SIDE)]
    y: Annotated[int, Field(ge=0, le=MAX_PIXELS_SIDE)]
    jpeg: bytes = Field(max_length=MAX_PATCH_BYTES)
    distortion: Annotated[float, Field(ge=0.0, le=1e6, allow_inf_nan=False)]
    """the patch's squared error after the uplink, as a multiple of its frame's"""


class PatchSet(Envelope):
    """Patches of one master camera's frames for the cloud's super-resolution trainer (an S3 object)."""

    schema_name: ClassVar[str] = "patch_set"

    site: str = Field(max_length=128)
    camera_id: str = Field(max_length=128)
    frame_width: Side
    frame_height: Side
    shrink_factor: int = Field(ge=2, le=8, description="the uplink shrinks frames by this factor ...")
    uplink_jpeg_quality: int = Field(ge=1, le=100, description="... and compresses them at this JPEG quality")
    patches: list[UplinkPatch] = Field(max_length=MAX_PATCHES)


SITE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""a site or server id the fleet console can name in a URL: letters, digits, '.', '_', '-'; at most 64"""
MAX_HEARTBEAT_CAMERAS = 64
MAX_HEARTBEAT_SERVICES = 32
ShortText = Annotated[str, Field(max_length=200)]
Name = Annotated[str, Field(min_length=1, max_length=128)]


class CameraState(BaseModel):
    """One camera's latest state as the site's health stream reported it."""

    model_config = ConfigDict(frozen=True)

    camera_id: Name
    state: HealthState
    message: ShortText = ""


class ServiceState(BaseModel):
    """One service instance's latest state, and how old that report was when the heartbeat left."""

    model_config = ConfigDict(frozen=True)

    service: Name
    instance: Name
    state: HealthState
    message: ShortText = ""
    age_s: float = Field(0.0, ge=0.0, le=MAX_EPOCH_S, allow_inf_nan=False)


class Heartbeat(Envelope):
    """A small periodic summary of one edge server's health, sent through the cloud path (a Kinesis record)
    for the fleet console. The cloud marks the server stale when heartbeats stop (docs/fleet-console.md)."""

    schema_name: ClassVar[str] = "heartbeat"

    site: str = Field(pattern=SITE_ID_PATTERN)
    server: str = Field(pattern=SITE_ID_PATTERN)
    sent_ts: Timestamp
    interval_s: float = Field(ge=1.0, le=3600.0, allow_inf_nan=False, description="how often this server sends one")
    cameras: list[CameraState] = Field(default_factory=list, max_length=MAX_HEARTBEAT_CAMERAS)
    services: list[ServiceState] = Field(default_factory=list, max_length=MAX_HEARTBEAT_SERVICES)


def alerts_of(result: CloudResult) -> list[Alert]:
    """The alerts a cloud result carries, with each label's best score in the frame."""
    alerts = []
    for label in result.alerts:
        scores = [d.score for d in result.detections if d.label.lower() == label.lower()]
        alerts.append(Alert(site=result.site, camera_id=result.camera_id, frame_id=result.frame_id, label=label,
                            score=max(scores, default=0.0), capture_ts=result.capture_ts,
                            raised_ts=result.processed_ts, s3_key=result.s3_key))
    return alerts


MessageT = TypeVar("MessageT", bound=Envelope)

_REGISTRY: dict[tuple[str, int], type[Envelope]] = {}


def register(model: type[Envelope]) -> type[Envelope]:
    """Make a schema decodable. Services with their own messages (cloud results) register here."""
    _REGISTRY[(model.schema_name, model.schema_version)] = model
    return model


for _model in (FrameRef, DetectionSet, Health, CloudFrame, CloudResult, Alert, FaceMatches, CloudConfirmRequest, PatchSet,
               Heartbeat):
    register(_model)
_REGISTRY[(CloudFrame.schema_name, 1)] = CloudFrame  # v1 lacks only v2's defaulted fields
_REGISTRY[(DetectionSet.schema_name, 1)] = DetectionSet  # v1 lacks only v2's defaulted fields
_REGISTRY[(DetectionSet.schema_name, 2)] = DetectionSet  # v2 lacks only v3's defaulted fields (pose, actions)
_REGISTRY[(CloudFrame.schema_name, 1)] = CloudFrame  # v1 lacks only v2's tracks (defaulted: none)


def decode(raw: bytes) -> Envelope:
    """Decode any registered envelope; raise SchemaError with a one-line reason otherwise."""
    if len(raw) > MAX_MESSAGE_BYTES:
        raise SchemaError(f"message of {len(raw)} bytes is over the {MAX_MESSAGE_BYTES} byte limit")
    try:
        body: Any = msgpack.unpackb(raw, raw=False)
    except Exception as error:  # msgpack raises several unrelated types for garbage
        raise SchemaError(f"not a msgpack message ({type(error).__name__})") from None
    if not isinstance(body, dict):
        raise SchemaError("message is not a map")
    if _nesting_depth(body) > MAX_NESTING:
        raise SchemaError(f"message nests deeper than {MAX_NESTING} levels")
    name, version = body.pop("schema", None), body.pop("v", None)
    model = _REGISTRY.get((name, version)) if isinstance(name, str) and isinstance(version, int) else None
    if model is None:
        raise SchemaError(f"unknown schema {name!r} version {version!r}")
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise SchemaError(f"malformed {name} v{version}: {describe_validation_error(error)}") from None


def _nesting_depth(value: Any, limit: int = MAX_NESTING + 1) -> int:
    """How deeply maps and lists nest (counting stops just past the limit)."""
    depth, level = 0, [value]
    while level and depth < limit:
        depth += 1
        level = [child for item in level if isinstance(item, (dict, list))
                 for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, (dict, list))]
    return depth


def decode_as(raw: bytes, model: type[MessageT]) -> MessageT:
    message = decode(raw)
    if not isinstance(message, model):
        raise SchemaError(f"expected {model.schema_name}, got {type(message).schema_name}")
    return message


def encode_text(message: Envelope) -> str:
    """Envelope as text, for carriers that only take strings (SQS message bodies)."""
    return base64.b64encode(message.encode()).decode("ascii")


def decode_text(text: str) -> Envelope:
    try:
        raw = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise SchemaError("message body is not base64") from None
    return decode(raw)
