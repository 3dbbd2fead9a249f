"""Face watch-list: search the faces of marked frames in a Rekognition collection, record and announce matches.

Runs only for frames the sampler marked ``face_candidate`` (the edge saw a person big enough to hold a
face of FACE_MIN_SIZE_PX at 1080p) and only when FACE_SEARCH is ``enabled`` (the FACE_* variables are
fields of settings.py). The pipeline calls it last, for a first delivery and a retry alike. For each such frame:

1. DetectFaces on the whole frame; keep faces at or above FACE_MIN_CONFIDENCE whose box is at least
   FACE_MIN_SIZE_PX tall, scaled from 1080 lines to the frame's height (Rekognition's documented
   minimum is 40x40 px in a 1920x1080 image);
2. SearchFacesByImage on a crop around each kept face (SearchFacesByImage alone only searches the
   largest face of an image). A result whose searched face is not the face the crop was made for is
   dropped (a larger neighbour can sit inside the crop);
3. a match at or above FACE_MATCH_THRESHOLD writes a match item in FACE_MATCHES_TABLE (key: person, and
   ``match#<frame_id>#<n>``; face id, camera, times, similarity, box, the small face crop; TTL
   FACE_MATCH_TTL_DAYS), raises one SNS
   alert "NAME seen on CAMERA, similarity N%" unless that person's cooldown (FACE_ALERT_COOLDOWN_S,
   counted in capture time, claimed with a conditional put like label alerts) holds, and goes back to
   the edge as a FaceMatches message on the results queue.

The matches table is keyed by person so that ``hybridcam faces remove`` erases a person with one
consistent Query; it is not the frames table, so the edge identity (which may query that table's
camera-latest index) never reads a match. The cooldown item (``cooldown``) lives beside the matches.

Retries pay nothing twice: DetectFaces' boxes and then the searches' hits are saved in a progress item
of the frame (``frame#<frame_id>`` / ``search`` in the matches table, TTL one day), which a retry reads
back instead of calling Rekognition again and which is deleted once the step is done; the pipeline then
flags the frame item ``faces_done`` and never runs the step for it again. A frame over Rekognition's
5 MB image-bytes limit (claim-checked, SAMPLER_MAX_SIDE=0) is searched through its stored S3 copy.

Person names are stored in the collection as ExternalImageId (spaces as underscores: Rekognition allows
only ``[a-zA-Z0-9_.-:]``); see ``shared.schemas.face_external_id``/``face_person``. Retries are idempotent: match items are
conditional puts, the cooldown claim admits the frame's own unpublished claim, and the edge drops a
repeated frame_id.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from detector_lambda.detectors import Backoff, FrameImage, client_config, pixel_box
from detector_lambda.logs import logger
from detector_lambda.settings import LambdaSettings
from detector_lambda.storage import from_dynamo, to_dynamo
from shared.schemas import FACE_MATCH_KIND, CloudFrame, FaceMatch, FaceMatches, encode_text, face_person, utc_iso

MATCH_PREFIX = "match#"
COOLDOWN_KEY = "cooldown"
REFERENCE_HEIGHT = 1080
MIN_CROP_PX = 80  # Rekognition rejects images under 80 px a side
CROP_MARGIN = 1.0  # face sides of context on each side of the face
CROP_JPEG_QUALITY = 85
THUMBNAIL_PX = 96
PROGRESS_PREFIX = "frame#"  # partition of a frame's search progress (a name can never hold '#')
PROGRESS_KEY = "search"
PROGRESS_TTL_S = 86_400
REKOGNITION_BYTES_LIMIT = 5 * 1024 * 1024


@dataclass(frozen=True)
class FaceWatchConfig:
    collection_id: str
    enabled: bool = False
    match_threshold: float = 80.0
    min_confidence: float = 90.0
    min_size_px: float = 40.0
    alert_cooldown_s: float = 600.0
    match_ttl_days: int = 30

    def describe(self) -> str:
        if not self.enabled:
            return "face search off"
        return (f"face search in collection {self.collection_id} (similarity >= {self.match_threshold:g}, faces >= "
                f"{self.min_size_px:g} px at 1080p and {self.min_confidence:g}% confidence, cooldown "
                f"{self.alert_cooldown_s:g} s per person, matches kept {self.match_ttl_days} days)")

    @classmethod
    def from_settings(cls, settings: LambdaSettings) -> FaceWatchConfig:
        return cls(collection_id=settings.face_collection, enabled=settings.face_search == "enabled",
                   match_threshold=settings.face_match_threshold, min_confidence=settings.face_min_confidence,
                   min_size_px=settings.face_min_size_px, alert_cooldown_s=settings.face_alert_cooldown_s,
                   match_ttl_days=settings.face_match_ttl_days)


@dataclass(frozen=True)
class FaceCrop:
    box: tuple[float, float, float, float]  # the face in frame pixels
    crop_origin: tuple[int, int]
    crop_size: tuple[int, int]
    jpeg: bytes

    def holds(self, searched_box: tuple[float, float, float, float]) -> bool:
        """Whether the face Rekognition searched (crop pixels) is the face this crop was made for."""
        x0, y0 = self.crop_origin
        centre_x, centre_y = (searched_box[0] + searched_box[2]) / 2 + x0, (searched_box[1] + searched_box[3]) / 2 + y0
        x1, y1, x2, y2 = self.box
        return x1 <= centre_x <= x2 and y1 <= centre_y <= y2


def crop_faces(jpeg: bytes, boxes: list[tuple[float, float, float, float]]) -> list[FaceCrop]:
    """A JPEG crop per face: the face plus CROP_MARGIN face sides around it, at least MIN_CROP_PX a side."""
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    crops = []
    for box in boxes:
        x1, y1, x2, y2 = box
        side = max(max(x2 - x1, y2 - y1) * (1 + 2 * CROP_MARGIN), MIN_CROP_PX)
        centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
        left = int(max(0, min(width - side, centre_x - side / 2)))
        top = int(max(0, min(height - side, centre_y - side / 2)))
        right, bottom = int(min(width, left + side)), int(min(height, top + side))
        buffer = io.BytesIO()
        image.crop((left, top, right, bottom)).save(buffer, format="JPEG", quality=CROP_JPEG_QUALITY)
        crops.append(FaceCrop(box, (left, top), (right - left, bottom - top), buffer.getvalue()))
    return crops


def thumbnail(crop: FaceCrop) -> bytes:
    """The small face picture the edge shows (never a template: a few KB of JPEG)."""
    from PIL import Image

    with Image.open(io.BytesIO(crop.jpeg)) as opened:
        image = opened.convert("RGB")
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=CROP_JPEG_QUALITY)
    return buffer.getvalue()


def alert_text(person: str, camera_id: str, similarity: float) -> str:
    return f"{person} seen on {camera_id}, similarity {similarity:.0f}%"


class FaceWatch:
    def __init__(self, config: FaceWatchConfig, rekognition: Any, dynamodb: Any, table: str, sns: Any,
                 topic_arn: str, sqs: Any, results_queue_url: str, s3: Any, backoff: Backoff | None = None) -> None:
        self.config = config
        self.rekognition = rekognition
        self.dynamodb = dynamodb
        self.table = table
        self.sns = sns
        self.topic_arn = topic_arn
        self.sqs = sqs
        self.results_queue_url = results_queue_url
        self.s3 = s3
        self.backoff = backoff or Backoff()

    def wants(self, frame: CloudFrame) -> bool:
        return self.config.enabled and frame.face_candidate

    def process(self, frame: CloudFrame, image: FrameImage, processed_ts: float) -> FaceMatches | None:
        """Search the frame's faces; returns what was sent to the edge (None when the frame is not searched)."""
        if not self.wants(frame):
            return None
        jpeg = image.jpeg if image.jpeg is not None else self._fetch(image)
        progress = self._progress(frame.frame_id)
        boxes: list[tuple[float, float, float, float]]
        if "boxes" in progress:
            boxes = [(float(x1), float(y1), float(x2), float(y2)) for x1, y1, x2, y2 in progress["boxes"]]
        else:
            boxes = self.searchable_faces(jpeg, frame.width, frame.height, image)
            progress = self._save_progress(frame.frame_id, boxes=[list(box) for box in boxes])
        crops = crop_faces(jpeg, boxes)
        if "hits" in progress:
            matches = [self._match_of(hit, crops[int(hit["crop"])]) for hit in progress["hits"]]
        else:
            try:
                found = [(index, match) for index, crop in enumerate(crops) if (match := self.search(crop)) is not None]
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                    raise
                # Retrying cannot create the collection: the frame's labels are done, its faces go unsearched.
                logger.error("face collection %s does not exist (enrol someone with `hybridcam faces enroll` or check "
                          "FACE_COLLECTION); frame %s not searched", self.config.collection_id, frame.frame_id)
                self._forget_progress(frame.frame_id)
                return None
            self._save_progress(frame.frame_id, boxes=progress["boxes"], hits=[
                {"crop": index, "person": m.person, "face_id": m.face_id, "similarity": m.similarity} for index, m in found])
            matches = [match for _, match in found]
        alerts = []
        for index, match in enumerate(matches):
            self._put_match(frame, index, match, processed_ts)
            if self._alert(frame, match):
                alerts.append(match.person)
        result = FaceMatches(site=frame.site, frame_id=frame.frame_id, camera_id=frame.camera_id, seq=frame.seq,
                             capture_ts=frame.capture_ts, processed_ts=processed_ts, width=frame.width,
                             height=frame.height, matches=matches, alerts=alerts)
        if matches:
            self.sqs.send_message(
                QueueUrl=self.results_queue_url, MessageBody=encode_text(result),
                MessageAttributes={"frame_id": {"DataType": "String", "StringValue": frame.frame_id},
                                   "camera_id": {"DataType": "String", "StringValue": frame.camera_id},
                                   "kind": {"DataType": "String", "StringValue": "face_matches"}})
        self._forget_progress(frame.frame_id)
        logger.info("frame %s: %d face(s) searched, %d match(es), alerts %s", frame.frame_id, len(boxes), len(matches), alerts)
        return result

    # -- progress (what a retry must not pay for again) -----------------------------------------
    def _progress_key(self, frame_id: str) -> dict[str, Any]:
        return {"person": {"S": f"{PROGRESS_PREFIX}{frame_id}"}, "sk": {"S": PROGRESS_KEY}}

    def _progress(self, frame_id: str) -> dict[str, Any]:
        item = self.dynamodb.get_item(TableName=self.table, Key=self._progress_key(frame_id), ConsistentRead=True).get("Item")
        return from_dynamo(item) if item else {}

    def _save_progress(self, frame_id: str, **state: Any) -> dict[str, Any]:
        item = {**self._progress_key(frame_id), **{k: to_dynamo(v) for k, v in state.items()},
                "expires_at": to_dynamo(int(time.time()) + PROGRESS_TTL_S)}
        self.dynamodb.put_item(TableName=self.table, Item=item)
        return state

    def _forget_progress(self, frame_id: str) -> None:
        self.dynamodb.delete_item(TableName=self.table, Key=self._progress_key(frame_id))

    def _match_of(self, hit: dict[str, Any], crop: FaceCrop) -> FaceMatch:
        return FaceMatch(person=str(hit["person"]), face_id=str(hit["face_id"]), similarity=float(hit["similarity"]),
                         box=tuple(round(v, 1) for v in crop.box), crop_jpeg=thumbnail(crop))  # type: ignore[arg-type]

    # -- steps -------------------------------------------------------------------------------
    def _fetch(self, image: FrameImage) -> bytes:
        return self.s3.get_object(Bucket=image.s3_bucket, Key=image.s3_key)["Body"].read()

    def searchable_faces(self, jpeg: bytes, width: int, height: int,
                         image: FrameImage | None = None) -> list[tuple[float, float, float, float]]:
        source: dict[str, Any] = {"Bytes": jpeg}
        if len(jpeg) > REKOGNITION_BYTES_LIMIT and image is not None and image.s3_bucket and image.s3_key:
            source = {"S3Object": {"Bucket": image.s3_bucket, "Name": image.s3_key}}  # S3 takes up to 15 MB
        response = self.backoff.call("DetectFaces", lambda: self.rekognition.detect_faces(
            Image=source, Attributes=["DEFAULT"]))
        min_px = self.config.min_size_px * height / REFERENCE_HEIGHT
        boxes = []
        for detail in response.get("FaceDetails", []):
            box = pixel_box(detail.get("BoundingBox", {}), width, height)
            if float(detail.get("Confidence", 0.0)) >= self.config.min_confidence and min(box[2] - box[0], box[3] - box[1]) >= min_px:
                boxes.append(box)
        return boxes

    def search(self, crop: FaceCrop) -> FaceMatch | None:
        try:
            response = self.backoff.call("SearchFacesByImage", lambda: self.rekognition.search_faces_by_image(
                CollectionId=self.config.collection_id, Image={"Bytes": crop.jpeg}, MaxFaces=1,
                FaceMatchThreshold=self.config.match_threshold))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "InvalidParameterException":
                return None  # no face found in the crop: nothing to search
            raise
        searched = pixel_box(response.get("SearchedFaceBoundingBox", {}), *crop.crop_size)
        if not crop.holds(searched):
            logger.info("search of the face at %s found another face in its crop; dropped", [round(v) for v in crop.box])
            return None
        best = max(response.get("FaceMatches", []), key=lambda match: float(match.get("Similarity", 0.0)), default=None)
        if best is None or float(best.get("Similarity", 0.0)) < self.config.match_threshold:
            return None
        face = best.get("Face", {})
        return FaceMatch(person=face_person(str(face.get("ExternalImageId") or face.get("FaceId", "?"))),
                         face_id=str(face.get("FaceId", "")), similarity=round(float(best["Similarity"]), 2),
                         box=tuple(round(v, 1) for v in crop.box), crop_jpeg=thumbnail(crop))  # type: ignore[arg-type]

    def _put_match(self, frame: CloudFrame, index: int, match: FaceMatch, processed_ts: float) -> None:
        item = {
            "person": match.person, "sk": f"{MATCH_PREFIX}{frame.frame_id}#{index}", "kind": FACE_MATCH_KIND,
            "face_id": match.face_id, "camera_id": frame.camera_id, "frame_id": frame.frame_id,
            "capture_ts": frame.capture_ts, "capture_time": utc_iso(frame.capture_ts), "processed_ts": processed_ts,
            "similarity": match.similarity, "box": list(match.box), "crop_jpeg": match.crop_jpeg or b"",
            "expires_at": int(processed_ts + self.config.match_ttl_days * 86400),
        }
        try:
            self.dynamodb.put_item(TableName=self.table, Item={k: to_dynamo(v) for k, v in item.items()},
                                   ConditionExpression="attribute_not_exists(sk)")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def _alert(self, frame: CloudFrame, match: FaceMatch) -> bool:
        if not self._claim_cooldown(frame, match.person):
            logger.info("face alert for %s on %s suppressed: cooldown holds", match.person, frame.camera_id)
            return False
        self.sns.publish(
            TopicArn=self.topic_arn, Subject=f"hybridcam: {match.person} on {frame.camera_id}"[:100],
            Message=alert_text(match.person, frame.camera_id, match.similarity),
            MessageAttributes={"camera_id": {"DataType": "String", "StringValue": frame.camera_id},
                               "person": {"DataType": "String", "StringValue": match.person},
                               "frame_id": {"DataType": "String", "StringValue": frame.frame_id}})
        self.dynamodb.update_item(TableName=self.table, Key=self._cooldown_key(match.person),
                                  UpdateExpression="SET published = :yes", ExpressionAttributeValues={":yes": {"BOOL": True}})
        return True

    @staticmethod
    def _cooldown_key(person: str) -> dict[str, Any]:
        return {"person": {"S": person}, "sk": {"S": COOLDOWN_KEY}}

    def _claim_cooldown(self, frame: CloudFrame, person: str) -> bool:
        """Cooldown per person, in capture time: one alert per appearance, whichever camera or shard sees it."""
        until = frame.capture_ts + self.config.alert_cooldown_s
        item = {**self._cooldown_key(person), "kind": {"S": "face_cooldown"},
                "frame_id": {"S": frame.frame_id}, "until_ts": to_dynamo(until),
                "expires_at": to_dynamo(int(until + 86400))}
        try:
            self.dynamodb.put_item(
                TableName=self.table, Item=item,
                ConditionExpression=("attribute_not_exists(sk) OR until_ts <= :seen "
                                     "OR (frame_id = :frame AND attribute_not_exists(published))"),
                ExpressionAttributeValues={":seen": to_dynamo(frame.capture_ts), ":frame": {"S": frame.frame_id}})
            return True
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise


def build_face_watch(settings: LambdaSettings) -> FaceWatch | None:
    """The watch-list step for the pipeline (the FACE_* settings), or None when face search is off."""
    config = FaceWatchConfig.from_settings(settings)
    logger.info("%s", config.describe())
    if not config.enabled:
        return None
    return FaceWatch(config, boto3.client("rekognition", config=client_config()), boto3.client("dynamodb"),
                     settings.face_matches_table, boto3.client("sns"), settings.alert_topic_arn,
                     boto3.client("sqs"), settings.results_queue_url, boto3.client("s3"))
