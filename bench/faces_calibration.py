"""Face-match quality of the local face models (BlazeFace + FaceRes) on real footage, and the threshold.

Faces come from the clips and photos in ../shared/data (see its README; without it, from the cuts
committed under tests/data/faces):

- ``face-demographics-walking.gif``: two people (a woman on the left, a man on the right) walk towards
  the camera in all 35 frames; faces grow from ~12 to ~27 px. Each frame with exactly two faces gives
  one face of each person (told apart by their left-right order, which never changes in the clip).
- every other clip and photo: faces of other people (their own identities are unknown, so they are
  only ever compared with the two walkers).

Pairs: genuine = the same walker in two different frames; impostor = woman vs man, and either walker vs
any other face. Two protocols: all pairs, and "enrol from one frame" (each walker enrolled from the
clip's last frame, every other face probed against them), which is what the watch-list does.
A third count follows the Lambda's own path on the walking clip: each frame JPEG-encoded, DetectFaces
through the local model server, a crop per face (cloud/lambda/detector_lambda/face_watch.py), SearchFacesByImage
against the woman enrolled from ``tests/data/faces/enrol-walking-woman.jpg``.
True-match rate (TMR) = genuine pairs at or above the threshold; false-match rate (FMR) = impostor pairs
at or above it. Similarity = 100 x cosine of the FaceRes descriptors (cloud/local/face_models.py).

Usage: python bench/faces_calibration.py [--threshold 80] [--data ../shared/data]   (about 2 minutes)
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cloud.local.face_models import BlazeFaceDetector, FaceResDescriber  # noqa: E402

WALKING = "face-demographics-walking.gif"
OTHER_CLIPS = {"store-aisle-detection.gif": 3, "worker-zone-detection.gif": 5, "one-by-one-person-detection.mp4": 10}
PHOTOS = ("astronaut.png", "person.jpg", "dog.jpg", "horses.jpg", "kite.jpg")
OTHER_MIN_SCORE = 0.75  # other sources: only confident faces, so impostors are faces, not wallpaper
THRESHOLDS = (50, 55, 60, 65, 70, 75, 80, 85, 90)
WALKERS_SPLIT_X = 289  # the woman's face centre stays left of this in every frame of the clip, the man's right


@dataclass(frozen=True)
class Face:
    identity: str  # "woman", "man", or "other:<source>"
    frame: int
    size_px: float
    descriptor: np.ndarray


def frames_of(path: Path, step: int = 1) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for index, frame in enumerate(container.decode(video=0))
                if index % step == 0]


def walking_faces(path: Path, finder: BlazeFaceDetector, describer: FaceResDescriber) -> list[Face]:
    faces = []
    for index, frame in enumerate(frames_of(path)):
        found = sorted(finder.detect(frame), key=lambda face: face.box[0])
        if len(found) != 2:
            continue
        for identity, face in zip(("woman", "man"), found):
            faces.append(Face(identity, index, min(face.width, face.height), describer.describe(frame, face.box)))
    return faces


def other_faces(data: Path, finder: BlazeFaceDetector, describer: FaceResDescriber) -> list[Face]:
    images: list[tuple[str, np.ndarray]] = []
    for clip, step in OTHER_CLIPS.items():
        if (data / "video" / clip).is_file():
            images += [(clip, frame) for frame in frames_of(data / "video" / clip, step)]
    images += [(name, cv2.imread(str(data / "images" / name))) for name in PHOTOS if (data / "images" / name).is_file()]
    faces = []
    for source, image in images:
        for face in finder.detect(image):
            if face.score >= OTHER_MIN_SCORE:
                faces.append(Face(f"other:{source}", -1, min(face.width, face.height), describer.describe(image, face.box)))
    return faces


def score(first: Face, second: Face) -> float:
    return float(np.clip(first.descriptor @ second.descriptor, 0.0, 1.0) * 100.0)


def all_pairs(faces: list[Face]) -> tuple[np.ndarray, np.ndarray]:
    genuine, impostor = [], []
    for first, second in itertools.combinations(faces, 2):
        walkers = {first.identity, second.identity} & {"woman", "man"}
        if first.identity == second.identity and walkers and first.frame != second.frame:
            genuine.append(score(first, second))
        elif first.identity != second.identity and walkers:
            impostor.append(score(first, second))
    return np.array(genuine), np.array(impostor)


def enrol_one_frame(faces: list[Face]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Genuine and impostor similarities, and the probe face size of each genuine pair."""
    genuine, impostor, genuine_sizes = [], [], []
    last = max(face.frame for face in faces)
    for identity in ("woman", "man"):
        enrolled = next(face for face in faces if face.identity == identity and face.frame == last)
        for probe in faces:
            if probe is enrolled or (probe.identity == identity and probe.frame == last):
                continue
            if probe.identity == identity:
                genuine.append(score(enrolled, probe))
                genuine_sizes.append(probe.size_px)
            else:
                impostor.append(score(enrolled, probe))
    return np.array(genuine), np.array(impostor), np.array(genuine_sizes)


