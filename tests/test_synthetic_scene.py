"""Behaviour of the built-in synthetic multi-camera scene: determinism, geometry, ground truth, real detector."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from services.capture.synthetic_scene import GroundTruthPerson, SyntheticScene, ViewRegion, VirtualCamera

REPO_ROOT = Path(__file__).resolve().parents[1]
SMALL = (640, 360)  # most tests render small frames: same geometry, less work


def small_site(seed: int = 7, scenario: str = "wander") -> SyntheticScene:
    return SyntheticScene.default_site(width=SMALL[0], height=SMALL[1], seed=seed, scenario=scenario)


def master_id(scene: SyntheticScene) -> str:
    return next(cid for cid, cam in scene.cameras.items() if cam.role == "master")


def slave_ids(scene: SyntheticScene) -> list[str]:
    return [cid for cid, cam in scene.cameras.items() if cam.role == "slave"]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def fully_inside(person: GroundTruthPerson, camera: VirtualCamera) -> bool:
    x1, y1, x2, y2 = person.box
    return x1 > 0 and y1 > 0 and x2 < camera.width and y2 < camera.height


SAMPLE_TIMES = [0.0, 1.3, 7.9, 15.0, 22.4, 33.3, 47.1, 59.9]


def test_same_seed_gives_identical_frames_and_truth_and_another_seed_differs() -> None:
    first, second, other = small_site(seed=11), small_site(seed=11), small_site(seed=12)
    differs = False
    for t in SAMPLE_TIMES:
        for camera_id in first.cameras:
            assert np.array_equal(first.render(camera_id, t), second.render(camera_id, t))
            assert first.ground_truth(camera_id, t) == second.ground_truth(camera_id, t)
            if first.ground_truth(camera_id, t) != other.ground_truth(camera_id, t):
                differs = True
    assert differs
    assert any(len(first.ground_truth(master_id(first), t)) > 0 for t in SAMPLE_TIMES)


@pytest.mark.parametrize("scenario", ["wander", "walkthrough"])
def test_frames_do_not_depend_on_call_order(scenario: str) -> None:
    forward, shuffled = small_site(scenario=scenario), small_site(scenario=scenario)
    requests = [(camera_id, t) for t in SAMPLE_TIMES + [120.0, 400.5] for camera_id in forward.cameras]
    expected = {(c, t): (forward.render(c, t).copy(), forward.ground_truth(c, t)) for c, t in requests}
    order = np.random.default_rng(0).permutation(len(requests))
    for index in order:
        camera_id, t = requests[index]
        truth = shuffled.ground_truth(camera_id, t)
        frame = shuffled.render(camera_id, t)
        assert truth == expected[(camera_id, t)][1]
        assert np.array_equal(frame, expected[(camera_id, t)][0])


def test_render_writes_into_the_given_buffer_and_rejects_a_wrong_one() -> None:
    scene = small_site()
    out = np.zeros((SMALL[1], SMALL[0], 3), np.uint8)
    result = scene.render(master_id(scene), 3.0, out)
    assert result is out and out.any()
    with pytest.raises(ValueError):
        scene.render(master_id(scene), 3.0, np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(KeyError):
        scene.render("no-such-camera", 3.0)
    with pytest.raises(ValueError):
        SyntheticScene(list(scene.cameras.values()), scenario="dance")


def test_ground_truth_boxes_hold_the_drawn_people() -> None:
    scene = small_site()
    empty = SyntheticScene(list(scene.cameras.values()), people=0)
    checked = 0
    for t in SAMPLE_TIMES:
        for camera_id in scene.cameras:
            changed = np.abs(scene.render(camera_id, t).astype(np.int16)
                             - empty.render(camera_id, t).astype(np.int16)).max(axis=2) > 0
            inside_boxes = np.zeros_like(changed)
            for person in scene.ground_truth(camera_id, t):
                x1, y1, x2, y2 = (int(v) for v in person.box)
                inside_boxes[y1:y2, x1:x2] = True
                if person.visible_fraction > 0.8 and (y2 - y1) > 20:
                    checked += 1
                    box_changed = changed[y1:y2, x1:x2]
                    assert box_changed.mean() > 0.3, f"{camera_id} t={t}: box {person.box} mostly empty"
                    # the sprite reaches every side of its box (boxes are tight)
                    assert box_changed[:, :2].any() or x1 == 0
                    assert box_changed[:, -2:].any() or x2 == scene.cameras[camera_id].width
                    assert box_changed[:2].any() or y1 == 0
                    assert box_changed[-2:].any() or y2 == scene.cameras[camera_id].height
            assert not (changed & ~inside_boxes).any(), f"{camera_id} t={t}: people drawn outside every box"
    assert checked >= 20


def test_a_person_seen_by_a_slave_maps_back_onto_the_master_box() -> None:
    scene = SyntheticScene.default_site(seed=3)
    master = scene.cameras[master_id(scene)]
    W, H = scene.world_size
    compared = 0
    for t in np.arange(0.0, 60.0, 2.5):
        in_master = {p.person_id: p for p in scene.ground_truth(master.camera_id, float(t))}
        for camera_id in slave_ids(scene):
            camera = scene.cameras[camera_id]
            region = camera.region
            for person in scene.ground_truth(camera_id, float(t)):
                if not fully_inside(person, camera) or not fully_inside(in_master[person.person_id], master):
                    continue
                x1, y1, x2, y2 = person.box
                world_x = [(region.x0 + x / camera.width * (region.x1 - region.x0)) * W for x in (x1, x2)]
                world_y = [(region.y0 + y / camera.height * (region.y1 - region.y0)) * H for y in (y1, y2)]
                mapped = (world_x[0] * master.width / W, world_y[0] * master.height / H,
                          world_x[1] * master.width / W, world_y[1] * master.height / H)
                assert iou(mapped, in_master[person.person_id].box) > 0.85, (camera_id, float(t), person)
                # a zoomed slave sees the person bigger than the master does
                assert (y2 - y1) > (in_master[person.person_id].box[3] - in_master[person.person_id].box[1])
                compared += 1
    assert compared >= 30


def test_default_site_regions_keep_the_camera_aspect_and_cover_the_world() -> None:
    scene = SyntheticScene.default_site(num_cameras=6)
    assert [cam.role for cam in scene.cameras.values()] == ["master"] + ["slave"] * 5
    W, H = scene.world_size
    coverage = np.zeros((90, 160), bool)
    for camera_id in slave_ids(scene):
        camera = scene.cameras[camera_id]
        r = camera.region
        region_aspect = (r.x1 - r.x0) * W / ((r.y1 - r.y0) * H)
        assert region_aspect == pytest.approx(camera.width / camera.height, rel=0.01)
        coverage[round(r.y0 * 90):round(r.y1 * 90), round(r.x0 * 160):round(r.x1 * 160)] = True
    assert coverage.all()


def test_people_look_smaller_further_away_and_stay_in_the_master_size_range() -> None:
    scene = SyntheticScene.default_site(seed=5)
    master = scene.cameras[master_id(scene)]
    feet_and_heights = []
    for t in np.arange(0.0, 90.0, 1.5):
        for person in scene.ground_truth(master.camera_id, float(t)):
            if fully_inside(person, master) and person.visible_fraction > 0.95:
                feet_and_heights.append((person.box[3], person.box[3] - person.box[1]))
    feet, heights = np.array(feet_and_heights).T
    assert len(heights) > 50
    assert heights.min() >= 55 and heights.max() <= 260
    assert np.corrcoef(feet, heights)[0, 1] > 0.9  # lower in the frame (nearer) means taller


def test_wander_people_enter_and_leave() -> None:
    scene = small_site(seed=9)
    present: dict[int, list[bool]] = {p: [] for p in range(scene.people)}
    for t in np.arange(0.0, 120.0, 1.0):
        ids = {pid for pid, _ in scene.people_world_boxes(float(t))}
        for pid in present:
            present[pid].append(pid in ids)
    for pid, timeline in present.items():
        assert any(timeline) and not all(timeline), f"person {pid} never enters or never leaves"


def test_walkthrough_visits_every_slave_and_has_an_empty_period() -> None:
    scene = small_site(scenario="walkthrough")
    period = scene.walkthrough_period
    assert 40.0 <= period <= 90.0
    schedule = scene.walkthrough_schedule()
    visited = [region for _, _, region in schedule if region is not None]
    assert sorted(visited) == sorted(slave_ids(scene))
    group = {pid for pid, _ in scene.people_world_boxes(schedule[0][0] + 1.0)}
    assert len(group) >= 2
    for start, end, region in schedule:
        for t in (start + 0.5, (start + end) / 2, end - 0.5):
            for loop in (0, 2):
                at = t + loop * period
                if region is None:
                    assert all(scene.ground_truth(cid, at) == [] for cid in scene.cameras)
                    continue
                camera = scene.cameras[region]
                seen = scene.ground_truth(region, at)
                assert {p.person_id for p in seen} == group
                assert all(fully_inside(p, camera) for p in seen)
    # between two pauses the group is on the move, seen by the master the whole time
    walking = [(a_end, b_start) for (_, a_end, a), (b_start, _, b) in zip(schedule, schedule[1:]) if a and b]
    for a_end, b_start in walking:
        assert scene.ground_truth(master_id(scene), (a_end + b_start) / 2)


def test_export_ground_truth_writes_one_line_per_camera_and_frame(tmp_path: Path) -> None:
    scene = small_site(scenario="walkthrough")
    path = tmp_path / "truth" / "gt.jsonl"
    rows = scene.export_ground_truth(path, duration_s=2.0, fps=5)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert rows == len(lines) == 10 * len(scene.cameras)
    row = next(line for line in lines if line["people"])
    truth = scene.ground_truth(row["camera_id"], row["t"])
    assert [p["person_id"] for p in row["people"]] == [p.person_id for p in truth]
    assert row["people"][0]["box"] == pytest.approx(list(truth[0].box), abs=0.01)
    assert set(row["people"][0]) == {"person_id", "box", "visible_fraction"}


def test_custom_cameras_with_a_non_default_world() -> None:
    cameras = [
        VirtualCamera("all", "master", ViewRegion(0, 0, 1, 1), 480, 270),
        VirtualCamera("left", "slave", ViewRegion(0.0, 0.4, 0.5, 0.9), 480, 270),
        VirtualCamera("right", "slave", ViewRegion(0.5, 0.4, 1.0, 0.9), 480, 270),
    ]
    scene = SyntheticScene(cameras, seed=1, people=3, scenario="walkthrough", world_size=(1920, 1080))
    assert {region for _, _, region in scene.walkthrough_schedule() if region} == {"left", "right"}
    assert scene.render("left", 1.0).shape == (270, 480, 3)


# ----------------------------------------------------------------------------------------- real detector
NANODET_MEAN = np.array([103.53, 116.28, 123.675], np.float32)
NANODET_STD = np.array([57.375, 57.12, 58.395], np.float32)


def detect_people(session: ort.InferenceSession, frame: np.ndarray, threshold: float = 0.35) -> list[tuple]:
    """Minimal NanoDet decode (person class), independent of the production decoder under test elsewhere."""
    height, width = frame.shape[:2]
    blob = ((cv2.resize(frame, (416, 416)).astype(np.float32) - NANODET_MEAN) / NANODET_STD).transpose(2, 0, 1)
    outputs = session.run(None, {session.get_inputs()[0].name: blob[None]})
    by_cells: dict[int, dict[int, np.ndarray]] = {}
    for output in outputs:
        by_cells.setdefault(output.shape[1], {})[output.shape[2]] = output[0]
    boxes, scores = [], []
    for stride in (8, 16, 32):
        grid = 416 // stride
        cells = by_cells[grid * grid]
        keep = np.nonzero(cells[80][:, 0] > threshold)[0]
        logits = cells[44][keep].reshape(-1, 4, 11)
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        distances = (probs / probs.sum(-1, keepdims=True) * np.arange(11)).sum(-1) * stride
        cx, cy = (keep % grid + 0.5) * stride, (keep // grid + 0.5) * stride
        boxes.append(np.stack([cx - distances[:, 0], cy - distances[:, 1],
                               cx + distances[:, 2], cy + distances[:, 3]], 1))
        scores.append(cells[80][keep, 0])
    all_boxes = np.concatenate(boxes) * np.array([width, height, width, height]) / 416
    all_scores = np.concatenate(scores)
    xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in all_boxes]
    kept = np.array(cv2.dnn.NMSBoxes(xywh, all_scores.tolist(), threshold, 0.5), dtype=int).reshape(-1)
    return [tuple(all_boxes[i]) for i in kept]


def test_real_detector_finds_the_ground_truth_people() -> None:
    session = ort.InferenceSession(str(REPO_ROOT / "models" / "nanodet.onnx"), providers=["CPUExecutionProvider"])
    found = wanted = 0
    for scenario, seed in (("wander", 7), ("walkthrough", 4)):
        scene = SyntheticScene.default_site(seed=seed, scenario=scenario)
        frames = [(camera_id, 3.0 + 2.3 * i) for i, camera_id in enumerate(list(scene.cameras) * 3)]
        for camera_id, t in frames[:15]:  # master and every slave, 30 frames in all
            truth = [p for p in scene.ground_truth(camera_id, t)
                     if p.box[3] - p.box[1] > 60 and p.visible_fraction > 0.7]
            detections = detect_people(session, scene.render(camera_id, t))
            wanted += len(truth)
            found += sum(any(iou(p.box, d) >= 0.4 for d in detections) for p in truth)
    assert wanted >= 15
    assert found / wanted >= 0.8, f"NanoDet found {found} of {wanted} people"
