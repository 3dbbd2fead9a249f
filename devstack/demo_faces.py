"""`hybridcam demo --faces`: the face watch-list on real footage beside the demo site.

Adds a master camera "lobby" that loops the committed cut of ``face-demographics-walking`` (Intel IoT
devkit sample videos, CC BY 4.0) to a copy of the site file, turns face search on in the local cloud,
and enrols the woman of that clip from one crop of its last frame (``tests/data/faces``), so her
watch-list hits appear on the dashboard's watch-list panel within seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
FOOTAGE = REPO / "tests" / "data" / "faces" / "walking.mp4"
ENROLMENT = REPO / "tests" / "data" / "faces" / "enrol-walking-woman.jpg"
PERSON = "Walking Woman"
LOBBY = {"id": "lobby", "name": "Lobby (real footage)", "role": "master", "source": f"file://{FOOTAGE}?loop=1",
         "width": 480, "height": 270, "fps": 12, "cloud_sample_every": 6}


def site_with_lobby(site_file: Path, run_dir: Path) -> Path:
    """A copy of the site file with the lobby camera added (the original stays as it is)."""
    document: dict[str, Any] = yaml.safe_load(site_file.read_text())
    document["cameras"] = [camera for camera in document.get("cameras", []) if camera.get("id") != LOBBY["id"]] + [LOBBY]
    copy = run_dir / "site-with-faces.yaml"
    copy.write_text(yaml.safe_dump(document, sort_keys=False))
    return copy


def enrol_demo_person(cloud: Any) -> str:
    """Enrol the clip's woman in the local stack's collection; returns a line for the demo's notes."""
    import boto3

    from cloud.watch_list import WatchList

    collection = cloud.outputs["FaceCollectionId"]
    rekognition = boto3.client("rekognition", region_name="us-east-1", endpoint_url=cloud.models.url)
    WatchList(rekognition, collection, say=lambda _: None).enroll(PERSON, [ENROLMENT])
    return (f"face watch-list: {PERSON} enrolled from {ENROLMENT.name}; camera 'lobby' loops real footage "
            "(Intel IoT devkit sample videos, CC BY 4.0)")