def rate_table(title: str, genuine: np.ndarray, impostor: np.ndarray, chosen: float) -> Table:
    table = Table(title=f"{title}: {len(genuine)} genuine, {len(impostor)} impostor pairs")
    for column in ("threshold", "true-match rate", "false-match rate"):
        table.add_column(column, justify="right")
    for threshold in sorted({*THRESHOLDS, chosen}):
        mark = " (chosen)" if threshold == chosen else ""
        table.add_row(f"{threshold:g}{mark}", f"{(genuine >= threshold).mean():.1%}", f"{(impostor >= threshold).mean():.2%}")
    return table


def lambda_path(walking: Path) -> tuple[list[float], list[float]]:
    """Best similarity to the enrolled woman of each of her faces and of each of the man's, the Lambda's way."""
    import boto3

    from cloud.local.model_server import start_in_thread
    from detector_lambda import face_watch
    from detector_lambda.detectors import pixel_box

    server = start_in_thread(0, detector="nanodet")
    try:
        client = boto3.client("rekognition", endpoint_url=server.url, region_name="us-east-1",
                              aws_access_key_id="local", aws_secret_access_key="local")
        client.create_collection(CollectionId="calibration")
        client.index_faces(CollectionId="calibration", ExternalImageId="woman", MaxFaces=1,
                           Image={"Bytes": (REPO / "tests" / "data" / "faces" / "enrol-walking-woman.jpg").read_bytes()})
        woman, man = [], []
        for frame in frames_of(walking):
            height, width = frame.shape[:2]
            jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            details = client.detect_faces(Image={"Bytes": jpeg})["FaceDetails"]
            boxes = [pixel_box(face["BoundingBox"], width, height) for face in details]
            for crop in face_watch.crop_faces(jpeg, boxes):
                try:
                    answer = client.search_faces_by_image(CollectionId="calibration", Image={"Bytes": crop.jpeg},
                                                          FaceMatchThreshold=0, MaxFaces=1)
                except client.exceptions.InvalidParameterException:
                    continue  # no face found in the crop
                best = answer["FaceMatches"][0]["Similarity"] if answer["FaceMatches"] else 0.0
                (woman if (crop.box[0] + crop.box[2]) / 2 < WALKERS_SPLIT_X else man).append(best)
        return woman, man
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=80.0, help="similarity (0-100) to report as chosen")
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data",
                        help="folder with video/ and images/ (default ../shared/data)")
    args = parser.parse_args()
    console = Console()
    finder, describer = BlazeFaceDetector(), FaceResDescriber()
    walking = args.data / "video" / WALKING
    if not walking.is_file():
        walking = REPO / "tests" / "data" / "faces" / "walking.mp4"
        console.print(f"{args.data} has no {WALKING}; using the committed cut {walking.relative_to(REPO)}")
    walkers = walking_faces(walking, finder, describer)
    others = other_faces(args.data, finder, describer)
    console.print(f"faces: {sum(f.identity == 'woman' for f in walkers)} of the woman, "
                  f"{sum(f.identity == 'man' for f in walkers)} of the man (walking clip), {len(others)} of other people")
    faces = walkers + others
    genuine, impostor, sizes = enrol_one_frame(faces)
    for title, (genuine_pairs, impostor_pairs) in (("all pairs", all_pairs(faces)),
                                                   ("enrol from one frame", (genuine, impostor))):
        console.print(rate_table(title, genuine_pairs, impostor_pairs, args.threshold))
        console.print(f"  highest impostor similarity {impostor_pairs.max():.1f}; lowest genuine {genuine_pairs.min():.1f}")
    for low, high in ((0, 16), (16, 20), (20, 100)):
        in_bucket = (sizes >= low) & (sizes < high)
        if in_bucket.any():
            console.print(f"  enrol from one frame, probe faces {low}-{high} px: "
                          f"TMR {(genuine[in_bucket] >= args.threshold).mean():.1%} of {int(in_bucket.sum())}")
    woman, man = lambda_path(walking)
    console.print(f"the Lambda's path (crop per face, SearchFacesByImage), threshold {args.threshold:g}: the enrolled woman "
                  f"matched in {sum(s >= args.threshold for s in woman)} of {len(woman)} faces searched; the man in "
                  f"{sum(s >= args.threshold for s in man)} of {len(man)} (his highest {max(man, default=0.0):.1f})")


if __name__ == "__main__":
    main()
