"""`hybridcam sampling-eval` on real footage: the adaptive policy's goals, the table, the chart, bad files.

The clips in tests/data/video/ are re-encoded cuts of Intel IoT devkit sample videos, CC BY 4.0.
Beside them are the per-frame results of the edge and reference detectors on every frame, so the
policies replay in seconds (the reference takes several minutes per clip on two cores).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hybridcam.sampling_eval import reference as reference_module
from hybridcam.sampling_eval.footage import FootageError, open_footage
from hybridcam.sampling_eval.reference import DetectorChoice, frame_results
from hybridcam.sampling_eval.replay import PolicySpec, find_events, reference_positive, replay, score
from services.sampler.policy import AdaptiveSettings

VIDEOS = Path(__file__).parent / "data" / "video"
PERSON_CLIP = VIDEOS / "one-by-one-person-detection.mp4"
CAR_CLIP = VIDEOS / "car-detection.mp4"
WATCH = frozenset({"person", "car", "truck", "bus", "motorcycle", "bicycle"})


@pytest.fixture()
def no_detectors(monkeypatch: pytest.MonkeyPatch) -> None:
    """The committed caches must be enough: loading a detector fails the test."""
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the cached per-frame results were not used")

    import vision.detectors as detectors

    monkeypatch.setattr(detectors, "load_detector", refuse)
    monkeypatch.setattr(reference_module, "CHECKPOINT_FRAMES", 10**9)


# Seen from above, the reference (COCO detectors) calls the cars mostly "cell phone"; docs/sampling.md says so.
CAR_WATCH = frozenset({"car", "truck", "bus", "cell phone"})


@pytest.mark.parametrize(("clip", "watch"), [(PERSON_CLIP, WATCH), (CAR_CLIP, CAR_WATCH)], ids=["people", "cars"])
def test_adaptive_meets_the_goals_on_real_footage(no_detectors: None, clip: Path, watch: frozenset[str]) -> None:
    footage = open_footage(str(clip))
    results = frame_results(footage, DetectorChoice())
    assert results.complete
    specs = [PolicySpec("adaptive", "adaptive", adaptive=AdaptiveSettings()),
             PolicySpec("every_nth matched", "every_nth (matched)", same_frames_as="adaptive")]
    runs = replay(footage, results, specs, watch)
    positives = [reference_positive(frame, watch, 0.5) for frame in results.reference]
    events = find_events(positives, footage.fps)
    assert len(events) >= 3  # three visits to the room, three passing cars
    adaptive, matched = (score(run, events, positives, results, footage.fps, watch, 0.5, 0.001) for run in runs)
    assert adaptive.sent_fraction <= 0.05, adaptive
    assert adaptive.event_recall >= 0.95, adaptive
    assert adaptive.delay_median_s is not None and adaptive.delay_median_s <= 1.0, adaptive
    # every_nth at the same number of frames is reported beside it
    assert abs(matched.sent - adaptive.sent) <= max(2, adaptive.sent // 5)
    assert sum(adaptive.reasons.values()) == footage.frame_count  # every frame decided and counted


def test_events_are_reference_positive_intervals_with_gaps_under_a_second_merged() -> None:
    person = frozenset({"person"})
    positives = [person if i in (3, 4, 5, 12, 13, 40) else frozenset() for i in range(50)]
    events = find_events(positives, fps=10)
    assert [(e.first, e.last) for e in events] == [(3, 13), (40, 40)]  # 5 -> 12 is 0.7 s: merged


def test_the_command_prints_the_table_writes_the_chart_and_json(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hybridcam", "sampling-eval", str(CAR_CLIP), "--out", str(tmp_path),
                           "--watch", "car,truck,bus,cell phone", "--json"],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    [clip] = data["clips"]
    labels = [p["label"] for p in clip["policies"]]
    assert "adaptive" in labels and any(label.startswith("every_nth N=") for label in labels)
    assert any("adaptive budget" in label for label in labels)
    adaptive = next(p for p in clip["policies"] if p["label"] == "adaptive")
    assert 0 < adaptive["sent"] < clip["frames"] and adaptive["reasons"]
    page = (tmp_path / "sampling.html").read_text()
    assert (tmp_path / "sampling.png").read_bytes()[:4] == b"\x89PNG"
    assert "data:image/png;base64," in page and "http" not in page.replace("http-equiv", "")


def test_the_table_is_printed_with_the_verdict(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hybridcam", "sampling-eval", str(PERSON_CLIP), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    assert "goal (<= 5%, >= 95%, <= 1 s) met" in text and "every_nth N=" in text


def test_an_unreadable_file_gets_one_sentence(tmp_path: Path) -> None:
    fake = tmp_path / "broken.mp4"
    fake.write_bytes(b"this is not a video")
    done = subprocess.run([sys.executable, "-m", "hybridcam", "sampling-eval", str(fake), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == f"hybridcam sampling-eval: {fake}: not a video file OpenCV/FFmpeg can decode"
    with pytest.raises(FootageError, match="no such file"):
        open_footage(str(tmp_path / "missing.mp4"))


def test_a_container_that_overstates_its_frame_count_still_gives_results_and_keeps_work_done(tmp_path: Path) -> None:
    """A real clip re-muxed into AVI whose header says 42 frames where the file holds 40 (made with FFmpeg from the
    person clip, then the AVI header's frame counts raised by 2), with the detectors' results of its first 30 frames
    already cached, as a run stopped part way leaves them: the command finishes the last 10, uses the 40 frames the
    file delivers, says the container was wrong, and keeps the cached 30."""
    clip = VIDEOS / "arrival-overstated-count.avi"
    cache = tmp_path / "cache"
    cache.mkdir()
    partial = VIDEOS / "arrival-overstated-count.first-30-frames.detections.json.gz"
    (cache / "arrival-overstated-count.detections.json.gz").write_bytes(partial.read_bytes())
    done = subprocess.run([sys.executable, "-m", "hybridcam", "sampling-eval", str(clip), "--cache-dir", str(cache),
                           "--out", str(tmp_path), "--json", "--threads", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "the container says 42 frames, the file delivers 40" in done.stderr
    summary = json.loads(done.stdout)["clips"][0]
    assert (summary["frames"], summary["container_frames"]) == (40, 42)
    assert summary["events"], "the person walking in is an event"
    adaptive = next(p for p in summary["policies"] if p["label"] == "adaptive")
    assert adaptive["frames"] == 40 and adaptive["caught"] == 1
    import gzip

    with gzip.open(cache / "arrival-overstated-count.detections.json.gz", "rt") as stream:
        stored = json.load(stream)
    with gzip.open(partial, "rt") as stream:
        before = json.load(stream)
    assert stored["footage"]["delivered_frames"] == 40 and len(stored["reference"]) == 40
    assert stored["reference"][:30] == before["reference"], "the frames already analysed were kept, not redone"
